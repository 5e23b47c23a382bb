"""Positive controls: does the measurement see what a trained language model must know? (pure numpy)

Bigram check. The model's own next-token log-probabilities given the one-token sequence [a] (the full forward
pass at position 0, see loss_ladder.one_token_logits) against the corpus's log T[a, b], over the top-N tokens.
Both are double-centred with π-weights (the per-query constant and the per-target unigram effect removed), and
compared by π⊗π-weighted Pearson r. A model that knows only unigram frequencies has logits log π_b + c_a: its
double-centred matrix is 0, so it cannot pass, which is why row-centring alone was not enough.
Null: token labels of log T permuted within log-frequency bins (rows and columns jointly); the test statistic is
the weighted inner product <π⊗π ∘ L̃, log T_p>, whose permutation distribution gives z and the empirical p.

Unigram check. The π-weighted column means of the same log-probabilities against log π_b: r and a Fisher z.

Direct path (diagnostic). Embedding -> final LayerNorm -> unembedding alone, same statistic: r_direct / r_full
says how much of the bigram knowledge lives in that path.
"""
from __future__ import annotations

import numpy as np

from .attention import next_token_logprob
from .loss_ladder import log_softmax, one_token_logits
from ..core.nulls import permutation_test
from .residual_space import layernorm


def weighted_double_centre(S: np.ndarray, w: np.ndarray) -> np.ndarray:
    """S − (S w)1ᵀ − 1(wᵀS) + wᵀSw for weights w summing to 1 (weighted row and column means removed)."""
    S = np.asarray(S, dtype=np.float64)
    r = S @ w
    c = w @ S
    return S - r[:, None] - c[None, :] + w @ r


def weighted_double_centred_r(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> float:
    a, b = weighted_double_centre(A, w), weighted_double_centre(B, w)
    W2 = np.outer(w, w)
    return float((W2 * a * b).sum() / np.sqrt((W2 * a * a).sum() * (W2 * b * b).sum()))


def bigram_check(L: np.ndarray, C, top_idx: np.ndarray, pi: np.ndarray, bins: np.ndarray | None, n_draws: int,
                 seed: int, smoothing: float = 1.0) -> dict:
    """Weighted double-centred r of L (N x N log-probs or logits over top_idx) with log T, and its null."""
    w = np.asarray(pi, dtype=np.float64)[top_idx]
    w = w / w.sum()
    logT = next_token_logprob(C, top_idx, smoothing)
    out = dict(r=weighted_double_centred_r(L, logT, w), weighting="pi x pi over the top-N tokens",
               centring="double (weighted)")
    if n_draws and bins is not None:
        A = np.outer(w, w) * weighted_double_centre(L, w)  # rows sum to 0, so plain row-centring of B is inert
        res = permutation_test(A, logT, bins, n_draws, seed)
        out.update({k: float(res[k]) for k in ("null_mean", "null_sd", "z", "p")})
        out["n_draws"] = int(res["n_draws"])
    return out


def unigram_check(L: np.ndarray, top_idx: np.ndarray, pi: np.ndarray) -> dict:
    """π-weighted column means of L against log π over the top-N tokens: r and Fisher z = atanh(r) √(N − 3)."""
    p = np.asarray(pi, dtype=np.float64)[top_idx]
    w = p / p.sum()
    col = w @ np.asarray(L, dtype=np.float64)
    x, y = col - col.mean(), np.log(p) - np.log(p).mean()
    r = float((x @ y) / np.sqrt((x @ x) * (y @ y)))
    n = len(top_idx)
    return dict(r=r, z=float(np.arctanh(np.clip(r, -0.999999, 0.999999)) * np.sqrt(max(n - 3, 1))), n=int(n))


def direct_path_logits(weights: dict, top_idx: np.ndarray) -> np.ndarray:
    """Embedding -> final LN -> unembedding over top_idx (N x N; row = current token). Uses W_U if present
    (folded weights), else the tied W_E times ln_final.w."""
    W_E = np.asarray(weights["W_E"], dtype=np.float64)
    X = layernorm(W_E[top_idx])
    U = (np.asarray(weights["W_U"], dtype=np.float64)[top_idx] if "W_U" in weights
         else W_E[top_idx] * np.asarray(weights["ln_final.w"], dtype=np.float64)[None, :])
    return X @ U.T


def positive_controls(weights: dict, C, pi: np.ndarray, top_idx: np.ndarray, bins: np.ndarray, n_draws: int,
                      seed: int, activation: str = "gelu") -> dict:
    """Bigram check (full one-token forward), unigram check, and the direct-path diagnostic for one model."""
    logp = log_softmax(one_token_logits(weights, top_idx, activation=activation))[:, top_idx]
    full = bigram_check(logp, C, top_idx, pi, bins, n_draws, seed)
    direct = bigram_check(direct_path_logits(weights, top_idx), C, top_idx, pi, None, 0, seed)
    return dict(bigram=full, unigram=unigram_check(logp, top_idx, pi), direct_path_r=direct["r"],
                direct_over_full=direct["r"] / full["r"] if abs(full["r"]) > 1e-12 else None,
                top_n=int(len(top_idx)))
