"""Training-free corpus statistics: bigram counts, PPMI, corpus embeddings, covariance.

Why this module exists: these are the "corpus side" of every comparison in
the project (see shared/docs/measurement.md, "Corpus statistics").  Everything
V x V stays sparse (V ~ 15k would be 1.8 GB dense); only V x d and d x d
arrays are dense.  Decompositions are made deterministic (fixed ARPACK start
vector, descending order, sign convention) so artifacts are reproducible.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from .spectra import effective_rank

__all__ = [
    "bigram_counts",
    "unigram_distribution",
    "transition_matrix",
    "ppmi",
    "ppmi_embeddings",
    "corpus_covariance",
    "eigh_desc",
    "symmetric_counts_spectrum_stats",
    "DENSE_SVD_MAX",
]

log = logging.getLogger(__name__)

#: Largest min(shape) for which a dense SVD fallback is allowed.
DENSE_SVD_MAX = 2000


def _check_ids(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids out of range [0, {vocab_size}): min {ids.min()}, max {ids.max()}")
    return ids.astype(np.int64, copy=False)


def bigram_counts(ids: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """Directed bigram counts, CSR float64 (V, V): ``C[a, b]`` = #(a immediately followed by b)."""
    ids = _check_ids(ids, vocab_size)
    V = int(vocab_size)
    if ids.size < 2:
        return sp.csr_matrix((V, V), dtype=np.float64)
    # Encode pairs as a single int64 key and count uniques: faster and lighter than COO sum_duplicates.
    keys = ids[:-1] * V + ids[1:]
    uniq, counts = np.unique(keys, return_counts=True)
    rows, cols = np.divmod(uniq, V)
    C = sp.csr_matrix((counts.astype(np.float64), (rows, cols)), shape=(V, V))
    C.sort_indices()
    return C


def unigram_distribution(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Unigram distribution pi (V,), float64, sums to 1 (empty input -> ValueError)."""
    ids = _check_ids(ids, vocab_size)
    if ids.size == 0:
        raise ValueError("cannot compute a unigram distribution from zero tokens")
    counts = np.bincount(ids, minlength=int(vocab_size)).astype(np.float64)
    return counts / counts.sum()


def _row_scale(M: sp.csr_matrix, scale: np.ndarray) -> sp.csr_matrix:
    out = M.tocsr(copy=True).astype(np.float64)
    out.data *= np.repeat(scale, np.diff(out.indptr))
    return out


def transition_matrix(C: sp.spmatrix) -> sp.csr_matrix:
    """Row-normalised counts T[a, b] = C[a, b] / sum_b C[a, b]; rows without counts stay zero."""
    C = sp.csr_matrix(C, dtype=np.float64)
    rs = np.asarray(C.sum(axis=1)).ravel()
    inv = np.divide(1.0, rs, out=np.zeros_like(rs), where=rs > 0)
    return _row_scale(C, inv)


def ppmi(C: sp.spmatrix, alpha: float = 0.75) -> sp.csr_matrix:
    """Positive PMI with context-distribution smoothing (Levy, Goldberg & Dagan 2015), no shift.

    Rows are the current token a, columns the next token b:
    ``PMI[a, b] = log( P(a, b) / (P(a) * P_alpha(b)) )`` with ``P(a, b) = C[a, b] / N``,
    ``P(a) = rowsum_a / N`` and the smoothed context marginal
    ``P_alpha(b) = colsum_b**alpha / sum_b' colsum_b'**alpha``.
    Only observed pairs (C > 0) can be positive; negative values are dropped.
    """
    C = sp.csr_matrix(C, dtype=np.float64)
    C.eliminate_zeros()
    if C.nnz == 0:
        return C.copy()
    if (C.data < 0).any():
        raise ValueError("counts must be non-negative")
    rs = np.asarray(C.sum(axis=1)).ravel()
    cs = np.asarray(C.sum(axis=0)).ravel()
    cs_a = cs**alpha
    p_ctx = cs_a / cs_a.sum()
    rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
    # P(a,b) / (P(a) P_alpha(b)) = C[a,b] / (rowsum_a * P_alpha(b))
    vals = np.log(C.data) - np.log(rs[rows]) - np.log(p_ctx[C.indices])
    vals[vals < 0] = 0.0
    P = sp.csr_matrix((vals, C.indices.copy(), C.indptr.copy()), shape=C.shape)
    P.eliminate_zeros()
    return P


def _fix_signs(U: np.ndarray, *others: np.ndarray) -> None:
    """In place: make the largest-|.| entry of each column of U positive; flip matching columns of others."""
    if U.shape[1] == 0:
        return
    idx = np.argmax(np.abs(U), axis=0)
    signs = np.sign(U[idx, np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    U *= signs
    for M in others:
        M *= signs


def ppmi_embeddings(
    P: sp.spmatrix, dim: int, power: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus embeddings from a truncated SVD of the PPMI matrix: ``P ~ U S V^T``.

    Returns ``(E_in, E_out, s)`` with ``E_in = U S^power`` (current token, (V, dim)),
    ``E_out = V S^power`` (next token, (V, dim)) and ``s`` the singular values in
    descending order. Deterministic: ARPACK (``svds``) with a start vector drawn
    from ``seed``; each left singular vector is sign-fixed so its largest-|.|
    entry is positive (the right vector flips with it).

    If ``dim >= min(P.shape)`` (svds cannot do it), a dense SVD is used when
    ``min(P.shape) <= DENSE_SVD_MAX``, and the components beyond the rank are
    zero-padded (zero singular values, zero columns) so shapes stay (V, dim).
    """
    P = sp.csr_matrix(P, dtype=np.float64)
    n, m = P.shape
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    kmax = min(n, m)
    # svds needs dim < min(shape); ARPACK is also unreliable at dim = kmax - 1, so small
    # matrices near full rank go through the dense path as well.
    use_svds = dim < kmax - 1 or (dim == kmax - 1 and kmax > DENSE_SVD_MAX)
    if use_svds:
        rng = np.random.default_rng(seed)
        v0 = rng.standard_normal(kmax)
        U, s, Vt = svds(P, k=dim, v0=v0, solver="arpack", random_state=seed)
        order = np.argsort(s)[::-1]
        U, s, W = U[:, order], s[order], Vt[order].T
    else:
        if kmax > DENSE_SVD_MAX:
            raise ValueError(
                f"dim={dim} >= min(P.shape)={kmax}: truncated SVD impossible and the matrix is too "
                f"large for the dense fallback (limit {DENSE_SVD_MAX})"
            )
        if dim > kmax:
            log.warning("ppmi_embeddings: dim=%d > rank bound %d; padding with zero components", dim, kmax)
        U, s, Vt = scipy.linalg.svd(P.toarray(), full_matrices=False)
        k = min(dim, kmax)
        U, s, W = U[:, :k], s[:k], Vt[:k].T
        if k < dim:
            U = np.hstack([U, np.zeros((n, dim - k))])
            W = np.hstack([W, np.zeros((m, dim - k))])
            s = np.concatenate([s, np.zeros(dim - k)])
    U, W, s = np.array(U), np.array(W), np.clip(s, 0.0, None)
    _fix_signs(U, W)
    scale = s**power if power != 0 else np.ones_like(s)
    return U * scale, W * scale, s


def corpus_covariance(E: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequency-weighted, centred covariance of corpus embeddings.

    ``mu = pi^T E`` and ``Sigma = (E - 1 mu^T)^T diag(pi) (E - 1 mu^T)``;
    pi must be a probability vector over the rows of E.
    """
    E = np.asarray(E, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64).ravel()
    if E.ndim != 2 or pi.shape[0] != E.shape[0]:
        raise ValueError(f"E {E.shape} and pi {pi.shape} disagree")
    if (pi < 0).any() or not np.isclose(pi.sum(), 1.0, atol=1e-8):
        raise ValueError(f"pi must be a probability vector (sum {pi.sum()!r})")
    mu = pi @ E
    X = E - mu
    Sigma = X.T @ (X * pi[:, None])
    Sigma = 0.5 * (Sigma + Sigma.T)
    return Sigma, mu


def eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric matrix, eigenvalues descending.

    Eigenvectors are columns, each sign-fixed so its largest-|.| entry is positive.
    """
    S = np.asarray(S, dtype=np.float64)
    w, Q = np.linalg.eigh(0.5 * (S + S.T))
    w, Q = w[::-1].copy(), Q[:, ::-1].copy()
    _fix_signs(Q)
    return w, Q


def symmetric_counts_spectrum_stats(C: sp.spmatrix, k: int | None = None, seed: int = 0) -> dict:
    """Spectrum statistics of the symmetric count matrix ``M = C + C^T`` without densifying.

    Exact (all eigenvalues, signed): ``sum(lambda) = trace(M)`` and
    ``sum(lambda^2) = ||M||_F^2``, so ``PR = trace(M)^2 / ||M||_F^2``
    (``pr_exact``).  Note M is indefinite (mostly zero diagonal), so this signed
    PR can be far below 1.  For |lambda| (= singular values of M) only the top-k
    are computed (svds, ``k = min(256, V - 2)``): ``pr_abs_top_k`` (PR of those
    |lambda|), ``effective_rank_top_k`` (exp entropy of those singular values),
    ``top_k_energy_share`` (sum of their squares / ||M||_F^2; 1 means the
    truncation lost nothing) and ``top1_energy_share``. These are truncated
    quantities, as flagged by ``truncated_top_k``.
    """
    C = sp.csr_matrix(C, dtype=np.float64)
    V = C.shape[0]
    if C.shape[0] != C.shape[1]:
        raise ValueError(f"C must be square, got {C.shape}")
    M = (C + C.T).tocsr()
    trace = float(M.diagonal().sum())
    fro2 = float(M.multiply(M).sum())
    out: dict = {
        "matrix": "C + C^T",
        "n": int(V),
        "trace": trace,
        "frobenius_sq": fro2,
        "pr_exact": trace**2 / fro2 if fro2 > 0 else float("nan"),
    }
    kk = min(256, V - 2) if k is None else min(int(k), V - 2)
    if kk >= 1 and fro2 > 0:
        v0 = np.random.default_rng(seed).standard_normal(V)
        s = svds(M, k=kk, v0=v0, solver="arpack", return_singular_vectors=False, random_state=seed)
        s = np.sort(np.clip(s, 0.0, None))[::-1]
        s2 = s**2
        out.update(
            {
                "truncated_top_k": int(kk),
                "effective_rank_top_k": float(effective_rank(s)),
                "pr_abs_top_k": float(s.sum() ** 2 / s2.sum()) if s2.sum() > 0 else float("nan"),
                # PR of the PSD matrix M^2 (eigenvalues sigma^2): sum sigma^2 = ||M||_F^2 exactly, sum sigma^4 from
                # the top k (it is dominated by them), the same reading as the other spectra rows.
                "pr_sq_top_k": float(fro2**2 / (s2**2).sum()) if s2.sum() > 0 else float("nan"),
                "top_k_energy_share": float(s2.sum() / fro2),
                "top1_energy_share": float(s2[0] / fro2),
                "top_singular_values": s[: min(10, kk)].tolist(),
            }
        )
    else:
        out.update({"truncated_top_k": 0, "effective_rank_top_k": float("nan")})
    return out
