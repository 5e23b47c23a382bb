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

from ..core.ids import Pooled, Target
from ..core.linalg import fix_signs, haar_frame, orthonormal_columns
from .residual_space import (
    EMBEDDING,
    LAYER_MATRICES,
    READING,
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
        if target == Target.DW:
            if W_init is None:
                raise ValueError("target='dW' needs W_init")
            W = W - np.asarray(W_init[name], dtype=np.float64)
        elif target != Target.W:
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
        grams[Pooled.NONEMBED] = np.sum(pooled, axis=0)
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
        mt = name if name == Pooled.NONEMBED else matrix_type(name)
        ly = -1 if name == Pooled.NONEMBED else layer_of(name)
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


# --------------------------------------------------------------------------------------
# uncertainty of the aligned share and the power of its basis-null test
#
# The aligned share s is compared with its basis null (shares on null bases: mean m, sd σ_null over draws). The map
# behind the aligned basis is fitted on one fit/test split of the tokens; refitting it on other splits moves s by
# σ_split (sd of the shares on the split bases, split 0 included). Both enter the test:
#     total sd = sqrt(σ_null² + σ_split²),   z_total = (s − m) / total sd.
# Power: plant a corpus-specific excess δ into the model's own pooled non-embedding matrices and ask whether z_total
# would see it (z_planted(δ) > 3). The smallest such δ is the minimum detectable excess (mde).

DETECTION_Z = 3.0


def share_uncertainty(share: float, null_shares: np.ndarray, split_shares: np.ndarray | None) -> dict:
    """The aligned share against its basis null with the split-to-split spread included (sd's with ddof = 1).

    Returns dict(null_mean, null_sd, split_sd, n_splits, total_sd = sqrt(null_sd² + split_sd²),
    z_total = (share − null_mean) / total_sd). Fewer than 2 split shares (or 2 null shares): split_sd / null_sd,
    total_sd and z_total are NaN — the spread was not measured, so no total is claimed."""
    null_shares = np.asarray(null_shares, dtype=np.float64)
    split_shares = np.zeros(0) if split_shares is None else np.asarray(split_shares, dtype=np.float64)
    null_mean = float(null_shares.mean()) if null_shares.size else np.nan
    null_sd = float(null_shares.std(ddof=1)) if null_shares.size > 1 else np.nan
    split_sd = float(split_shares.std(ddof=1)) if split_shares.size > 1 else np.nan
    total_sd = float(np.hypot(null_sd, split_sd))
    z_total = (share - null_mean) / total_sd if total_sd > 0 else np.nan
    return dict(null_mean=null_mean, null_sd=null_sd, split_sd=split_sd, n_splits=int(split_shares.size),
                total_sd=total_sd, z_total=float(z_total))


def pooled_nonembed_gram(weights: dict) -> np.ndarray:
    """Σ XᵀX over the residual-side vectors of every non-embedding matrix (the Gram of the pooled_nonembed rows)."""
    grams = [residual_vectors(n, np.asarray(weights[n], dtype=np.float64)) for n in
             residual_matrix_names(weights, embeddings=False)]
    return np.sum([X.T @ X for X in grams], axis=0)


def share_scale_factor(share: float, delta: float) -> float:
    """Factor a by which the component in span(B) must be multiplied (the orthogonal part kept) to raise an
    uncentred share from s to s + δ: the new share is a² s / (a² s + 1 − s), so a² = (s + δ)(1 − s) / (s (1 − s − δ)).
    Needs 0 < s and 0 ≤ δ < 1 − s."""
    if not (0 < share < 1) or not (0 <= delta < 1 - share):
        raise ValueError(f"a share of {share} cannot rise by {delta} (need 0 < s and 0 <= delta < 1 - s)")
    return float(np.sqrt((share + delta) * (1 - share) / (share * (1 - share - delta))))


def _scaling_in_span(B: np.ndarray, a: float) -> np.ndarray:
    """M = I + (a − 1) B Bᵀ: multiplies the component of a residual vector in span(B) by a, keeps the rest."""
    B = np.asarray(B, dtype=np.float64)
    return np.eye(B.shape[0]) + (a - 1.0) * B @ B.T


def planted_share_increase(weights: dict, B: np.ndarray, delta: float) -> dict:
    """The model with a planted corpus-specific excess: every non-embedding matrix's residual-side vectors get their
    component in span(B) multiplied by one factor a (share_scale_factor of the pooled share), so the pooled
    non-embedding share on B rises by exactly δ. Reading matrices W -> W M, writing matrices W -> M W (M symmetric);
    embeddings and every other tensor are kept."""
    G = pooled_nonembed_gram(weights)
    M = _scaling_in_span(B, share_scale_factor(share_of_gram(G, B), delta))
    out = {k: np.array(v, copy=True) for k, v in weights.items()}
    for name in residual_matrix_names(weights, embeddings=False):
        W = np.asarray(weights[name], dtype=np.float64)
        out[name] = W @ M if matrix_type(name) in READING else M @ W
    return out


def share_of_gram(G: np.ndarray, B: np.ndarray) -> float:
    """The uncentred share of the pooled vectors whose Gram is G in span(B) (B: d x K orthonormal)."""
    return float(_shares_from_gram(G, np.asarray(B, dtype=np.float64)[None])[0])


def planted_z(G: np.ndarray, B: np.ndarray, null_bases: np.ndarray, split_bases: np.ndarray, delta: float) -> dict:
    """z_total of the planted model (planted_share_increase at δ), computed on its pooled Gram M G M: its share on B
    (= s + δ), on the same null bases and on the same split bases (all d x K, stacked). Returns share_uncertainty's
    dict plus share."""
    M = _scaling_in_span(B, share_scale_factor(share_of_gram(G, B), delta))
    Gp = M @ G @ M
    share = share_of_gram(Gp, B)
    return dict(share=share, **share_uncertainty(share, _shares_from_gram(Gp, np.asarray(null_bases)),
                                                 _shares_from_gram(Gp, np.asarray(split_bases))))


def minimum_detectable_excess(G: np.ndarray, B: np.ndarray, null_bases: np.ndarray, split_bases: np.ndarray,
                              threshold: float = DETECTION_Z, grid: int = 64, tol: float = 1e-6) -> float:
    """The smallest planted δ with z_planted(δ) ≥ threshold: the first crossing on a grid of δ in [0, 1 − s), refined
    by bisection to `tol`. 0 when the model itself is already at the threshold; NaN when no δ below 1 − s reaches
    it (or the share is undefined)."""
    s = share_of_gram(G, B)
    if not 0 < s < 1:
        return float("nan")
    z = lambda delta: planted_z(G, B, null_bases, split_bases, delta)["z_total"]  # noqa: E731
    deltas = (1 - s) * np.arange(grid) / grid
    reached = [dl for dl in deltas if z(dl) >= threshold]
    if not reached:
        return float("nan")
    hi = reached[0]
    if hi == 0:
        return 0.0
    lo = hi - (1 - s) / grid
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if z(mid) >= threshold else (mid, hi)
    return float(hi)


def planted_power(weights: dict, B: np.ndarray, null_bases: np.ndarray, split_bases: np.ndarray,
                  min_effect: float, threshold: float = DETECTION_Z) -> dict:
    """Power of the basis-null test at this model's size, for the pooled non-embedding matrices on B (d x K):
    planted_delta (= min_effect), planted_z (z_total of the model with δ = min_effect planted; NaN when s + δ ≥ 1),
    planted_detected (planted_z > threshold; False when planted_z is NaN) and mde (minimum_detectable_excess)."""
    G = pooled_nonembed_gram(weights)
    s = share_of_gram(G, B)
    z = planted_z(G, B, null_bases, split_bases, min_effect)["z_total"] if 0 < s < 1 - min_effect else np.nan
    return dict(planted_delta=float(min_effect), planted_z=z, planted_detected=bool(z > threshold),
                mde=minimum_detectable_excess(G, B, null_bases, split_bases, threshold))
