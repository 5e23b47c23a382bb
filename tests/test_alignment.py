import numpy as np
import scipy.sparse as sp

from corpus_weights.alignment import (
    attention_vs_corpus, direct_path_logits, fit_vocab_map, layernormed, linear_cka,
    next_token_logprob, positive_control, preceding_token_statistic, procrustes_r2,
    qk_factors, qk_residual_forms, row_centre, row_centred_pearson, token_space_scores,
)
from corpus_weights.nulls import log_frequency_bins


def markov_counts(rng, V=30, n=10**6):
    T = rng.dirichlet(np.full(V, 0.3), size=V)
    w, v = np.linalg.eig(T.T)
    pi = np.abs(np.real(v[:, np.argmax(np.real(w))]))
    pi /= pi.sum()
    C = np.round(pi[:, None] * T * n)
    return sp.csr_matrix(C), pi


def unit_ln_embeddings(rng, V, d):
    X = rng.standard_normal((V, d))
    X -= X.mean(1, keepdims=True)
    return X / np.sqrt((X * X).mean(1, keepdims=True))


def planted_model(rng, V=30, d=64):
    C, pi = markov_counts(rng, V)
    top = np.argsort(-pi, kind="stable")
    W_E = unit_ln_embeddings(rng, V, d)
    X = layernormed(W_E[top])
    Xp = np.linalg.pinv(X)
    L = row_centre(next_token_logprob(C, top))
    W_U = np.zeros((V, d))
    W_U[top] = (Xp @ L).T
    S = preceding_token_statistic(C, top)
    M = Xp @ S @ Xp.T
    w = {"W_E": W_E, "W_U": W_U, "W_pos": np.zeros((4, d)), "ln_final.w": np.ones(d),
         "L0.W_Q": np.eye(d), "L0.W_K": np.sqrt(d) * M, "L0.ln1.w": np.ones(d)}
    return w, C, pi, top


def test_fit_vocab_map_recovers_planted_map():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((500, 12))
    A = rng.standard_normal((12, 20))
    pi = rng.dirichlet(np.ones(500))
    W = E @ A + 3.0
    fit = fit_vocab_map(E, W, pi, top_n=200, seed=1)
    assert fit["heldout_r2"] > 1 - 1e-9 and np.allclose(fit["A"], A)
    assert len(np.intersect1d(fit["train_idx"], fit["test_idx"])) == 0
    noisy = fit_vocab_map(E, rng.standard_normal((500, 20)), pi, top_n=200, seed=1)
    assert noisy["heldout_r2"] < 0.3
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    assert np.isclose(procrustes_r2(E, 2 * E @ Q + 1, pi, fit["top_idx"])["r2"], 1)
    assert np.isclose(linear_cka(E, E @ Q), 1) and np.isclose(linear_cka(E, E @ Q, pi), 1)
    assert linear_cka(E, rng.standard_normal((500, 12))) < 0.2


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
    assert np.allclose(F[0] @ G[0].T, row_centre(token_space_scores(Ms[0], X)))


def test_statistics_orientation():
    C = sp.csr_matrix(np.array([[0, 5, 0], [1, 0, 3], [2, 0, 0]], float))  # C[a,b] = a followed by b
    top = np.arange(3)
    S = preceding_token_statistic(C, top, smoothing=0.0 + 1e-12)
    # current token 1 is always preceded by 0
    assert np.isclose(np.exp(S[1, 0]), 1.0)
    T = next_token_logprob(C, top, smoothing=1e-12)
    assert np.isclose(np.exp(T[1, 2]), 0.75)
    P = preceding_token_statistic(C, top, kind="pmi")
    S1 = preceding_token_statistic(C, top)
    assert np.allclose(row_centre(P - S1), row_centre(P - S1)[0:1])  # differ by a column term only


def test_planted_positive_control_and_attention():
    rng = np.random.default_rng(2)
    w, C, pi, top = planted_model(rng)
    counts = np.asarray(C.sum(1)).ravel()[top]
    bins = log_frequency_bins(counts, 3)
    pc = positive_control(w, C, top, bins=bins, n_draws=200, seed=0)
    assert pc["r"] > 0.999 and pc["p"] < 0.01 and pc["z"] > 5
    L = direct_path_logits(w["W_E"], w["W_U"], top)
    assert np.isclose(row_centred_pearson(L, next_token_logprob(C, top)), pc["r"])
    df = attention_vs_corpus(w, C, top, n_head=1, bins=bins, n_draws=200, seed=0)
    assert df.r.iloc[0] > 0.999 and df.p.iloc[0] < 0.01
    # a structureless model: W_U random
    w["W_U"] = rng.standard_normal(w["W_U"].shape)
    pc0 = positive_control(w, C, top, bins=bins, n_draws=200, seed=0)
    assert abs(pc0["z"]) < 4
