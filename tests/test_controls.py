"""The positive controls (measure/controls.py) with planted answers: exact correlations by construction, the
unigram check's Fisher z, the direct path for tied and untied unembeddings, and every field of the controls record."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from corpus_weights.measure.controls import (bigram_check, direct_path_logits, positive_controls, unigram_check,
                                             weighted_double_centre, weighted_double_centred_r)
from corpus_weights.measure.attention import next_token_logprob
from corpus_weights.measure.loss_ladder import log_softmax, one_token_logits
from corpus_weights.measure.residual_space import layernorm

N = 12


def weights_and_centred(rng):
    w = rng.random(N) + 0.1
    w /= w.sum()
    A = weighted_double_centre(rng.standard_normal((N, N)), w)
    return w, A


def test_weighted_double_centring_removes_weighted_row_and_column_means():
    rng = np.random.default_rng(0)
    w, A = weights_and_centred(rng)
    assert np.allclose(A @ w, 0) and np.allclose(w @ A, 0)
    row, col = rng.standard_normal(N), rng.standard_normal(N)
    assert np.allclose(weighted_double_centre(A + row[:, None] + col[None, :], w), A)


def test_weighted_r_is_exactly_the_planted_correlation():
    """B = A + c N with N weighted-double-centred and orthogonal to A under w wᵀ: r = 1/√(1 + c² |N|²/|A|²)
    whatever row and column effects are added, −1 for −A, and unchanged by a positive scale."""
    rng = np.random.default_rng(1)
    w, A = weights_and_centred(rng)
    W2 = np.outer(w, w)
    M = weighted_double_centre(rng.standard_normal((N, N)), w)
    Nn = M - (W2 * M * A).sum() / (W2 * A * A).sum() * A  # still double-centred (a combination of two)
    c = 0.7
    expected = 1 / np.sqrt(1 + c**2 * (W2 * Nn * Nn).sum() / (W2 * A * A).sum())
    B = 3.0 * (A + c * Nn) + rng.standard_normal(N)[:, None] + rng.standard_normal(N)[None, :]
    assert weighted_double_centred_r(A, B, w) == pytest.approx(expected, rel=1e-12)
    assert weighted_double_centred_r(A, A, w) == pytest.approx(1.0, rel=1e-12)
    assert weighted_double_centred_r(A, -2 * A, w) == pytest.approx(-1.0, rel=1e-12)


def test_unigram_check_r_and_fisher_z_by_hand():
    rng = np.random.default_rng(2)
    pi = rng.random(40) + 0.01
    pi /= pi.sum()
    top = np.argsort(-pi)[:N]
    logp = np.log(pi[top])
    # every row predicts log π (plus a row constant): the π-weighted column mean is log π + const, r = 1
    L = logp[None, :] + rng.standard_normal(N)[:, None]
    out = unigram_check(L, top, pi)
    assert out["r"] == pytest.approx(1.0, rel=1e-12) and out["n"] == N
    assert out["z"] == pytest.approx(np.arctanh(0.999999) * np.sqrt(N - 3), rel=1e-12)  # clipped at ±0.999999
    assert unigram_check(-L, top, pi)["z"] == pytest.approx(-np.arctanh(0.999999) * np.sqrt(N - 3), rel=1e-12)
    # a planted correlation: columns = log π + c n with n ⟂ log π (centred)
    y = logp - logp.mean()
    noise = rng.standard_normal(N)
    noise -= noise.mean()
    noise -= (noise @ y) / (y @ y) * y
    c = 0.4
    out = unigram_check(np.tile(logp + c * noise, (N, 1)), top, pi)
    r = 1 / np.sqrt(1 + c**2 * (noise @ noise) / (y @ y))
    assert out["r"] == pytest.approx(r, rel=1e-12)
    assert out["z"] == pytest.approx(np.arctanh(r) * np.sqrt(N - 3), rel=1e-12)
    three = unigram_check(rng.standard_normal((3, 3)), top[:3], pi)  # n − 3 = 0: the factor is √1, not √0
    assert three["n"] == 3 and three["z"] == pytest.approx(np.arctanh(np.clip(three["r"], -0.999999, 0.999999)))


def test_direct_path_tied_and_untied():
    rng = np.random.default_rng(3)
    V, d = 20, 6
    W_E, ln_w, W_U = rng.standard_normal((V, d)), rng.random(d) + 0.5, rng.standard_normal((V, d))
    top = np.array([3, 7, 1, 15])
    X = layernorm(W_E[top])
    E32 = W_E.astype(np.float32).astype(np.float64)  # what a float32 checkpoint holds
    tied = direct_path_logits({"W_E": W_E.astype(np.float32), "ln_final.w": ln_w}, top)
    assert tied.dtype == np.float64
    assert np.allclose(tied, layernorm(E32[top]) @ (E32[top] * ln_w).T, rtol=1e-12)
    untied = direct_path_logits({"W_E": W_E, "ln_final.w": ln_w, "W_U": W_U}, top)
    assert np.allclose(untied, X @ W_U[top].T, rtol=1e-12)


def test_bigram_check_record_with_and_without_its_null():
    rng = np.random.default_rng(4)
    V = 30
    C = sp.csr_matrix(rng.poisson(3.0, size=(V, V)).astype(float))
    pi = np.asarray(C.sum(1)).ravel() / C.sum()
    top = np.argsort(-pi)[:N]
    L = rng.standard_normal((N, N))
    plain = bigram_check(L, C, top, pi, None, 50, 0)
    assert set(plain) == {"r", "weighting", "centring"}
    assert plain["weighting"] == "pi x pi over the top-N tokens" and plain["centring"] == "double (weighted)"
    bins = np.arange(N) % 3
    full = bigram_check(L, C, top, pi, bins, 50, 0)
    assert full["r"] == plain["r"] and full["n_draws"] == 50 and isinstance(full["n_draws"], int)
    assert set(full) == {"r", "weighting", "centring", "null_mean", "null_sd", "z", "p", "n_draws"}
    assert bigram_check(L, C, top, pi, bins, 0, 0).keys() == plain.keys()
    # r is the π-weighted (normalised over the top-N) double-centred r with log T at smoothing 1 (the default)
    w = pi[top] / pi[top].sum()
    assert plain["r"] == pytest.approx(weighted_double_centred_r(L, next_token_logprob(C, top, 1.0), w), rel=1e-12)
    # smoothing reaches the log-transition statistic: another smoothing, another r; the seed reaches the null
    assert bigram_check(L, C, top, pi, None, 0, 0, smoothing=5.0)["r"] != plain["r"]
    assert bigram_check(L, C, top, pi, bins, 50, 3)["null_mean"] != full["null_mean"]


def test_positive_controls_record():
    """Every field: the full forward's bigram check (with its null), the unigram check of the same log-probs, the
    direct path's r and its ratio to the full r, top_n."""
    rng = np.random.default_rng(5)
    V, d = 30, 8
    w = {"W_E": rng.standard_normal((V, d)), "W_pos": rng.standard_normal((4, d)) * 0.1,
         "ln_final.w": np.ones(d), "L0.ln1.w": np.ones(d), "L0.ln2.w": np.ones(d),
         **{f"L0.{k}": rng.standard_normal(shape) / np.sqrt(d) for k, shape in
            (("W_Q", (d, d)), ("W_K", (d, d)), ("W_V", (d, d)), ("W_O", (d, d)), ("W_in", (4 * d, d)),
             ("W_out", (d, 4 * d)))}}
    C = sp.csr_matrix(rng.poisson(3.0, size=(V, V)).astype(float))
    pi = np.asarray(C.sum(1)).ravel() / C.sum()
    top = np.argsort(-pi)[:N]
    bins = np.arange(N) % 3
    out = positive_controls(w, C, pi, top, bins, 40, 0)  # the default activation: the exact GELU
    logp = log_softmax(one_token_logits(w, top, activation="gelu"))[:, top]
    assert out["bigram"] == bigram_check(logp, C, top, pi, bins, 40, 0)
    assert out["unigram"] == unigram_check(logp, top, pi)
    direct = bigram_check(direct_path_logits(w, top), C, top, pi, None, 0, 0)["r"]
    assert out["direct_path_r"] == direct and out["direct_over_full"] == pytest.approx(direct / out["bigram"]["r"])
    assert out["top_n"] == N and isinstance(out["top_n"], int)
    # GPT-2's tanh GELU reaches the forward pass
    tanh = positive_controls(w, C, pi, top, bins, 40, 0, activation="gelu_new")
    logp_new = log_softmax(one_token_logits(w, top, activation="gelu_new"))[:, top]
    assert tanh["unigram"] == unigram_check(logp_new, top, pi) != out["unigram"]
