import numpy as np
import pytest

from corpus_weights.measure.attention import row_centred_pearson
from corpus_weights.core.linalg import cosine, row_centre
from corpus_weights.core.nulls import (
    binned_permutation, empirical_p, log_frequency_bins, normal_p, permutation_test, permutation_test_factors,
    random_rotation_cosine_null, random_rotation_cosine_null_multi,
)


def test_bins_and_permutation():
    # Zipf-like counts: strata are narrow at the top (equal width) and at the bottom (equal occupancy)
    counts = np.array([100000, 3000, 2900, 40, 39, 38, 37, 36, 12, 11, 10, 9])
    bins = log_frequency_bins(counts, 4)
    assert bins[0] != bins[1]  # the top token is never swapped with one ~30x rarer (equal occupancy would)
    assert bins[1] == bins[2]  # tokens of nearly equal count share a stratum
    assert len({bins[i] for i in range(3, 8)}) <= 2 and bins[8] != bins[3]
    assert (np.diff(bins[np.argsort(counts)]) >= 0).all()  # strata ordered by frequency, 0 = rarest
    assert bins[np.argmax(counts)] == bins.max() and bins[np.argmin(counts)] == 0
    counts = np.array([1, 1000, 5, 50, 2, 700, 30, 9, 400, 3])
    bins = log_frequency_bins(counts, 3)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(20):
        p = binned_permutation(bins, rng)
        assert sorted(p) == list(range(10)) and (bins[p] == bins).all()
        draws.append(tuple(p))
    # uniform within bins, not a fixed reshuffle: draws differ, and each position receives every token of its bin
    sizes = np.bincount(bins)
    assert len(set(draws)) > 10 and sizes.max() >= 3
    assert all(len({d[i] for d in draws}) == sizes[bins[i]] for i in range(10))


def test_empirical_and_normal_p():
    null = np.arange(1, 100, dtype=float)  # 99 draws
    assert empirical_p(1000.0, null) == 1 / 100  # never below 1/(n+1)
    assert empirical_p(50.0, null) == (1 + 50) / 100  # ties count against the observation
    assert np.isclose(normal_p(0.0), 0.5) and normal_p(5.0) < 1e-6 < normal_p(4.0)


def test_fast_matches_generic_and_factors():
    rng = np.random.default_rng(1)
    N = 25
    A, B = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    bins = log_frequency_bins(rng.integers(1, 1000, N), 3)
    fast = permutation_test(A, B, bins, 50, seed=3)
    slow = permutation_test(A, B, bins, 50, seed=3, stat=row_centred_pearson)
    assert np.allclose(fast["null"], slow["null"], atol=1e-5)
    assert np.isclose(fast["observed"], slow["observed"]) and np.isclose(fast["p"], slow["p"])
    F, G = rng.standard_normal((3, N, 4)), rng.standard_normal((3, N, 4))
    G -= G.mean(1, keepdims=True)
    As = F @ G.transpose(0, 2, 1)
    fa = permutation_test_factors(F, G, B, bins, 50, seed=3)
    de = permutation_test(As, B, bins, 50, seed=3)
    assert np.allclose(fa["observed"], de["observed"]) and np.allclose(fa["null"], de["null"], atol=1e-5)
    assert np.allclose(fa["observed"][1], row_centred_pearson(As[1], B))


def test_planted_and_structureless():
    rng = np.random.default_rng(2)
    N = 30
    B = rng.standard_normal((N, N))
    bins = log_frequency_bins(rng.integers(1, 1000, N), 3)
    res = permutation_test(B + 0.5 * rng.standard_normal((N, N)), B, bins, 200, seed=0)
    assert res["p"] < 0.01 and res["p"] == 1 / 201
    ps = [permutation_test(rng.standard_normal((N, N)), rng.standard_normal((N, N)), bins, 200, seed=s)["p"]
          for s in range(5)]
    assert all(0 < p <= 1 for p in ps) and not all(p < 0.05 for p in ps)


def test_rotation_null_mean():
    rng = np.random.default_rng(3)
    d = 16
    A = rng.standard_normal((d, d)) + 2 * np.eye(d)
    B = rng.standard_normal((d, d)) + 3 * np.eye(d)
    res = random_rotation_cosine_null(A, B, 400, rng)
    assert abs(res["null_mean"] - res["expected_mean"]) < 4 * res["null_sd"] / np.sqrt(400)
    assert res["expected_mean"] > 0.1
    assert np.isclose(res["observed"], cosine(A, B))
    same = random_rotation_cosine_null(B, B, 200, 0)
    assert np.isclose(same["observed"], 1.0) and same["p"] < 0.01  # A = B: far outside its null
    indep = random_rotation_cosine_null(rng.standard_normal((d, d)), rng.standard_normal((d, d)), 200, 0)
    assert indep["p"] > 0.05 and abs(indep["z"]) < 3  # independent: inside


def test_null_summary_planted_by_hand():
    """Two statistics (rows) against their own null draws: mean, sd with ddof = 1, z, the empirical p counting ties
    as at least as extreme, and the empty-null case (all NaN, zero draws). Found by mutation testing: a summary
    over the wrong axis, ddof = 2 and '>' for '>=' all passed the earlier tests."""
    from corpus_weights.core.nulls import _summary

    obs = np.array([2.0, 0.0])
    null = np.array([[1.0, 2.0, 3.0, 2.0], [0.0, 1.0, -1.0, 0.5]])
    s = _summary(obs, null)
    assert np.allclose(s["null_mean"], [2.0, 0.125])
    assert np.allclose(s["null_sd"], [np.sqrt(2 / 3), np.std(null[1], ddof=1)])
    assert np.allclose(s["z"], (obs - s["null_mean"]) / s["null_sd"])
    assert np.allclose(s["p"], [(1 + 3) / 5, (1 + 3) / 5])  # ties count: 2, 3, 2 >= 2 and 0, 1, 0.5 >= 0
    assert s["n_draws"] == 4 and s["null"] is null
    empty = _summary(obs, np.zeros((2, 0)))
    assert empty["n_draws"] == 0 and empty["null"] is None
    for key in ("null_mean", "null_sd", "z", "p"):
        assert empty[key].shape == (2,) and np.isnan(empty[key]).all()


def test_rotation_null_multi_equals_single_draw_by_draw():
    """The shared-rotation version gives, for each A, exactly the single-A result (same draws, more than one batch
    of 25), and every field is what its definition says: the null values are cos(A, Q B Qᵀ) for Haar Q, the
    expected mean is tr A tr B / (d ‖A‖ ‖B‖), p is two-sided around the sampled mean; no draws -> NaN fields."""
    rng = np.random.default_rng(5)
    d = 5
    As = [rng.standard_normal((d, d)) for _ in range(3)] + [np.eye(d)]
    B = rng.standard_normal((d, d)) + 2 * np.eye(d)
    multi = random_rotation_cosine_null_multi(As, B, 60, 11)
    for A, res in zip(As, multi):
        single = random_rotation_cosine_null(A, B, 60, 11)
        assert single == pytest.approx(res, rel=1e-12, nan_ok=True)
        assert res["n_draws"] == 60
        assert res["observed"] == pytest.approx((A * B).sum() / (np.linalg.norm(A) * np.linalg.norm(B)))
        assert res["expected_mean"] == pytest.approx(np.trace(A) * np.trace(B) / (d * np.linalg.norm(A)
                                                                                     * np.linalg.norm(B)))
        if res["null_sd"] > 1e-9:
            assert res["z"] == pytest.approx((res["observed"] - res["null_mean"]) / res["null_sd"])
        assert 1 / 61 <= res["p"] <= 1
    # the identity is rotation-invariant: every null draw equals the observed cosine, so sd ~ 0 and p = 1
    eye = multi[-1]
    assert eye["null_mean"] == pytest.approx(eye["observed"]) and eye["null_sd"] < 1e-12 and eye["p"] == 1.0
    assert np.isnan(eye["z"])  # no spread: no z (rounding noise over rounding noise is not a z-score)
    # the sampled null mean agrees with the expectation over Haar rotations
    big = random_rotation_cosine_null_multi(As[:1], B, 4000, 2)[0]
    assert abs(big["null_mean"] - big["expected_mean"]) < 4 * big["null_sd"] / np.sqrt(4000)
    empty = random_rotation_cosine_null_multi(As[:1], B, 0, 0)[0]
    assert empty["n_draws"] == 0 and np.isnan(empty["null_mean"]) and np.isnan(empty["p"])


def test_log_frequency_bins_planted_strata():
    from corpus_weights.core.nulls import log_frequency_bins

    counts = np.expm1(np.arange(10.0))  # log(count + 1) = 0, 1, ..., 9
    # n_bins = 3: equal occupancy 0,0,0,0,1,1,1,2,2,2; equal width floor(k / 9 * 3) capped at 2: 0,0,0,1,1,1,2,2,2,2
    assert log_frequency_bins(counts, 3).tolist() == [0, 0, 0, 1, 2, 2, 3, 4, 4, 4]
    shifted = np.expm1(np.arange(10.0) + 5)  # widths are relative to the range, not to zero
    assert log_frequency_bins(shifted, 3).tolist() == [0, 0, 0, 1, 2, 2, 3, 4, 4, 4]
    assert log_frequency_bins(np.full(7, 4.0), 3).tolist() == [0, 0, 0, 1, 1, 2, 2]  # one count: occupancy only
    empty = log_frequency_bins(np.zeros(0), 3)
    assert empty.shape == (0,) and empty.dtype == np.int64
    # ties split by occupancy in index order (a stable sort): 40 tokens seen once, 10 seen 50 times
    counts = np.r_[np.ones(40), np.full(10, 50.0)][np.random.default_rng(0).permutation(50)]
    ones = np.flatnonzero(counts == 1)
    expected = np.full(50, 2)
    expected[ones[:25]], expected[ones[25:]] = 0, 1  # the first 25 tokens seen once (by index) fill the lower half
    assert log_frequency_bins(counts, 2).tolist() == expected.tolist()


def test_benjamini_hochberg_rejects_at_equality_and_normal_p_two_sided():
    from corpus_weights.core.nulls import benjamini_hochberg, normal_p

    assert benjamini_hochberg([0.02, 0.04], q=0.04).tolist() == [True, True]  # p = q k / m exactly is rejected
    assert benjamini_hochberg([0.04, 0.02], q=0.04).tolist() == [True, True]
    assert benjamini_hochberg([0.5, 0.9]).dtype == bool and not benjamini_hochberg([0.5, 0.9]).any()
    assert np.isclose(normal_p(1.959963984540054, two_sided=True), 0.05)
    assert np.isclose(normal_p(-1.959963984540054, two_sided=True), 0.05)
    assert np.isclose(normal_p(1.6448536269514722), 0.05)


def test_null_numerators_in_blocks_equal_one_block():
    from corpus_weights.core.nulls import _null_numerators

    rng = np.random.default_rng(0)
    Ac, Bc = rng.standard_normal((2, 9, 9)), rng.standard_normal((9, 9))
    P = np.stack([rng.permutation(9) for _ in range(4)])
    whole = _null_numerators(lambda I: Ac[:, I, :], 2, Bc, P)
    blocks = _null_numerators(lambda I: Ac[:, I, :], 2, Bc, P, block_bytes=1)  # one row at a time
    assert np.allclose(whole, blocks, rtol=1e-5)
    by_hand = np.array([[(Ac[h] * Bc[p][:, p]).sum() for p in P] for h in range(2)])
    assert np.allclose(whole, by_hand, rtol=1e-4)


def test_rotation_null_with_two_draws_has_a_spread():
    from corpus_weights.core.nulls import random_rotation_cosine_null

    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((2, 5, 5))
    out = random_rotation_cosine_null(A, B, n_draws=2, rng=3)
    assert out["n_draws"] == 2 and out["null_sd"] > 0 and np.isfinite(out["z"])
