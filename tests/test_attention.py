import numpy as np
import scipy.sparse as sp

from corpus_weights.measure.attention import (
    next_token_logprob, preceding_token_statistic, qk_factors, qk_residual_forms, token_space_scores,
)
from corpus_weights.measure.controls import positive_controls
from corpus_weights.core.linalg import double_centre, row_centre
from corpus_weights.core.nulls import log_frequency_bins
from corpus_weights.measure.residual_space import layernorm


def markov_counts(rng, V=30, n=10**6):
    T = rng.dirichlet(np.full(V, 0.3), size=V)
    w, v = np.linalg.eig(T.T)
    pi = np.abs(np.real(v[:, np.argmax(np.real(w))]))
    pi /= pi.sum()
    return sp.csr_matrix(np.round(pi[:, None] * T * n)), pi


def test_qk_forms_match_heads():
    rng = np.random.default_rng(1)
    d, H = 8, 2
    WQ, WK = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    Ms = qk_residual_forms(WQ, WK, H)
    x, y = rng.standard_normal(d), rng.standard_normal(d)
    q, k = WQ @ x, WK @ y
    assert np.isclose(x @ Ms[1] @ y, q[4:] @ k[4:] / 2)
    X = rng.standard_normal((10, d))
    F, G = qk_factors(WQ, WK, H, X)
    assert np.allclose(F[0] @ G[0].T, double_centre(token_space_scores(Ms[0], X)))
    ln = 1 + rng.random(d)
    F2, G2 = qk_factors(WQ, WK, H, X, ln_w=ln)  # unfolded weights: the LN weight scales both sides
    assert np.allclose(F2, qk_factors(WQ * ln, WK * ln, H, X)[0]) and not np.allclose(F2, F)
    assert np.allclose(G2, qk_factors(WQ * ln, WK * ln, H, X)[1])


def test_statistics_orientation():
    C = sp.csr_matrix(np.array([[0, 5, 0], [1, 0, 3], [2, 0, 0]], float))  # C[a,b] = a followed by b
    top = np.arange(3)
    S = preceding_token_statistic(C, top, kind="logprob", smoothing=1e-12)
    assert np.isclose(np.exp(S[1, 0]), 1.0)  # current token 1 is always preceded by 0
    T = next_token_logprob(C, top, smoothing=1e-12)
    assert np.isclose(np.exp(T[1, 2]), 0.75)
    P = preceding_token_statistic(C, top, kind="pmi")
    S1 = preceding_token_statistic(C, top, kind="logprob")
    assert np.allclose(row_centre(P - S1), row_centre(P - S1)[0:1])  # differ by a column term only
    assert np.allclose(double_centre(P), double_centre(S1))


def planted_control_model(rng, C, pi, V, d):
    """A model with no blocks whose one-token log-probabilities over the top tokens track log T exactly."""
    top = np.argsort(-pi, kind="stable")
    W_E = rng.standard_normal((V, d))
    X = layernorm(W_E[top])
    W_U = np.zeros((V, d))
    W_U[top] = (np.linalg.pinv(X) @ next_token_logprob(C, top)).T
    return {"W_E": W_E, "W_U": W_U, "W_pos": np.zeros((4, d)), "ln_final.w": np.ones(d)}, top


def test_positive_controls_on_a_planted_model_and_on_noise():
    rng = np.random.default_rng(2)
    V, d = 30, 64
    C, pi = markov_counts(rng, V)
    w, top = planted_control_model(rng, C, pi, V, d)
    bins = log_frequency_bins(np.asarray(C.sum(1)).ravel()[top], 3)
    pc = positive_controls(w, C, pi, top, bins, 200, seed=0)
    assert pc["bigram"]["r"] > 0.9 and pc["bigram"]["z"] > 5 and pc["bigram"]["p"] < 0.01
    assert np.isclose(pc["direct_over_full"], 1, atol=0.05)  # no blocks: everything lives in the direct path
    w["W_U"] = rng.standard_normal(w["W_U"].shape)
    pc0 = positive_controls(w, C, pi, top, bins, 200, seed=0)
    assert abs(pc0["bigram"]["z"]) < 3


def test_qk_and_ov_circuits_planted():
    """Scores from the QK circuit equal the model's own per-head scores q·k/√d_h; the OV circuit equals the head's
    value path; both sum over heads to the layer's full products; an unfolded ln1 weight is applied."""
    from corpus_weights.measure.circuits import ov_circuit, qk_circuit

    rng = np.random.default_rng(0)
    d, H = 12, 3
    dh = d // H
    W = {f"L0.{k}": rng.standard_normal((d, d)) for k in ("W_Q", "W_K", "W_V", "W_O")}
    x, y = rng.standard_normal(d), rng.standard_normal(d)
    QK, OV = qk_circuit(W, 0, H), ov_circuit(W, 0, H)
    q, k, v = W["L0.W_Q"] @ x, W["L0.W_K"] @ y, W["L0.W_V"] @ y
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        assert np.isclose(x @ QK[h] @ y, q[sl] @ k[sl] / np.sqrt(dh))
        assert np.allclose(OV[h] @ y, W["L0.W_O"][:, sl] @ v[sl])
    assert np.allclose(QK.sum(0) * np.sqrt(dh), W["L0.W_Q"].T @ W["L0.W_K"])
    assert np.allclose(OV.sum(0), W["L0.W_O"] @ W["L0.W_V"])
    g = rng.uniform(0.5, 2.0, d)  # an unfolded LayerNorm weight scales the residual side of Q, K and V
    Wg = {**W, "L0.ln1.w": g}
    assert np.isclose(x @ qk_circuit(Wg, 0, H)[1] @ y, (g * x) @ QK[1] @ (g * y))
    assert np.allclose(ov_circuit(Wg, 0, H)[2] @ y, OV[2] @ (g * y))
