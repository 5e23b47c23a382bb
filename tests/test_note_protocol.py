import numpy as np
import scipy.sparse as sp

from corpus_weights.measure.note_protocol import (
    l0_wq_alignment, norm_matched_r2, note_basis, note_predictions, note_projection_r2,
    note_qk_cosines, note_rows, note_r2_curve, parameter_accounting, t_proj, transition_matrix,
)
from corpus_weights.measure.projection import r2


def model(rng, V=50, d=16, L=2):
    w = {"W_E": rng.standard_normal((V, d)), "W_pos": rng.standard_normal((8, d)), "ln_final.w": np.ones(d)}
    for i in range(L):
        for t in ("W_Q", "W_K", "W_V", "W_O"):
            w[f"L{i}.{t}"] = rng.standard_normal((d, d))
        w[f"L{i}.W_in"] = rng.standard_normal((4 * d, d))
        w[f"L{i}.W_out"] = rng.standard_normal((d, 4 * d))
        w[f"L{i}.ln1.w"] = np.ones(d)
        w[f"L{i}.ln2.w"] = np.ones(d)
    return w


def test_r2_identity():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((40, 16)) + 0.3
    H = W + 0.7 * rng.standard_normal(W.shape)
    res = norm_matched_r2(W, H)
    assert np.isclose(res["r2"], res["identity"], atol=1e-12) and res["r2"] > 0
    un = norm_matched_r2(rng.standard_normal((400, 64)), rng.standard_normal((400, 64)))
    assert abs(un["r2"] + 1) < 0.05 and np.isclose(un["r2"], 2 * un["cos"] - 1)
    w = model(rng)
    E = rng.standard_normal((50, 16))
    pr = note_predictions(w, E, rng.dirichlet(np.ones(50)))
    for k in ("direct", "random"):
        assert np.isclose(pr[k]["r2"], pr[k]["identity"]) and abs(pr[k]["r2"] + 1) < 0.2


def test_projection_r2_matches_direct():
    rng = np.random.default_rng(1)
    w = model(rng)
    U, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    mu = rng.standard_normal(16)
    B = note_basis(U, mu, 4)
    assert B.shape == (16, 5) and np.allclose(B.T @ B, np.eye(5))
    for inc in (True, False):
        X = note_rows(w, inc)
        res = note_projection_r2(w, B, inc)
        assert np.isclose(res["r2"], r2(X, X @ B @ B.T)) and res["n_rows"] == X.shape[0]
    assert note_rows(w, True).shape[0] == 50 + 8 + 2 * (3 * 16 + 16 + 64 + 64)
    df = note_r2_curve(w, U, mu, [2, 4])
    assert len(df) == 4


def test_qk_and_accounting():
    rng = np.random.default_rng(2)
    w = model(rng)
    C = sp.random(50, 50, density=0.2, random_state=3, format="csr") * 100
    T = transition_matrix(C)
    Ein, Eout = rng.standard_normal((50, 16)), rng.standard_normal((50, 16))
    Tp = t_proj(Ein, Eout, T)
    assert np.allclose(Tp, Ein.T @ T.toarray() @ Eout)
    df = note_qk_cosines(w, Ein, Eout, T, n_draws=50)
    assert len(df) == 2 and (df.null_sd > 0).all()
    al = l0_wq_alignment(w, Tp)
    assert 0 <= al["abs_cos"] <= 1 and 0.15 < al["null_expected_abs_cos"] < 0.25
    acc = parameter_accounting(w, 4)
    o = acc["ours"]
    assert o["basis_params"] == 4 * 16 + 16 and o["compression"] == 4
    assert o["raw_weight_params"] == o["rows"] * 16 and o["score_params"] == o["rows"] * 4
    assert o["non_weight_params"] == 5 * 16  # LN weights
    n = acc["note"]
    assert n["rows"] * n["K"] == n["score_params"] and n["rows"] * n["d"] == n["raw_weight_params"]
