"""Leaf linear algebra shared by every measurement: centring, cosine/Pearson, Haar draws, orthonormalisation.

Imports numpy only; every other module may import it, it imports none of them.
"""
from __future__ import annotations

import numpy as np


def row_centre(S: np.ndarray) -> np.ndarray:
    """Subtract each row's mean (removes per-query constants, which a softmax ignores)."""
    S = np.asarray(S, dtype=np.float64)
    return S - S.mean(1, keepdims=True)


def double_centre(S: np.ndarray) -> np.ndarray:
    """Subtract row and column means and add back the grand mean: removes every additive row effect
    (per-query constants) and column effect (per-target constants such as log unigram frequency)."""
    S = np.asarray(S, dtype=np.float64)
    return S - S.mean(1, keepdims=True) - S.mean(0, keepdims=True) + S.mean()


def cosine(A: np.ndarray, B: np.ndarray) -> float:
    """Frobenius cosine <A, B> / (|A| |B|)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    return float((A * B).sum() / (np.linalg.norm(A) * np.linalg.norm(B)))


def pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """(Weighted) Pearson correlation of the flattened arrays."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    w = np.ones(x.size) if weights is None else np.asarray(weights, np.float64).ravel()
    w = w / w.sum()  # normalised in float64 (a float32 sum of float32 weights was off by 1e-9 relative)
    xc = x - w @ x
    yc = y - w @ y
    return float((w * xc * yc).sum() / np.sqrt((w * xc * xc).sum() * (w * yc * yc).sum()))


def haar_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed d x d orthogonal matrix (QR of a Gaussian with the sign of R's diagonal fixed)."""
    return haar_frame(d, d, rng)


def haar_frame(d: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-random d x K orthonormal frame (its span is uniform on the Grassmannian)."""
    Qm, R = np.linalg.qr(rng.standard_normal((d, K)))
    return Qm * np.sign(np.diag(R))[None, :]


def orthonormal_columns(M: np.ndarray) -> np.ndarray:
    """Orthonormal basis of M's column span by reduced QR. Nested: the first k columns span M's first k."""
    Qm, _ = np.linalg.qr(np.asarray(M, dtype=np.float64))
    return Qm


def fix_signs(U: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-|.| entry is positive (a deterministic sign convention)."""
    s = np.sign(U[np.abs(U).argmax(0), np.arange(U.shape[1])])
    s[s == 0] = 1
    return U * s[None, :]


def principal_angles_deg(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between the column spans of A and B."""
    cos = np.linalg.svd(np.linalg.qr(A)[0].T @ np.linalg.qr(B)[0], compute_uv=False)
    return np.sort(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def svd_accuracy(A, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, s_ref: np.ndarray, U_ref: np.ndarray | None = None,
                 tol: float = 1e-6, energy_tol: float = 1e-4, gap: float = 1e-3) -> dict:
    """An accuracy guard for a truncated SVD that tests what solvers guarantee, so that it is well posed even where
    the spectrum is flat (σ_k ≈ σ_{k+1}, where the rank-k subspace itself is not determined):

    - every triplet's residuals ‖A v − σ u‖ and ‖Aᵀ u − σ v‖ at most ``tol · σ₁``;
    - the captured energy Σσ² within ``energy_tol`` (relative) of the reference's;
    - principal angles to the reference's vectors ``U_ref`` (if given) only for the leading group of directions that a
      relative gap ≥ ``gap`` separates from the rest, where they must be < 1°.

    Returns the measured figures and ``passed``. A is anything with ``@`` (dense or sparse)."""
    U, s, Vt, s_ref = (np.asarray(x, dtype=np.float64) for x in (U, s, Vt, s_ref))
    s1 = float(s_ref[0])
    left = np.linalg.norm(A @ Vt.T - U * s[None, :], axis=0)
    right = np.linalg.norm(A.T @ U - Vt.T * s[None, :], axis=0)
    residual = float(np.max(np.maximum(left, right)) / s1)
    energy = float(abs((s ** 2).sum() - (s_ref ** 2).sum()) / (s_ref ** 2).sum())
    out = dict(residual=residual, energy=energy, gapped_directions=0, gapped_angle_deg=None)
    if U_ref is not None:
        rel_gaps = (s_ref[:-1] - s_ref[1:]) / s_ref[:-1]
        cut = [j + 1 for j in range(len(rel_gaps)) if rel_gaps[j] >= gap]
        n = max(cut) if cut else 0  # the largest leading group that a gap separates from the rest
        if n:
            out.update(gapped_directions=n, gapped_angle_deg=float(principal_angles_deg(U[:, :n], U_ref[:, :n]).max()))
    out["passed"] = bool(residual <= tol and energy <= energy_tol
                         and (out["gapped_angle_deg"] is None or out["gapped_angle_deg"] < 1.0))
    return out
