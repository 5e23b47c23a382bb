"""The note's protocol, reproduced as literally as its text allows (see measurement.md "Note protocol").

These numbers are NOT rotation-invariant: corpus coordinates are used in model coordinates as
if they were the same (no alignment through the vocabulary).  tests/test_invariance.py shows
that they move under a function-preserving rotation of the residual basis.

Rows the note counts: every residual-side vector of every layer matrix (rows of W_Q, W_K, W_V,
W_in; columns of W_O, W_out) plus, when embeddings are included, the rows of W_E and W_pos.
An explicit W_U (after folding) is the tied W_E and is never counted twice.
Centring: R^2 uses the scalar grand mean of the pooled rows.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..corpus.corpus_stats import transition_matrix  # noqa: F401  (re-exported: the note builds T_proj from it)
from ..core.nulls import random_rotation_cosine_null_multi
from ..core.note_values import NOTE
from .projection import orth_qr
from .residual_space import LAYER_MATRICES, n_layers, residual_vectors



def note_row_names(weights: dict, include_embeddings: bool = True) -> list[str]:
    names = [k for k in ("W_E", "W_pos") if include_embeddings and k in weights]
    for i in range(n_layers(weights)):
        names += [f"L{i}.{t}" for t in LAYER_MATRICES if f"L{i}.{t}" in weights]
    return names


def note_rows(weights: dict, include_embeddings: bool = True) -> np.ndarray:
    """All counted residual-side vectors stacked (n_rows, d), float64."""
    return np.concatenate([np.asarray(residual_vectors(n, weights[n]), dtype=np.float64)
                           for n in note_row_names(weights, include_embeddings)])


def note_basis(eigvecs: np.ndarray, mu: np.ndarray, K: int) -> np.ndarray:
    """The note's basis: top-K eigenvectors (columns of eigvecs, sorted descending) plus the mean,
    orthonormalised: d x (K + 1).  Used in model coordinates as if corpus dims = model dims."""
    M = np.concatenate([np.asarray(eigvecs)[:, :K], np.asarray(mu).reshape(-1, 1)], axis=1)
    return orth_qr(M)


def _note_stats(weights: dict, include_embeddings: bool):
    """(Gram X^T X, sum of entries, n_rows) of the counted rows."""
    G, sm, n = 0.0, 0.0, 0
    for name in note_row_names(weights, include_embeddings):
        X = np.asarray(residual_vectors(name, weights[name]), dtype=np.float64)
        G = G + X.T @ X
        sm += X.sum()
        n += X.shape[0]
    return G, sm, n


def note_projection_r2(weights: dict, basis: np.ndarray, include_embeddings: bool = True,
                       _stats=None) -> dict:
    """"Optimal linear projection" R^2 pooled over all counted rows: W_hat = X B B^T (B orthonormal),
    R^2 = 1 - ||X - W_hat||^2 / ||X - mean||^2 (scalar grand mean).  Also the uncentred share.
    Returns dict(r2, share, n_rows, n_basis)."""
    B = np.asarray(basis, dtype=np.float64)
    G, sm, n = _note_stats(weights, include_embeddings) if _stats is None else _stats
    tot = np.trace(G)
    proj = float(((G @ B) * B).sum())
    resid = tot - proj
    d = B.shape[0]
    centred = tot - sm * sm / (n * d)
    return dict(r2=float(1 - resid / centred), share=float(proj / tot), n_rows=int(n), n_basis=int(B.shape[1]))


def note_r2_curve(weights: dict, eigvecs: np.ndarray, mu: np.ndarray, Ks) -> pd.DataFrame:
    """note_projection_r2 over Ks, with and without embeddings (columns K, include_embeddings, r2, share, n_rows)."""
    rows = []
    stats = {inc: _note_stats(weights, inc) for inc in (True, False)}
    for K in Ks:
        B = note_basis(eigvecs, mu, K)
        for inc in (True, False):
            rows.append(dict(K=K, include_embeddings=inc, **note_projection_r2(weights, B, inc, stats[inc])))
    return pd.DataFrame(rows)


def norm_matched_r2(W: np.ndarray, W_hat: np.ndarray) -> dict:
    """Centre both by their scalar means, rescale W_hat to ||W - mean||, return
    dict(r2, cos, identity = 2 cos - 1).  For such a prediction R^2 == 2 cos - 1 exactly,
    so an uncorrelated prediction gives R^2 ~ -1 by arithmetic."""
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(W_hat, dtype=np.float64)
    Wc = W - W.mean()
    Hc = H - H.mean()
    Hc = Hc * (np.linalg.norm(Wc) / np.linalg.norm(Hc))
    cos = float((Wc * Hc).sum() / (np.linalg.norm(Wc) * np.linalg.norm(Hc)))
    r2 = float(1 - ((Wc - Hc) ** 2).sum() / (Wc ** 2).sum())
    return dict(r2=r2, cos=cos, identity=2 * cos - 1)


def note_predictions(weights: dict, E: np.ndarray, pi: np.ndarray, include_embeddings: bool = True,
                     seed: int = 0) -> dict:
    """The note's "direct" and "random" norm-matched predictions, pooled over the counted rows.

    direct: each matrix's n residual-side vectors are predicted by the corpus embeddings E of the
    n most frequent tokens (W_E itself by E; unaligned, as the note does); random: Gaussian noise
    of the same shape.  Both norm-matched after centring.
    Returns dict(direct=dict(r2, cos, identity), random=dict(...)); r2 == identity exactly."""
    E = np.asarray(E, dtype=np.float64)
    order = np.argsort(-np.asarray(pi), kind="stable")
    rng = np.random.default_rng(seed)
    X = note_rows(weights, include_embeddings)
    if X.shape[1] != E.shape[1]:
        raise ValueError("note protocol needs corpus dim == model dim")
    parts = []
    for name in note_row_names(weights, include_embeddings):
        n = residual_vectors(name, weights[name]).shape[0]
        parts.append(E if name == "W_E" else E[order[np.arange(n) % E.shape[0]]])
    H = np.concatenate(parts)
    R = rng.standard_normal(X.shape)
    return dict(direct=norm_matched_r2(X, H), random=norm_matched_r2(X, R))


def t_proj(E_in: np.ndarray, E_out: np.ndarray, T) -> np.ndarray:
    """T_proj = E_in^T T E_out (d x d), computed as E_in^T (T @ E_out) without densifying T."""
    return np.asarray(E_in, dtype=np.float64).T @ np.asarray(T @ np.asarray(E_out, dtype=np.float64))


def note_qk_cosines(weights: dict, E_in: np.ndarray, E_out: np.ndarray, T, n_draws: int = 200,
                    seed: int = 0, Tp: np.ndarray | None = None) -> pd.DataFrame:
    """Per layer cos(W_Q W_K^T, T_proj) — the note's literal form (with (out, in) layout this is a
    head-output-space matrix, not the residual form) — with its random-rotation null, plus
    cos(W_Q^T W_K, T_proj) (residual form, all heads summed; still unaligned).
    Columns: layer, cos, null_expected_mean, null_mean, null_sd, z, p, cos_residual_form."""
    Tp = t_proj(E_in, E_out, T) if Tp is None else Tp
    rng = np.random.default_rng(seed)
    rows = []
    QKs, RFs = [], []
    for i in range(n_layers(weights)):
        WQ = np.asarray(weights[f"L{i}.W_Q"], dtype=np.float64)
        WK = np.asarray(weights[f"L{i}.W_K"], dtype=np.float64)
        QKs.append(WQ @ WK.T)
        RFs.append(WQ.T @ WK)
    nulls = random_rotation_cosine_null_multi(QKs, Tp, n_draws, rng)  # same rotations for all layers
    for i, (nl, RF) in enumerate(zip(nulls, RFs)):
        rows.append(dict(layer=i, cos=nl["observed"], null_expected_mean=nl["expected_mean"],
                         null_mean=nl["null_mean"], null_sd=nl["null_sd"], z=nl["z"], p=nl["p"],
                         cos_residual_form=float((RF * Tp).sum() / (np.linalg.norm(RF) * np.linalg.norm(Tp)))))
    return pd.DataFrame(rows)


def _expected_abs_cos(d: int) -> float:
    """E|cos| between a fixed and a uniformly random unit vector in R^d."""
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def l0_wq_alignment(weights: dict, Tp: np.ndarray, layer: int = 0) -> dict:
    """|cos| of the top right-singular vector of L{layer}.W_Q (residual side, a d-vector: W_Q is
    (out, in)) with T_proj's leading right-singular vector (E_out / next-token side).  Also given:
    against T_proj's leading LEFT singular vector (E_in / current-token side), and the null
    expectation E|cos| for a random direction (~ sqrt(2 / (pi d)))."""
    WQ = np.asarray(weights[f"L{layer}.W_Q"], dtype=np.float64)
    _, _, vq = np.linalg.svd(WQ, full_matrices=False)
    ut, _, vt = np.linalg.svd(np.asarray(Tp, dtype=np.float64), full_matrices=False)
    v = vq[0]
    return dict(abs_cos=float(abs(v @ vt[0])), abs_cos_left=float(abs(v @ ut[:, 0])),
                null_expected_abs_cos=_expected_abs_cos(v.size), side="W_Q right-singular (residual) vs T_proj right-singular")


def parameter_accounting(weights: dict, K: int, d: int | None = None) -> dict:
    """Parameter accounting in the note's format, from our shapes, with the note's own figures.

    rows = counted residual-side vectors (embeddings included); basis = K d + d (K vectors + mean);
    scores = rows K; raw weight params = rows d; structure = raw - scores; non-weight params =
    all other parameters (LN weights; W_U never counted: tied); compression = d / K;
    derivable_share = 1 - K/d (the note's "87.5 %")."""
    names = note_row_names(weights, True)
    d = d or np.asarray(weights["W_E"]).shape[1]
    rows = int(sum(residual_vectors(n, weights[n]).shape[0] for n in names))
    total = int(sum(np.asarray(v).size for k, v in weights.items() if k != "W_U"))
    raw = rows * d
    ours = dict(rows=rows, d=int(d), K=int(K), basis_params=int(K * d + d), score_params=int(rows * K),
                raw_weight_params=int(raw), structure_params=int(raw - rows * K),
                non_weight_params=int(total - raw), total_params=total, compression=d / K,
                derivable_share=1 - K / d)
    return dict(ours=ours, note=NOTE["accounting"])
