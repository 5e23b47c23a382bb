"""Residual-space view of the extracted weights (pure numpy; no torch).

Orientation contract (docs/design.md): matrices keep nn.Linear (out, in) layout.
Reading matrices (W_Q, W_K, W_V, W_in) have their residual-side vectors as rows;
writing matrices (W_O, W_out) as columns.  W_E, W_pos and an explicit untied W_U
(only present after :func:`fold_layernorm`) have residual vectors as rows.
"""
from __future__ import annotations

import re

import numpy as np
from scipy.special import erf

from ..core.linalg import haar_orthogonal  # noqa: F401  (re-exported: rotations live with the residual-space helpers)

READING = ("W_Q", "W_K", "W_V", "W_in")
WRITING = ("W_O", "W_out")
EMBEDDING = ("W_E", "W_pos", "W_U")
LAYER_MATRICES = READING + WRITING
WRITING_BIASES = ("b_O", "b_out")  # biases added to the residual stream (checkpoints only)
LN_EPS = 1e-5

_LAYER_RE = re.compile(r"^L(\d+)\.(.+)$")


def matrix_type(name: str) -> str:
    """'L3.W_Q' -> 'W_Q'; 'W_E' -> 'W_E'; 'L0.ln1.w' -> 'ln1.w'."""
    m = _LAYER_RE.match(name)
    return m.group(2) if m else name


def layer_of(name: str) -> int:
    """Layer index of a per-layer key, -1 for global keys (W_E, W_pos, W_U, ln_final.w)."""
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else -1


def n_layers(weights: dict) -> int:
    return 1 + max((layer_of(k) for k in weights), default=-1)


def residual_vectors(name: str, W: np.ndarray) -> np.ndarray:
    """(n, d) array of the residual-side vectors of matrix `name` (a view, no copy)."""
    t = matrix_type(name)
    if t in READING or t in EMBEDDING:
        return W
    if t in WRITING:
        return W.T
    raise ValueError(f"{name!r} is not a residual-space matrix")


def residual_matrix_names(weights: dict, embeddings: bool = True) -> list[str]:
    """Keys of all 2-D residual-space matrices, embeddings first, then layers in order."""
    out = [k for k in EMBEDDING if k in weights] if embeddings else []
    for i in range(n_layers(weights)):
        out += [f"L{i}.{t}" for t in LAYER_MATRICES if f"L{i}.{t}" in weights]
    return out


def _ln_keys(weights: dict) -> list[str]:
    return [k for k in weights if k.endswith("ln1.w") or k.endswith("ln2.w") or k == "ln_final.w"]


def fold_layernorm(weights: dict) -> dict:
    """Fold every LayerNorm weight (and bias, where a checkpoint has one) into the reading matrices that follow it.

    ln1 -> columns of W_Q, W_K, W_V; ln2 -> columns of W_in; ln_final -> an explicit untied
    unembedding W_U = W_E * ln_final.w (V, d).  LN weights are set to ones.  A LayerNorm bias b becomes part of the
    next bias: b_Q += W_Q b (before the columns are scaled), likewise b_K, b_V, b_in, and b_U = W_U ln_final.b for the
    unembedding; the LN biases are then dropped.  The function of the network is unchanged (checked by
    tests/test_invariance.py and tests/test_checkpoints.py).  Input is not modified.
    """
    out = {k: np.array(v, copy=True) for k, v in weights.items()}

    def fold(ln: str, readers: list[str]) -> None:
        w, b = out[f"{ln}.w"], out.pop(f"{ln}.b", None)
        for W_key, b_key in readers:
            if b is not None:
                out[b_key] = out.get(b_key, 0.0) + out[W_key] @ b
            out[W_key] = out[W_key] * w[None, :]
        out[f"{ln}.w"] = np.ones_like(w)

    for i in range(n_layers(weights)):
        fold(f"L{i}.ln1", [(f"L{i}.{t}", f"L{i}.b_{t[2:]}") for t in ("W_Q", "W_K", "W_V")])
        fold(f"L{i}.ln2", [(f"L{i}.W_in", f"L{i}.b_in")])
    if "W_U" not in out:
        out["W_U"] = out["W_E"].copy()
    fold("ln_final", [("W_U", "b_U")])
    return out


def rotate_residual(weights: dict, Q: np.ndarray, check_folded: bool = True) -> dict:
    """Apply an orthogonal Q (d x d) to the residual basis: x -> x Q.

    W_E, W_pos, W_U and reading matrices: W -> W Q; writing matrices: W -> Q^T W.
    Function-preserving only when LN weights are folded (all ones) and Q fixes the
    all-ones direction (Q 1 = 1), see :func:`random_rotation_fixing_ones`.
    """
    if check_folded:
        for k in _ln_keys(weights):
            if not np.allclose(weights[k], 1.0):
                raise ValueError("rotate_residual needs folded LayerNorm weights (fold_layernorm first)")
        if "W_U" not in weights:
            raise ValueError("rotate_residual needs an explicit W_U (fold_layernorm first)")
    out = {}
    for k, v in weights.items():
        t = matrix_type(k)
        if t in READING or t in EMBEDDING:
            out[k] = v @ Q
        elif t in WRITING:
            out[k] = Q.T @ v
        elif t in WRITING_BIASES:  # added to the residual stream: a residual vector
            out[k] = v @ Q
        else:  # LayerNorm weights (all ones) and the biases of reading matrices (outside the residual space)
            out[k] = np.array(v, copy=True)
    return out


def random_rotation_fixing_ones(d: int, rng: np.random.Generator) -> np.ndarray:
    """Orthogonal Q with Q 1 = 1 (and so 1^T Q = 1^T): Haar on the complement of the ones direction."""
    one = np.ones((d, 1)) / np.sqrt(d)
    Z = np.concatenate([one, rng.standard_normal((d, d - 1))], axis=1)
    H, _ = np.linalg.qr(Z)
    H = H[:, 1:]  # orthonormal basis of 1-perp
    R = haar_orthogonal(d - 1, rng)
    return one @ one.T + H @ R @ H.T


def as_float64(weights: dict) -> dict:
    """The weights as float64 arrays: the forward passes read them in float64, and converting a GPT-2-sized W_E
    (300 MB) once instead of in every chunk of a long evaluation is most of their time otherwise."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}


def layernorm(x: np.ndarray, w: np.ndarray | None = None, eps: float = LN_EPS, b: np.ndarray | None = None
              ) -> np.ndarray:
    """LayerNorm over the last axis; multiply by w and add b if given (the models trained here have no b)."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    y = xc / np.sqrt(var + eps)
    y = y * w if w is not None else y
    return y + b if b is not None else y


def gelu(x: np.ndarray, activation: str = "gelu") -> np.ndarray:
    """GELU: exact (erf) for "gelu", the tanh approximation of GPT-2 for "gelu_new"."""
    if activation == "gelu_new":  # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), in place on one temporary
        t = x * x
        t *= 0.044715
        t += 1.0
        t *= x
        t *= np.sqrt(2.0 / np.pi)
        np.tanh(t, out=t)
        t += 1.0
        t *= x
        t *= 0.5
        return t
    if activation != "gelu":
        raise ValueError(f"activation {activation!r}: expected 'gelu' or 'gelu_new'")
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def forward_logits(weights: dict, tokens: np.ndarray, n_head: int, activation: str = "gelu",
                   ln_eps: float = LN_EPS) -> np.ndarray:
    """Reference float64 forward pass of the pre-LN GPT.

    x = W_E[tok] + W_pos[:T]; per layer: x += Attn(LN1(x)); x += MLP(LN2(x));
    logits = LN_f(x) W_U^T with W_U = weights['W_U'] if present else W_E (tied).
    Biases (``L{i}.b_Q`` …, ``L{i}.ln1.b`` …, ``ln_final.b``; checkpoints.py) enter where a GPT-2 has them; a
    missing one is zero (the models trained here have none). tokens: (T,) or (B, T) ints. Returns (B, T, V) (or
    (T, V)).
    """
    tok = np.asarray(tokens)
    squeeze = tok.ndim == 1
    if squeeze:
        tok = tok[None]
    B, T = tok.shape
    f = lambda k: np.asarray(weights[k], dtype=np.float64)  # noqa: E731
    bias = lambda k: np.asarray(weights[k], dtype=np.float64) if k in weights else 0.0  # noqa: E731
    ln = lambda x, k: layernorm(x, f(f"{k}.w"), ln_eps, bias(f"{k}.b") if f"{k}.b" in weights else None)  # noqa: E731
    x = f("W_E")[tok] + f("W_pos")[:T][None]
    d = x.shape[-1]
    dh = d // n_head
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for i in range(n_layers(weights)):
        h = ln(x, f"L{i}.ln1")
        q = (h @ f(f"L{i}.W_Q").T + bias(f"L{i}.b_Q")).reshape(B, T, n_head, dh).transpose(0, 2, 1, 3)
        k = (h @ f(f"L{i}.W_K").T + bias(f"L{i}.b_K")).reshape(B, T, n_head, dh).transpose(0, 2, 1, 3)
        v = (h @ f(f"L{i}.W_V").T + bias(f"L{i}.b_V")).reshape(B, T, n_head, dh).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
        s = np.where(mask, -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        a = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, d)
        x = x + a @ f(f"L{i}.W_O").T + bias(f"L{i}.b_O")
        h2 = ln(x, f"L{i}.ln2")
        x = x + gelu(h2 @ f(f"L{i}.W_in").T + bias(f"L{i}.b_in"), activation) @ f(f"L{i}.W_out").T + bias(f"L{i}.b_out")
    W_U = f("W_U") if "W_U" in weights else f("W_E")
    logits = ln(x, "ln_final") @ W_U.T + bias("b_U")
    return logits[0] if squeeze else logits
