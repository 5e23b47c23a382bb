"""Corpus-derived initial embeddings for the intervention experiment: does starting a model in the corpus's
coordinate system save training?

Variants (all (V, d), used as the tied W_E at step 0; every other tensor is the seed's ordinary initialisation):
  random           today's initialisation (N(0, 0.02)); no file is made;
  corpus           E_in of the training split's PPMI-SVD embedding (rank d), centred;
  corpus_permuted  the same matrix with its rows permuted within frequency strata: same spectrum and the same
                   frequency–norm relation, wrong token identity;
  shuffled_corpus  E_in of the token-shuffled training split (unigram information only).
Scaling is per matrix, to the random initialisation's expected Frobenius norm 0.02·√(V d): per-row scaling would
erase the corpus embedding's frequency–norm relation, which is part of what is being tested (and what
corpus_permuted controls for).
"""
from __future__ import annotations

import numpy as np

from .corpus_stats import bigram_counts, ppmi, ppmi_embeddings
from ..core.nulls import binned_permutation, log_frequency_bins

VARIANTS = ("random", "corpus", "corpus_permuted", "shuffled_corpus")
INIT_STD = 0.02  # GPT.reset_parameters' N(0, 0.02) for W_E


def scaled_to_random_norm(E: np.ndarray, std: float = INIT_STD) -> np.ndarray:
    """Centre the rows' mean and scale the matrix to the expected Frobenius norm of an N(0, std²) matrix."""
    E = np.asarray(E, dtype=np.float64)
    E = E - E.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(E)
    if norm == 0:
        raise ValueError("the corpus embedding is all zeros: the corpus is too small for this d_model")
    return E * (std * np.sqrt(E.size) / norm)


def corpus_embedding(ids: np.ndarray, vocab_size: int, d: int, alpha: float, power: float, seed: int,
                     solver: str = "scipy", device: str = "cpu") -> np.ndarray:
    """E_in (V, d) of the PPMI-SVD embedding of a token stream (``solver``, ``device``: corpus_stats.top_singular)."""
    C = bigram_counts(ids, vocab_size)
    return ppmi_embeddings(ppmi(C, alpha=alpha), d, power=power, seed=seed, solver=solver, device=device)[0]


def initial_embedding(variant: str, train_ids: np.ndarray, shuffled_ids: np.ndarray, vocab_size: int, d: int,
                      alpha: float = 0.75, power: float = 0.5, n_bins: int = 20, seed: int = 0,
                      solver: str = "scipy", device: str = "cpu") -> np.ndarray:
    """The (V, d) float32 initial W_E of a variant (not 'random', which needs no file)."""
    if variant not in VARIANTS or variant == "random":
        raise ValueError(f"unknown or file-less init variant {variant!r}; expected one of {VARIANTS[1:]}")
    source = shuffled_ids if variant == "shuffled_corpus" else train_ids
    E = scaled_to_random_norm(corpus_embedding(source, vocab_size, d, alpha, power, seed, solver, device))
    if variant == "corpus_permuted":
        counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=vocab_size)
        p = binned_permutation(log_frequency_bins(counts, n_bins), np.random.default_rng([seed, 3]))
        E = E[p]
    return E.astype(np.float32)
