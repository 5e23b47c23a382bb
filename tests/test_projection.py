import numpy as np
import pytest

from corpus_weights.measure.alignment import corpus_basis, fit_ridge_map, stratified_halves
from corpus_weights.measure.projection import pca_basis, projection_share, r2, random_basis, shares_table

d, dc, K, V = 32, 24, 4, 400


def planted(rng, inside=True):
    E = rng.standard_normal((V, dc)) * np.linspace(3, 0.3, dc)
    pi = rng.dirichlet(np.ones(V))
    A_true = rng.standard_normal((dc, d))
    W_E = E @ A_true
    fit_idx, test_idx = stratified_halves(np.argsort(-pi)[:300], 0)
    fit = fit_ridge_map(E, W_E, fit_idx, test_idx)
    mu = pi @ E
    lam, U = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))
    B = corpus_basis(fit["A"], U[:, ::-1])[:, :K]
    P = B @ B.T
    w = {"W_E": W_E, "W_pos": rng.standard_normal((8, d)), "ln_final.w": np.ones(d)}
    for i in range(2):
        for t, shape in (("W_Q", (d, d)), ("W_K", (d, d)), ("W_V", (d, d)), ("W_in", (4 * d, d))):
            X = rng.standard_normal(shape)
            w[f"L{i}.{t}"] = X @ P if inside else X - X @ P
        for t, shape in (("W_O", (d, d)), ("W_out", (d, 4 * d))):
            X = rng.standard_normal(shape)
            w[f"L{i}.{t}"] = P @ X if inside else X - P @ X
    return w, B, fit


def test_planted_inside_and_orthogonal():
    rng = np.random.default_rng(0)
    w, B, fit = planted(rng, True)
    assert fit["heldout_r2"] > 1 - 1e-6
    df = shares_table(w, {"corpus": B}, K)
    ne = df[(df.basis == "corpus") & (df.layer >= 0)]
    assert len(ne) == 12 and np.allclose(ne.share, 1, atol=1e-6) and np.allclose(ne.normalised, 1, atol=1e-6)
    pooled = df[(df.matrix == "pooled_nonembed") & (df.basis == "corpus")].iloc[0]
    assert abs(pooled.share - 1) < 1e-6 and abs(pooled.normalised - 1) < 1e-6
    w2, B2, _ = planted(np.random.default_rng(0), False)
    df2 = shares_table(w2, {"corpus": B2}, K)
    ne2 = df2[(df2.basis == "corpus") & (df2.layer >= 0)]
    assert np.allclose(ne2.share, 0, atol=1e-6)


def test_partial_share_and_normalised_score_by_hand():
    """Rows e1 (weight 3²) and e2 (weight 1²) and e3 (weight 2²); basis {e1}: share 9/14; own PCA (K=1) also e1."""
    dd = 8
    e = np.eye(dd)
    X = np.stack([3 * e[0], e[1], 2 * e[2]])
    w = {"W_E": np.ones((2, dd)), "L0.W_Q": X}
    B = e[:, [1]]  # the weakest direction
    df = shares_table(w, {"b": B}, 1)
    row = df[(df.matrix == "W_Q") & (df.basis == "b")].iloc[0]
    assert np.isclose(row.share, 1 / 14) and np.isclose(row.own_share, 9 / 14)
    assert np.isclose(row.normalised, (1 / 14 - 1 / dd) / (9 / 14 - 1 / dd))
    own2 = shares_table(w, {"b": e[:, :2]}, 2)
    assert np.isclose(own2[(own2.matrix == "W_Q") & (own2.basis == "own")].share.iloc[0], 13 / 14)  # top-2 exactly
    assert np.isclose(projection_share(X, e[:, [0, 2]]), 13 / 14)


def test_random_basis_orthonormal_and_mean_K_over_d_within_standard_error():
    rng = np.random.default_rng(1)
    for _ in range(5):
        Bq = random_basis(d, K, rng)
        assert np.allclose(Bq.T @ Bq, np.eye(K), atol=1e-12)
    w, B, _ = planted(rng, True)
    n = 200
    rand = [random_basis(d, K, rng) for _ in range(n)]
    df = shares_table(w, {"random": rand}, K)
    r = df[(df.basis == "random")]
    assert (r.n_draws == n).all()
    se = r.share_sd / np.sqrt(n)
    assert (np.abs(r.share - K / d) < 4 * se).all()


def test_dW_subtracts_an_init_outside_the_basis():
    rng = np.random.default_rng(2)
    w, B, _ = planted(rng, True)  # every layer matrix inside span(B)
    P_perp = np.eye(d) - B @ B.T
    init = {}
    for k, v in w.items():
        noise = rng.standard_normal(v.shape)
        if k.split(".")[-1] in ("W_O", "W_out"):
            init[k] = P_perp @ noise  # columns outside the basis
        else:
            init[k] = noise @ P_perp if v.ndim == 2 else v
    trained = {k: w[k] + init[k] if w[k].ndim == 2 else w[k] for k in w}
    dW = shares_table(trained, {"corpus": B}, K, target="dW", W_init=init)
    W = shares_table(trained, {"corpus": B}, K, target="W")
    sel = lambda df: df[(df.basis == "corpus") & (df.matrix == "pooled_nonembed")].share.iloc[0]  # noqa: E731
    assert np.isclose(sel(dW), 1, atol=1e-9)  # the update lies in the basis ...
    assert sel(W) < 0.9  # ... the weights themselves do not


def test_basics():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, d))
    Bp = pca_basis(X, 3, center=False)
    assert np.allclose(Bp.T @ Bp, np.eye(3))
    assert np.isclose(projection_share(X, np.eye(d)), 1)
    assert np.isclose(projection_share(X, np.eye(d)[:, :3]), (X[:, :3] ** 2).sum() / (X ** 2).sum())
    assert np.isclose(r2(X, X), 1) and r2(X, np.full_like(X, X.mean())) == 0


def _one_layer(rng, d=6):
    w = {"W_E": rng.standard_normal((10, d)), "ln_final.w": np.ones(d)}
    for t, shape in (("W_Q", (d, d)), ("W_K", (d, d)), ("W_V", (d, d)), ("W_O", (d, d)), ("W_in", (3 * d, d)),
                     ("W_out", (d, 3 * d))):
        w[f"L0.{t}"] = rng.standard_normal(shape)
    return w


def test_shares_table_paths_cache_draws_and_embeddings():
    from corpus_weights.measure.projection import _grams

    rng = np.random.default_rng(5)
    w = _one_layer(rng)
    B = np.linalg.qr(rng.standard_normal((6, 4)))[0]
    draws = [np.linalg.qr(rng.standard_normal((6, 4)))[0] for _ in range(3)]
    df = shares_table(w, {"none": [], "b": B, "r": draws}, 2, keep_draws=True)
    assert set(df.basis) == {"own", "b", "r"}  # a basis with zero draws is skipped, the others kept
    assert (df.K == 2).all() and (df.d == 6).all()
    emb = df[(df.matrix == "W_E") & (df.basis == "b")].iloc[0]
    X = w["W_E"]
    assert emb.layer == -1 and np.isclose(emb.share, projection_share(X, B[:, :2]))
    r = df[(df.matrix == "W_Q") & (df.basis == "r")].iloc[0]
    per_draw = [projection_share(_rows(w, "L0.W_Q"), D[:, :2]) for D in draws]
    assert np.allclose(r.share_draws, per_draw) and np.isclose(r.share, np.mean(per_draw))
    assert np.isclose(r.share_sd, np.std(per_draw, ddof=1)) and r.n_draws == 3 and r.layer == 0
    single = df[(df.matrix == "W_Q") & (df.basis == "b")].iloc[0]
    assert np.isnan(single.share_sd) and single.n_draws == 1 and single.share_draws == [single.share]
    pooled = df[(df.matrix == "pooled_nonembed") & (df.basis == "own")].iloc[0]
    assert pooled.layer == -1
    assert "share_draws" not in shares_table(w, {"b": B}, 2).columns
    no_emb = shares_table(w, {"b": B}, 2, include_embeddings=False)
    assert "W_E" not in set(no_emb.matrix) and "W_Q" in set(no_emb.matrix)
    cached = shares_table(w, {"b": B}, 2, _cache=_grams(w, "W", None, True))
    assert cached.equals(shares_table(w, {"b": B}, 2))
    assert "W_E" in set(shares_table(w, {"b": B}, 2).matrix)  # embeddings included by default


def _rows(w, name):
    from corpus_weights.measure.residual_space import residual_vectors

    return residual_vectors(name, np.asarray(w[name]))


def test_shares_table_zero_matrix_small_own_and_errors():
    rng = np.random.default_rng(6)
    w = _one_layer(rng)
    init = {k: v.copy() for k, v in w.items()}
    B = np.linalg.qr(rng.standard_normal((6, 3)))[0]
    dW = shares_table(w, {"b": B}, 2, target="dW", W_init=init)  # untrained: every ΔW is zero
    assert dW.share.isna().all() and dW.own_share.isna().all() and dW.normalised.isna().all()
    tiny = {k: 1e-3 * v for k, v in w.items()}  # squared norms far below 1 are still shares
    assert np.allclose(shares_table(tiny, {"b": B}, 2).share, shares_table(w, {"b": B}, 2).share)
    full = shares_table(w, {"b": np.eye(6)}, 6)  # K = d: own = K/d = 1, no normalised score
    assert full.normalised.isna().all() and np.allclose(full.share, 1)
    with pytest.raises(ValueError, match="^target='dW' needs W_init$"):
        shares_table(w, {"b": B}, 2, target="dW")
    with pytest.raises(ValueError, match="^target must be 'W' or 'dW'$"):
        shares_table(w, {"b": B}, 2, target="X")


def test_pca_basis_weighted_and_centred_by_hand():
    X = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) + [10.0, 0.0]
    B = pca_basis(X, 1)  # centred: variance 2 along x beats 0.5 along y
    assert np.allclose(np.abs(B[:, 0]), [1, 0]) and B[np.abs(B[:, 0]).argmax(), 0] > 0
    B2 = pca_basis(X, 2)
    assert np.allclose(np.abs(B2), np.eye(2))  # descending order, both directions
    Bw = pca_basis(X, 1, weights=np.array([0.01, 0.01, 1.0, 1.0]))  # weights favour the y-spread rows
    assert np.allclose(np.abs(Bw[:, 0]), [0, 1], atol=1e-3)
    Bw3 = pca_basis(X, 1, weights=np.array([0.03, 0.03, 3.0, 3.0]))  # weights are normalised
    assert np.allclose(Bw3, Bw)
    Bu = pca_basis(X, 1, center=False)  # uncentred: the offset (10, 0) dominates
    assert np.allclose(np.abs(Bu[:, 0]), [1, 0])
    Y = np.array([[0.0, 3.0], [0.0, -3.0], [1.0, 0.0], [-1.0, 0.0]]) + [5.0, 0.0]  # offset along the weak axis
    assert np.allclose(np.abs(pca_basis(Y, 1)[:, 0]), [0, 1])
    Z = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0], [0.0, 0.0]])
    assert np.allclose(np.abs(pca_basis(Z, 1)[:, 0]), [0, 1])  # 5 rows, 2 columns: weights are 1/n of rows


def test_aligned_corpus_basis_is_orth_of_the_mapped_eigenvectors():
    from corpus_weights.measure.projection import aligned_corpus_basis

    A = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # corpus (2-dim) -> model (3-dim)
    U = np.eye(2)
    B = aligned_corpus_basis(A, U)
    assert B.shape == (3, 2) and np.allclose(np.abs(B), [[1, 0], [0, 0], [0, 1]])
    assert np.allclose(aligned_corpus_basis(A, U[:, :1]), B[:, :1])


def test_shares_table_two_draws_have_a_spread():
    rng = np.random.default_rng(7)
    w = _one_layer(rng)
    draws = [np.linalg.qr(rng.standard_normal((6, 3)))[0] for _ in range(2)]
    row = shares_table(w, {"r": draws}, 2).query("matrix == 'W_Q' and basis == 'r'").iloc[0]
    assert row.n_draws == 2 and row.share_sd > 0


# ------------------------------------------------------------------------ uncertainty and power of the aligned share

from corpus_weights.measure.projection import (  # noqa: E402
    minimum_detectable_excess, planted_power, planted_share_increase, planted_z, pooled_nonembed_gram,
    share_scale_factor, share_uncertainty,
)


def test_share_uncertainty_by_hand():
    u = share_uncertainty(0.5, [0.1, 0.2, 0.3], [0.48, 0.5, 0.52])
    # null sd 0.1, split sd 0.02 -> total sqrt(0.0104); z = (0.5 - 0.2) / that
    assert np.isclose(u["null_mean"], 0.2) and np.isclose(u["null_sd"], 0.1) and np.isclose(u["split_sd"], 0.02)
    assert np.isclose(u["total_sd"], np.sqrt(0.0104)) and np.isclose(u["z_total"], 0.3 / np.sqrt(0.0104))
    assert u["n_splits"] == 3
    none = share_uncertainty(0.5, [0.1, 0.2, 0.3], None)  # spread not measured: no total claimed
    assert none["n_splits"] == 0 and np.isnan(none["split_sd"]) and np.isnan(none["z_total"])
    assert np.isnan(share_uncertainty(0.5, [0.2, 0.2], [0.5, 0.5])["z_total"])  # zero spread: no z


def _model_and_bases(rng, n_null=30, n_splits=5, tilt=0.0):
    """One-layer model, an aligned basis B (d x K), null bases and split bases near B (tilt: how far splits move)."""
    w = _one_layer(rng, d=12)
    B = np.linalg.qr(rng.standard_normal((12, 3)))[0]
    nulls = np.stack([np.linalg.qr(rng.standard_normal((12, 3)))[0] for _ in range(n_null)])
    splits = np.stack([B] + [np.linalg.qr(B + tilt * rng.standard_normal((12, 3)))[0] for _ in range(n_splits - 1)])
    return w, B, nulls, splits


def _pooled(w, B):
    return shares_table(w, {"b": B}, B.shape[1]).query("matrix == 'pooled_nonembed' and basis == 'b'").share.iloc[0]


@pytest.mark.parametrize("delta", [0.0, 0.05, 0.3])
def test_planted_share_increase_raises_the_pooled_share_by_exactly_delta(delta):
    rng = np.random.default_rng(10)
    w, B, _, _ = _model_and_bases(rng)
    s = _pooled(w, B)
    planted = planted_share_increase(w, B, delta)
    assert np.isclose(_pooled(planted, B), s + delta, rtol=0, atol=1e-12)
    P_perp = np.eye(12) - B @ B.T
    for name in w:
        if name.startswith("L0.W_O") or name.startswith("L0.W_out"):  # writing: columns are residual vectors
            assert np.allclose(P_perp @ planted[name], P_perp @ w[name])  # the orthogonal part is kept
        elif name.startswith("L0.W_"):
            assert np.allclose(planted[name] @ P_perp, w[name] @ P_perp)
        else:
            assert np.array_equal(planted[name], w[name])  # embeddings and LN weights untouched
    a = share_scale_factor(s, delta)  # the closed form: a² s / (a² s + 1 − s) = s + δ
    assert np.isclose(a * a * s / (a * a * s + 1 - s), s + delta)
    with pytest.raises(ValueError, match="cannot rise by"):
        share_scale_factor(s, 1 - s)


def test_planted_z_is_the_planted_model_through_shares_table():
    rng = np.random.default_rng(11)
    w, B, nulls, splits = _model_and_bases(rng, tilt=0.3)
    planted = planted_share_increase(w, B, 0.1)
    t = shares_table(planted, {"b": B, "null": list(nulls), "splits": list(splits)}, 3, keep_draws=True)
    row = lambda b: t.query("matrix == 'pooled_nonembed' and basis == @b").iloc[0]  # noqa: E731
    expected = share_uncertainty(row("b").share, row("null").share_draws, row("splits").share_draws)
    got = planted_z(pooled_nonembed_gram(w), B, nulls, splits, 0.1)
    assert np.isclose(got["share"], row("b").share)
    for key, value in expected.items():
        assert np.isclose(got[key], value, rtol=1e-10), key


def test_planted_z_rises_with_delta_and_mde_is_where_it_crosses_3():
    rng = np.random.default_rng(12)
    w, B, nulls, splits = _model_and_bases(rng, tilt=0.1)
    G = pooled_nonembed_gram(w)
    s = _pooled(w, B)
    deltas = np.linspace(0, 0.95 * (1 - s), 40)
    z = np.array([planted_z(G, B, nulls, splits, dl)["z_total"] for dl in deltas])
    assert (np.diff(z) > 0).all() and z[0] < 3 < z[-1]
    mde = minimum_detectable_excess(G, B, nulls, splits)
    assert 0 < mde < 1 - s
    assert planted_z(G, B, nulls, splits, mde)["z_total"] >= 3 > planted_z(G, B, nulls, splits, mde - 1e-5)["z_total"]
    power = planted_power(w, B, nulls, splits, min_effect=0.05)
    assert power["planted_delta"] == 0.05 and np.isclose(power["mde"], mde)
    assert np.isclose(power["planted_z"], planted_z(G, B, nulls, splits, 0.05)["z_total"])
    assert power["planted_detected"] == (power["planted_z"] > 3) == (mde < 0.05)


def test_mde_is_zero_when_already_detected_and_nan_when_never():
    rng = np.random.default_rng(13)
    w, B, nulls, splits = _model_and_bases(rng)
    G = pooled_nonembed_gram(w)
    assert minimum_detectable_excess(G, B, nulls, splits, threshold=-100) == 0.0  # the model itself is past it
    assert np.isnan(minimum_detectable_excess(G, B, nulls, splits, threshold=1e6))  # no δ < 1 − s gets there
    power = planted_power(w, B, nulls, splits, min_effect=0.05, threshold=1e6)
    assert np.isnan(power["mde"]) and not power["planted_detected"]
