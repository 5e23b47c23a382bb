"""Synthetic Zipf-Markov text of a chosen vocabulary and length, for the scale benchmark.

Each word follows its predecessor with probability ``stickiness`` (drawn from a handful of successors that depend on
the predecessor, themselves Zipf-distributed), else it is a fresh Zipf draw. So the bigram table is sparse and
structured like a real corpus's, the unigram distribution is Zipfian, and nearly every word of the vocabulary occurs.
Words are lowercase letter strings (one token each under the workflow's word tokenizer), 12 to a line.

    python benchmarks/synthetic_corpus.py OUT.txt --vocab 50000 --tokens 100000000 [--seed 0]
"""
from __future__ import annotations

import argparse
import string
import time
from pathlib import Path

import numpy as np

CHUNK = 2_000_000  # tokens generated and written at a time (bounded memory at any length)
WORDS_PER_LINE = 12


def word_list(vocab: int) -> np.ndarray:
    """``vocab`` distinct lowercase words (base-26 spellings of 0..vocab-1, at least two letters)."""
    letters = string.ascii_lowercase
    words = []
    for i in range(vocab):
        n, w = i + 26, ""
        while n:
            n, r = divmod(n, 26)
            w = letters[r] + w
        words.append(w)
    return np.array(words, dtype=object)


def zipf_sampler(vocab: int, exponent: float, rng: np.random.Generator):
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** exponent)
    cdf /= cdf[-1]
    return lambda n: np.minimum(np.searchsorted(cdf, rng.random(n)), vocab - 1)


def token_chunks(vocab: int, tokens: int, seed: int, stickiness: float = 0.2, successors: int = 64,
                 exponent: float = 0.8):
    """Id arrays of ``CHUNK`` tokens (the last shorter) forming one Markov stream of ``tokens`` ids."""
    rng = np.random.default_rng(seed)
    draw = zipf_sampler(vocab, exponent, rng)
    succ_table = draw(vocab * successors).reshape(vocab, successors)  # each word's likely successors
    succ_rank = zipf_sampler(successors, 1.0, rng)
    prev = int(draw(1)[0])
    for start in range(0, tokens, CHUNK):
        n = min(CHUNK, tokens - start)
        ids = draw(n)
        follow = rng.random(n) < stickiness
        rank = succ_rank(n)
        # ids[t] = succ_table[ids[t-1], rank[t]] where follow[t]: resolve runs of `follow` one depth at a time
        pending = np.flatnonzero(follow)
        first = pending[(pending == 0) | ~follow[np.maximum(pending - 1, 0)]]
        depth = first
        while depth.size:
            prev_ids = np.where(depth == 0, prev, ids[np.maximum(depth - 1, 0)])
            ids[depth] = succ_table[prev_ids, rank[depth]]
            nxt = depth + 1
            depth = nxt[nxt < n]
            depth = depth[follow[depth]]
        prev = int(ids[-1])
        yield ids


def write_corpus(path: Path, vocab: int, tokens: int, seed: int = 0) -> dict:
    words = word_list(vocab)
    t0 = time.perf_counter()
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        for ids in token_chunks(vocab, tokens, seed):
            w = words[ids]
            lines = [" ".join(w[i:i + WORDS_PER_LINE]) for i in range(0, len(w), WORDS_PER_LINE)]
            fh.write("\n".join(lines) + "\n")
            written += len(ids)
    return {"path": str(path), "vocab": vocab, "tokens": written, "bytes": path.stat().st_size,
            "seconds": time.perf_counter() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(write_corpus(args.out, args.vocab, args.tokens, args.seed))


if __name__ == "__main__":
    main()
