"""Attention against corpus statistics, coordinate-free: per head, token-space QK over the most frequent tokens
against the preceding-token statistic, both double-centred, with a within-bin permutation null and
Benjamini–Hochberg over heads, two-sided (pure numpy/scipy).

Conventions: bigram counts C[a, b] = #(a followed by b) (scipy.sparse, never densified V x V); every token-space
matrix S[a, b] has a = the current (query) token as row and b = the other token as column.
Double-centring removes per-query constants (a softmax ignores them) *and* per-key constants (the unigram column
effect, which row-centring alone keeps: a model that only knows frequencies would otherwise look bigram-aware).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .circuits import ln_scale, qk_circuit
from .linalg import double_centre, row_centre
from .nulls import benjamini_hochberg, normal_p, permutation_test_factors
from .residual_space import layernorm, n_layers


def qk_residual_forms(W_Q: np.ndarray, W_K: np.ndarray, n_head: int, ln_w: np.ndarray | None = None) -> list:
    """Per-head residual-space bilinear forms M_h = W_Q,hᵀ W_K,h / √d_h (d x d each); score(x, y) = x M_h yᵀ.
    The matrices-in form of :func:`circuits.qk_circuit` (which takes the weights dict and a layer).

    ln_w: the ln1 weight if NOT folded (multiplied into both sides); None for folded weights."""
    weights = {"L0.W_Q": W_Q, "L0.W_K": W_K, **({} if ln_w is None else {"L0.ln1.w": ln_w})}
    return list(qk_circuit(weights, 0, n_head))


def _apply_ln(W_Q, W_K, ln_w):
    W_Q = np.asarray(W_Q, dtype=np.float64)
    W_K = np.asarray(W_K, dtype=np.float64)
    if ln_w is not None:
        W_Q = W_Q * ln_w[None, :]
        W_K = W_K * ln_w[None, :]
    return W_Q, W_K


def qk_factors(W_Q: np.ndarray, W_K: np.ndarray, n_head: int, X: np.ndarray,
               ln_w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank factors of the double-centred token-space scores of every head:
    double_centre(X M_h Xᵀ) = F[h] @ G[h]ᵀ with F[h] = Xc W_Q,hᵀ, G[h] = Xc W_K,hᵀ / √d_h and Xc = X minus its
    row mean (centring both factors over tokens centres the product's rows and columns). Each (n_head, N, d_h)."""
    W_Q, W_K = _apply_ln(W_Q, W_K, ln_w)
    dh = W_Q.shape[0] // n_head
    Xc = X - X.mean(0, keepdims=True)
    F = (Xc @ W_Q.T).reshape(X.shape[0], n_head, dh).transpose(1, 0, 2)
    G = (Xc @ W_K.T / np.sqrt(dh)).reshape(X.shape[0], n_head, dh).transpose(1, 0, 2)
    return F, G


def token_space_scores(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """X M Xᵀ: rows = query tokens, columns = key tokens."""
    return X @ M @ X.T


def double_centred_pearson(A: np.ndarray, B: np.ndarray) -> float:
    """Pearson r of double-centred A and B (= cosine of the double-centred matrices)."""
    a, b = double_centre(A), double_centre(B)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def row_centred_pearson(A: np.ndarray, B: np.ndarray) -> float:
    """Pearson r of row-centred A and B (the first version's statistic; keeps the unigram column effect)."""
    a, b = row_centre(A), row_centre(B)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# ----------------------------------------------------------------------------- corpus side

def sub_counts(C, top_idx: np.ndarray) -> np.ndarray:
    """Dense N x N block C[top_idx][:, top_idx] (the only dense part of a V x V statistic)."""
    return np.asarray(sp.csr_matrix(C)[top_idx][:, top_idx].todense(), dtype=np.float64)


def preceding_token_statistic(C, top_idx: np.ndarray, kind: str = "pmi", smoothing: float = 1.0) -> np.ndarray:
    """S[a, b] for a = current (query) token, b = preceding (key) token, over top_idx (N x N).

    logprob: log P(prev=b | cur=a) = log (C[b, a] + s) / (Σ_b' C[b', a] + s V)  (add-s over the full V);
    pmi:     logprob − log P(b). Double-centred, the two are identical (they differ by a column term)."""
    C = sp.csr_matrix(C)
    top_idx = np.asarray(top_idx)
    V = C.shape[0]
    sub = sub_counts(C, top_idx)
    col = np.asarray(C.sum(axis=0)).ravel()[top_idx]  # occurrences of a as current token
    S = np.log(sub.T + smoothing) - np.log(col + smoothing * V)[:, None]
    if kind == "logprob":
        return S
    if kind == "pmi":
        row = np.asarray(C.sum(axis=1)).ravel()[top_idx]
        logPb = np.log(row + smoothing * V) - np.log(C.sum() + smoothing * V * V)
        return S - logPb[None, :]
    raise ValueError("kind must be 'logprob' or 'pmi'")


def next_token_logprob(C, top_idx: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """log T[a, b] = log P(next=b | cur=a) = log (C[a, b] + s) / (Σ_x C[a, x] + s V), over top_idx."""
    C = sp.csr_matrix(C)
    V = C.shape[0]
    row = np.asarray(C.sum(axis=1)).ravel()[np.asarray(top_idx)]
    return np.log(sub_counts(C, top_idx) + smoothing) - np.log(row + smoothing * V)[:, None]


# ----------------------------------------------------------------------------- per head

def attention_vs_corpus(weights: dict, C, top_idx: np.ndarray, n_head: int, smoothing: float = 1.0,
                        bins: np.ndarray | None = None, n_draws: int = 200, seed: int = 0,
                        fdr: float = 0.05) -> pd.DataFrame:
    """Per (layer, head): Pearson r of the double-centred QK_h = X M_h Xᵀ (X = LayerNorm'd W_E[top_idx]) with the
    double-centred preceding-token PMI, its within-bin permutation null (the same draws for every head), z, the
    one-sided empirical p (≥ 1/(n+1)), the two-sided normal-approximation p and the Benjamini–Hochberg decision over
    all heads (two-sided: a head that attends *away* from likely predecessors is structure too).
    If the weights are not folded, ln1.w is applied to W_Q and W_K (identical result)."""
    X = layernorm(np.asarray(weights["W_E"], dtype=np.float64)[top_idx])
    S = double_centre(preceding_token_statistic(C, top_idx, "pmi", smoothing))
    Fs, Gs, keys = [], [], []
    for i in range(n_layers(weights)):
        F, G = qk_factors(weights[f"L{i}.W_Q"], weights[f"L{i}.W_K"], n_head, X, ln_scale(weights, i))
        Fs.append(F)
        Gs.append(G)
        keys += [(i, h) for h in range(n_head)]
    res = permutation_test_factors(np.concatenate(Fs), np.concatenate(Gs), S, bins,
                                   n_draws if bins is not None else 0, seed)
    df = pd.DataFrame(keys, columns=["layer", "head"])
    for k in ("observed", "null_mean", "null_sd", "z", "p"):
        df["r" if k == "observed" else k] = res[k]
    df["n_draws"] = res["n_draws"]
    df["p_normal"] = normal_p(df["z"].to_numpy(), two_sided=True)
    df["significant_bh"] = benjamini_hochberg(df["p_normal"].fillna(1.0).to_numpy(), fdr)
    return df
