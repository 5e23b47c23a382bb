"""Attention against corpus statistics, coordinate-free (pure numpy/scipy).

Two statistics per head, each against a **null over attention** (the head's W_Q/W_K rotated at random on the
residual side, everything else of the model kept; :func:`rotation_draws`), Benjamini–Hochberg over heads:
- token space (:class:`TokenSpace`): Pearson r of the double-centred QK form X M_h Xᵀ over the most frequent tokens
  (X = LayerNorm'd W_E rows) with the double-centred preceding-token PMI;
- functional (:class:`Functional`): on validation text, positions and residual stream included, Pearson r over
  pairs (query i, key j < i) of the attention weight with PMI(x_i, x_j), per-query, per-distance and
  per-key-frequency-stratum means removed.
:func:`attention_heads` runs both with the step-0 reference and the calibration (false-positive rate on
norm-matched random heads, power on a planted routing head). The older label-permutation test
(:func:`attention_vs_corpus`, the corpus side permuted) is kept as secondary information: with a trained W_E it
rejects for random W_Q/W_K too, so it measures the embedding rather than attention.

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
from ..core.linalg import double_centre, row_centre
from ..core.nulls import benjamini_hochberg, log_frequency_bins, normal_p, permutation_test_factors
from .residual_space import as_float64, gelu, layernorm, n_layers


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
    """The older label-permutation test, kept as secondary information (its null permutes the corpus side, so with
    a trained W_E it rejects for random W_Q/W_K too; :func:`attention_heads` reports it as `label_*` columns).
    Per (layer, head): Pearson r of the double-centred QK_h = X M_h Xᵀ (X = LayerNorm'd W_E[top_idx]) with the
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


# ============================================================================= a null over attention
# The label-permutation test above changes the corpus side; with a trained W_E and *random* W_Q/W_K most heads pass
# it (the test then measures the embedding, not attention). The tests below keep everything of the model and replace
# only one head's W_Q/W_K by spectrum-matched random draws: W_Q,h -> W_Q,h R1, W_K,h -> W_K,h R2 with R1, R2
# independent Haar orthogonal d x d matrices acting on the residual side. The singular values of W_Q,h, W_K,h and
# M_h are kept; R1 -> -R1 flips the sign of the score, so the null of r is symmetric around 0 and the sign of r is
# meaningful. A head with i.i.d. Gaussian W_Q/W_K (random init, the referee's swap) is exchangeable with its own
# rotations, so it lies inside this null by construction.

def head_weights(weights: dict, n_head: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Every head's residual-side reading weights: Q, K of shape (L * n_head, d_h, d) (rows h*d_h:(h+1)*d_h of
    W_Q, W_K, the ln1 weight applied when it is not folded) and keys [(layer, head)], layer-major."""
    Qs, Ks, keys = [], [], []
    for i in range(n_layers(weights)):
        W_Q, W_K = _apply_ln(weights[f"L{i}.W_Q"], weights[f"L{i}.W_K"], ln_scale(weights, i))
        dh = W_Q.shape[0] // n_head
        Qs.append(W_Q.reshape(n_head, dh, -1))
        Ks.append(W_K.reshape(n_head, dh, -1))
        keys += [(i, h) for h in range(n_head)]
    return np.concatenate(Qs), np.concatenate(Ks), keys


def head_query_biases(weights: dict, n_head: int) -> np.ndarray | None:
    """Every head's query bias (L * n_head, d_h): b_Q plus W_Q times ln1's bias when LayerNorm is not folded; None
    for a model without them (every model trained here). A key bias adds the same score to every key of a query and
    cancels in the softmax; a query bias adds b_Q · k_j, which differs from key to key, so the functional test's
    scores take it (the token-space test's double-centring removes both)."""
    out, any_bias = [], False
    for i in range(n_layers(weights)):
        W_Q = np.asarray(weights[f"L{i}.W_Q"], dtype=np.float64)
        b = np.zeros(W_Q.shape[0])
        if f"L{i}.b_Q" in weights:
            b = b + np.asarray(weights[f"L{i}.b_Q"], dtype=np.float64)
            any_bias = True
        if f"L{i}.ln1.b" in weights:
            b = b + W_Q @ np.asarray(weights[f"L{i}.ln1.b"], dtype=np.float64)
            any_bias = True
        out.append(b.reshape(n_head, -1))
    return np.concatenate(out) if any_bias else None


def with_heads(weights: dict, Q: np.ndarray, K: np.ndarray) -> dict:
    """A copy of (folded) weights whose W_Q/W_K are the head stacks Q, K (L * n_head, d_h, d); all else kept."""
    out = dict(weights)
    L = n_layers(weights)
    n_head = Q.shape[0] // L
    for i in range(L):
        out[f"L{i}.W_Q"] = Q[i * n_head:(i + 1) * n_head].reshape(-1, Q.shape[-1])
        out[f"L{i}.W_K"] = K[i * n_head:(i + 1) * n_head].reshape(-1, K.shape[-1])
    return out


def residual_frame(X: np.ndarray) -> np.ndarray:
    """A d x d orthonormal frame U (columns) that turns with the residual basis: eigenvectors of Xcᵀ Xc (Xc = X
    centred over tokens), each sign fixed in token space (the largest-|.| entry of Xc u positive; for a direction
    Xc does not see, the sign of Σu, which a rotation fixing the all-ones vector keeps). Rotation draws are made in
    this frame (R = U G Uᵀ), so a function-preserving residual rotation x -> x Q maps every draw to Qᵀ R Q and the
    null is unchanged draw by draw, not only in distribution (needs distinct eigenvalues, e.g. N > d tokens)."""
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(0, keepdims=True)
    lam, U = np.linalg.eigh(Xc.T @ Xc)
    U = U[:, ::-1]
    T = Xc @ U
    seen = np.linalg.norm(T, axis=0) > 1e-8 * np.sqrt(max(lam.max(), 0.0))
    sign = np.where(seen, np.sign(T[np.abs(T).argmax(0), np.arange(U.shape[1])]), np.sign(U.sum(0)))
    sign[sign == 0] = 1.0
    return U * sign[None, :]


def haar_stack(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n independent Haar orthogonal d x d matrices (O(d), both determinants), (n, d, d)."""
    Z, R = np.linalg.qr(rng.standard_normal((n, d, d)))
    return Z * np.sign(np.diagonal(R, axis1=1, axis2=2))[:, None, :]


def rotation_draws(d: int, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The null's rotations in frame coordinates: (G1, G2), each (n_draws, d, d), independent Haar. The same
    draws serve every head, the step-0 heads and every calibration model (the null of each head is valid alone)."""
    rng = np.random.default_rng([seed, 20])
    return haar_stack(n_draws, d, rng), haar_stack(n_draws, d, rng)


def null_summary(r: np.ndarray, null: np.ndarray, fdr: float = 0.05) -> dict:
    """Per head, from the observed r (m,) and its null draws (m, n): null_mean, null_sd, z = (r − mean)/sd, p the
    two-sided normal p of z (not the empirical p: with 200 draws that cannot go below 1/201, and Benjamini–Hochberg
    over 32 heads asks for 0.05/32 at the first step), direction = sign(r − null mean), significant = BH at fdr
    over all heads. A head with no spread in its null, or with r undefined (NaN: a purely positional head in the
    functional test), gets z NaN, p = 1 and direction 0; undefined draws are left out of the null."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.nanmean(null, axis=-1)
        sd = np.nanstd(null, axis=-1, ddof=1)
        z = (r - mu) / sd
    finite = np.isfinite(z)
    p = np.where(finite, normal_p(np.where(finite, z, 0.0), two_sided=True), 1.0)
    direction = np.where(finite, np.sign(np.where(finite, r - mu, 0.0)), 0).astype(int)
    return dict(r=r, null_mean=mu, null_sd=sd, z=z, p=p, direction=direction, significant=benjamini_hochberg(p, fdr))


# ----------------------------------------------------------------------------- token space (algebraic shortcut)

class TokenSpace:
    """The token-space side of the QK test over N tokens, reduced to d x d matrices once.

    Xc = X centred over tokens (X = LayerNorm'd W_E rows); S = the double-centred preceding-token PMI (N x N). For
    a bilinear form M, Xc M Xcᵀ is already double-centred, and
        ⟨Xc M Xcᵀ, S⟩ = ⟨M, P⟩  with P = Xcᵀ S Xc,
        ‖Xc M Xcᵀ‖²   = tr(M Gx Mᵀ Gx) with Gx = Xcᵀ Xc,
    so r = ⟨M, P⟩ / (‖Xc M Xcᵀ‖ ‖S‖) never touches an N x N matrix per head or per draw. Everything is held in
    the residual frame U of :func:`residual_frame` (eigenvectors of Gx): P as Uᵀ P U, Gx as its eigenvalues
    (Uᵀ Gx U is diagonal), heads as W U. For a head, ‖Xc M Xcᵀ‖² = tr((Q Gx Qᵀ)(K Gx Kᵀ)) / d_h."""

    def __init__(self, X: np.ndarray, S: np.ndarray):
        X = np.asarray(X, dtype=np.float64)
        self.Xc = X - X.mean(0, keepdims=True)
        self.S = double_centre(S)
        self.s_norm = float(np.sqrt((self.S * self.S).sum()))
        self.U = residual_frame(X)
        XU = self.Xc @ self.U
        self.P = XU.T @ self.S @ XU
        self.gx = (XU * XU).sum(0)  # diagonal of Uᵀ Gx U

    def in_frame(self, W: np.ndarray) -> np.ndarray:
        """Residual-side rows (..., d) into frame coordinates."""
        return W @ self.U

    def r(self, Qf: np.ndarray, Kf: np.ndarray) -> np.ndarray:
        """Pearson r of the double-centred X M Xᵀ with S for head stacks in frame coordinates, M = Qᵀ K / √d_h;
        Qf, Kf (..., d_h, d) -> (...)."""
        dh = Qf.shape[-2]
        num = np.einsum("...ij,...ij->...", Qf, Kf @ self.P.T) / np.sqrt(dh)
        gq = (Qf * self.gx) @ np.swapaxes(Qf, -1, -2)
        gk = (Kf * self.gx) @ np.swapaxes(Kf, -1, -2)
        form_sq = np.einsum("...ij,...ij->...", gq, gk) / dh
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / (np.sqrt(form_sq) * self.s_norm)

    def test(self, Q: np.ndarray, K: np.ndarray, draws: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Observed r (m,) of head stacks Q, K (m, d_h, d) (residual coordinates) and their null (m, n_draws):
        r of (Q R1, K R2) for every drawn pair (R = U G Uᵀ, so in the frame: Q U G).

        Per draw, without rotating every head twice: the numerator ⟨(Q G1)ᵀ (K G2), P⟩ = ⟨M, G1 P G2ᵀ⟩ with the
        heads' M = Qᵀ K formed once (two d x d products per draw, then a dot product per head); the norm
        tr((Q A1 Qᵀ)(K A2 Kᵀ)) with A = G Gx Gᵀ reads each side through Q (G Gx^½), one GEMM per draw for all
        heads of a side, in float32 (the observed r stays float64)."""
        Qf, Kf = self.in_frame(Q), self.in_frame(K)
        m, dh, d = Qf.shape
        G1, G2 = draws
        M = np.empty((m, d, d))  # every head's residual form Qᵀ K, frame coordinates
        for h in range(m):
            np.matmul(Qf[h].T, Kf[h], out=M[h])
        M = M.reshape(m, d * d)
        root = np.sqrt(self.gx)
        Qs, Ks = Qf.reshape(m * dh, d).astype(np.float32), Kf.reshape(m * dh, d).astype(np.float32)

        def gram(W, G):  # (m, d_h, d_h): W_h A W_hᵀ for every head, A = G Gx Gᵀ (float32, as the functional null)
            Y = (W @ (G * root).astype(np.float32)).reshape(m, dh, d)
            return (Y @ np.swapaxes(Y, -1, -2)).astype(np.float64)

        null = np.empty((m, G1.shape[0]))
        for s in range(G1.shape[0]):
            num = M @ (G1[s] @ self.P @ G2[s].T).ravel() / np.sqrt(dh)
            form_sq = np.einsum("mij,mij->m", gram(Qs, G1[s]), gram(Ks, G2[s])) / dh
            with np.errstate(divide="ignore", invalid="ignore"):
                null[:, s] = num / (np.sqrt(form_sq) * self.s_norm)
        return self.r(Qf, Kf), null


def direct_token_space_r(Q: np.ndarray, K: np.ndarray, X: np.ndarray, S: np.ndarray) -> np.ndarray:
    """The same r computed the long way (N x N per head): double_centred_pearson(X M_h Xᵀ, S). For tests."""
    dh = Q.shape[-2]
    return np.array([double_centred_pearson(token_space_scores(q.T @ k / np.sqrt(dh), X), S) for q, k in zip(Q, K)])


# ----------------------------------------------------------------------------- functional: real text

def forward_attention(weights: dict, tokens: np.ndarray, n_head: int, logits: bool = False,
                      activation: str = "gelu") -> tuple[list, list, np.ndarray | None]:
    """The reference forward pass of :func:`residual_space.forward_logits`, keeping for every layer the normalised
    residual stream that its attention reads (LayerNorm without its weight and bias, (B, T, d): those belong to the
    heads' reading weights, as in :func:`head_weights`) and the attention probabilities (B, H, T, T),
    rows = query position i, columns = key position j (0 above the diagonal). Biases (checkpoints only) enter as in
    forward_logits. Returns (normalised_inputs, probs, the logits (B, T, V) if asked, else None; the last layer's MLP
    is skipped then)."""
    tok = np.atleast_2d(np.asarray(tokens))
    B, T = tok.shape
    weights = as_float64(weights)
    f = lambda k: weights[k]  # noqa: E731
    b = lambda k: weights.get(k, 0.0)  # noqa: E731
    x = f("W_E")[tok] + f("W_pos")[:T][None]
    d = x.shape[-1]
    dh = d // n_head
    normalised_inputs, probs = [], []
    for i in range(n_layers(weights)):
        normalised = layernorm(x)
        h = normalised * f(f"L{i}.ln1.w") + b(f"L{i}.ln1.b")
        q, k, v = (split_heads(h @ f(f"L{i}.W_{m}").T + b(f"L{i}.b_{m}"), n_head) for m in ("Q", "K", "V"))
        p = causal_softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(dh))
        normalised_inputs.append(normalised)
        probs.append(p)
        if i == n_layers(weights) - 1 and not logits:
            break
        x = x + (p @ v).transpose(0, 2, 1, 3).reshape(B, T, d) @ f(f"L{i}.W_O").T + b(f"L{i}.b_O")
        h2 = layernorm(x, f(f"L{i}.ln2.w"), b=b(f"L{i}.ln2.b") if f"L{i}.ln2.b" in weights else None)
        x = x + gelu(h2 @ f(f"L{i}.W_in").T + b(f"L{i}.b_in"), activation) @ f(f"L{i}.W_out").T + b(f"L{i}.b_out")
    if not logits:
        return normalised_inputs, probs, None
    W_U = f("W_U") if "W_U" in weights else f("W_E")
    final = layernorm(x, f("ln_final.w"), b=b("ln_final.b") if "ln_final.b" in weights else None)
    return normalised_inputs, probs, final @ W_U.T + b("b_U")


def split_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """(B, T, n_head * d_h) -> (B, n_head, T, d_h)."""
    B, T, D = x.shape
    return x.reshape(B, T, n_head, D // n_head).transpose(0, 2, 1, 3)


def causal_softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (keys) with keys after the query (j > i) masked out."""
    T = scores.shape[-1]
    s = np.where(np.triu(np.ones((T, T), dtype=bool), 1), -np.inf, scores)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(-1, keepdims=True)


def validation_windows(ids: np.ndarray, context: int, max_windows: int) -> np.ndarray:
    """Up to max_windows non-overlapping windows of `context` tokens spread evenly over the split, (B, context)."""
    ids = np.asarray(ids)
    n = min(int(max_windows), len(ids) // context)
    if n < 1:
        raise ValueError(f"validation split has {len(ids)} tokens, fewer than one window of {context}")
    starts = np.linspace(0, len(ids) - context, n).astype(np.int64)
    return np.stack([ids[s:s + context] for s in starts])


def pmi_pairs(C, current: np.ndarray, preceding: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """PMI(current token a, preceding token b) = log P(prev=b | cur=a) − log P(b) for any token pairs, looked up
    sparsely: the smoothing of :func:`preceding_token_statistic` (add-s over the full V), entry by entry; the
    result has current's shape."""
    C = sp.csr_matrix(C)
    V = C.shape[0]
    a, b = np.asarray(current).ravel(), np.asarray(preceding).ravel()
    counts = np.asarray(C[b, a]).ravel().astype(np.float64)
    col = np.asarray(C.sum(axis=0)).ravel().astype(np.float64)
    row = np.asarray(C.sum(axis=1)).ravel().astype(np.float64)
    log_p_prev_given_cur = np.log(counts + smoothing) - np.log(col[a] + smoothing * V)
    log_p_prev = np.log(row[b] + smoothing * V) - np.log(float(C.sum()) + smoothing * V * V)
    return (log_p_prev_given_cur - log_p_prev).reshape(np.shape(current))


def psd_pinv(A: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Pseudo-inverse of a symmetric positive semi-definite matrix, eigenvalues below rtol * max dropped (ZᵀZ of
    the distance indicators is singular: they sum to the query indicators; np.linalg.pinv can turn its rounding-
    level negative eigenvalue into a huge negative one, and the quadratic forms it enters then go negative)."""
    lam, V = np.linalg.eigh(A)
    keep = lam > rtol * max(lam.max(), 0.0)
    return (V[:, keep] / lam[keep]) @ V[:, keep].T


class PairDesign:
    """The (window b, query i, key j < i) pairs of the functional test and the projection P that removes, jointly
    (least squares on all sets of indicators; the design is unbalanced, so removing one set of means after the
    other would not do): per-query means, per-distance (i − j) means and, with key_groups (a group id per token,
    e.g. its frequency stratum), per-key-group means. Pairs involving an excluded token are left out.

    By Frisch–Waugh: with ã = a minus its per-query means and Z = the other indicators F minus their per-query
    means, P a = ã − Z (ZᵀZ)⁺ Zᵀ ã and ‖P a‖² = ‖ã‖² − c (ZᵀZ)⁺ cᵀ, c = Zᵀ ã = Fᵀ ã (the per-distance and
    per-key-group sums of ã). So r = ⟨P a, P s⟩ / (‖P a‖ ‖P s‖) = ⟨ã, P s⟩ / (‖P a‖ ‖P s‖) is computed for a stack
    of attention arrays (..., B, T, T) in their own layout, without forming P."""

    def __init__(self, windows: np.ndarray, exclude=(), key_groups: np.ndarray | None = None):
        windows = np.asarray(windows)
        B, T = windows.shape
        special = np.isin(windows, np.asarray(list(exclude), dtype=windows.dtype))
        mask = np.tril(np.ones((T, T), dtype=bool), -1)[None] & ~special[:, :, None] & ~special[:, None, :]
        self.mask = mask
        self.b, self.i, self.j = np.nonzero(mask)
        self.current, self.preceding = windows[self.b, self.i], windows[self.b, self.j]
        self.n_pairs = int(self.b.size)
        self.per_query = mask.sum(-1)  # (B, T) pairs per query
        self.inv_per_query = 1.0 / np.maximum(self.per_query, 1)
        self.tril_i, self.tril_j = np.nonzero(np.tril(np.ones((T, T), dtype=bool), -1))
        self.distance_map = np.zeros((self.tril_i.size, T - 1))  # lower-triangle position -> distance i − j
        self.distance_map[np.arange(self.tril_i.size), self.tril_i - self.tril_j - 1] = 1.0
        self.key_group_map = None  # (B * T, n_groups): key position (b, j) -> its token's group
        factors = [np.eye(T - 1)[self.i - self.j - 1]]
        if key_groups is not None:
            g = np.unique(np.asarray(key_groups)[windows], return_inverse=True)[1].reshape(B, T)
            self.key_group_map = np.eye(g.max() + 1)[g.ravel()]
            factors.append(self.key_group_map[self.b * T + self.j])
        F = np.hstack(factors)  # (n_pairs, n_factors): the indicators besides the query's
        query = sp.csr_matrix((np.ones(self.n_pairs), (np.arange(self.n_pairs), self.b * T + self.i)),
                              shape=(self.n_pairs, B * T))
        Z = F - query @ ((query.T @ F) * self.inv_per_query.reshape(-1, 1))
        self.ZtZ_pinv = psd_pinv(Z.T @ Z)

    def query_centred(self, a: np.ndarray) -> np.ndarray:
        """ã: every query's mean over its pairs removed, 0 outside the pairs; a (..., B, T, T)."""
        a = a * self.mask
        a -= a.sum(-1, keepdims=True) * self.inv_per_query[..., None].astype(a.dtype)
        a *= self.mask
        return a

    def factor_sums(self, a: np.ndarray) -> np.ndarray:
        """Fᵀ a: per-distance sums, then per-key-group sums, over the pairs of an array zero outside them,
        (..., n_factors)."""
        sums = [a.sum(-3)[..., self.tril_i, self.tril_j].astype(np.float64) @ self.distance_map]
        if self.key_group_map is not None:
            by_key = a.sum(-2)  # (..., B, T_key)
            sums.append(by_key.reshape(*by_key.shape[:-2], -1).astype(np.float64) @ self.key_group_map)
        return np.concatenate(sums, axis=-1)

    def residual(self, a: np.ndarray) -> np.ndarray:
        """P a for one array in the (B, T, T) layout (0 outside the pairs)."""
        at = self.query_centred(np.asarray(a, dtype=np.float64))
        beta = self.ZtZ_pinv @ self.factor_sums(at)
        T = self.mask.shape[-1]
        fitted = beta[self.i - self.j - 1]
        if self.key_group_map is not None:
            fitted = fitted + self.key_group_map[self.b * T + self.j] @ beta[T - 1:]
        return at - self.query_centred(self.to_layout(fitted))

    def correlation(self, a: np.ndarray, s_res: np.ndarray) -> np.ndarray:
        """r of P a with s_res = P s (already residualised, (B, T, T) layout) for a stack a (..., B, T, T); NaN
        where the removed means explain a entirely (a purely positional head)."""
        at = self.query_centred(a)
        num = np.einsum("...bts,bts->...", at, s_res.astype(at.dtype), dtype=np.float64)
        c = self.factor_sums(at)
        at_sq = np.einsum("...bts,...bts->...", at, at, dtype=np.float64)
        norm_sq = at_sq - np.einsum("...k,kl,...l->...", c, self.ZtZ_pinv, c)
        explained = norm_sq <= 1e-9 * at_sq  # a pattern of query, distance (and key-group) effects only: r undefined
        with np.errstate(divide="ignore", invalid="ignore"):
            r = num / np.sqrt(np.maximum(norm_sq, 0.0) * float((s_res * s_res).sum()))
        return np.where(explained, np.nan, r)

    def to_layout(self, values: np.ndarray) -> np.ndarray:
        """Values over the pairs (n_pairs,) -> the (B, T, T) layout, 0 outside the pairs."""
        out = np.zeros(self.mask.shape)
        out[self.b, self.i, self.j] = values
        return out


def head_scores(h: np.ndarray, Q: np.ndarray, K: np.ndarray, keys_first: bool = False,
                bq: np.ndarray | None = None) -> np.ndarray:
    """Attention scores q·k/√d_h of heads with residual-side reading weights Q, K (m, d_h, d) on a fixed input
    h (B, T, d): (m, B, T_query, T_key) in h's dtype (float32 for the null draws); keys_first: (m, B, T_key,
    T_query) instead (numpy reduces faster over the second-to-last axis than over a short last one). bq: the heads'
    query biases (m, d_h), added to every query (the key bias cancels in the softmax and is left out)."""
    m, dh, d = Q.shape
    B, T, _ = h.shape
    hf = h.reshape(1, B * T, d)
    q = np.matmul(hf, np.swapaxes(Q.astype(h.dtype), 1, 2)).reshape(m, B, T, dh)
    if bq is not None:
        q += np.asarray(bq, dtype=h.dtype)[:, None, None, :]
    k = np.matmul(hf, np.swapaxes(K.astype(h.dtype), 1, 2)).reshape(m, B, T, dh)
    q *= np.asarray(1.0 / np.sqrt(dh), dtype=h.dtype)
    return k @ np.swapaxes(q, -1, -2) if keys_first else q @ np.swapaxes(k, -1, -2)


def causal_softmax_keys_first(scores: np.ndarray) -> np.ndarray:
    """:func:`causal_softmax` for scores laid out (..., T_key, T_query), overwriting them; returns the
    probabilities as a (..., T_query, T_key) view."""
    T = scores.shape[-1]
    scores += np.where(np.tril(np.ones((T, T), dtype=bool), -1), -np.inf, 0.0).astype(scores.dtype)
    scores -= scores.max(-2, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(-2, keepdims=True)
    return np.swapaxes(scores, -1, -2)


class Functional:
    """The functional test on real text: per head, Pearson r over pairs (i, j < i) between the attention weight
    a_ij the head places on key j and PMI(x_i, x_j) from the corpus bigram counts, after removing per-query,
    per-distance and (with key_groups) per-key-group means from both (:class:`PairDesign`). Null: the head's
    W_Q/W_K rotated on the residual side as in the token-space test, its scores recomputed with the residual stream
    into the layer held at the model's values (float32 for the draws, float64 for the observed heads)."""

    def __init__(self, C, windows: np.ndarray, frame: np.ndarray, exclude=(), smoothing: float = 1.0,
                 key_groups: np.ndarray | None = None):
        self.windows = np.asarray(windows)
        self.design = PairDesign(self.windows, exclude, key_groups)
        pmi = pmi_pairs(C, self.design.current, self.design.preceding, smoothing)
        self.pmi_res = self.design.residual(self.design.to_layout(pmi))
        self.U = frame

    def r_of_probs(self, probs: np.ndarray) -> np.ndarray:
        """r for attention probabilities (..., B, T, T) -> (...)."""
        return self.design.correlation(probs, self.pmi_res)

    def layer_test(self, h: np.ndarray, Qf: np.ndarray, Kf: np.ndarray, draws: tuple, chunk: int = 10,
                   bq: np.ndarray | None = None) -> tuple:
        """Heads (m, d_h, d) in frame coordinates reading the held input h (B, T, d) (frame coordinates), with query
        biases bq (m, d_h) or none: observed r (m,) and null (m, n_draws) (the rotations act on the residual side;
        the biases stay)."""
        r = self.r_of_probs(causal_softmax(head_scores(h, Qf, Kf, bq=bq)))
        G1, G2 = draws
        h32 = h.astype(np.float32)
        null = []
        m, dh, d = Qf.shape

        def rotated(W, G):  # (m * n, d_h, d), head-major: every head times every draw, one GEMM per draw
            out = np.empty((m, G.shape[0], dh, d), dtype=np.float32)
            flat = W.reshape(m * dh, d).astype(np.float32)
            for c in range(G.shape[0]):
                out[:, c] = (flat @ G[c].astype(np.float32)).reshape(m, dh, d)
            return out.reshape(m * G.shape[0], dh, d)

        for s in range(0, G1.shape[0], chunk):
            n = min(chunk, G1.shape[0] - s)
            Qd, Kd = rotated(Qf, G1[s:s + n]), rotated(Kf, G2[s:s + n])
            bq_d = None if bq is None else np.repeat(bq, n, axis=0)  # head-major, as Qd
            probs = causal_softmax_keys_first(head_scores(h32, Qd, Kd, keys_first=True, bq=bq_d))
            null.append(self.r_of_probs(probs).reshape(Qf.shape[0], n))
        return r, np.concatenate(null, axis=1)

    def test(self, weights: dict, n_head: int, draws: tuple, heads=None,
             activation: str = "gelu") -> tuple[np.ndarray, np.ndarray]:
        """Observed r and null (rows: the heads, layer-major; all heads or the given indices) of a model: one
        forward pass, then per layer only the heads' scores on the held residual stream."""
        hs, _, _ = forward_attention(weights, self.windows, n_head, activation=activation)
        Q, K, _ = head_weights(weights, n_head)
        bq = head_query_biases(weights, n_head)
        heads = np.arange(Q.shape[0]) if heads is None else np.asarray(heads)
        r, null = [], []
        for layer in sorted(set(heads // n_head)):
            idx = heads[heads // n_head == layer]
            rr, nn = self.layer_test(hs[layer] @ self.U, Q[idx] @ self.U, K[idx] @ self.U, draws,
                                     bq=None if bq is None else bq[idx])
            r.append(rr)
            null.append(nn)
        return np.concatenate(r), np.concatenate(null)


# ----------------------------------------------------------------------------- calibration models

def norm_matched_gaussian_heads(Q: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> tuple:
    """Every head's W_Q,h and W_K,h replaced by i.i.d. Gaussian draws scaled to that head's Frobenius norms."""
    def draw(W):
        G = rng.standard_normal(W.shape)
        return G * (np.linalg.norm(W, axis=(1, 2)) / np.linalg.norm(G, axis=(1, 2)))[:, None, None]
    return draw(Q), draw(K)


def planted_routing_head(ts: TokenSpace, d_head: int, norm: float, rtol: float = 1e-8) -> tuple:
    """A head that routes by the corpus's preceding-token PMI: the bilinear form M of rank ≤ d_head minimising
    ‖Xc M Xcᵀ − S‖ (with Xc = A Σ Bᵀ: the best rank-d_head approximation N of Aᵀ S A, M = B Σ⁻¹ N Σ⁻¹ Bᵀ over the
    directions Xc sees), scaled to ‖M‖_F = norm and factored as M = W_Qᵀ W_K / √d_h, the singular values split
    evenly between the two factors.
    Returns (W_Q,h, W_K,h), each (d_head, d), residual coordinates."""
    A, sig, Bt = np.linalg.svd(ts.Xc, full_matrices=False)
    keep = sig > rtol * sig[0]
    A, sig, Bt = A[:, keep], sig[keep], Bt[keep]
    u, s, vt = np.linalg.svd(A.T @ ts.S @ A)
    k = min(d_head, s.size)
    left = Bt.T @ (u[:, :k] / sig[:, None])      # M = left diag(s) rightᵀ
    right = Bt.T @ (vt[:k].T / sig[:, None])
    scale = norm / np.linalg.norm((left * s[:k]) @ right.T)
    Wq = np.zeros((d_head, ts.Xc.shape[1]))
    Wk = np.zeros_like(Wq)
    Wq[:k] = (left * np.sqrt(s[:k] * scale)).T
    Wk[:k] = np.sqrt(d_head) * (right * np.sqrt(s[:k] * scale)).T
    return Wq, Wk


# ----------------------------------------------------------------------------- everything, per model

def _fpr(summaries: list) -> dict:
    """False-positive rates over calibration models: fraction of all heads significant, of models with any."""
    sig = np.array([s["significant"] for s in summaries])
    return dict(fpr_heads=float(sig.mean()) if sig.size else None,
                fpr_models=float(sig.any(1).mean()) if sig.size else None, n_fpr_models=len(summaries))


def _token_columns(s: dict) -> dict:
    """Per-head columns of the token-space test: r, qk_null_mean, qk_null_sd, qk_z, qk_p, direction, significant."""
    return {"r": s["r"], "qk_null_mean": s["null_mean"], "qk_null_sd": s["null_sd"], "qk_z": s["z"],
            "qk_p": s["p"], "direction": s["direction"], "significant": s["significant"]}


def _functional_columns(s: dict) -> dict:
    """Per-head columns of the functional test, functional_{r, null_mean, null_sd, z, p, direction, significant}."""
    return {f"functional_{k}": s[k] for k in ("r", "null_mean", "null_sd", "z", "p", "direction", "significant")}


def attention_heads(weights: dict, C, top_idx: np.ndarray, n_head: int, *, step0: dict | None = None,
                    val_ids: np.ndarray | None = None, exclude=(), n_draws: int = 200, seed: int = 0,
                    fpr_models: int = 20, windows: int = 32, functional_draws: int | None = 100,
                    functional_fpr_models: int | None = None, key_bins: int | None = 20, smoothing: float = 1.0,
                    fdr: float = 0.05, label_bins: np.ndarray | None = None,
                    label_test: bool = True, activation: str = "gelu",
                    window_tokens: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Every head of a model (LayerNorm-folded weights) against the null over attention.

    Token space always; the functional test when val_ids is given (up to `windows` windows of the model's context,
    or of its first window_tokens positions when given: causal attention there does not depend on later tokens, and
    the pairs grow as the square of the window, so a 1,024-token GPT-2 context is read in windows of 128;
    the first functional_draws of the same rotations (None: all); per-key-group means removed too, the groups being
    key_bins log-frequency strata of the key token, as double-centring removes the key's column effect in token
    space; None: per-query and per-distance means only). step0: the same run's folded step-0 weights,
    whose W_Q/W_K are put into this model (the reference: what random QK on this model's embedding gives).
    label_test: also the label-permutation test (label_* columns).
    Calibration: fpr_models models whose every head is a norm-matched Gaussian draw (drawn in the residual frame, so
    a residual rotation leaves the calibration unchanged too; functional_fpr_models of them for the functional test,
    default all) and a planted routing head in place of layer 0 head 0.
    Returns (per-head table, calibration {'token_space': {...}, 'functional': {...}})."""
    X = layernorm(np.asarray(weights["W_E"], dtype=np.float64)[top_idx])
    ts = TokenSpace(X, preceding_token_statistic(C, top_idx, "pmi", smoothing))
    Q, K, keys = head_weights(weights, n_head)
    draws = rotation_draws(Q.shape[-1], n_draws, seed)
    rng = np.random.default_rng([seed, 21])
    kept = (0 if val_ids is None else fpr_models if functional_fpr_models is None
            else min(fpr_models, int(functional_fpr_models)))
    M_norms = np.linalg.norm(np.swapaxes(Q, 1, 2) @ K, axis=(1, 2)) / np.sqrt(Q.shape[1])
    planted = planted_routing_head(ts, Q.shape[1], float(np.median(M_norms)))
    Q0, K0 = head_weights(step0, n_head)[:2] if step0 is not None else (None, None)
    step0_is_this = step0 is not None and np.array_equal(Q0, Q) and np.array_equal(K0, K)  # the step-0 snapshot

    def token_test(q, k):
        return null_summary(*ts.test(q, k, draws), fdr)

    token = token_test(Q, K)
    cols = _token_columns(token)
    random_heads, random_tests = [], []  # drawn one model at a time (a GPT-2-sized stack is 113 MB per model)
    for i in range(fpr_models):
        q, k = (W @ ts.U.T for W in norm_matched_gaussian_heads(Q, K, rng))
        random_tests.append(token_test(q, k))
        if i < kept:  # the functional test's calibration models: the first of the same draws
            random_heads.append((q, k))
    calibration = {"token_space": {**_fpr(random_tests),
                                   **_planted(token_test(planted[0][None], planted[1][None]), token["p"], fdr)}}
    if step0 is not None:
        s0 = token if step0_is_this else token_test(Q0, K0)
        cols.update(r_step0_qk=s0["r"], step0_qk_z=s0["z"], step0_qk_p=s0["p"], step0_qk_significant=s0["significant"])
    if val_ids is not None:
        key_groups = None if key_bins is None else log_frequency_bins(np.asarray(C.sum(axis=1)).ravel(), key_bins)
        ctx = int(np.asarray(weights["W_pos"]).shape[0])
        length = ctx if window_tokens is None else min(int(window_tokens), ctx)
        fn = Functional(C, validation_windows(val_ids, length, windows),
                        ts.U, exclude, smoothing, key_groups)
        f_draws = tuple(G[:functional_draws] for G in draws)

        def functional_test(w, heads=None):
            return null_summary(*fn.test(w, n_head, f_draws, heads, activation), fdr)

        main = functional_test(weights)
        cols.update(_functional_columns(main))
        Qp, Kp = Q.copy(), K.copy()
        Qp[0], Kp[0] = planted
        calibration["functional"] = {
            **_fpr([functional_test(with_heads(weights, q, k)) for q, k in random_heads]),
            **_planted(functional_test(with_heads(weights, Qp, Kp), heads=[0]), main["p"], fdr),
            "n_pairs": fn.design.n_pairs, "n_null_draws": int(f_draws[0].shape[0])}
        if step0 is not None:
            s0 = main if step0_is_this else functional_test(with_heads(weights, Q0, K0))
            cols.update(functional_r_step0_qk=s0["r"], functional_step0_qk_z=s0["z"],
                        functional_step0_qk_p=s0["p"], functional_step0_qk_significant=s0["significant"])
    table = pd.DataFrame(keys, columns=["layer", "head"])
    for k, v in cols.items():
        table[k] = v
    if label_test:  # the older label-permutation test, kept beside (not needed by the trajectory)
        label = attention_vs_corpus(weights, C, top_idx, n_head, smoothing, label_bins, n_draws, seed, fdr)
        for k in ("null_mean", "null_sd", "z", "p", "p_normal", "significant_bh", "n_draws"):
            table[f"label_{k}"] = label[k].to_numpy()
    table["n_null_draws"] = n_draws
    return table, calibration


def _planted(planted: dict, p_heads: np.ndarray, fdr: float) -> dict:
    """Power entries: the planted head's r and z, and whether it is significant after BH when it takes the place
    of head 0 (layer 0) with every other head's p as it is."""
    p = np.array(p_heads, dtype=np.float64)
    p[0] = planted["p"][0]
    return dict(planted_r=float(planted["r"][0]), planted_z=float(planted["z"][0]),
                planted_detected=bool(benjamini_hochberg(p, fdr)[0]))
