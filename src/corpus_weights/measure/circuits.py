"""The QK and OV circuits of a layer, per head, in the residual stream's coordinates (TransformerLens meaning).

Orientation, stated once for the whole project: weights are stored as torch ``Linear`` weights, (out, in). So
``W_Q``, ``W_K``, ``W_V`` are (d_model, d_model) maps residual -> head space, their *columns* are residual-side and
head h owns rows ``h*d_head:(h+1)*d_head``; ``W_O`` is (d_model, d_model) head space -> residual, its *rows* are
residual-side and head h owns columns ``h*d_head:(h+1)*d_head``. Residual vectors are rows x (1, d_model).

- ``qk_circuit``: M_h = W_Q,hᵀ W_K,h / √d_head, so the attention score of query x on key y is x M_h yᵀ.
- ``ov_circuit``: OV_h = W_O,h W_V,h, so head h writes OV_h yᵀ to the residual stream for each unit of attention
  paid to a key y.
If the LayerNorm weight ``L{layer}.ln1.w`` is not folded into the matrices, it scales their residual side.
"""
from __future__ import annotations

import numpy as np

__all__ = ["qk_circuit", "ov_circuit", "ln_scale"]


def ln_scale(weights: dict, layer: int) -> np.ndarray | None:
    """The ln1 weight of a layer when it is not folded (None when absent or all ones)."""
    w = weights.get(f"L{layer}.ln1.w")
    return None if w is None or np.allclose(w, 1.0) else np.asarray(w, dtype=np.float64)


def _residual_in(W: np.ndarray, ln_w: np.ndarray | None) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    return W if ln_w is None else W * ln_w[None, :]


def qk_circuit(weights: dict, layer: int, n_head: int) -> np.ndarray:
    """(n_head, d_model, d_model): every head's bilinear form on residual vectors, M_h = W_Q,hᵀ W_K,h / √d_head."""
    ln_w = ln_scale(weights, layer)
    W_Q = _residual_in(weights[f"L{layer}.W_Q"], ln_w)
    W_K = _residual_in(weights[f"L{layer}.W_K"], ln_w)
    dh = W_Q.shape[0] // n_head
    return np.stack([W_Q[h * dh:(h + 1) * dh].T @ W_K[h * dh:(h + 1) * dh] / np.sqrt(dh) for h in range(n_head)])


def ov_circuit(weights: dict, layer: int, n_head: int) -> np.ndarray:
    """(n_head, d_model, d_model): every head's residual-to-residual map OV_h = W_O,h W_V,h (sum over heads =
    W_O W_V, the layer's value path with uniform attention)."""
    W_V = _residual_in(weights[f"L{layer}.W_V"], ln_scale(weights, layer))
    W_O = np.asarray(weights[f"L{layer}.W_O"], dtype=np.float64)
    dh = W_V.shape[0] // n_head
    return np.stack([W_O[:, h * dh:(h + 1) * dh] @ W_V[h * dh:(h + 1) * dh] for h in range(n_head)])
