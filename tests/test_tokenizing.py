"""Tokenizer training, encoding, splitting, vocabulary table, shuffled control."""

import logging

import numpy as np
import pytest

from corpus_weights.corpus.tokenizing import encode, shuffle_tokens, split_train_val, train_tokenizer, vocab_table

TEXT = "the cat sat.\nthe dog sat!\nthe end\n"


def test_word_level_planted_vocab():
    tok, info = train_tokenizer(TEXT, "word", 5)
    assert info == {"requested_vocab_size": 5, "vocab_size": 5, "shrunk": False, "kind": "word"}
    vocab = tok.get_vocab()
    assert vocab["[UNK]"] == 0 and vocab["the"] == 1 and vocab["sat"] == 2  # most frequent first
    ids = encode(tok, "the sat\nzebra the")
    assert ids.dtype == np.int32 and ids.tolist() == [1, 2, 0, 1]


def test_word_level_shrinks_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        tok, info = train_tokenizer(TEXT, "word", 100)
    # distinct words: the cat sat . dog ! end -> 7 + [UNK]
    assert info["vocab_size"] == 8 == tok.get_vocab_size()
    assert info["shrunk"] is True and info["requested_vocab_size"] == 100
    assert "vocab_size" in caplog.text


def test_lowercase_and_punctuation_split():
    tok, _ = train_tokenizer("The cat, the CAT.\n", "word", 50, lowercase=True)
    assert set(tok.get_vocab()) == {"[UNK]", "the", "cat", ",", "."}
    tok2, _ = train_tokenizer("woo'd\n", "word", 50)
    assert set(tok2.get_vocab()) == {"[UNK]", "woo", "'", "d"}


def test_bpe_roundtrip_and_bad_kind():
    tok, info = train_tokenizer(TEXT * 3, "bpe", 40)
    assert info["kind"] == "bpe" and tok.token_to_id("[UNK]") == 0 and tok.get_vocab_size() <= 40
    assert len(encode(tok, TEXT)) > 0
    with pytest.raises(ValueError, match="tokenizer.kind"):
        train_tokenizer(TEXT, "char", 10)


def test_encode_chunks_match_single_call(monkeypatch):
    import corpus_weights.corpus.tokenizing as tk

    tok, _ = train_tokenizer(TEXT, "word", 50)
    whole = encode(tok, TEXT * 7)
    monkeypatch.setattr(tk, "_ENCODE_CHUNK_LINES", 2)
    assert np.array_equal(encode(tok, TEXT * 7), whole)
    assert np.array_equal(whole, np.array(tok.encode(" ".join((TEXT * 7).split("\n"))).ids))


def test_split_train_val_contiguous():
    ids = np.arange(100, dtype=np.int32)
    tr, va = split_train_val(ids, 0.1)
    assert tr.tolist() == list(range(90)) and va.tolist() == list(range(90, 100))
    with pytest.raises(ValueError):
        split_train_val(ids, 1.0)


def test_vocab_table_counts():
    tok, _ = train_tokenizer(TEXT, "word", 50)
    df = vocab_table(tok, encode(tok, TEXT))
    assert list(df.columns) == ["id", "token", "count"] and df["id"].tolist() == list(range(8))
    assert df.loc[df.token == "the", "count"].item() == 3
    assert df.loc[0, "token"] == "[UNK]" and df.loc[0, "count"] == 0


def test_shuffle_keeps_unigrams_destroys_bigrams():
    ids = np.tile(np.arange(10, dtype=np.int32), 200)  # deterministic bigrams i -> i+1
    sh = shuffle_tokens(ids, seed=1)
    assert np.array_equal(np.sort(sh), np.sort(ids))
    assert np.array_equal(sh, shuffle_tokens(ids, seed=1)) and not np.array_equal(sh, ids)
    follows = np.mean((sh[1:] - sh[:-1]) % 10 == 1)
    assert follows < 0.3


@pytest.mark.parametrize("kind, size", [("word", 300), ("bpe", 120)])
def test_streamed_file_gives_the_tokenizer_and_ids_of_the_whole_text(tmp_path, kind, size):
    """Blocks end at line breaks (multi-byte characters are never cut), training on blocks equals training on the
    text, and the incrementally written, memory-mapped split equals split_train_val of encode."""
    from corpus_weights.corpus.tokenizing import encode_file, text_blocks, write_split

    text = "".join(f"Ünïcødé line {i}: naïve café — “quoted” {i % 7} words, déjà vu.\n" for i in range(400))
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    blocks = list(text_blocks(path, block_bytes=97))
    assert "".join(blocks) == text and len(blocks) > 50 and all(b.endswith("\n") for b in blocks)
    whole, info_whole = train_tokenizer(text, kind, size)
    streamed, info_streamed = train_tokenizer(text_blocks(path, block_bytes=97), kind, size)
    assert whole.get_vocab() == streamed.get_vocab() and info_whole == info_streamed
    n = encode_file(streamed, path, tmp_path / "raw", block_bytes=97)
    train, val = split_train_val(encode(whole, text), 0.1)
    assert (n_split := write_split(tmp_path / "raw", n, 0.1, tmp_path / "tr.npy", tmp_path / "va.npy")) == (
        train.size, val.size)
    assert np.array_equal(np.load(tmp_path / "tr.npy"), train) and np.array_equal(np.load(tmp_path / "va.npy"), val)
    assert sum(n_split) == n
