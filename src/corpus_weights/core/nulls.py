"""Null distributions for every headline number (pure numpy).

1. Token-label permutation within log-frequency bins for token-space comparisons: the labels of
   B are permuted jointly on rows and columns (B -> B[p][:, p]).  Row-centring commutes with
   that permutation and the norms are invariant, so only the numerator sum(Ac * Bc[p][:, p])
   has to be recomputed.  Draws are shared across many A's (all heads) and the numerators are
   accumulated block-of-rows by block-of-rows as one float32 GEMM (A rows x permuted B rows),
   so 64 heads x 200 draws x N=2000 costs ~1e11 flops and O(100 MB) memory.
   p-value one-sided (upper): (1 + #{null >= observed}) / (1 + n_draws).
2. Random-rotation null for residual-space cosines: cos(A, Q B Q^T), Q Haar.  Its mean is
   tr A tr B / (d ||A|| ||B||), not 0.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from scipy.special import ndtr

from .linalg import row_centre


def log_frequency_bins(counts: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Frequency strata for permutation nulls: int array in [0, n_strata), 0 = rarest.

    A stratum is the intersection of an equal-occupancy bin and an equal-width bin of log(count + 1) (n_bins each),
    so every stratum is narrow in frequency at both ends of a Zipf distribution: equal occupancy alone puts the
    ~40-fold frequency range of the top tokens in one bin (which biased the π-weighted bigram check of untrained
    models to z ≈ −4 on the default corpus), equal width alone lumps hundreds of rare tokens of different counts
    together. Pass counts (the bins are of log(count + 1)); alignment.py recovers counts from π."""
    c = np.log1p(np.asarray(counts, dtype=np.float64))
    n = c.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(c, kind="stable")
    occupancy = np.empty(n, dtype=np.int64)
    occupancy[order] = (np.arange(n) * n_bins) // n
    lo, hi = c.min(), c.max()
    width = (np.zeros(n, dtype=np.int64) if hi <= lo
             else np.minimum(((c - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1))
    _, strata = np.unique(occupancy * (n_bins + 1) + width, return_inverse=True)
    return strata.astype(np.int64)


def binned_permutation(bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random permutation p with bins[p[i]] == bins[i] for all i (uniform within each bin)."""
    bins = np.asarray(bins)
    n = bins.size
    by_bin = np.argsort(bins, kind="stable")
    shuffled = np.lexsort((rng.random(n), bins))
    p = np.empty(n, dtype=np.int64)
    p[by_bin] = shuffled
    return p


def _draws(bins, n_draws, seed):
    rng = np.random.default_rng(seed)
    return np.stack([binned_permutation(bins, rng) for _ in range(n_draws)]) if n_draws else None


def empirical_p(observed: float, null) -> float:
    """One-sided (upper) permutation p-value (1 + #{null >= observed}) / (1 + n); never below 1/(n + 1)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1.0 + (null >= observed).sum()) / (1.0 + null.size))


def normal_p(z, two_sided: bool = False) -> np.ndarray:
    """p-value of z under the normal approximation to a permutation null (upper tail, or both tails); unlike the
    empirical p it can go below 1/(n+1), which a multiple-comparison correction over many tests needs."""
    z = np.asarray(z, dtype=np.float64)
    return 2.0 * (1.0 - ndtr(np.abs(z))) if two_sided else 1.0 - ndtr(z)


def benjamini_hochberg(p, q: float = 0.05) -> np.ndarray:
    """Boolean mask of the hypotheses rejected by the Benjamini–Hochberg step-up procedure at FDR q."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    below = p[order] <= q * np.arange(1, m + 1) / m
    reject = np.zeros(m, dtype=bool)
    if below.any():
        k = int(np.nonzero(below)[0].max())
        reject[order[: k + 1]] = True
    return reject


def _summary(obs: np.ndarray, null: np.ndarray | None) -> dict:
    obs = np.asarray(obs, dtype=np.float64)
    if null is None or null.shape[-1] == 0:
        nan = np.full_like(obs, np.nan)
        return dict(observed=obs, null_mean=nan, null_sd=nan, z=nan, p=nan, n_draws=0, null=None)
    n = null.shape[-1]
    mu = null.mean(-1)
    sd = null.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (obs - mu) / sd
    p = (1.0 + (null >= obs[..., None]).sum(-1)) / (1.0 + n)
    return dict(observed=obs, null_mean=mu, null_sd=sd, z=z, p=p, n_draws=n, null=null)


def _null_numerators(get_rows: Callable, m: int, Bc: np.ndarray, P: np.ndarray,
                     block_bytes: float = 64e6) -> np.ndarray:
    """num[h, k] = sum_ij Ac[h, i, j] Bc[P[k, i], P[k, j]], accumulated over row blocks."""
    N = Bc.shape[0]
    n = P.shape[0]
    Bc32 = np.ascontiguousarray(Bc, dtype=np.float32)
    bs = int(max(1, min(N, block_bytes // (4 * N * max(n, m)))))
    num = np.zeros((m, n), dtype=np.float64)
    buf = np.empty((n, bs, N), dtype=np.float32)
    for s in range(0, N, bs):
        I = np.arange(s, min(N, s + bs))
        b = buf[:, : I.size]
        for k in range(n):
            np.take(Bc32[P[k, I]], P[k], axis=1, out=b[k])
        Ab = np.ascontiguousarray(get_rows(I), dtype=np.float32).reshape(m, -1)
        num += Ab @ b.reshape(n, -1).T
    return num


def permutation_test(A: np.ndarray, B: np.ndarray, bins: np.ndarray, n_draws: int = 200, seed: int = 0,
                     stat: Callable | None = None) -> dict:
    """Within-bin token-label permutation test of the row-centred Pearson r of A and B (N x N).

    The labels of B are permuted jointly on rows and columns within bins.  A may also be a stack
    (m, N, N): then every entry of the result is an array of length m (same draws for all).
    stat: optional custom statistic f(A, B_permuted) (slow generic path).
    Returns dict(observed, null_mean, null_sd, z, p, n_draws, null)."""
    P = _draws(bins, n_draws, seed)
    if stat is not None:
        obs = stat(A, B)
        null = None if P is None else np.array([stat(A, B[p][:, p]) for p in P])
        r = _summary(np.asarray(obs), null)
        return r
    A = np.asarray(A, dtype=np.float64)
    single = A.ndim == 2
    As = A[None] if single else A
    Ac = As - As.mean(2, keepdims=True)
    Bc = row_centre(B)
    na = np.sqrt((Ac * Ac).sum(axis=(1, 2)))
    nb = np.sqrt((Bc * Bc).sum())
    obs = (Ac * Bc[None]).sum(axis=(1, 2)) / (na * nb)
    null = None
    if P is not None:
        null = _null_numerators(lambda I: Ac[:, I, :], Ac.shape[0], Bc, P) / (na[:, None] * nb)
    r = _summary(obs, null)
    if single:
        r = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in r.items()}
        r = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()}
    return r


def permutation_test_factors(F: np.ndarray, G: np.ndarray, B: np.ndarray, bins: np.ndarray | None,
                             n_draws: int = 200, seed: int = 0) -> dict:
    """Same as :func:`permutation_test` for m low-rank A's given already row-centred as factors:
    Ac[h] = F[h] @ G[h]^T (F, G: (m, N, r)), so no m x N x N array is ever held.
    Returns arrays of length m (observed, null_mean, null_sd, z, p) and null (m, n_draws)."""
    F = np.asarray(F, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    Bc = row_centre(B)
    nb = np.sqrt((Bc * Bc).sum())
    # ||F G^T||^2 = tr(F^T F G^T G); <F G^T, Bc> = sum(F * (Bc G))
    na = np.sqrt(np.einsum("hij,hij->h", F.transpose(0, 2, 1) @ F, G.transpose(0, 2, 1) @ G))
    BG = Bc @ G  # (m, N, r), batched BLAS
    obs = np.einsum("hir,hir->h", F, BG) / (na * nb)
    P = _draws(bins, n_draws, seed) if bins is not None else None
    null = None
    if P is not None:
        F32 = F.astype(np.float32)
        G32 = G.astype(np.float32)
        get_rows = lambda I: F32[:, I, :] @ G32.transpose(0, 2, 1)  # noqa: E731
        null = _null_numerators(get_rows, F.shape[0], Bc, P) / (na[:, None] * nb)
    return _summary(obs, null)


# ----------------------------------------------------------------------------- rotation null

def random_rotation_cosine_null(A: np.ndarray, B: np.ndarray, n_draws: int = 200,
                                rng: np.random.Generator | int | None = 0) -> dict:
    """Null of cos(A, B) for square d x d matrices under B -> Q B Q^T, Q Haar.

    Returns dict(observed, expected_mean = tr A tr B / (d ||A|| ||B||), null_mean (sampled),
    null_sd, z (against the sampled mean/sd), p (two-sided, (1 + #|null - mean| >= |obs - mean|)/(1+n)),
    n_draws)."""
    return random_rotation_cosine_null_multi([A], B, n_draws, rng)[0]


def random_rotation_cosine_null_multi(As: list, B: np.ndarray, n_draws: int = 200,
                                      rng: np.random.Generator | int | None = 0) -> list[dict]:
    """:func:`random_rotation_cosine_null` for several A's against one B, sharing the rotations
    (Q B Q^T is computed once per draw): cost O(n_draws d^3) regardless of len(As)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    B = np.asarray(B, dtype=np.float64)
    d = B.shape[0]
    nb = np.linalg.norm(B)
    As = [np.asarray(A, dtype=np.float64) for A in As]
    Aflat = np.stack([A.ravel() / np.linalg.norm(A) for A in As])  # (m, d^2)
    vals = []
    bs = 25
    for s in range(0, n_draws, bs):
        k = min(bs, n_draws - s)
        Qs, R = np.linalg.qr(rng.standard_normal((k, d, d)))
        Qs = Qs * np.sign(np.diagonal(R, axis1=1, axis2=2))[:, None, :]
        QBQ = (Qs @ B @ Qs.transpose(0, 2, 1)).reshape(k, -1) / nb
        vals.append(Aflat @ QBQ.T)
    null = np.concatenate(vals, axis=1) if vals else np.zeros((len(As), 0))
    out = []
    for i, A in enumerate(As):
        na = np.linalg.norm(A)
        obs = float((A * B).sum() / (na * nb))
        nl = null[i]
        mu = float(nl.mean()) if nl.size else np.nan
        sd = float(nl.std(ddof=1)) if nl.size > 1 else np.nan
        tol = 1e-12 * max(1.0, abs(mu)) if nl.size else 0.0  # rounding: a rotation-invariant A has a constant null
        p = float((1 + (np.abs(nl - mu) >= abs(obs - mu) - tol).sum()) / (1 + nl.size)) if nl.size else np.nan
        out.append(dict(observed=obs, expected_mean=float(np.trace(A) * np.trace(B) / (d * na * nb)),
                        null_mean=mu, null_sd=sd, z=(obs - mu) / sd if sd > tol else np.nan,
                        p=p, n_draws=int(nl.size)))
    return out
