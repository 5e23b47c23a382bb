"""Corpus preparation, the train/validation split and the interpolated bigram's λ, against hand-counted texts and a
corpus whose best λ is known (issue 24)."""
from __future__ import annotations

import numpy as np
import pytest

from corpus_weights.corpus.text import prepare_corpus, read_corpus_files
from corpus_weights.measure.loss_ladder import corpus_ladder, interpolated_bigram
from corpus_weights.corpus.tokenizing import encode, encode_file, split_train_val, train_tokenizer, write_split


# ----------------------------------------------------------------------------- words and lines

def test_prepare_corpus_counts_by_hand(tmp_path):
    """a.txt: 2 lines, 3 words. b.txt: CR LF, a tab, two spaces and no final line feed: 2 lines, 4 words.
    Joined with one line feed after each file's own: 5 lines (the blank separator is one), 7 words, 37 characters."""
    (tmp_path / "a.txt").write_bytes(b"one two\nthree\n")
    (tmp_path / "b.txt").write_bytes(b"four  five\tsix\r\nseven")
    text, man = prepare_corpus(["*.txt"], base_dir=str(tmp_path))
    assert text == "one two\nthree\n\nfour  five\tsix\r\nseven\n"
    assert (man["n_words"], man["n_lines"], man["n_chars"]) == (7, 5, 37)
    assert [(r["name"], r["n_words"], r["n_chars"]) for r in man["files"]] == [("a.txt", 3, 14), ("b.txt", 4, 21)]


def test_prepare_corpus_counts_across_block_boundaries(tmp_path):
    """1.8 MB of text (larger than the counting block of 1 MiB): 100,000 lines of 3 words, hand-counted, plus one
    line of 2 words in a second file; the counts are exact where a block is cut."""
    line = "alpha beta gamma\n"
    (tmp_path / "big.txt").write_text(line * 100_000, encoding="utf-8")
    (tmp_path / "small.txt").write_text("last words", encoding="utf-8")
    text, man = prepare_corpus(["big.txt", "small.txt"], base_dir=str(tmp_path))
    assert man["n_words"] == 300_002
    assert man["n_lines"] == 100_002  # the blank separator line counts
    assert man["n_chars"] == 17 * 100_000 + 1 + 11
    assert [r["n_words"] for r in man["files"]] == [300_000, 2]


def test_read_corpus_files_records_each_file(tmp_path):
    (tmp_path / "x.txt").write_text("  leading and trailing  \n\n\nthree blank lines\n", encoding="utf-8")
    text, records = read_corpus_files(["x.txt"], base_dir=str(tmp_path))
    assert records[0]["n_words"] == 6 and records[0]["n_chars"] == 45


# ----------------------------------------------------------------------------- train / validation split

def test_split_by_hand():
    ids = np.arange(20, dtype=np.int32) + 100
    tr, va = split_train_val(ids, 0.25)
    assert tr.tolist() == list(range(100, 115)) and va.tolist() == list(range(115, 120))  # the last quarter
    tr, va = split_train_val(ids, 0.0)
    assert tr.size == 20 and va.size == 0
    tr, va = split_train_val(np.arange(10), 0.15)  # 1.5 rounds to 2 (half to even)
    assert tr.tolist() == list(range(8)) and va.tolist() == [8, 9]


def test_streamed_split_of_an_encoded_text_by_hand(tmp_path):
    """Twenty distinct words, one per token: validation (0.25) is exactly the last five words, in order, and train
    the first fifteen; the streamed split (what rule tokenize runs) equals split_train_val."""
    words = [f"w{i:02d}" for i in range(20)]
    text = " ".join(words[:7]) + "\n" + " ".join(words[7:]) + "\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    tok, _ = train_tokenizer(text, "word", 50)
    raw = tmp_path / "stream.raw"
    n = encode_file(tok, tmp_path / "t.txt", raw)
    assert n == 20
    n_train, n_val = write_split(raw, n, 0.25, tmp_path / "train.npy", tmp_path / "val.npy")
    assert (n_train, n_val) == (15, 5)
    train, val = np.load(tmp_path / "train.npy"), np.load(tmp_path / "val.npy")
    assert [tok.id_to_token(int(i)) for i in train] == words[:15]
    assert [tok.id_to_token(int(i)) for i in val] == words[15:]
    ref_tr, ref_va = split_train_val(encode(tok, text), 0.25)
    assert np.array_equal(train, ref_tr) and np.array_equal(val, ref_va)


# ----------------------------------------------------------------------------- λ of the interpolated bigram

V = 10


def known_lambda_corpus():
    """Training split = 900 tokens of the cycle a -> a+1, then a 100-token tail whose 99 transitions are a -> a+1
    except 27 jumps a -> a+5 (never seen in the first 900). On the tail, λ T + (1 − λ) p with p ≈ 0.1 is best at
    λ = (q(1 − p) − (1 − q) p) / (1 − p) = 0.70 for q = 72/99: 0.7 of the grid. The first 900 tokens alone, or a
    validation split with 10 jumps in 199 transitions, would choose 0.95."""
    fit = np.tile(np.arange(V), 90)
    tail = [0]
    for i in range(1, 100):
        tail.append((tail[-1] + (5 if i % 11 in (0, 4, 7) else 1)) % V)
    val = [3]
    for i in range(1, 200):
        val.append((val[-1] + (5 if i % 20 == 10 else 1)) % V)
    return np.concatenate([fit, tail]), np.array(val)


def hand_bigram_ce(fit_ids, eval_ids, lam):
    """CE of eval pairs under λ C[a,b]/C[a,·] + (1 − λ) (n_b + ½)/(n + V/2), counts from fit_ids; written out with
    a dictionary of pair counts."""
    pairs, rows = {}, {}
    for a, b in zip(fit_ids[:-1], fit_ids[1:]):
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
        rows[a] = rows.get(a, 0) + 1
    uni = (np.bincount(fit_ids, minlength=V) + 0.5) / (len(fit_ids) + 0.5 * V)
    lp = []
    for a, b in zip(eval_ids[:-1], eval_ids[1:]):
        t = pairs.get((a, b), 0) / rows[a] if rows.get(a) else 0.0
        lp.append(np.log(lam * t + (1 - lam) * uni[b]) if rows.get(a) else np.log(uni[b]))
    return -float(np.mean(lp))


def test_lambda_is_chosen_on_the_training_tail_and_counts_refitted():
    train, val = known_lambda_corpus()
    res = interpolated_bigram(train, val, V)
    assert res["lam"] == 0.7
    for lam, ce in res["dev_ce"].items():  # the dev CE of each λ: counts of the first 90 %, pairs of the tail
        assert ce == pytest.approx(hand_bigram_ce(train[:900], train[900:], lam), rel=1e-12), lam
    # the reported CE: λ = 0.7 with counts (pairs and unigrams) refitted on all 1000 training tokens, on val
    assert res["ce"] == pytest.approx(hand_bigram_ce(train, val, 0.7), rel=1e-12)
    # (checked to 1e-12, so the small differences below are decisive)
    assert abs(res["ce"] - hand_bigram_ce(train[:900], val, 0.7)) > 1e-4   # not the counts of the first 90 %
    assert abs(res["ce"] - hand_bigram_ce(train, val, 0.95)) > 1e-2        # nor validation's own best λ
    # the choice does not look at validation at all
    assert interpolated_bigram(train, np.tile(np.arange(V), 20), V)["lam"] == 0.7
    assert interpolated_bigram(train[:900], val, V)["lam"] == 0.95
    ladder = corpus_ladder(train, val, V)
    assert ladder["bigram_lambda"] == 0.7 and ladder["bigram_ce"] == res["ce"]
