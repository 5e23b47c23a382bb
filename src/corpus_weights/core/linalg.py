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
