"""Alignment of corpus space with model space through the vocabulary, and the
coordinate-free token-space comparison of attention with corpus statistics (pure numpy/scipy).

Conventions: bigram counts C[a, b] = #(a followed by b) (scipy.sparse, never densified V x V);
all token-space matrices S[a, b] have a = current (query) token as row, b = other token as column.
Row-centring removes per-query constants (softmax ignores them); after row-centring the Pearson
r of two matrices is the cosine of the row-centred matrices (their grand mean is 0).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .residual_space import layernorm, n_layers


# ----------------------------------------------------------------------------- vocab map

def top_tokens(pi: np.ndarray, top_n: int) -> np.ndarray:
    """Indices of the top_n most frequent tokens, most frequent first (stable on ties)."""
    return np.argsort(-np.asarray(pi), kind="stable")[:top_n]


def _wmean(X, w):
    return w @ X


def fit_vocab_map(E: np.ndarray, W: np.ndarray, pi: np.ndarray, top_n: int = 2000, seed: int = 0,
                  ridge: float = 0.0) -> dict:
    """Frequency-weighted centred least squares map A (d_c x d) from corpus to model space.

    A = argmin sum_t pi_t ||(e_t - mu_E) A - (w_t - mu_W)||^2 over a random half (train) of the
    top_n tokens by pi; means are pi-weighted over the train half.  heldout_r2 is the
    pi-weighted R^2 on the other half: 1 - sum pi||pred - w||^2 / sum pi||w - mean_test(w)||^2.
    Returns dict(A, heldout_r2, train_r2, train_idx, test_idx, mu_E, mu_W, top_idx).
    Rotating the model (W -> W Q) gives A -> A Q and leaves both R^2 unchanged.
    """
    E = np.asarray(E, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    top = top_tokens(pi, top_n)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(top.size)
    half = top.size // 2
    train_idx, test_idx = np.sort(top[perm[:half]]), np.sort(top[perm[half:]])
    w = pi[train_idx] / pi[train_idx].sum()
    mu_E = _wmean(E[train_idx], w)
    mu_W = _wmean(W[train_idx], w)
    sw = np.sqrt(w)[:, None]
    Xe = (E[train_idx] - mu_E) * sw
    Yw = (W[train_idx] - mu_W) * sw
    if ridge > 0:
        A = np.linalg.solve(Xe.T @ Xe + ridge * np.eye(Xe.shape[1]), Xe.T @ Yw)
    else:
        A = np.linalg.lstsq(Xe, Yw, rcond=None)[0]

    def _r2(idx):
        wt = pi[idx] / pi[idx].sum()
        pred = (E[idx] - mu_E) @ A + mu_W
        res = ((pred - W[idx]) ** 2).sum(1) @ wt
        tot = ((W[idx] - wt @ W[idx]) ** 2).sum(1) @ wt
        return float(1 - res / tot)

    return dict(A=A, heldout_r2=_r2(test_idx), train_r2=_r2(train_idx), train_idx=train_idx,
                test_idx=test_idx, mu_E=mu_E, mu_W=mu_W, top_idx=top)


def _wcentre_scale(X, w):
    Xc = X - w @ X
    nrm = np.sqrt(((Xc * Xc).sum(1) @ w))
    return Xc / nrm


def procrustes_r2(E: np.ndarray, W: np.ndarray, pi: np.ndarray, idx: np.ndarray) -> dict:
    """Orthogonal Procrustes over tokens idx: both sides pi-weighted centred and scaled to unit
    weighted Frobenius norm; R (d_c x d, semi-orthogonal) from SVD of Ec^T Pi Wc, optimal scale s.
    R^2 = 1 - ||s Ec R - Wc||^2_pi = (sum of singular values)^2.  Returns dict(r2, R, scale)."""
    idx = np.asarray(idx)
    w = np.asarray(pi, dtype=np.float64)[idx]
    w = w / w.sum()
    Ec = _wcentre_scale(np.asarray(E, dtype=np.float64)[idx], w)
    Wc = _wcentre_scale(np.asarray(W, dtype=np.float64)[idx], w)
    M = (Ec * w[:, None]).T @ Wc
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    R = U @ Vt
    scale = float(s.sum())
    return dict(r2=float(scale**2), R=R, scale=scale)


def linear_cka(X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Linear CKA of two representations of the same rows (optionally row-weighted, weighted-centred):
    ||Y^T Pi X||_F^2 / (||X^T Pi X||_F ||Y^T Pi Y||_F).  Invariant to orthogonal maps and scale."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    w = np.full(X.shape[0], 1.0 / X.shape[0]) if weights is None else np.asarray(weights, float) / np.sum(weights)
    sw = np.sqrt(w)[:, None]
    Xc = (X - w @ X) * sw
    Yc = (Y - w @ Y) * sw
    num = np.linalg.norm(Yc.T @ Xc) ** 2
    return float(num / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


# ----------------------------------------------------------------------------- attention forms

def qk_residual_forms(W_Q: np.ndarray, W_K: np.ndarray, n_head: int, ln_w: np.ndarray | None = None) -> list:
    """Per-head residual-space bilinear forms M_h = W_Q,h^T W_K,h / sqrt(d_h) (d x d each).

    Score(query x, key y) = x M_h y^T.  ln_w: the ln1 weight if NOT folded (multiplied into
    both sides); pass None for folded weights."""
    W_Q = np.asarray(W_Q, dtype=np.float64)
    W_K = np.asarray(W_K, dtype=np.float64)
    if ln_w is not None:
        W_Q = W_Q * ln_w[None, :]
        W_K = W_K * ln_w[None, :]
    d = W_Q.shape[1]
    dh = W_Q.shape[0] // n_head
    return [W_Q[h * dh:(h + 1) * dh].T @ W_K[h * dh:(h + 1) * dh] / np.sqrt(dh) for h in range(n_head)]


def qk_factors(W_Q: np.ndarray, W_K: np.ndarray, n_head: int, X: np.ndarray,
               ln_w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank factors of the row-centred token-space scores of every head:
    row_centre(X M_h X^T) = F[h] @ G[h]^T with F[h] = X W_Q,h^T (N x d_h),
    G[h] = (X - mean_rows X) W_K,h^T / sqrt(d_h).  Returns (F, G), each (n_head, N, d_h)."""
    W_Q = np.asarray(W_Q, dtype=np.float64)
    W_K = np.asarray(W_K, dtype=np.float64)
    if ln_w is not None:
        W_Q = W_Q * ln_w[None, :]
        W_K = W_K * ln_w[None, :]
    dh = W_Q.shape[0] // n_head
    Xc = X - X.mean(0, keepdims=True)
    F = (X @ W_Q.T).reshape(X.shape[0], n_head, dh).transpose(1, 0, 2)
    G = (Xc @ W_K.T / np.sqrt(dh)).reshape(X.shape[0], n_head, dh).transpose(1, 0, 2)
    return F, G


def layernormed(X: np.ndarray) -> np.ndarray:
    """LayerNorm without weight (weights are folded into the following matrices)."""
    return layernorm(X)


def token_space_scores(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """X M X^T: rows = query tokens, columns = key tokens."""
    return X @ M @ X.T


def row_centre(S: np.ndarray) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    return S - S.mean(1, keepdims=True)


def row_centred_pearson(A: np.ndarray, B: np.ndarray) -> float:
    """Pearson r of row-centred A and B (= cosine of the row-centred matrices)."""
    a = row_centre(A)
    b = row_centre(B)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# ----------------------------------------------------------------------------- corpus side

def _sub_counts(C, top_idx):
    C = sp.csr_matrix(C)
    top_idx = np.asarray(top_idx)
    return C, np.asarray(C[top_idx][:, top_idx].todense(), dtype=np.float64)


def preceding_token_statistic(C, top_idx: np.ndarray, kind: str = "logprob", smoothing: float = 1.0) -> np.ndarray:
    """S[a, b] for a = current (query) token, b = preceding (key) token, over top_idx (N x N).

    logprob: log P(prev=b | cur=a) = log (C[b, a] + s) / (sum_b' C[b', a] + s V)  (add-s smoothing
             over the full vocabulary V; only the N x N block is ever dense).
    pmi:     logprob - log P(b), P(b) = (sum_x C[b, x] + s V) / (total + s V^2).
    Row-centred logprob and pmi differ only by the column term log P(b)."""
    C, sub = _sub_counts(C, top_idx)
    V = C.shape[0]
    col = np.asarray(C.sum(axis=0)).ravel()[top_idx]  # occurrences of a as current token
    S = np.log(sub.T + smoothing) - np.log(col + smoothing * V)[:, None]
    if kind == "logprob":
        return S
    if kind == "pmi":
        row = np.asarray(C.sum(axis=1)).ravel()[top_idx]
        total = C.sum()
        logPb = np.log(row + smoothing * V) - np.log(total + smoothing * V * V)
        return S - logPb[None, :]
    raise ValueError("kind must be 'logprob' or 'pmi'")


def next_token_logprob(C, top_idx: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """log T[a, b] = log P(next=b | cur=a) = log (C[a, b] + s) / (sum_x C[a, x] + s V), over top_idx."""
    C, sub = _sub_counts(C, top_idx)
    V = C.shape[0]
    row = np.asarray(C.sum(axis=1)).ravel()[top_idx]
    return np.log(sub + smoothing) - np.log(row + smoothing * V)[:, None]


def direct_path_logits(W_E: np.ndarray, unembed: np.ndarray, top_idx: np.ndarray) -> np.ndarray:
    """Direct path embedding -> final LN -> unembedding over top_idx (N x N; row = current token).

    unembed: 1-D ln_final.w (tied unembedding W_E * w) or 2-D folded W_U (V x d)."""
    W_E = np.asarray(W_E, dtype=np.float64)
    unembed = np.asarray(unembed, dtype=np.float64)
    X = layernorm(W_E[top_idx])
    U = W_E[top_idx] * unembed[None, :] if unembed.ndim == 1 else unembed[top_idx]
    return X @ U.T


def direct_path_from_weights(weights: dict, top_idx: np.ndarray) -> np.ndarray:
    u = weights["W_U"] if "W_U" in weights else weights["ln_final.w"]
    return direct_path_logits(weights["W_E"], u, top_idx)


def positive_control(weights: dict, C, top_idx: np.ndarray, smoothing: float = 1.0,
                     bins: np.ndarray | None = None, n_draws: int = 0, seed: int = 0) -> dict:
    """Direct-path logits vs row-centred log T over top_idx.  Returns a JSON-friendly dict(r, and if
    n_draws>0 and bins given: null_mean, null_sd, z, p, n_draws from the within-bin token-label
    permutation test; python floats/ints only)."""
    L = direct_path_from_weights(weights, top_idx)
    logT = next_token_logprob(C, top_idx, smoothing)
    out = dict(r=row_centred_pearson(L, logT))
    if n_draws and bins is not None:
        from .nulls import permutation_test
        res = permutation_test(L, logT, bins, n_draws, seed)
        out.update({k: float(res[k]) for k in ("null_mean", "null_sd", "z", "p")})
        out["n_draws"] = int(res["n_draws"])
    return out


def attention_vs_corpus(weights: dict, C, top_idx: np.ndarray, n_head: int, kind: str = "logprob",
                        smoothing: float = 1.0, bins: np.ndarray | None = None, n_draws: int = 200,
                        seed: int = 0, folded: bool | None = None):
    """Per (layer, head) row-centred Pearson r of QK_h = X M_h X^T (X = LayerNorm'd W_E[top_idx])
    with the preceding-token statistic, plus the within-bin permutation null shared across heads
    (the same draws for every head).  Returns a pandas DataFrame with columns
    layer, head, r, null_mean, null_sd, z, p, n_draws (null columns NaN if bins is None or n_draws=0).
    If the weights are not folded, ln1.w is applied to W_Q and W_K (identical result)."""
    import pandas as pd
    from .nulls import permutation_test_factors

    X = layernormed(np.asarray(weights["W_E"], dtype=np.float64)[top_idx])
    S = preceding_token_statistic(C, top_idx, kind, smoothing)
    Fs, Gs, keys = [], [], []
    for i in range(n_layers(weights)):
        lw = weights.get(f"L{i}.ln1.w")
        lw = None if lw is None or np.allclose(lw, 1.0) else np.asarray(lw, dtype=np.float64)
        F, G = qk_factors(weights[f"L{i}.W_Q"], weights[f"L{i}.W_K"], n_head, X, lw)
        Fs.append(F)
        Gs.append(G)
        keys += [(i, h) for h in range(n_head)]
    F = np.concatenate(Fs)
    G = np.concatenate(Gs)
    res = permutation_test_factors(F, G, S, bins, n_draws if bins is not None else 0, seed)
    df = pd.DataFrame(keys, columns=["layer", "head"])
    for k in ("observed", "null_mean", "null_sd", "z", "p"):
        df["r" if k == "observed" else k] = res[k]
    df["n_draws"] = res["n_draws"]
    df["kind"] = kind
    return df
