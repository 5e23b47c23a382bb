"""Truncated SVD of a sparse matrix on torch tensors: the GPU path of rule corpus_stats (config key
``analysis.svd_solver: torch``), the same code on CPU torch so that it is tested where no GPU is.

Why a second solver: scipy's Lanczos solvers (ARPACK, PROPACK) run one sparse × vector product per step on the CPU;
at 100 M tokens and V = 50 k their rank-256 PPMI decomposition runs past 20 minutes on 2 cores (benchmarks/RESULTS.md,
"Solvers by rank and size"). On a GPU the cost that matters is the number of passes over the matrix, not the flops,
so this solver works on blocks: a block Krylov space of ``depth`` blocks of ``block`` columns per cycle, built with
sparse CSR × dense products (cuSPARSE on CUDA), Rayleigh–Ritz on it, and a thick restart from the best ``block`` Ritz
vectors until every wanted triplet's residual is small.

Convergence is judged by what the accuracy guard (:func:`corpus_weights.core.linalg.svd_accuracy`) tests: with
``u = A v / σ`` by construction (so ``‖A v − σ u‖`` is rounding), the loop stops when every one of the k triplets has
``‖Aᵀ u − σ v‖ ≤ tol · σ₁``. Deterministic for a given seed and device: the start block is drawn on the CPU.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

__all__ = ["resolve_svd_device", "solver_device", "to_torch_csr", "top_singular_torch", "DEVICES"]

#: Values of config key analysis.svd_device (used only with analysis.svd_solver: torch).
DEVICES = ("auto", "cpu", "cuda")

#: Default convergence bound on every triplet's residual ‖Aᵀu − σv‖ / σ₁ (the guard's bound is 1e-6; scipy's solvers
#: reach ~1e-10 on the default corpus).
TORCH_SVD_TOL = 1e-9


def resolve_svd_device(device: str) -> str:
    """'auto' → 'cuda' where torch sees a GPU, else 'cpu'; 'cuda' without one is refused naming the config key."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"analysis.svd_device: expected one of {DEVICES}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("analysis.svd_device is 'cuda' but torch sees no CUDA device on this machine "
                           f"(torch {torch.__version__}); use 'auto' or 'cpu', or run rule corpus_stats on a GPU node")
    return device


def solver_device(device: str, threads: int = 1) -> str:
    """The torch device of analysis.svd_device for a rule's job (:func:`resolve_svd_device`), with CPU torch set to
    the job's ``threads``; 'cuda' on a machine without one is refused naming the key, before any work."""
    import torch

    resolved = resolve_svd_device(device)
    if resolved == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    return resolved


def to_torch_csr(A: sp.spmatrix, device: str = "cpu"):
    """A scipy sparse matrix as a float64 torch CSR tensor on ``device`` (int64 indices)."""
    import torch

    A = sp.csr_matrix(A, dtype=np.float64)
    A.sort_indices()
    return torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int64)),
                                   torch.from_numpy(A.indices.astype(np.int64)),
                                   torch.from_numpy(A.data), size=A.shape, dtype=torch.float64, device=device)


def _orthonormal_against(W, Q):
    """W's columns made orthonormal and orthogonal to Q's (classical Gram–Schmidt twice, then QR, twice)."""
    import torch

    for _ in range(2):
        if Q is not None:
            W = W - Q @ (Q.T @ W)
            W = W - Q @ (Q.T @ W)
        W = torch.linalg.qr(W, mode="reduced").Q
    return W


def _dense_svd(A: sp.spmatrix, k: int, device: str):
    import torch

    M = torch.from_numpy(sp.csr_matrix(A, dtype=np.float64).toarray()).to(device)
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    return U[:, :k], s[:k], Vh[:k].T, 0


def top_singular_torch(A: sp.spmatrix, k: int, seed: int = 0, device: str = "cpu", vectors: bool = True,
                       tol: float = TORCH_SVD_TOL, block: int | None = None, depth: int = 3, max_cycles: int = 300):
    """The k largest singular triplets of a sparse matrix on torch (CPU or CUDA), descending.

    Same contract as :func:`corpus_weights.corpus.corpus_stats.top_singular`: ``(U, s, Vt)`` as float64 numpy arrays
    (``s`` alone with ``vectors=False``); signs are not fixed here (ppmi_embeddings does it). ``block`` defaults to
    ``k + max(8, k // 4)`` columns. Raises ``RuntimeError`` naming the residual reached when ``max_cycles`` restarts
    do not converge to ``tol``."""
    import torch

    k = int(k)
    A = sp.csr_matrix(A, dtype=np.float64)
    n_rows, n_cols = A.shape
    if not 1 <= k <= min(n_rows, n_cols):
        raise ValueError(f"k must be in [1, min(A.shape) = {min(n_rows, n_cols)}], got {k}")
    transposed = n_rows < n_cols  # the Krylov space lives on the shorter side
    if transposed:
        A = A.T.tocsr()
        n_rows, n_cols = n_cols, n_rows
    b = int(block) if block else k + max(8, k // 4)
    b = max(b, k)
    depth = min(int(depth), n_cols // b - 1)
    if depth < 1:  # a small matrix: the Krylov space would be the whole space
        U, s, V, cycles = _dense_svd(A, k, device)
        residual = 0.0
    else:
        A_, At_ = to_torch_csr(A, device), to_torch_csr(A.T, device)
        gen = torch.Generator().manual_seed(int(seed))
        start = torch.randn(n_cols, b, generator=gen, dtype=torch.float64).to(device)
        V_block = _orthonormal_against(start, None)
        for cycle in range(1, int(max_cycles) + 1):
            blocks = [V_block]
            for _ in range(depth):
                Q = torch.cat(blocks, dim=1)
                blocks.append(_orthonormal_against(At_ @ (A_ @ blocks[-1]), Q))
            Q = torch.cat(blocks, dim=1)
            AQ = A_ @ Q
            Ub, S, Wh = torch.linalg.svd(AQ, full_matrices=False)
            ritz = Q @ Wh.T  # right Ritz vectors, descending
            U, s, V = Ub[:, :k], S[:k], ritz[:, :k]
            residual = float((torch.linalg.vector_norm(At_ @ U - V * s, dim=0) / S[0]).max())
            if residual <= tol:
                break
            V_block = _orthonormal_against(ritz[:, :b], None)
        else:
            raise RuntimeError(f"top_singular_torch: k={k} on {A.shape} did not converge in {max_cycles} cycles "
                               f"(worst residual {residual:.2e} σ₁, tol {tol:.0e}); raise max_cycles or block")
        cycles = cycle
    log.info("torch SVD: k=%d of %s on %s, %d cycle(s), worst residual %.1e σ₁", k, A.shape, device, cycles,
             residual)
    U, s, V = (x.cpu().numpy() for x in (U, s, V))
    if transposed:
        U, V = V, U
    if not vectors:
        return np.clip(s, 0.0, None)
    return U, s, V.T
