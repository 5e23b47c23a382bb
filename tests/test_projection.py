import numpy as np

from corpus_weights.alignment import fit_vocab_map
from corpus_weights.projection import (
    aligned_corpus_basis, pca_basis, projection_share, r2, random_basis, shares_table,
)

d, dc, K, V = 32, 24, 4, 400


def planted(rng, inside=True):
    E = rng.standard_normal((V, dc)) * np.linspace(3, 0.3, dc)
    pi = rng.dirichlet(np.ones(V))
    A_true = rng.standard_normal((dc, d))
    W_E = E @ A_true
    fit = fit_vocab_map(E, W_E, pi, top_n=300, seed=0)
    mu = pi @ E
    Sig = (E - mu).T @ ((E - mu) * pi[:, None])
    lam, U = np.linalg.eigh(Sig)
    U_K = U[:, ::-1][:, :K]
    B = aligned_corpus_basis(fit["A"], U_K)
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
    assert fit["heldout_r2"] > 1 - 1e-9
    df = shares_table(w, {"corpus": B}, K)
    ne = df[(df.basis == "corpus") & (df.layer >= 0)]
    assert len(ne) == 12 and np.allclose(ne.share, 1, atol=1e-6) and np.allclose(ne.normalised, 1, atol=1e-6)
    pooled = df[(df.matrix == "pooled_nonembed") & (df.basis == "corpus")].iloc[0]
    assert abs(pooled.share - 1) < 1e-6 and abs(pooled.normalised - 1) < 1e-6
    w2, B2, _ = planted(np.random.default_rng(0), False)
    df2 = shares_table(w2, {"corpus": B2}, K)
    ne2 = df2[(df2.basis == "corpus") & (df2.layer >= 0)]
    assert np.allclose(ne2.share, 0, atol=1e-6)


def test_random_basis_gives_K_over_d():
    rng = np.random.default_rng(1)
    w, B, _ = planted(rng, True)
    rand = [random_basis(d, K, rng) for _ in range(50)]
    X = rng.standard_normal((500, d))
    w["L0.W_in"] = np.concatenate([X, X[:12]])[: 4 * d]
    df = shares_table(w, {"random": rand, "corpus": B}, K)
    r = df[(df.basis == "random")]
    assert (r.n_draws == 50).all()
    assert (np.abs(r.share - K / d) < 3 * r.share_sd).all()
    own = df[df.basis == "own"]
    assert (own.share >= df[df.basis == "random"].share.values - 1e-12).all()


def test_dW_and_basics():
    rng = np.random.default_rng(2)
    w, B, _ = planted(rng, True)
    w0 = {k: 0.5 * v for k, v in w.items()}
    df = shares_table(w, {"corpus": B}, K, target="dW", W_init=w0)
    assert (df.target == "dW").all()
    X = rng.standard_normal((50, d))
    Bp = pca_basis(X, 3, center=False)
    assert np.allclose(Bp.T @ Bp, np.eye(3))
    assert np.isclose(projection_share(X, np.eye(d)), 1)
    assert np.isclose(r2(X, X), 1) and r2(X, np.full_like(X, X.mean())) == 0
