"""Projection shares and R^2 of weight matrices onto residual-space bases (pure numpy).

Centring conventions (stated everywhere, as measurement.md asks):
- ``projection_share`` is UNCENTRED: P(X, B) = ||X B B^T||^2 / ||X||^2 over the residual-side
  vectors (rows of X).  For a random K-dim basis its expectation is K/d exactly.
- ``r2`` is centred by the scalar grand mean of W: R^2 = 1 - ||W - W_hat||^2 / ||W - mean(W)||^2.
- The "own" PCA basis used as upper bound in ``shares_table`` is the UNCENTRED PCA (top-K right
  singular vectors of X), the optimal K-subspace for the uncentred share.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .linalg import fix_signs, haar_frame, orthonormal_columns
from .residual_space import (
    EMBEDDING,
    LAYER_MATRICES,
    layer_of,
    matrix_type,
    residual_matrix_names,
    residual_vectors,
)


def projection_share(X: np.ndarray, B: np.ndarray) -> float:
    """Uncentred share ||X B B^T||^2 / ||X||^2 (rows of X are residual vectors; B d x K orthonormal)."""
    X = np.asarray(X, dtype=np.float64)
    XB = X @ B
    return float((XB * XB).sum() / (X * X).sum())


def r2(W: np.ndarray, W_hat: np.ndarray) -> float:
    """R^2 = 1 - ||W - W_hat||^2 / ||W - mean||^2, mean = scalar grand mean of W."""
    W = np.asarray(W, dtype=np.float64)
    W_hat = np.asarray(W_hat, dtype=np.float64)
    den = ((W - W.mean()) ** 2).sum()
    return float(1.0 - ((W - W_hat) ** 2).sum() / den)


orth_qr = orthonormal_columns  # QR keeps nesting: a basis built for K_max can be sliced [:, :K]
random_basis = haar_frame  # Haar-random d x K orthonormal basis


def pca_basis(X: np.ndarray, K: int, weights: np.ndarray | None = None, center: bool = True) -> np.ndarray:
    """Top-K principal directions (d x K, columns) of the rows of X.

    weights: optional per-row weights (e.g. unigram pi), normalised internally; the mean (if
    center) is the weighted mean.  Directions sorted by decreasing variance, sign fixed so the
    largest-|.| entry of each is positive.
    """
    X = np.asarray(X, dtype=np.float64)
    if weights is None:
        w = np.full(X.shape[0], 1.0 / X.shape[0])
    else:
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.sum()
    if center:
        X = X - w @ X
    G = (X * w[:, None]).T @ X  # d x d
    lam, U = np.linalg.eigh(G)
    return fix_signs(U[:, ::-1][:, :K])


def aligned_corpus_basis(A: np.ndarray, U_K: np.ndarray) -> np.ndarray:
    """Corpus basis in model coordinates: B_K = orth(A^T U_K) (d x K).

    A: (d_c, d) map from corpus space to model space (row vectors u -> u A); U_K: (d_c, K)
    top-K eigenvectors of Sigma_E as columns.  QR-based, so nested in K.
    """
    return orth_qr(np.asarray(A).T @ np.asarray(U_K))


# --------------------------------------------------------------------------------------
# shares table

NON_EMBED = LAYER_MATRICES


def _target_vectors(weights: dict, target: str, W_init: dict | None) -> dict[str, np.ndarray]:
    out = {}
    for name in residual_matrix_names(weights, embeddings=True):
        W = np.asarray(weights[name], dtype=np.float64)
        if target == "dW":
            if W_init is None:
                raise ValueError("target='dW' needs W_init")
            W = W - np.asarray(W_init[name], dtype=np.float64)
        elif target != "W":
            raise ValueError("target must be 'W' or 'dW'")
        out[name] = residual_vectors(name, W)
    return out


def _grams(weights: dict, target: str, W_init: dict | None, include_embeddings: bool) -> dict:
    """{name: (X^T X, eigenvalues descending)} per matrix plus 'pooled_nonembed'."""
    grams = {}
    for name, X in _target_vectors(weights, target, W_init).items():
        if not include_embeddings and matrix_type(name) in EMBEDDING:
            continue
        grams[name] = X.T @ X
    pooled = [g for n, g in grams.items() if matrix_type(n) in NON_EMBED]
    if pooled:
        grams["pooled_nonembed"] = np.sum(pooled, axis=0)
    return {n: (G, np.linalg.eigvalsh(G)[::-1]) for n, G in grams.items()}


def _shares_from_gram(G: np.ndarray, Bs: np.ndarray) -> np.ndarray:
    """Shares tr(B^T G B)/tr G for a stack of bases Bs (n, d, K)."""
    tot = np.trace(G)
    n, d, K = Bs.shape
    flat = Bs.transpose(1, 0, 2).reshape(d, n * K)  # one GEMM for all draws
    GB = G @ flat
    if tot <= 0:  # an all-zero matrix (e.g. ΔW of an untrained snapshot) has no share
        return np.full(n, np.nan)
    return (GB * flat).reshape(d, n, K).sum(axis=(0, 2)) / tot


def shares_table(
    weights: dict,
    bases: dict,
    K: int,
    target: str = "W",
    W_init: dict | None = None,
    include_embeddings: bool = True,
    _cache: dict | None = None,
    keep_draws: bool = False,
) -> pd.DataFrame:
    """Projection shares per (matrix type, layer, basis), plus pooled non-embedding rows.

    bases: {name: B (d x K') or list of B for random draws}; each B is sliced to its first K
    columns (all our bases are nested in K).  The weights' own (uncentred) PCA of each matrix
    is added as basis 'own' (the upper bound).  target: 'W' (weights) or 'dW' (W - W_init).

    Columns: target, matrix, layer, basis, K, d, share, share_sd (sd over draws; NaN for a
    single basis), n_draws, own_share, normalised = (share - K/d) / (own_share - K/d).
    Pooled rows have matrix='pooled_nonembed', layer=-1: pooled share = sum ||XB||^2 / sum ||X||^2
    over all non-embedding residual vectors, own = PCA of the pooled stack.
    Embedding rows (W_E, W_pos, W_U if present) have layer=-1.
    Uses d x d Gram matrices, so each (matrix, basis) costs O(d^2 K).
    keep_draws: add a column share_draws with the per-draw shares (a list per row).
    """
    grams = _grams(weights, target, W_init, include_embeddings) if _cache is None else _cache
    d = next(iter(grams.values()))[0].shape[0]
    stacks = {}
    for bname, B in bases.items():
        if isinstance(B, (list, tuple)) and len(B) == 0:
            continue  # a null or random basis with zero draws
        if isinstance(B, (list, tuple)):
            stacks[bname] = np.stack([np.asarray(b, dtype=np.float64)[:, :K] for b in B])
        else:
            stacks[bname] = np.asarray(B, dtype=np.float64)[None, :, :K]
    base = K / d
    rows = []
    for name, (G, lam) in grams.items():
        own = float(lam[:K].sum() / lam.sum()) if lam.sum() > 0 else np.nan
        mt = name if name == "pooled_nonembed" else matrix_type(name)
        ly = -1 if name == "pooled_nonembed" else layer_of(name)
        recs = [("own", np.array([own]))] + [(b, _shares_from_gram(G, S)) for b, S in stacks.items()]
        for bname, sh in recs:
            m = float(sh.mean())
            rows.append(
                dict(
                    target=target, matrix=mt, layer=ly, basis=bname, K=K, d=d, share=m,
                    share_sd=float(sh.std(ddof=1)) if sh.size > 1 else np.nan,
                    n_draws=int(sh.size), own_share=own,
                    normalised=(m - base) / (own - base) if own - base != 0 else np.nan,
                    **({"share_draws": sh.tolist()} if keep_draws else {}),
                )
            )
    return pd.DataFrame(rows)
