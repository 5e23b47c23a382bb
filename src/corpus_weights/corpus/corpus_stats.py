"""Training-free corpus statistics: bigram counts, PPMI, corpus embeddings, covariance.

Why this module exists: these are the "corpus side" of every comparison in
the project (see docs/measurement.md, "Corpus statistics (training-free)").  Everything
V x V stays sparse (V ~ 15k would be 1.8 GB dense); only V x d and d x d
arrays are dense; bigram counting is chunked and products with large sparse
matrices use every core.  Decompositions are made deterministic (seeded
Lanczos, descending order, sign convention) so artifacts are reproducible.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, svds

from ..core.spectra import effective_rank
from ..core.workflow_io import available_cores

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
    "sparse_matmul",
    "top_abs_eigenvalues",
    "top_singular",
    "SOLVERS",
    "decomposition_options",
]

log = logging.getLogger(__name__)

#: Largest min(shape) for which a dense SVD fallback is allowed.
DENSE_SVD_MAX = 2000


def _check_ids_range(ids, vocab_size: int):
    """1-D integer ids within [0, vocab_size), left as they are (a memory map stays a memory map)."""
    ids = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids out of range [0, {vocab_size}): min {ids.min()}, max {ids.max()}")
    return ids


#: Tokens turned into pair keys at a time (bounds the temporaries of a 100 M-token corpus to ~100 MB each).
PAIR_CHUNK = 16_000_000


def bigram_counts(ids: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """Directed bigram counts, CSR float64 (V, V): ``C[a, b]`` = #(a immediately followed by b).

    Each pair is one integer key ``a * V + b`` (uint32 while V**2 fits, else uint64), written chunk by chunk into
    one array (``ids`` may be memory-mapped), sorted in place and run-length counted; sorted keys are already in
    CSR order, so no V x V or COO intermediate exists.
    """
    ids = _check_ids_range(ids, vocab_size)
    V = int(vocab_size)
    n = int(ids.shape[0]) - 1
    if n < 1:
        return sp.csr_matrix((V, V), dtype=np.float64)
    key_type = np.uint32 if V * V <= np.iinfo(np.uint32).max else np.uint64
    keys = np.empty(n, dtype=key_type)
    for start in range(0, n, PAIR_CHUNK):
        stop = min(n, start + PAIR_CHUNK)
        a = np.asarray(ids[start:stop], dtype=key_type)
        keys[start:stop] = a * key_type(V) + np.asarray(ids[start + 1:stop + 1], dtype=key_type)
    keys.sort()
    starts = np.flatnonzero(np.diff(keys)) + 1
    counts = np.diff(np.concatenate(([0], starts, [n]))).astype(np.float64)
    unique = keys[np.concatenate(([0], starts))]
    del keys, starts
    rows, cols = np.divmod(unique, key_type(V))
    indptr = np.zeros(V + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows.astype(np.int64), minlength=V), out=indptr[1:])
    index_type = np.int32 if max(V, unique.size) < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((counts, cols.astype(index_type), indptr.astype(index_type)), shape=(V, V))


def unigram_distribution(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Unigram distribution pi (V,), float64, sums to 1 (empty input -> ValueError); counted chunk by chunk."""
    ids = _check_ids_range(ids, vocab_size)
    if ids.size == 0:
        raise ValueError("cannot compute a unigram distribution from zero tokens")
    counts = np.zeros(int(vocab_size), dtype=np.float64)
    for start in range(0, ids.shape[0], PAIR_CHUNK):
        counts += np.bincount(np.asarray(ids[start:start + PAIR_CHUNK], dtype=np.int64), minlength=counts.size)
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


#: From this many non-zeros on, products with a sparse matrix are split over all cores.
THREADED_NNZ = 2_000_000


def sparse_matmul(A: sp.csr_matrix, X: np.ndarray, threads: int | None = None) -> np.ndarray:
    """``A @ X`` for CSR ``A`` and dense ``X``, split into row blocks of equal non-zero count and run on several
    threads (scipy's kernel releases the GIL but is single-threaded itself)."""
    threads = available_cores() if threads is None else max(1, int(threads))
    if threads == 1 or A.nnz < THREADED_NNZ:
        return np.asarray(A @ X)
    cuts = np.searchsorted(A.indptr, np.linspace(0, A.nnz, threads + 1)[1:-1])
    bounds = [0, *map(int, cuts), A.shape[0]]
    out = np.empty((A.shape[0], X.shape[1]), dtype=np.result_type(A.dtype, X.dtype))

    def block(i):
        out[bounds[i]:bounds[i + 1]] = A[bounds[i]:bounds[i + 1]] @ X

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(block, range(threads)))
    return out


def _operator(A: sp.csr_matrix, symmetric: bool = False):
    """A itself, or (when large) a LinearOperator whose products use every core (see sparse_matmul)."""
    if A.nnz < THREADED_NNZ or available_cores() == 1:
        return A
    At = A if symmetric else A.T.tocsr()

    def product(M):
        return lambda x: sparse_matmul(M, x.reshape(x.shape[0], -1)).reshape(
            (M.shape[0],) if x.ndim == 1 else (M.shape[0], -1))

    return LinearOperator(A.shape, matvec=product(A), rmatvec=product(At), matmat=product(A),
                          rmatmat=product(At), dtype=A.dtype)


#: Up to this many rows/columns PROPACK is used, beyond it ARPACK (benchmarks/RESULTS.md, "Scale benchmark": at
#: V = 15k PROPACK took 5.2 s vs ARPACK's 10.0 s for d = 256; at V = 50k 72 s vs 54 s, and its Lanczos basis of
#: (m + n) x 4k floats outgrows ARPACK's 2k + 1 vectors).
PROPACK_MAX_DIM = 20_000

#: Convergence tolerances of the ARPACK runs (relative residual of the Ritz pairs; scipy's default 0 means machine
#: precision). benchmarks/RESULTS.md, "Solver tolerances": on 10 M tokens at V = 50 k, d = 256, ARPACK's PPMI SVD took
#: 88 s at tol 1e-4 vs 155 s at 0 and the C + Cᵀ spectrum 72 s at 1e-8 vs 98 s at 0, with singular values equal to
#: 3e-15 and 1e-14 relative and the subspaces identical (largest principal angle 0.0000°): Ritz values converge
#: quadratically in the residual, so the last restarts only polish digits nothing downstream reads. The accuracy
#: guard (tests/test_svd_accuracy.py) checks both on the default corpus against tol = 0.
ARPACK_SVD_TOL = 1e-4
EIGSH_TOL = 1e-8


#: Values of config key analysis.svd_solver: scipy's Lanczos solvers (CPU) or the block Krylov solver on torch
#: tensors (corpus_weights.corpus.torch_svd; CUDA when rule corpus_stats gets a GPU, CPU torch otherwise).
SOLVERS = ("scipy", "torch")


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"analysis.svd_solver: expected one of {SOLVERS}, got {solver!r}")


def decomposition_options(solver: str, device: str, threads: int = 1) -> dict:
    """``solver``/``device`` keyword arguments of the decompositions for a rule's job, from analysis.svd_solver and
    analysis.svd_device: scipy always on the CPU; torch on the resolved device (checked before any work: 'cuda'
    without one is refused naming the key; CPU torch gets the job's threads)."""
    _check_solver(solver)
    if solver != "torch":
        return dict(solver=solver, device="cpu")
    from .torch_svd import solver_device

    return dict(solver=solver, device=solver_device(device, threads))


def top_singular(A: sp.spmatrix, k: int, seed: int = 0, vectors: bool = True, solver: str = "scipy",
                 device: str = "cpu"):
    """The k largest singular triplets of a sparse matrix, descending; seeded, so deterministic for a given thread
    count. ``solver="torch"`` runs :func:`corpus_weights.corpus.torch_svd.top_singular_torch` on ``device``
    ('cpu' or 'cuda'); the rest of this docstring is the scipy path. Lanczos bidiagonalisation with partial
    reorthogonalisation (PROPACK through scipy's ``svds``) up to
    ``PROPACK_MAX_DIM``: it needs no implicit restarts and on the default corpus's PPMI matrix is 2x faster than
    ARPACK with the same values to ~1e-14 (the accuracy guard is a test); ARPACK beyond, where it is faster and
    lighter. Large products use every core. Returns ``(U, s, Vt)``, or ``s`` alone with ``vectors=False``."""
    _check_solver(solver)
    if solver == "torch":
        from .torch_svd import top_singular_torch
        return top_singular_torch(A, k, seed=seed, device=device, vectors=vectors)
    A = sp.csr_matrix(A, dtype=np.float64)
    k, want = int(k), bool(vectors)
    out = None
    if max(A.shape) <= PROPACK_MAX_DIM:
        try:  # PROPACK keeps every Lanczos vector: the step budget is memory (~3 k steps suffice on PPMI matrices)
            out = svds(_operator(A), k=k, solver="propack", random_state=seed,
                       maxiter=min(min(A.shape), 4 * k + 64), return_singular_vectors=want)
        except np.linalg.LinAlgError as err:
            log.warning("PROPACK did not converge (%s); using ARPACK", err)
    if out is None:
        v0 = np.random.default_rng(seed).standard_normal(min(A.shape))
        out = svds(_operator(A), k=k, v0=v0, solver="arpack", random_state=seed, return_singular_vectors=want,
                   tol=ARPACK_SVD_TOL)
    if not vectors:
        return np.sort(np.clip(out, 0.0, None))[::-1]
    U, s, Vt = out
    order = np.argsort(s)[::-1]
    return U[:, order], s[order], Vt[order]


def top_abs_eigenvalues(M: sp.spmatrix, k: int, seed: int = 0, solver: str = "scipy",
                        device: str = "cpu") -> np.ndarray:
    """The k largest |eigenvalues| of a sparse symmetric matrix, descending (= its top singular values), by
    symmetric Lanczos on M itself (ARPACK ``eigsh``, which="LM", seeded start vector): one product per step, and
    M's spectrum rather than M²'s, so about 3x faster than ``svds`` on the default corpus, equal to ~1e-13.
    ``solver="torch"``: M's top singular values by the torch solver on ``device``."""
    _check_solver(solver)
    if solver == "torch":
        return top_singular(M, k, seed=seed, vectors=False, solver=solver, device=device)
    M = sp.csr_matrix(M, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(M.shape[0])
    w = eigsh(_operator(M, symmetric=True), k=int(k), which="LM", v0=v0, return_eigenvectors=False, tol=EIGSH_TOL)
    return np.sort(np.abs(w))[::-1]


def ppmi_embeddings(
    P: sp.spmatrix, dim: int, power: float = 0.5, seed: int = 0, solver: str = "scipy", device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus embeddings from a truncated SVD of the PPMI matrix: ``P ~ U S V^T``.

    Returns ``(E_in, E_out, s)`` with ``E_in = U S^power`` (current token, (V, dim)),
    ``E_out = V S^power`` (next token, (V, dim)) and ``s`` the singular values in
    descending order. Deterministic: :func:`top_singular` seeded with ``seed``; each left singular vector is sign-fixed so its largest-|.|
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
    # svds needs dim < min(shape) and is unreliable at dim = kmax - 1, so small
    # matrices near full rank go through the dense path as well.
    use_svds = dim < kmax - 1 or (dim == kmax - 1 and kmax > DENSE_SVD_MAX)
    if use_svds:
        U, s, Vt = top_singular(P, dim, seed=seed, solver=solver, device=device)
        W = Vt.T
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
        raise ValueError(f"pi must be a probability vector (sum {float(pi.sum())!r})")
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


def symmetric_counts_spectrum_stats(C: sp.spmatrix, k: int | None = None, seed: int = 0, solver: str = "scipy",
                                    device: str = "cpu") -> dict:
    """Spectrum statistics of the symmetric count matrix ``M = C + C^T`` without densifying.

    Exact (all eigenvalues, signed): ``sum(lambda) = trace(M)`` and
    ``sum(lambda^2) = ||M||_F^2``, so ``PR = trace(M)^2 / ||M||_F^2``
    (``pr_exact``).  Note M is indefinite (mostly zero diagonal), so this signed
    PR can be far below 1.  For |lambda| (= singular values of M) only the top-k
    are computed (:func:`top_abs_eigenvalues`, ``k = min(256, V - 2)``): ``pr_abs_top_k`` (PR of those
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
        s = top_abs_eigenvalues(M, kk, seed=seed, solver=solver, device=device)
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
