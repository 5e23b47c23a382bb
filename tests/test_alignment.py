"""Planted answers for the corpus -> model map (corpus_weights.measure.alignment): every number of the summary recomputed
from its definition on small cases, the CKA against its U-statistic definition, ridge against its closed form."""
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import corpus_weights.measure.alignment as al
from corpus_weights.measure.alignment import (
    RidgeFits, _counts, _null_summary, basis_null, corpus_basis, debiased_linear_cka, fit_ridge_map,
    plugin_linear_cka, procrustes_heldout, stratified_halves, top_tokens, vocabulary_alignment,
)
from corpus_weights.core.nulls import empirical_p


def _hsic_u_statistic(K, L):
    """Unbiased HSIC as the U-statistic it estimates: the mean over ordered distinct (i, j, q, r) of
    k_ij l_ij + k_ij l_qr - 2 k_ij l_iq (Song et al. 2012)."""
    n, total, count = K.shape[0], 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
        count += 1
    return total / count


@pytest.mark.parametrize("n", [4, 7])
def test_debiased_cka_equals_its_u_statistic_definition(n):
    rng = np.random.default_rng(n)
    X, Y = rng.standard_normal((n, 3)), rng.standard_normal((n, 5))  # widths differ from n and from each other
    Y[:, 0] += 2 * X[:, 0]
    K, L = X @ X.T, Y @ Y.T
    expected = _hsic_u_statistic(K, L) / np.sqrt(_hsic_u_statistic(K, K) * _hsic_u_statistic(L, L))
    assert np.isclose(debiased_linear_cka(X, Y), expected, rtol=1e-10)
    # small scales (HSIC far below 1) change nothing: CKA is scale-free
    assert np.isclose(debiased_linear_cka(1e-3 * X, 1e-3 * Y), expected, rtol=1e-8)


def test_debiased_cka_degenerate_inputs():
    with pytest.raises(ValueError, match=r"^debiased CKA needs at least 4 rows$"):
        debiased_linear_cka(np.ones((3, 2)), np.ones((3, 2)))
    X = np.random.default_rng(0).standard_normal((6, 2))
    assert np.isnan(debiased_linear_cka(np.zeros((6, 2)), X))  # no variation: no CKA
    assert np.isnan(debiased_linear_cka(X, np.zeros((6, 3))))


def test_plugin_cka_planted_by_hand():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    Y = X[:, :1]
    # Y^T X = (2, 0): |.|^2 = 4; |X^T X| = |diag(2, 2)| = 2 sqrt 2; |Y^T Y| = 2 -> 4 / (4 sqrt 2)
    assert np.isclose(plugin_linear_cka(X, Y), 1 / np.sqrt(2))
    assert np.isclose(plugin_linear_cka(X + [3.0, -5.0], 7 * Y + 1.0), 1 / np.sqrt(2))  # centred, scale-free


def test_ridge_fit_equals_its_closed_form_by_hand():
    rng = np.random.default_rng(1)
    E = rng.standard_normal((40, 3)) * [3.0, 1.0, 0.2] + [1.0, -2.0, 0.5]
    W = E @ rng.standard_normal((3, 2)) + 0.5 * rng.standard_normal((40, 2)) + [4.0, -1.0]
    fit_idx, test_idx = np.arange(0, 40, 2), np.arange(1, 40, 2)
    ridge = RidgeFits(E, fit_idx, test_idx)
    assert len(ridge.folds) == 5  # 5-fold CV by default
    X = E[fit_idx] - E[fit_idx].mean(0)
    assert np.isclose(ridge.scale, np.trace(X.T @ X) / 3)
    lam = 2.5
    out = ridge.fit(W, lam)
    Y = W[fit_idx] - W[fit_idx].mean(0)
    A = np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ Y)
    assert np.allclose(out["A"], A) and out["lam"] == lam
    assert np.allclose(out["mu_E"], E[fit_idx].mean(0)) and np.allclose(out["mu_W"], W[fit_idx].mean(0))
    assert np.isclose(out["train_r2"], 1 - ((X @ A - Y) ** 2).sum() / (Y ** 2).sum())
    pred = (E[test_idx] - E[fit_idx].mean(0)) @ A + W[fit_idx].mean(0)
    Wt = W[test_idx]
    assert np.isclose(out["heldout_r2"], 1 - ((pred - Wt) ** 2).sum() / ((Wt - Wt.mean(0)) ** 2).sum())
    same = fit_ridge_map(E, W, fit_idx, test_idx, lam=lam)
    assert np.allclose(same["A"], A) and same["lam"] == lam
    assert RidgeFits(E, fit_idx, test_idx, folds=0).folds == []


def test_cv_errors_equal_brute_force_refits_for_every_lambda():
    rng = np.random.default_rng(2)
    E = rng.standard_normal((60, 4)) * np.linspace(3, 0.2, 4)
    W = E @ rng.standard_normal((4, 3)) + rng.standard_normal((60, 3))
    fit, test = stratified_halves(np.arange(60), 0)
    ridge = RidgeFits(E, fit, test, folds=4, seed=5)
    X, Y = E[fit] - E[fit].mean(0), W[fit] - W[fit].mean(0)
    fold_of = np.random.default_rng(5).permutation(len(fit)) % 4
    brute = np.zeros(len(ridge.grid))
    for g, alpha in enumerate(ridge.grid):
        for f in range(4):
            tr, te = fold_of != f, fold_of == f
            mx, my = X[tr].mean(0), Y[tr].mean(0)
            A = np.linalg.solve((X[tr] - mx).T @ (X[tr] - mx) + alpha * ridge.scale * np.eye(4),
                                (X[tr] - mx).T @ (Y[tr] - my))
            brute[g] += (((X[te] - mx) @ A - (Y[te] - my)) ** 2).sum()
    assert np.allclose(ridge.cv_errors(Y), brute, rtol=1e-9)
    assert ridge.choose_lambda(Y) == ridge.grid[int(np.argmin(brute))] * ridge.scale


def test_fit_ridge_map_cross_validates_with_its_seed():
    rng = np.random.default_rng(3)
    E = rng.standard_normal((80, 6)) * np.linspace(2, 0.1, 6)
    W = E @ rng.standard_normal((6, 4)) + 3 * rng.standard_normal((80, 4))
    fit, test = stratified_halves(np.arange(80), 1)
    lams = []
    for seed in range(8):
        lam = fit_ridge_map(E, W, fit, test, seed=seed)["lam"]
        assert lam == RidgeFits(E, fit, test, folds=5, seed=seed).fit(W)["lam"]
        lams.append(lam)
    assert len(set(lams)) > 1  # the fold assignment (the seed) matters here, so the check above has teeth


def test_null_summary_by_hand():
    s = _null_summary(5.0, [1.0, 2.0, 3.0, 4.0])
    sd = np.std([1, 2, 3, 4], ddof=1)
    assert s == dict(n_draws=4, mean=2.5, sd=sd, z=2.5 / sd, p=empirical_p(5.0, np.array([1.0, 2, 3, 4])), max=4.0)
    assert s["p"] == 0.2
    small = _null_summary(0.5, [0.1, 0.2, 0.3])  # sd 0.1 (< 1) still gives a z
    assert np.isclose(small["z"], 3.0)
    one = _null_summary(1.0, [2.0])
    assert one["n_draws"] == 1 and np.isnan(one["sd"]) and np.isnan(one["z"]) and one["max"] == 2.0
    flat = _null_summary(1.0, [2.0, 2.0])
    assert flat["sd"] == 0 and np.isnan(flat["z"])
    assert _null_summary(1.0, []) == {"n_draws": 0}


def test_counts_top_tokens_and_halves_by_hand():
    assert _counts(np.array([0.5, 0.25, 0.25, 0.0])).tolist() == [2.0, 1.0, 1.0, 0.0]
    pi = np.repeat([0.3, 0.2, 0.1], 40)[np.random.default_rng(0).permutation(120)]  # many ties
    order = top_tokens(pi, 120)
    for value in (0.3, 0.2, 0.1):  # ties keep index order (a stable sort)
        block = order[pi[order] == value]
        assert np.array_equal(block, np.sort(block))
    assert top_tokens(pi, 5, exclude=[int(order[0])])[0] == order[1]
    a, b = stratified_halves(np.arange(7), seed=0)  # an odd count: the rarest token is in neither half
    assert a.size == b.size == 3 and 6 not in a and 6 not in b
    firsts = [stratified_halves(np.arange(2), seed)[0][0] for seed in range(40)]
    assert 0 < np.mean(firsts) < 1  # both orientations of a pair occur


def test_procrustes_exact_rotation_with_column_offsets():
    rng = np.random.default_rng(4)
    E = rng.standard_normal((100, 5))
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    W = 2 * E @ Q + np.array([5.0, -3.0, 0.0, 1.0, 9.0])
    fit, test = stratified_halves(np.arange(100), 0)
    out = procrustes_heldout(E, W, fit, test)
    assert np.isclose(out["train_cos"], 1.0) and np.isclose(out["heldout_cos"], 1.0) and np.allclose(out["R"], Q)


def _small_case(seed=0, V=150, dc=6, d=4):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(V))
    E = rng.standard_normal((V, dc)) * np.linspace(2, 0.5, dc)
    W = E @ rng.standard_normal((dc, d)) + rng.standard_normal((V, d))
    return rng, pi, E, W


def test_vocabulary_alignment_summary_recomputed_from_its_parts():
    rng, pi, E, W = _small_case()
    E_out = rng.standard_normal(E.shape)
    eig = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    exclude = [int(np.argmax(pi))]
    arrays, s = vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=3, seed=2, exclude=exclude,
                                     E_out=E_out, eigvecs=eig, basis_draws=2)
    top = top_tokens(pi, 100, exclude)
    fit_idx, test_idx = stratified_halves(top, 2)
    assert np.array_equal(arrays["fit_idx"], fit_idx) and np.array_equal(arrays["test_idx"], test_idx)
    fit = fit_ridge_map(E, W, fit_idx, test_idx, seed=2)
    proc = procrustes_heldout(E, W, fit_idx, test_idx)
    assert set(arrays) == {"A", "mu_E", "mu_W", "fit_idx", "test_idx", "basis", "null_bases", "split_bases"}
    assert np.allclose(arrays["A"], fit["A"]) and np.allclose(arrays["mu_E"], fit["mu_E"])
    assert np.allclose(arrays["mu_W"], fit["mu_W"])
    assert np.allclose(arrays["basis"], corpus_basis(fit["A"], eig)) and arrays["null_bases"].shape == (2, 4, 4)
    expected = dict(
        top_n=100, n_fit_tokens=50, n_heldout_tokens=50, effective_sample_size=50,
        weighting="uniform over the top-n tokens", ridge_lambda=fit["lam"], vocab_map_train_r2=fit["train_r2"],
        vocab_map_heldout_r2=fit["heldout_r2"], procrustes_heldout_cos=proc["heldout_cos"],
        procrustes_train_cos=proc["train_cos"], cka_debiased=debiased_linear_cka(E[top], W[top]),
        cka_plugin=plugin_linear_cka(E[top], W[top]), basis_uses="E_in", excluded_tokens=exclude,
        vocab_map_heldout_r2_E_out=fit_ridge_map(E_out, W, fit_idx, test_idx, seed=2)["heldout_r2"],
        vocab_map_heldout_r2_E_in_out=fit_ridge_map(np.hstack([E, E_out]), W, fit_idx, test_idx,
                                                    seed=2)["heldout_r2"],
    )
    split_keys = {f"{k}_{suffix}" for k in ("vocab_map_heldout_r2", "procrustes_heldout_cos", "ridge_lambda")
                  for suffix in ("splits", "split_sd")}
    assert set(s) == set(expected) | {"vocab_map_null", "procrustes_null", "n_splits"} | split_keys
    for key, value in expected.items():
        assert s[key] == (value if isinstance(value, (str, list)) else pytest.approx(value, rel=1e-12)), key
    assert s["vocab_map_null"]["n_draws"] == s["procrustes_null"]["n_draws"] == 3
    # defaults: seed 0, no basis null draws
    a0, s0 = vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=0, eigvecs=eig)
    a1, s1 = vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=0, seed=0, eigvecs=eig)
    assert np.array_equal(a0["A"], a1["A"]) and a0["null_bases"].shape == (0, 4, 4)
    assert s0["vocab_map_null"] == {"n_draws": 0} and "vocab_map_heldout_r2_E_out" not in s0


def test_vocabulary_alignment_null_uses_the_frequency_strata():
    _, pi, E, W = _small_case(seed=1)
    one = vocabulary_alignment(E, W, pi, top_n=100, n_bins=1, n_draws=5, seed=0)[1]["vocab_map_null"]
    many = vocabulary_alignment(E, W, pi, top_n=100, n_bins=6, n_draws=5, seed=0)[1]["vocab_map_null"]
    assert one["mean"] != many["mean"]


def test_basis_null_refits_with_the_given_lambda(monkeypatch):
    _, pi, E, W = _small_case(seed=2, d=3)
    fit_idx, test_idx = stratified_halves(top_tokens(pi, 100), 0)
    one = basis_null(E, W, pi, fit_idx, test_idx, 0.7, 1, 2, 0)
    assert not np.allclose(one, basis_null(E, W, pi, fit_idx, test_idx, 0.7, 6, 2, 0))  # the strata are used
    assert basis_null(E, W, pi, fit_idx, test_idx, 0.7, 4, 0, 0).shape == (0, 3, 3)  # d from W, not E
    calls = []
    real = al.fit_ridge_map

    def spy(E_, W_, f, t, seed=0, lam=None):
        calls.append((lam, t))
        return real(E_, W_, f, t, seed=seed, lam=lam)

    monkeypatch.setattr(al, "fit_ridge_map", spy)
    bases = basis_null(E, W, pi, fit_idx, test_idx, 0.7, 4, 3, 0)
    assert bases.shape == (3, 3, 3) and len(calls) == 3
    assert all(lam == 0.7 and np.array_equal(t, test_idx) for lam, t in calls)
    for B in bases:
        assert np.allclose(B.T @ B, np.eye(3))


def test_vocabulary_alignment_passes_its_lambda_and_seed_on(monkeypatch):
    _, pi, E, W = _small_case(seed=3)
    W = W + 4 * np.random.default_rng(9).standard_normal(W.shape)  # noisy: λ depends on the folds
    top = top_tokens(pi, 100)
    seed = next(s for s in range(1, 50) if fit_ridge_map(E, W, *stratified_halves(top, s), seed=s)["lam"]
                != fit_ridge_map(E, W, *stratified_halves(top, s), seed=0)["lam"])
    _, summary = vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=0, seed=seed)
    assert summary["ridge_lambda"] == fit_ridge_map(E, W, *stratified_halves(top, seed), seed=seed)["lam"]
    seen = []
    monkeypatch.setattr(al, "basis_null", lambda E_, W_, pi_, f, t, lam, *rest: seen.append((lam, t)) or np.zeros(
        (0, 4, 4)))
    vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=0, seed=seed, eigvecs=np.eye(6), basis_draws=1)
    assert seen[0][0] == summary["ridge_lambda"] and np.array_equal(seen[0][1], stratified_halves(top, seed)[1])


# ----------------------------------------------------------------------------- fit/test splits

def test_split_seeds_keep_split_0_and_differ_otherwise():
    assert al.split_seed(7, 0) == 7  # the headline split is today's split
    top = np.arange(200)
    halves = [stratified_halves(top, al.split_seed(7, s))[0] for s in range(5)]
    assert np.array_equal(halves[0], stratified_halves(top, 7)[0])
    assert len({tuple(h) for h in halves}) == 5  # every split is another split
    assert not np.array_equal(halves[1], stratified_halves(top, al.split_seed(8, 1))[0])  # and follows the seed


def test_splits_are_refits_of_the_headline_procedure():
    _, pi, E, W = _small_case(seed=4)
    eig = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))[0]
    arrays, s = vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=0, seed=3, eigvecs=eig, n_splits=4)
    top = top_tokens(pi, 100)
    assert s["n_splits"] == 4 and arrays["split_bases"].shape == (4, 4, 4)
    assert np.array_equal(arrays["split_bases"][0], arrays["basis"])
    for k in range(4):
        one = al.split_fit(E, W, top, al.split_seed(3, k), eig)
        assert np.allclose(arrays["split_bases"][k], one["basis"], rtol=0, atol=1e-12)
        for key in ("vocab_map_heldout_r2", "procrustes_heldout_cos", "ridge_lambda"):
            assert s[f"{key}_splits"][k] == pytest.approx(one[key], rel=1e-12), (key, k)
        # from the definition: the halves and the CV folds of split k both seeded by split_seed(3, k)
        fit_idx, test_idx = stratified_halves(top, al.split_seed(3, k))
        by_hand = RidgeFits(E, fit_idx, test_idx, seed=al.split_seed(3, k)).fit(W)
        assert s["ridge_lambda_splits"][k] == by_hand["lam"]
        assert s["vocab_map_heldout_r2_splits"][k] == pytest.approx(by_hand["heldout_r2"], rel=1e-12)
        assert np.allclose(arrays["split_bases"][k], corpus_basis(by_hand["A"], eig), rtol=0, atol=1e-12)
    fold_seed_matters = [RidgeFits(E, *stratified_halves(top, al.split_seed(3, k)), seed=0).fit(W)["lam"]
                         != s["ridge_lambda_splits"][k] for k in range(1, 4)]
    assert any(fold_seed_matters)  # so the check above has teeth
    assert s["vocab_map_heldout_r2_splits"][0] == s["vocab_map_heldout_r2"]
    assert s["vocab_map_heldout_r2_split_sd"] == pytest.approx(np.std(s["vocab_map_heldout_r2_splits"], ddof=1))
    assert s["procrustes_heldout_cos_split_sd"] == pytest.approx(np.std(s["procrustes_heldout_cos_splits"], ddof=1))
    one_split = vocabulary_alignment(E, W, pi, top_n=100, n_bins=4, n_draws=0, seed=3, eigvecs=eig)[1]
    assert one_split["n_splits"] == 1 and np.isnan(one_split["vocab_map_heldout_r2_split_sd"])


def _exact_or_noisy_map(noise):
    rng = np.random.default_rng(0)
    V, d = 400, 8
    pi = rng.dirichlet(np.ones(V))
    E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)
    W = E @ rng.standard_normal((d, d)) + noise * rng.standard_normal((V, d))
    mu = pi @ E
    eig = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))[1][:, ::-1]
    arrays, s = vocabulary_alignment(E, W, pi, top_n=300, n_bins=4, n_draws=0, eigvecs=eig, n_splits=5)
    X = rng.standard_normal((50, d))
    shares = [((X @ B[:, :3]) ** 2).sum() / (X ** 2).sum() for B in arrays["split_bases"]]
    return s, np.std(shares, ddof=1)


def test_split_spread_vanishes_for_an_exact_map_and_not_with_noise():
    """W = E A without noise: every split recovers A (up to the ridge's smallest shrinkage, λ ≥ 1e-4 tr/d), so the
    held-out R² and the corpus basis do not move between splits; with noise both do."""
    exact, exact_share_sd = _exact_or_noisy_map(0.0)
    noisy, noisy_share_sd = _exact_or_noisy_map(1.0)
    assert exact["vocab_map_heldout_r2_split_sd"] < 1e-7 and exact_share_sd < 1e-5
    assert noisy["vocab_map_heldout_r2_split_sd"] > 1e-3 and noisy_share_sd > 1e-4


# ----------------------------------------------------------------------------- split 0 did not move

REFERENCE = Path(__file__).parent / "data" / "alignment_split0_reference.npz"
REFERENCE_PARAMS = dict(top_n=100, freq_bins=4, map_null_draws=5, basis_null_draws=4, seed=3)


def split0_reference_case():
    """The small model and corpus behind tests/data/alignment_split0_reference.npz, which holds align_model's arrays
    and summary and projection_table's columns (K = 3, random_draws = 3, seed = 3) as computed by the code before
    splits existed (commit 6c8df79)."""
    from corpus_weights.corpus.corpus_stats import corpus_covariance, eigh_desc
    from test_residual_space import small_model

    rng = np.random.default_rng(20)
    V, d = 120, 8
    w = small_model(rng, V=V, d=d, L=1)
    init = small_model(rng, V=V, d=d, L=1)
    pi = 1.0 / np.arange(1, V + 1) ** 1.1
    pi = rng.permutation(pi / pi.sum())
    E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)
    w["W_E"] = E @ rng.standard_normal((d, d)) + rng.standard_normal((V, d))
    cov, mu = corpus_covariance(E, pi)
    corpus = dict(E_in=E, E_out=rng.standard_normal((V, d)), pi=pi, eigvecs=eigh_desc(cov)[1], mu=mu, special=[5])
    return w, init, corpus


def _headline(splits):
    from corpus_weights.measure.analysis import align_model, projection_table

    w, init, corpus = split0_reference_case()
    arrays, summary = align_model(w, corpus, dict(REFERENCE_PARAMS, splits=splits))
    table = projection_table(w, init, arrays["basis"], arrays["null_bases"], corpus["eigvecs"], corpus["mu"],
                             corpus["pi"], 3, 3, 3, split_bases=arrays.get("split_bases"), min_effect=0.05)
    return arrays, summary, table


def test_split_0_headline_is_the_code_before_splits():
    """The headline numbers come from split 0 whatever the number of splits: bit-identical between 1 and 5 splits,
    and equal to the values stored from the code before splits existed (to 1e-12: a different BLAS may move the last
    bits; on the machine that stored them they are identical)."""
    ref = np.load(REFERENCE)
    old_summary = json.loads(str(ref["summary"]))
    one, five = _headline(1), _headline(5)
    for arrays, summary, table in (one, five):
        for key in ("A", "mu_E", "mu_W", "fit_idx", "test_idx", "basis", "null_bases"):
            assert np.array_equal(arrays[key], one[0][key]), key
            np.testing.assert_allclose(arrays[key], ref[f"arrays.{key}"], rtol=1e-12, atol=1e-14, err_msg=key)
        for key, value in old_summary.items():
            assert summary[key] == one[1][key], key
            assert summary[key] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), key
        for column in ("share", "share_sd", "own_share", "normalised", "p_vs_null", "r2"):
            assert np.array_equal(table[column], one[2][column], equal_nan=True), column
            np.testing.assert_allclose(table[column].to_numpy(float), ref[f"table.{column}"], rtol=1e-12,
                                       atol=1e-14, err_msg=column)
        for column in ("target", "matrix", "basis"):
            assert (table[column].to_numpy(str) == ref[f"table.{column}"]).all(), column
