"""Every estimator earns trust twice: on pure noise (model independent of the corpus) it lands inside its null, and a
planted effect is detected. All calls go to the pipeline's own functions."""
import numpy as np
import pytest
import scipy.sparse as sp

from corpus_weights.measure.alignment import (
    debiased_linear_cka, fit_ridge_map, plugin_linear_cka, procrustes_heldout, stratified_halves, top_tokens,
    vocabulary_alignment,
)
from corpus_weights.measure.analysis import projection_table
from corpus_weights.measure.attention import attention_vs_corpus, next_token_logprob, preceding_token_statistic
from corpus_weights.measure.controls import bigram_check, unigram_check, weighted_double_centre
from corpus_weights.core.linalg import double_centre
from corpus_weights.core.nulls import benjamini_hochberg, log_frequency_bins
from corpus_weights.measure.residual_space import layernorm
from test_residual_space import small_model


def zipf_pi(V, rng, s=1.1):
    pi = 1.0 / np.arange(1, V + 1) ** s
    return rng.permutation(pi / pi.sum())


def markov_corpus(rng, V=60, n=400_000, concentration=0.3):
    """Counts of a Markov chain with a known transition table T (Zipf-like stationary distribution)."""
    T = rng.dirichlet(np.full(V, concentration), size=V)
    w, v = np.linalg.eig(T.T)
    pi = np.abs(np.real(v[:, np.argmax(np.real(w))]))
    pi /= pi.sum()
    return sp.csr_matrix(np.round(pi[:, None] * T * n)), pi, T


# ----------------------------------------------------------------------------- vocabulary map

def test_stratified_halves_split_every_frequency_pair():
    tokens = np.arange(20)
    a, b = stratified_halves(tokens, seed=3)
    assert a.size == b.size == 10 and not set(a) & set(b)
    for k in range(10):  # each consecutive pair (2k, 2k+1) is split across the halves
        assert (2 * k in a) != (2 * k + 1 in a)
    assert top_tokens(np.array([0.1, 0.5, 0.4]), 2, exclude=[1]).tolist() == [2, 0]


def test_vocab_map_and_procrustes_on_noise_are_calibrated():
    """A model independent of the corpus: over 20 seeds the p-values spread over (0, 1) (mean ≈ 0.5, few below 0.05)
    and the held-out R² stays ≈ 0 (ridge with CV; unregularised least squares gave −36 to −87 here)."""
    map_p, proc_p = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        V, dc, d = 400, 24, 16
        pi = zipf_pi(V, rng)
        E = rng.standard_normal((V, dc)) * np.linspace(3, 0.3, dc)
        W = 0.02 * rng.standard_normal((V, d))
        _, s = vocabulary_alignment(E, W, pi, top_n=300, n_bins=5, n_draws=100, seed=seed)
        assert s["vocab_map_heldout_r2"] < 0.05
        map_p.append(s["vocab_map_null"]["p"])
        proc_p.append(s["procrustes_null"]["p"])
    for ps in (np.array(map_p), np.array(proc_p)):
        assert 0.3 < ps.mean() < 0.7 and (ps < 0.05).mean() <= 0.15 and ps.max() - ps.min() > 0.5, ps


def test_vocab_map_detects_planted_linear_map():
    rng = np.random.default_rng(7)
    V, dc, d = 500, 24, 16
    pi = zipf_pi(V, rng)
    E = rng.standard_normal((V, dc)) * np.linspace(3, 0.3, dc)
    A = rng.standard_normal((dc, d)) / np.sqrt(dc)
    signal = E @ A
    W = signal + rng.standard_normal((V, d)) * signal.std()  # half the variance planted
    arrays, s = vocabulary_alignment(E, W, pi, top_n=400, n_bins=5, n_draws=100, seed=0, E_out=rng.standard_normal(
        (V, dc)))
    assert 0.25 < s["vocab_map_heldout_r2"] < 0.75
    assert s["vocab_map_null"]["p"] < 0.01
    assert s["procrustes_null"]["p"] < 0.01
    assert s["vocab_map_heldout_r2_E_out"] < 0.1 < s["vocab_map_heldout_r2_E_in_out"]
    assert np.isclose(fit_ridge_map(E, signal, arrays["fit_idx"], arrays["test_idx"])["heldout_r2"], 1, atol=1e-3)


def test_procrustes_recovers_rotation_heldout():
    rng = np.random.default_rng(1)
    E = rng.standard_normal((300, 12))
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    fit, test = stratified_halves(np.arange(300), 0)
    assert procrustes_heldout(E, 3 * E @ Q + 1, fit, test)["heldout_cos"] > 0.999
    assert abs(procrustes_heldout(E, rng.standard_normal((300, 12)), fit, test)["heldout_cos"]) < 0.25


def test_debiased_cka_is_unbiased_where_plugin_is_not():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((60, 40)), rng.standard_normal((60, 40))  # n comparable to the widths
    assert plugin_linear_cka(X, Y) > 0.3  # the plug-in estimate sees structure in noise
    assert abs(debiased_linear_cka(X, Y)) < 0.1
    Q = np.linalg.qr(rng.standard_normal((40, 40)))[0]
    assert np.isclose(debiased_linear_cka(X, 2 * X @ Q), 1)


# ----------------------------------------------------------------------------- aligned-basis null

def _anisotropic_model(rng, V, d, L=2):
    """A model whose weights share W_E's dominant directions (as trained models do)."""
    w = small_model(rng, V=V, d=d, L=L)
    scales = np.linspace(4, 0.25, d)
    R = np.linalg.qr(rng.standard_normal((d, d)))[0]
    w["W_E"] = (rng.standard_normal((V, d)) * scales) @ R
    for k in list(w):
        if k.startswith("L") and k.split(".")[1] in ("W_Q", "W_K", "W_V", "W_in"):
            w[k] = (rng.standard_normal(w[k].shape) * scales) @ R
        elif k.endswith("ln1.w") or k.endswith("ln2.w") or k == "ln_final.w":
            w[k] = np.ones(d)
    return w


def _shares(w, E, pi, seed, draws=20):
    mu = pi @ E
    eig = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))[1][:, ::-1]
    arrays, _ = vocabulary_alignment(E, w["W_E"], pi, top_n=300, n_bins=5, n_draws=0, seed=seed, eigvecs=eig,
                                     basis_draws=draws)
    t = projection_table(w, w, arrays["basis"], arrays["null_bases"], eig, mu, pi, K=4, random_draws=5, seed=seed)
    row = lambda b: t[(t.basis == b) & (t.target == "W") & (t.matrix == "pooled_nonembed")].iloc[0]  # noqa: E731
    return row("corpus_aligned"), row("corpus_null"), row("random")


def test_aligned_basis_from_unrelated_corpus_sits_inside_its_null():
    rng = np.random.default_rng(3)
    V, d = 400, 16
    w = _anisotropic_model(rng, V, d)
    pi = zipf_pi(V, rng)
    E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)  # a corpus unrelated to the model
    aligned, null, random = _shares(w, E, pi, seed=0)
    assert aligned["share"] > 1.3 * random["share"]  # the aligned basis inherits W_E's dominant directions ...
    assert aligned["p_vs_null"] > 0.05  # ... and so does its null: nothing corpus-specific
    assert abs(aligned["share"] - null["share"]) < 3 * null["share_sd"]


def test_aligned_basis_from_related_corpus_beats_its_null():
    rng = np.random.default_rng(4)
    V, d = 400, 16
    pi = zipf_pi(V, rng)
    E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)
    w = _anisotropic_model(rng, V, d)
    A = rng.standard_normal((d, d))
    w["W_E"] = E @ A + 0.3 * rng.standard_normal((V, d))  # the model's embedding is a linear image of the corpus's
    mu = pi @ E
    U = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))[1][:, ::-1][:, :4]
    B = np.linalg.qr(A.T @ U)[0]
    for k in [k for k in w if k.startswith("L") and k.split(".")[1] in ("W_Q", "W_K", "W_V", "W_in")]:
        w[k] = rng.standard_normal((w[k].shape[0], 4)) @ B.T  # layers read the corpus directions
    aligned, null, _ = _shares(w, E, pi, seed=0)
    assert aligned["p_vs_null"] < 0.05 and aligned["share"] > null["share"] + 3 * null["share_sd"]


# ----------------------------------------------------------------------------- positive controls

def test_unigram_only_logits_pass_the_unigram_check_not_the_bigram_check():
    rng = np.random.default_rng(5)
    C, pi, T = markov_corpus(rng)
    top = np.argsort(-pi, kind="stable")
    bins = log_frequency_bins(np.asarray(C.sum(1)).ravel()[top], 5)
    L = np.log(pi[top])[None, :] + rng.standard_normal(len(top))[:, None]  # log π_b + c_a: frequencies only
    uni = unigram_check(L, top, pi)
    big = bigram_check(L, C, top, pi, bins, 200, seed=0)
    assert uni["r"] > 0.99 and uni["z"] > 5
    assert abs(big["z"]) < 3


def test_planted_bigram_logits_are_detected():
    rng = np.random.default_rng(6)
    C, pi, T = markov_corpus(rng)
    top = np.argsort(-pi, kind="stable")
    bins = log_frequency_bins(np.asarray(C.sum(1)).ravel()[top], 5)
    big = bigram_check(np.log(T[np.ix_(top, top)] + 1e-4), C, top, pi, bins, 200, seed=0)
    assert big["r"] > 0.5 and big["z"] > 10 and big["p"] < 0.01


def test_bigram_check_on_noise_sits_inside_its_null():
    zs = []
    for seed in range(4):
        rng = np.random.default_rng(10 + seed)
        C, pi, _ = markov_corpus(rng)
        top = np.argsort(-pi, kind="stable")
        bins = log_frequency_bins(np.asarray(C.sum(1)).ravel()[top], 5)
        zs.append(bigram_check(rng.standard_normal((len(top), len(top))), C, top, pi, bins, 200, seed)["z"])
    assert max(abs(z) for z in zs) < 3.5 and np.std(zs) > 0.2, zs


def test_weighted_double_centring_removes_row_and_column_effects():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(7))
    S = rng.standard_normal(7)[:, None] + rng.standard_normal(7)[None, :]
    assert np.allclose(weighted_double_centre(S, w), 0)
    X = weighted_double_centre(rng.standard_normal((7, 7)), w)
    assert np.allclose(X @ w, 0) and np.allclose(w @ X, 0)
    assert np.allclose(double_centre(S), 0)


# ----------------------------------------------------------------------------- attention per head

def _attention_model(rng, C, top, V, d, n_head, planted):
    """Random one-layer model; if planted, head 0's double-centred token-space QK equals the double-centred
    preceding-token PMI exactly (possible because d_h >= N - 1)."""
    w = {"W_E": rng.standard_normal((V, d)), "W_pos": np.zeros((4, d)), "ln_final.w": np.ones(d),
         "L0.ln1.w": np.ones(d), "L0.W_Q": rng.standard_normal((d, d)), "L0.W_K": rng.standard_normal((d, d))}
    if planted:
        dh = d // n_head
        X = layernorm(w["W_E"][top])
        Xc_pinv = np.linalg.pinv(X - X.mean(0))
        U, s, Vt = np.linalg.svd(double_centre(preceding_token_statistic(C, top)))
        F = np.zeros((len(top), dh))
        G = np.zeros((len(top), dh))
        F[:, : len(s)] = U * np.sqrt(s)
        G[:, : len(s)] = Vt.T * np.sqrt(s)
        w["L0.W_Q"][:dh] = (Xc_pinv @ F).T
        w["L0.W_K"][:dh] = np.sqrt(dh) * (Xc_pinv @ G).T
    return w


def _markov_tokens(rng, V):
    """A Markov corpus, its tokens by frequency and their frequency strata."""
    C, pi, _ = markov_corpus(rng, V=V)
    top = np.argsort(-pi, kind="stable")
    return C, top, log_frequency_bins(np.asarray(C.sum(1)).ravel()[top], 4)


def test_attention_heads_on_noise_are_not_significant():
    rng = np.random.default_rng(8)
    V, d = 40, 64
    C, top, bins = _markov_tokens(rng, V)
    w = _attention_model(rng, C, top, V, d, 4, planted=False)
    for i in range(1, 4):  # more layers of noise heads
        w[f"L{i}.W_Q"], w[f"L{i}.W_K"], w[f"L{i}.ln1.w"] = (rng.standard_normal((d, d)),
                                                            rng.standard_normal((d, d)), np.ones(d))
    df = attention_vs_corpus(w, C, top, n_head=4, bins=bins, n_draws=200, seed=0)
    assert df["significant_bh"].sum() == 0
    assert df["z"].abs().max() < 4


def test_attention_detects_a_planted_head_and_only_that_head():
    rng = np.random.default_rng(9)
    V, d = 40, 128
    C, top, bins = _markov_tokens(rng, V)
    w = _attention_model(rng, C, top, V, d, 2, planted=True)
    df = attention_vs_corpus(w, C, top, n_head=2, bins=bins, n_draws=200, seed=0)
    assert df.loc[0, "r"] > 0.9 and df.loc[0, "z"] > 5 and bool(df.loc[0, "significant_bh"])
    assert not bool(df.loc[1, "significant_bh"])
    dh = d // 2
    w["L0.W_K"][:dh] *= -1  # a head attending *away* from likely predecessors is structure too (two-sided)
    df = attention_vs_corpus(w, C, top, n_head=2, bins=bins, n_draws=200, seed=0)
    assert df.loc[0, "z"] < -5 and bool(df.loc[0, "significant_bh"]) and not bool(df.loc[1, "significant_bh"])


def test_benjamini_hochberg_planted():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # thresholds q k / m with q = 0.05, m = 10: 0.005, 0.010, 0.015, ...: only the first two pass
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    # step-up: a later p under its threshold (0.035 <= 0.05) rescues an earlier one above its own (0.03 > 0.025)
    assert benjamini_hochberg(np.array([0.03, 0.035]), 0.05).all()
    assert benjamini_hochberg(np.array([0.035, 0.03]), 0.05).all()
    assert not benjamini_hochberg(np.array([0.5, 0.6]), 0.05).any()


def test_next_token_logprob_orientation():
    C = sp.csr_matrix(np.array([[0, 5, 0], [1, 0, 0], [0, 0, 2]], dtype=float))
    top = np.arange(3)
    L = next_token_logprob(C, top, smoothing=1e-9)
    assert np.isclose(np.exp(L[0, 1]), 1.0, atol=1e-6)  # after token 0 always token 1
    P = preceding_token_statistic(C, top, kind="logprob", smoothing=1e-9)
    assert np.isclose(np.exp(P[1, 0]), 1.0, atol=1e-6)  # before token 1 always token 0


def test_ridge_cv_choice_matches_brute_force():
    """The closed-form CV error of RidgeFits.choose_lambda equals refitting ridge on every fold for every λ."""
    from corpus_weights.measure.alignment import RidgeFits

    rng = np.random.default_rng(12)
    E = rng.standard_normal((200, 10)) * np.linspace(3, 0.2, 10)
    W = E @ rng.standard_normal((10, 6)) + 2.0 * rng.standard_normal((200, 6))
    fit, test = stratified_halves(np.arange(200), 0)
    ridge = RidgeFits(E, fit, test, folds=5, seed=3)
    X, Y = E[fit] - E[fit].mean(0), W[fit] - W[fit].mean(0)
    fold_of = np.random.default_rng(3).permutation(len(fit)) % 5
    brute = []
    for alpha in ridge.grid:
        lam, err = alpha * ridge.scale, 0.0
        for f in range(5):
            tr, te = fold_of != f, fold_of == f
            mx, my = X[tr].mean(0), Y[tr].mean(0)
            Xc = X[tr] - mx
            A = np.linalg.solve(Xc.T @ Xc + lam * np.eye(10), Xc.T @ (Y[tr] - my))
            err += (((X[te] - mx) @ A - (Y[te] - my)) ** 2).sum()
        brute.append(err)
    assert np.isclose(ridge.choose_lambda(Y), ridge.grid[int(np.argmin(brute))] * ridge.scale)
    assert ridge.grid[0] < ridge.choose_lambda(Y) / ridge.scale < ridge.grid[-1]  # an interior optimum here


# ----------------------------------------------------------------------------- the aligned share with its split spread

def _aligned_row(w, E, pi, seed, draws=20, splits=5):
    mu = pi @ E
    eig = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))[1][:, ::-1]
    arrays, _ = vocabulary_alignment(E, w["W_E"], pi, top_n=300, n_bins=5, n_draws=0, seed=seed, eigvecs=eig,
                                     basis_draws=draws, n_splits=splits)
    t = projection_table(w, w, arrays["basis"], arrays["null_bases"], eig, mu, pi, K=4, random_draws=2, seed=seed,
                         split_bases=arrays["split_bases"], min_effect=0.05)
    return t[(t.basis == "corpus_aligned") & (t.target == "W") & (t.matrix == "pooled_nonembed")].iloc[0]


def test_z_total_of_unrelated_corpora_sits_inside_its_null():
    """Pure noise (the corpus unrelated to an anisotropic model), 8 seeds: z_total stays inside ±3, spreads around 0,
    and the split spread is part of the total."""
    z = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        V, d = 400, 16
        w = _anisotropic_model(rng, V, d)
        pi = zipf_pi(V, rng)
        E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)
        row = _aligned_row(w, E, pi, seed)
        assert row.n_splits == 5 and row.share_splits_sd > 0 and row.share_total_sd > row.share_splits_sd
        z.append(row.z_total)
    z = np.array(z)
    assert (np.abs(z) < 3).all() and abs(z.mean()) < 1.5 and z.std() > 0.3, z


def _planted_corpus_model(layer_noise):
    """The model's embedding is a linear image of the corpus's (plus noise) and its layers read the corpus's top-4
    directions, plus `layer_noise` of isotropic noise."""
    rng = np.random.default_rng(4)
    V, d = 400, 16
    pi = zipf_pi(V, rng)
    E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)
    w = _anisotropic_model(rng, V, d)
    A = rng.standard_normal((d, d))
    w["W_E"] = E @ A + 0.3 * rng.standard_normal((V, d))
    mu = pi @ E
    U = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))[1][:, ::-1][:, :4]
    B = np.linalg.qr(A.T @ U)[0]
    for k in [k for k in w if k.startswith("L") and k.split(".")[1] in ("W_Q", "W_K", "W_V", "W_in")]:
        w[k] = rng.standard_normal((w[k].shape[0], 4)) @ B.T + layer_noise * rng.standard_normal(w[k].shape)
    return w, E, pi


def test_z_total_detects_a_planted_corpus_basis():
    row = _aligned_row(*_planted_corpus_model(0.5), seed=0)
    assert row.z_total > 3 and row.mde == 0  # already detected: no excess needs planting


def test_power_sees_a_planted_excess_the_model_alone_does_not_reach():
    """Weak corpus structure (z_total < 3 on its own): planting δ = 0.05 on top is detected, so the test has the power
    to state a 0.05 excess at this size, and the minimum detectable excess lies between 0 and 0.05."""
    row = _aligned_row(*_planted_corpus_model(2.0), seed=0)
    assert row.z_total < 3 < row.planted_z and row.planted_detected and 0 < row.mde < 0.05
