"""The null over attention (issue 20): each head's W_Q/W_K rotated at random on the residual side, the rest of the
model kept. Every statistic is checked on pure noise (random QK on an embedding that carries the corpus's PMI: the
referee's case, where the older label-permutation test rejects) and on a planted routing head; the algebraic
shortcut against the direct computation; the functional test's design against explicit least squares; invariance
to a function-preserving residual rotation. All calls go to the library's own functions."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

import pandas as pd

from corpus_weights.measure.analysis import attention_model, attention_summary
from corpus_weights.measure.attention import (
    Functional, PairDesign, TokenSpace, attention_heads, causal_softmax, direct_token_space_r, forward_attention,
    head_scores, head_weights, null_summary, planted_routing_head, pmi_pairs,
    preceding_token_statistic, rotation_draws, validation_windows, with_heads,
)
from corpus_weights.core.linalg import double_centre
from corpus_weights.core.nulls import log_frequency_bins
from corpus_weights.measure.residual_space import (
    fold_layernorm, forward_logits, layernorm, random_rotation_fixing_ones, rotate_residual,
)

V, D, H, L, CTX = 120, 32, 4, 2, 16


def markov_chain(seed=3, V=V, n=400_000, concentration=0.1):
    """Counts C[a, b] of a Markov chain with a peaked transition table, its stationary distribution, and a sample
    of n_val tokens from it (the 'validation text')."""
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.full(V, concentration), size=V)
    w, v = np.linalg.eig(T.T)
    pi = np.abs(np.real(v[:, np.argmax(np.real(w))]))
    pi /= pi.sum()
    C = sp.csr_matrix(np.round(pi[:, None] * T * n))
    x = [int(rng.choice(V, p=pi))]
    cum = np.cumsum(T, 1)
    for u in rng.random(4000):
        x.append(min(int(np.searchsorted(cum[x[-1]], u)), V - 1))
    return C, pi, np.array(x)


def pmi_embedding(C, d=D, seed=0):
    """A W_E that carries the corpus's preceding-token PMI (rows from the PMI's leading eigenvectors): the
    'trained-like' embedding on which the label-permutation test rejects for random W_Q/W_K."""
    rng = np.random.default_rng(seed)
    S = double_centre(preceding_token_statistic(C, np.arange(C.shape[0])))
    lam, E = np.linalg.eigh((S + S.T) / 2)
    idx = np.argsort(-np.abs(lam))[:d]
    return E[:, idx] * np.sqrt(np.abs(lam[idx])) + 0.05 * rng.standard_normal((C.shape[0], d))


def random_model(rng, W_E, layers=L, d=D, pos_scale=0.0):
    """A folded model with Gaussian W_Q/W_K (and V, O, MLP, so the residual stream moves) on the given W_E."""
    w = {"W_E": W_E, "W_pos": pos_scale * rng.standard_normal((CTX, d)), "ln_final.w": np.ones(d)}
    for i in range(layers):
        for t in ("W_Q", "W_K", "W_V", "W_O"):
            w[f"L{i}.{t}"] = rng.standard_normal((d, d)) / np.sqrt(d) * (3.0 if t in ("W_Q", "W_K") else 1.0)
        w[f"L{i}.W_in"] = rng.standard_normal((4 * d, d)) / np.sqrt(d)
        w[f"L{i}.W_out"] = rng.standard_normal((d, 4 * d)) / np.sqrt(4 * d)
        w[f"L{i}.ln1.w"] = np.ones(d)
        w[f"L{i}.ln2.w"] = np.ones(d)
    return w


@pytest.fixture(scope="module")
def corpus():
    C, pi, text = markov_chain()
    top = np.argsort(-pi, kind="stable")[:100]
    return dict(C=C, pi=pi, text=text, top=top, W_E=pmi_embedding(C),
                bins=log_frequency_bins(np.asarray(C.sum(1)).ravel()[top], 4))


def plant(w, corpus, head=0, sign=1.0):
    """Put the best rank-d_h routing head (scaled to the median head's ‖M‖) in place of head `head`."""
    ts = TokenSpace(layernorm(w["W_E"][corpus["top"]]), preceding_token_statistic(corpus["C"], corpus["top"]))
    Q, K, _ = head_weights(w, H)
    norm = np.median(np.linalg.norm(np.swapaxes(Q, 1, 2) @ K, axis=(1, 2))) / np.sqrt(Q.shape[1])
    Q[head], K[head] = planted_routing_head(ts, Q.shape[1], float(norm))
    K[head] *= sign
    return with_heads(w, Q, K)


# ----------------------------------------------------------------------------- token space

def test_algebraic_shortcut_equals_direct_computation(corpus):
    """⟨Xc M Xcᵀ, S⟩ = ⟨M, Xcᵀ S Xc⟩ and ‖Xc M Xcᵀ‖² = tr((Q Gx Qᵀ)(K Gx Kᵀ))/d_h: r of every head and of every
    rotated draw equals double_centred_pearson(X M Xᵀ, S) computed on the N x N matrices (the draws to float32's
    precision)."""
    rng = np.random.default_rng(0)
    X = layernorm(corpus["W_E"][corpus["top"]])
    S = preceding_token_statistic(corpus["C"], corpus["top"])
    ts = TokenSpace(X, S)
    Q, K = rng.standard_normal((5, 8, D)), rng.standard_normal((5, 8, D))
    draws = rotation_draws(D, 3, seed=1)
    r, null = ts.test(Q, K, draws)
    assert np.allclose(r, direct_token_space_r(Q, K, X, S), rtol=1e-10, atol=1e-12)  # float64
    for k in range(3):
        R1, R2 = (ts.U @ G[k] @ ts.U.T for G in draws)  # the draws act in the frame: R = U G Uᵀ
        assert np.allclose(R1 @ R1.T, np.eye(D))
        # the draws' norms are taken in float32 (the cost at GPT-2's size), their numerators in float64
        assert np.allclose(null[:, k], direct_token_space_r(Q @ R1, K @ R2, X, S), rtol=1e-5, atol=1e-12)
        M, M_rot = Q[0].T @ K[0], (Q[0] @ R1).T @ (K[0] @ R2)  # spectrum matched
        assert np.allclose(np.linalg.svd(M, compute_uv=False), np.linalg.svd(M_rot, compute_uv=False))


def test_random_qk_on_a_pmi_carrying_embedding_is_inside_the_null(corpus):
    """The referee's case: an embedding that carries the PMI and random (Gaussian) W_Q/W_K. Over 25 models (200
    heads) at most 5 % of heads are significant against the null over attention, and their null mean is 0 (signs
    meaningful), while the label-permutation test of the same heads rejects for many of them (it measures W_E)."""
    rng = np.random.default_rng(1)
    sig, label, means, z = [], [], [], []
    for m in range(25):
        w = random_model(rng, corpus["W_E"])
        table, _ = attention_heads(w, corpus["C"], corpus["top"], H, n_draws=200, seed=m, fpr_models=0,
                                   label_bins=corpus["bins"])
        sig.append(table["significant"].to_numpy())
        label.append(table["label_significant_bh"].to_numpy())
        means.append(table["qk_null_mean"] / table["qk_null_sd"])
        z.append(table["qk_z"].to_numpy())
    assert np.mean(sig) <= 0.05, np.mean(sig)
    assert np.mean(label) > 0.15, np.mean(label)  # the old test is fooled by the embedding alone
    assert np.abs(np.concatenate(means)).max() < 0.5  # null mean ≈ 0 in units of its sd (200 draws: ≈ 0.07 sd)
    assert 0.8 < np.concatenate(z).std() < 1.25  # z of noise heads is standard


def test_planted_routing_head_is_detected_and_its_sign_read(corpus):
    """A routing head planted at layer 0 head 0 among random heads: significant with z > 5 and direction +1; the
    others stay inside; flipping W_K (a head attending *away* from likely predecessors) gives direction −1."""
    rng = np.random.default_rng(2)
    w = plant(random_model(rng, corpus["W_E"]), corpus)
    table, cal = attention_heads(w, corpus["C"], corpus["top"], H, n_draws=200, seed=0, fpr_models=20)
    assert table.loc[0, "qk_z"] > 5 and table.loc[0, "direction"] == 1 and table.loc[0, "significant"]
    assert table.loc[0, "r"] > 0.3
    assert table["significant"].sum() == 1
    assert cal["token_space"]["planted_detected"] and cal["token_space"]["planted_z"] > 5
    assert cal["token_space"]["n_fpr_models"] == 20 and cal["token_space"]["fpr_heads"] <= 0.05
    w_neg = plant(random_model(np.random.default_rng(2), corpus["W_E"]), corpus, sign=-1.0)
    neg, _ = attention_heads(w_neg, corpus["C"], corpus["top"], H, n_draws=200, seed=0, fpr_models=0)
    assert neg.loc[0, "qk_z"] < -5 and neg.loc[0, "direction"] == -1 and neg.loc[0, "significant"]


def test_step0_columns_are_the_step0_heads_on_this_embedding(corpus):
    """r_step0_qk is the token-space r of the step-0 W_Q/W_K read on this model's W_E (the referee's swap); random
    step-0 heads sit inside the null; a model whose step-0 heads are its own heads gets identical columns."""
    rng = np.random.default_rng(4)
    trained = plant(random_model(rng, corpus["W_E"]), corpus)
    step0 = random_model(rng, rng.standard_normal((V, D)))  # another embedding: only its W_Q/W_K may matter
    table, _ = attention_heads(trained, corpus["C"], corpus["top"], H, step0=step0, n_draws=200, fpr_models=0)
    Q0, K0, _ = head_weights(step0, H)
    swapped, _ = attention_heads(with_heads(trained, Q0, K0), corpus["C"], corpus["top"], H, n_draws=200,
                                 fpr_models=0)
    assert np.allclose(table["r_step0_qk"], swapped["r"]) and np.allclose(table["step0_qk_z"], swapped["qk_z"])
    assert table["step0_qk_significant"].sum() == swapped["significant"].sum() <= 1
    assert table["significant"].iloc[0] and not table["step0_qk_significant"].iloc[0]
    same, _ = attention_heads(trained, corpus["C"], corpus["top"], H, step0=trained, n_draws=50, fpr_models=0)
    assert np.allclose(same["r_step0_qk"], same["r"]) and (same["step0_qk_significant"] == same["significant"]).all()


# ----------------------------------------------------------------------------- functional: real text

def test_pmi_pairs_match_the_token_space_statistic(corpus):
    top = corpus["top"]
    S = preceding_token_statistic(corpus["C"], top)
    a, b = np.meshgrid(np.arange(len(top)), np.arange(len(top)), indexing="ij")
    assert np.allclose(pmi_pairs(corpus["C"], top[a], top[b]), S)


def test_forward_attention_is_the_reference_forward(corpus):
    rng = np.random.default_rng(5)
    w = random_model(rng, corpus["W_E"], pos_scale=0.5)
    w["L1.ln1.w"] = 1 + 0.3 * rng.standard_normal(D)  # unfolded: the LN weight must be applied the same way
    tok = validation_windows(corpus["text"], CTX, 3)
    hs, probs, logits = forward_attention(w, tok, H, logits=True)
    assert np.allclose(logits, forward_logits(w, tok, H), atol=1e-10)
    Q, K, _ = head_weights(w, H)
    for layer in range(L):
        sl = slice(layer * H, (layer + 1) * H)
        assert np.allclose(causal_softmax(head_scores(hs[layer], Q[sl], K[sl])), probs[layer].transpose(1, 0, 2, 3))
    assert forward_attention(w, tok, H)[2] is None


def explicit_residuals(design, y, key_groups=None, windows=None):
    """Least-squares residuals of y over the pairs on query, distance (and key-group) indicators (the definition)."""
    q = np.unique(design.b * 1000 + design.i, return_inverse=True)[1]
    X = [np.eye(q.max() + 1)[q], np.eye(design.mask.shape[-1] - 1)[design.i - design.j - 1]]
    if key_groups is not None:
        X.append(np.eye(key_groups.max() + 1)[key_groups[windows[design.b, design.j]]])
    X = np.hstack(X)
    return y - X @ np.linalg.lstsq(X, y, rcond=None)[0]


@pytest.mark.parametrize("dtype,grouped", [(np.float64, False), (np.float32, False), (np.float32, True)])
def test_pair_design_equals_explicit_least_squares(dtype, grouped):
    """The Frisch–Waugh shortcut of PairDesign (per-query, per-distance and per-key-group means removed jointly)
    gives the r of the explicit least-squares residuals, in float32 too (the null's precision), with excluded
    tokens."""
    rng = np.random.default_rng(6)
    windows = rng.integers(0, 50, (8, 32))
    groups = rng.integers(0, 5, 50) if grouped else None
    design = PairDesign(windows, exclude=[7], key_groups=groups)
    assert design.n_pairs == design.mask.sum() < 8 * 32 * 31 // 2
    a = rng.dirichlet(np.ones(32), size=(3, 8, 32)) + rng.random((3, 8, 1, 1))
    s = rng.standard_normal((8, 32, 32))
    s_res = design.residual(s)
    rs = explicit_residuals(design, s[design.b, design.i, design.j], groups, windows)
    assert np.allclose(s_res[design.b, design.i, design.j], rs)
    for k in range(3):
        ra = explicit_residuals(design, a[k][design.b, design.i, design.j], groups, windows)
        expected = ra @ rs / np.sqrt((ra @ ra) * (rs @ rs))
        assert np.isclose(design.correlation(a[k].astype(dtype), s_res), expected, atol=1e-5)


def test_pair_design_in_float32_at_the_default_size():
    """At the default run's size (32 windows of 32 tokens) the null's float32 attention gives the float64 r: ZᵀZ is
    singular (the distance indicators sum to the query indicators) and its pseudo-inverse must not turn rounding
    into a huge negative eigenvalue (np.linalg.pinv did: every null r of a functional test came out wrong)."""
    rng = np.random.default_rng(11)
    design = PairDesign(rng.integers(0, 50, (32, 32)))
    assert np.linalg.eigvalsh(design.ZtZ_pinv).min() > -1e-9
    a = rng.dirichlet(np.ones(32), size=(4, 32, 32))
    s_res = design.residual(rng.standard_normal((32, 32, 32)))
    r64, r32 = design.correlation(a, s_res), design.correlation(a.astype(np.float32), s_res)
    assert np.allclose(r32, r64, rtol=1e-3, atol=1e-5), (r32, r64)


def test_psd_pinv_drops_a_rounding_level_negative_eigenvalue():
    """A singular Gram matrix computed in floating point can carry an eigenvalue of −1e-14 relative instead of 0;
    np.linalg.pinv inverts it into a huge negative one (which once made every functional null r wrong in float32),
    psd_pinv drops it and inverts the rest."""
    from corpus_weights.measure.attention import psd_pinv

    rng = np.random.default_rng(12)
    V_ = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    lam = np.array([1e3, 50.0, 3.0, 1.0, 0.5, -1e-11])
    A = (V_ * lam) @ V_.T
    P = psd_pinv(A)
    assert np.linalg.eigvalsh(P).min() > -1e-12
    assert np.allclose(P @ A @ P, P) and np.allclose(A @ P @ A, A, atol=1e-9)


def test_a_positional_previous_token_head_is_not_bigram_routing():
    """Adjacent pairs have the highest PMI; a head that always attends to the previous position correlates with
    PMI over raw pairs, but its pattern is a distance effect and is removed: r = 0 (or undefined)."""
    C, _, text = markov_chain()
    windows = validation_windows(text, CTX, 40)
    design = PairDesign(windows)
    pmi = pmi_pairs(C, design.current, design.preceding)
    T = windows.shape[1]
    prev = np.broadcast_to(np.eye(T, k=-1), (len(windows), T, T)).copy()
    prev[:, 0, 0] = 1.0
    raw = prev[design.b, design.i, design.j]
    assert np.corrcoef(raw, pmi)[0, 1] > 0.2  # the confound the distance means remove
    assert np.isnan(design.correlation(prev, design.residual(design.to_layout(pmi))))
    blurred = prev + 0.01 * np.random.default_rng(0).random(prev.shape)  # plus noise unrelated to PMI: r ≈ 0
    assert abs(design.correlation(blurred, design.residual(design.to_layout(pmi)))) < 0.03


@pytest.fixture(scope="module")
def functional_setup(corpus):
    windows = validation_windows(corpus["text"], CTX, 48)
    ts = TokenSpace(layernorm(corpus["W_E"][corpus["top"]]), preceding_token_statistic(corpus["C"], corpus["top"]))
    key_groups = log_frequency_bins(np.asarray(corpus["C"].sum(1)).ravel(), 4)  # as attention_heads does
    return Functional(corpus["C"], windows, ts.U, key_groups=key_groups), rotation_draws(D, 100, seed=0)


def test_functional_random_heads_are_inside_the_null(corpus, functional_setup):
    """Pure noise for the functional test: 20 models with Gaussian W_Q/W_K (residual stream, positions, MLPs in
    place): at most 5 % of heads significant, z standard."""
    fn, draws = functional_setup
    rng = np.random.default_rng(7)
    sig, z = [], []
    for m in range(20):
        w = random_model(rng, corpus["W_E"], pos_scale=0.3)
        r, null = fn.test(w, H, draws)
        if m == 0:  # the observed r is the model's own attention, layer by layer
            probs = forward_attention(w, fn.windows, H)[1]
            assert np.allclose(r, np.concatenate([fn.r_of_probs(np.swapaxes(p, 0, 1)) for p in probs]))
        zz = (r - null.mean(1)) / null.std(1, ddof=1)
        z.append(zz)
        sig.append(null_summary(r, null)["significant"])
    assert np.mean(sig) <= 0.05 and 0.75 < np.concatenate(z).std() < 1.3, (np.mean(sig), np.concatenate(z).std())


def test_functional_detects_a_planted_routing_head(corpus, functional_setup):
    """The planted routing head at layer 0 head 0, read on real text with positions: large positive z; the
    calibration of attention_heads reports it detected, and the functional false-positive rate stays ≤ 5 %."""
    fn, draws = functional_setup
    w = plant(random_model(np.random.default_rng(8), corpus["W_E"], pos_scale=0.3), corpus)
    r, null = fn.test(w, H, draws, heads=[0])
    assert (r[0] - null[0].mean()) / null[0].std() > 5 and r[0] > 0.1
    table, cal = attention_heads(w, corpus["C"], corpus["top"], H, val_ids=corpus["text"], windows=24,
                                 n_draws=100, fpr_models=20, functional_fpr_models=5)
    assert table.loc[0, "functional_significant"] and table.loc[0, "functional_direction"] == 1
    assert cal["functional"]["planted_detected"] and cal["functional"]["planted_z"] > 5
    assert cal["functional"]["n_fpr_models"] == 5 and cal["functional"]["fpr_heads"] <= 0.05
    assert cal["functional"]["n_pairs"] == 24 * CTX * (CTX - 1) // 2


# ----------------------------------------------------------------------------- invariance and the summary

def test_invariant_to_a_function_preserving_residual_rotation(corpus):
    """x -> x Q with Q 1 = 1 (LayerNorm folded): r, the null's mean and sd, z and p of both tests are unchanged,
    draw by draw (the rotations are drawn in a frame that turns with the residual basis)."""
    rng = np.random.default_rng(9)
    w = plant(random_model(rng, corpus["W_E"], pos_scale=0.3), corpus)
    w = {k: v for k, v in w.items()}
    w["W_U"] = w["W_E"]
    Q = random_rotation_fixing_ones(D, rng)
    kw = dict(val_ids=corpus["text"], windows=8, n_draws=50, fpr_models=2, functional_fpr_models=1)
    a, cal_a = attention_heads(w, corpus["C"], corpus["top"], H, **kw)
    b, cal_b = attention_heads(rotate_residual(w, Q), corpus["C"], corpus["top"], H, **kw)
    cols = ["r", "qk_null_mean", "qk_null_sd", "qk_z", "qk_p", "functional_r", "functional_null_mean",
            "functional_null_sd", "functional_z", "functional_p"]
    assert np.allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-5, atol=1e-7)
    for test in ("token_space", "functional"):  # the calibration's random heads are drawn in the frame too
        for key, value in cal_a[test].items():
            assert np.isclose(value, cal_b[test][key], rtol=1e-5), (test, key)


def test_attention_model_summary_keys(corpus):
    """attention.json has exactly the keys metrics.py reads; the per-head table has every column."""
    rng = np.random.default_rng(10)
    w = fold_layernorm(random_model(rng, corpus["W_E"]))
    step0 = random_model(rng, corpus["W_E"])
    c = dict(counts=corpus["C"], pi=corpus["pi"], special=[])
    params = dict(top_n=100, freq_bins=4, permutations=50, seed=0, attention_fpr_models=3, attention_windows=8,
                  attention_functional_fpr_models=2)
    table, summary = attention_model(w, c, H, params, step0=step0, val_ids=corpus["text"])
    json.dumps(summary)  # plain JSON types
    test_keys = {"significant", "positive", "negative", "step0_qk_significant", "fpr_heads", "fpr_models",
                 "n_fpr_models", "planted_z", "planted_detected"}
    assert set(summary) == {"heads", "n_null_draws", "null", "token_space", "functional", "mean_r_by_layer",
                            "significant_bh", "significant_positive", "significant_negative", "max_z", "test"}
    assert set(summary["token_space"]) == test_keys
    assert set(summary["functional"]) == test_keys | {"n_pairs", "n_null_draws"}
    assert summary["heads"] == L * H and summary["n_null_draws"] == 50 and summary["token_space"]["n_fpr_models"] == 3
    assert summary["significant_bh"] == summary["token_space"]["significant"] == int(table["significant"].sum())
    assert {"layer", "head", "r", "qk_null_mean", "qk_null_sd", "qk_z", "qk_p", "direction", "significant",
            "r_step0_qk", "step0_qk_z", "step0_qk_p", "step0_qk_significant", "functional_r", "functional_null_mean",
            "functional_null_sd", "functional_z", "functional_p", "functional_direction", "functional_significant",
            "functional_r_step0_qk", "functional_step0_qk_z", "functional_step0_qk_p",
            "functional_step0_qk_significant", "label_null_mean", "label_null_sd", "label_z", "label_p",
            "label_p_normal", "label_significant_bh", "label_n_draws", "n_null_draws"} <= set(table.columns)
    plain, s2 = attention_model(w, c, H, params)  # without step 0 and text: token space only, the rest None
    assert s2["functional"]["significant"] is None and s2["token_space"]["step0_qk_significant"] is None


def test_summary_reads_the_direction_relative_to_the_null_not_the_sign_of_r():
    """Positive / negative count significant heads by r relative to their null's mean: a head with r > 0 below a
    null centred higher attends less to likely predecessors than its null (negative); the top-level keys repeat the
    token-space counts."""
    table = pd.DataFrame(dict(layer=[0, 0, 1], head=[0, 1, 0], r=[0.05, 0.02, -0.01], qk_z=[-4.0, 5.0, 0.1],
                              direction=[-1, 1, 1], significant=[True, True, False], n_null_draws=200))
    s = attention_summary(table)
    assert (s["token_space"]["positive"], s["token_space"]["negative"], s["token_space"]["significant"]) == (1, 1, 2)
    assert (s["significant_positive"], s["significant_negative"], s["significant_bh"]) == (1, 1, 2)
    assert s["mean_r_by_layer"] == [0.035, -0.01] and s["max_z"] == 5.0 and s["functional"]["significant"] is None


def test_functional_windows_of_the_first_positions_are_the_shorter_contexts_test(corpus):
    """attention_window_tokens = 8 on a context of 16 reads every window's first 8 positions: causal attention there
    ignores later tokens, so it is the test of the same model cut to a context of 8 (W_pos's first 8 rows), number
    for number; and it is not the full-context test."""
    rng = np.random.default_rng(12)
    w = fold_layernorm(random_model(rng, corpus["W_E"], pos_scale=0.3))
    short = dict(w, W_pos=w["W_pos"][:8])
    c = dict(counts=corpus["C"], pi=corpus["pi"], special=[])
    params = dict(top_n=100, freq_bins=4, permutations=50, seed=0, attention_fpr_models=3, attention_windows=8,
                  attention_functional_fpr_models=2, attention_functional_draws=50)
    cut, s_cut = attention_model(w, c, H, dict(params, attention_window_tokens=8), val_ids=corpus["text"])
    ref, s_ref = attention_model(short, c, H, params, val_ids=corpus["text"])
    full, _ = attention_model(w, c, H, params, val_ids=corpus["text"])
    np.testing.assert_allclose(cut["functional_r"], ref["functional_r"], rtol=1e-10)
    np.testing.assert_allclose(cut["functional_z"], ref["functional_z"], rtol=1e-6)
    assert s_cut["functional"]["n_pairs"] == s_ref["functional"]["n_pairs"] == 8 * 8 * 7 // 2
    assert not np.allclose(cut["functional_r"], full["functional_r"])


@pytest.mark.parametrize("folded", [True, False])
def test_the_functional_test_reads_the_attention_a_biased_model_really_has(corpus, folded):
    """Query and key biases and LayerNorm biases (a GPT-2 checkpoint): the functional test's observed r of every head
    is the r of the attention probabilities of the model's own forward pass (the key bias cancels in the softmax, the
    query bias does not), folded or not; and the biases change it."""
    from corpus_weights.measure.attention import Functional, forward_attention, residual_frame

    rng = np.random.default_rng(13)
    w = random_model(rng, corpus["W_E"], pos_scale=0.3)
    for i in range(L):
        for name in ("b_Q", "b_K", "ln1.b"):
            w[f"L{i}.{name}"] = 1.5 * rng.standard_normal(D)
    w = fold_layernorm(w) if folded else w
    windows = validation_windows(corpus["text"], CTX, 6)
    X = layernorm(np.asarray(w["W_E"], dtype=np.float64)[:100])
    fn = Functional(corpus["C"], windows, residual_frame(X))
    draws = rotation_draws(D, 3, 0)
    r, _ = fn.test(w, H, draws)
    _, probs, _ = forward_attention(w, windows, H)
    expected = np.concatenate([fn.r_of_probs(np.moveaxis(p, 1, 0)) for p in probs])
    np.testing.assert_allclose(r, expected, rtol=1e-9, atol=1e-12)
    no_bq = {k: v for k, v in w.items() if not k.endswith(("b_Q", "ln1.b"))}
    r_no_bq, _ = fn.test(no_bq, H, draws)
    assert np.abs(r_no_bq - r).max() > 1e-3
