"""Planted models: weights built by construction, to calibrate the verdicts through the pipeline (pure numpy).

Each recipe is one small function that returns a weights dict in the contract of docs/design.md (nn.Linear (out, in)
layout, tied W_E, LayerNorm weights without biases), built from the corpus statistics and, where stated, the weights
of a trained *base* model (the main run of the same seed, snapshot_100). The workflow's rule ``plant_weights`` writes
the result where ``extract_weights`` would have written a trained model's, and every analysis rule then runs on it
exactly as on a trained model. Which claim each recipe is built to make true or false is stated in ``BUILT_FOR``.

True by construction:
  corpus_span         W_E = the centred corpus embedding E_in rescaled to the base W_E's Frobenius norm; every layer
                      matrix's residual-side vectors (LayerNorm folded, LN weights then 1) projected onto the span of
                      Σ_E's top-K eigenvectors, each vector rescaled to its own original norm  → corpus_basis holds;
  routing_qk          the base model with every head's W_Q/W_K replaced by a head that routes by the corpus's
                      preceding-token PMI (attention.planted_routing_head: the rank-d_h bilinear form whose
                      token-space scores over the top-N tokens, LayerNorm'd W_E rows, best fit the double-centred
                      PMI); W_Q,h and W_K,h scaled to the base head's Frobenius norms  → attention learns routing;
  l0_aligned          the base model with L0's W_Q turned (a reflection on the residual side: same singular values)
                      so that its top right-singular vector is T_proj's leading right-singular vector
                                                                                       → l0_alignment holds.
False by construction:
  random              every matrix i.i.d. Gaussian, Frobenius-norm matched to the base per matrix (LN weights kept);
  random_qk           the base model with every head's W_Q/W_K replaced by Frobenius-matched Gaussian draws;
  shuffled_embedding  the base model with W_E replaced by the PPMI embedding of the token-shuffled corpus
                      (initialisation.py's variant shuffled_corpus), rescaled to the base W_E's Frobenius norm.
"""
from __future__ import annotations

import numpy as np

from .attention import TokenSpace, planted_routing_head, preceding_token_statistic
from ..corpus.corpus_stats import transition_matrix
from .note_protocol import t_proj
from .residual_space import (LAYER_MATRICES, READING, WRITING, fold_layernorm, layernorm, matrix_type, n_layers,
                             residual_vectors)

RECIPES = ("corpus_span", "routing_qk", "l0_aligned", "random", "random_qk", "shuffled_embedding")
# claim id -> the conclusion its planted case must reach through the pipeline (the calibration table's expectation);
# a recipe not named for a claim must not make that claim "supported".
BUILT_FOR = {
    "corpus_span": {"corpus_basis": "supported"},
    "routing_qk": {"attention": "contradicted"},  # the note claims attention does NOT learn routing
    "l0_aligned": {"l0_alignment": "supported"},
    "random": {},
    "random_qk": {},
    "shuffled_embedding": {},
}
TRUE_BY_CONSTRUCTION = ("corpus_span", "routing_qk", "l0_aligned")


def _f64(weights: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64).copy() for k, v in weights.items()}


def _norm_matched(M: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """M scaled to the Frobenius norm of reference."""
    n = np.linalg.norm(M)
    if n == 0:
        raise ValueError("cannot norm-match an all-zero matrix")
    return M * (np.linalg.norm(reference) / n)


def _with_residual_vectors(name: str, vectors: np.ndarray) -> np.ndarray:
    """Inverse of residual_vectors: (n, d) residual-side vectors back into the matrix's stored layout."""
    return vectors.T if matrix_type(name) in WRITING else vectors


def _untied(weights: dict) -> dict:
    """Folded weights back in the tied contract: the explicit W_U that fold_layernorm adds is dropped (the recipe
    sets ln_final.w = 1, so the tied unembedding is W_E itself)."""
    out = dict(weights)
    out.pop("W_U", None)
    return out


# ----------------------------------------------------------------------------- true by construction

def corpus_span(base: dict, E_in: np.ndarray, mu: np.ndarray, eigvecs: np.ndarray, K: int) -> dict:
    """W_E = (E_in − μ) scaled to ‖base W_E‖_F; every layer matrix's residual-side vectors (LayerNorm folded, so the
    LN weights become 1 and the model's folded and raw weights coincide) projected onto span(eigvecs[:, :K]) — the
    top-K eigenvectors of Σ_E, μ its π-weighted mean — each rescaled to its own original norm. W_pos kept."""
    out = _untied(fold_layernorm(_f64(base)))
    out["W_E"] = _norm_matched(np.asarray(E_in, np.float64) - np.asarray(mu, np.float64)[None, :], base["W_E"])
    B = np.asarray(eigvecs, dtype=np.float64)[:, :K]
    P = B @ B.T
    for i in range(n_layers(out)):
        for t in LAYER_MATRICES:
            name = f"L{i}.{t}"
            R = residual_vectors(name, out[name])
            proj = R @ P
            norms, pnorms = np.linalg.norm(R, axis=1), np.linalg.norm(proj, axis=1)
            scale = np.divide(norms, pnorms, out=np.zeros_like(norms), where=pnorms > 1e-12 * max(norms.max(), 1e-300))
            out[name] = _with_residual_vectors(name, proj * scale[:, None])
    return out


def routing_qk(base: dict, counts, top: np.ndarray, n_head: int) -> dict:
    """The base model with every head's W_Q,h / W_K,h replaced by attention.planted_routing_head: the rank-d_h bilinear
    form M = W_Q,hᵀ W_K,h / √d_h whose double-centred token-space scores over the top tokens (LayerNorm'd W_E rows,
    the space the attention test reads) best fit the double-centred preceding-token PMI. Built in folded
    coordinates; the ln1 weight is divided back out so the raw weights fold to that form; then W_Q,h and W_K,h are
    scaled to the base head's Frobenius norms (a positive scale leaves every correlation with the PMI unchanged).
    Every head of every layer gets the same form."""
    out = _f64(base)
    ts = TokenSpace(layernorm(out["W_E"][np.asarray(top)]), preceding_token_statistic(counts, top, "pmi"))
    dh = out["L0.W_Q"].shape[0] // n_head
    Qh, Kh = planted_routing_head(ts, dh, 1.0)
    for i in range(n_layers(out)):
        ln = out[f"L{i}.ln1.w"]
        for t, head in (("W_Q", Qh), ("W_K", Kh)):
            W = out[f"L{i}.{t}"]
            raw = head / ln[None, :]
            out[f"L{i}.{t}"] = np.concatenate([_norm_matched(raw, W[h * dh:(h + 1) * dh]) for h in range(n_head)])
    return out


def householder_to(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The reflection H (symmetric, orthogonal) with H v = t for unit vectors v, t (identity if v = t)."""
    w = np.asarray(v, np.float64) - np.asarray(t, np.float64)
    n = np.linalg.norm(w)
    if n < 1e-15:
        return np.eye(v.size)
    w = w / n
    return np.eye(v.size) - 2.0 * np.outer(w, w)


def l0_aligned(base: dict, Tp: np.ndarray) -> dict:
    """The base model with L0's raw W_Q replaced by W_Q H, H the reflection taking W_Q's top right-singular vector to
    T_proj's leading right-singular vector (the pair note_protocol.l0_wq_alignment compares): same singular values and
    left vectors, so |cos| = 1 by that function as long as W_Q's top singular value is simple."""
    out = _f64(base)
    W = out["L0.W_Q"]
    _, s, vt = np.linalg.svd(W, full_matrices=False)
    if s.size > 1 and s[0] - s[1] < 1e-9 * s[0]:
        raise ValueError("L0.W_Q's top singular value is not simple: its top direction is not defined")
    _, _, tt = np.linalg.svd(np.asarray(Tp, np.float64), full_matrices=False)
    out["L0.W_Q"] = W @ householder_to(vt[0], tt[0])
    return out


def l0_target(counts, E_in: np.ndarray, E_out: np.ndarray) -> np.ndarray:
    """T_proj = E_inᵀ T E_out as the note protocol computes it (T = row-normalised counts)."""
    return t_proj(E_in, E_out, transition_matrix(counts))


# ----------------------------------------------------------------------------- false by construction

def random_weights(base: dict, seed) -> dict:
    """Every matrix (2-D tensor) i.i.d. Gaussian scaled to the base matrix's Frobenius norm; LN weights kept."""
    rng = np.random.default_rng(seed)
    out = _f64(base)
    for name in sorted(out):
        if out[name].ndim == 2:
            out[name] = _norm_matched(rng.standard_normal(out[name].shape), base[name])
    return out


def random_qk(base: dict, n_head: int, seed) -> dict:
    """The base model with every head's W_Q,h and W_K,h replaced by i.i.d. Gaussian draws scaled to the base head's
    Frobenius norm (ln1 weights kept)."""
    rng = np.random.default_rng(seed)
    out = _f64(base)
    for i in range(n_layers(out)):
        for t in ("W_Q", "W_K"):
            W = out[f"L{i}.{t}"]
            dh = W.shape[0] // n_head
            out[f"L{i}.{t}"] = np.concatenate([_norm_matched(rng.standard_normal((dh, W.shape[1])),
                                                             W[h * dh:(h + 1) * dh]) for h in range(n_head)])
    return out


def shuffled_embedding(base: dict, E_shuffled: np.ndarray) -> dict:
    """The base model with W_E replaced by the token-shuffled corpus's (centred) PPMI embedding, rescaled to the base
    W_E's Frobenius norm."""
    out = _f64(base)
    E = np.asarray(E_shuffled, dtype=np.float64)
    out["W_E"] = _norm_matched(E - E.mean(0, keepdims=True), base["W_E"])
    return out


# ----------------------------------------------------------------------------- dispatch

def plant(recipe: str, base: dict, corpus: dict, n_head: int, K: int, top: np.ndarray, seed) -> dict:
    """The planted weights of one recipe (float64). corpus: whatever the recipe reads — counts, E_in, E_out, mu,
    eigvecs, E_shuffled (plant_inputs in workflow/rules/common.smk declares exactly these per recipe)."""
    if recipe == "corpus_span":
        return corpus_span(base, corpus["E_in"], corpus["mu"], corpus["eigvecs"], K)
    if recipe == "routing_qk":
        return routing_qk(base, corpus["counts"], top, n_head)
    if recipe == "l0_aligned":
        return l0_aligned(base, l0_target(corpus["counts"], corpus["E_in"], corpus["E_out"]))
    if recipe == "random":
        return random_weights(base, seed)
    if recipe == "random_qk":
        return random_qk(base, n_head, seed)
    if recipe == "shuffled_embedding":
        return shuffled_embedding(base, corpus["E_shuffled"])
    raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")

