"""Invariance: a function-preserving rotation of the residual basis (LN folded, Q 1 = 1) leaves
logits and every corrected metric unchanged; the note protocol's numbers move."""
import numpy as np
import scipy.sparse as sp

from corpus_weights.alignment import (
    attention_vs_corpus, fit_vocab_map, layernormed, positive_control, qk_residual_forms,
    token_space_scores,
)
from corpus_weights.note_protocol import note_basis, note_projection_r2, note_qk_cosines
from corpus_weights.projection import aligned_corpus_basis, pca_basis, shares_table
from test_residual_space import small_model

from corpus_weights.residual_space import (
    fold_layernorm, forward_logits, random_rotation_fixing_ones, rotate_residual,
)

V, d, L, H, K = 40, 16, 2, 2, 4


def setup():
    rng = np.random.default_rng(0)
    w = small_model(rng, V=V, d=d, L=L)
    w = {k: v.astype(np.float32) for k, v in w.items()}
    C = sp.csr_matrix(rng.poisson(3.0, (V, V)) * (rng.random((V, V)) < 0.3))
    pi = np.asarray(C.sum(1)).ravel() + 1.0
    pi /= pi.sum()
    E = rng.standard_normal((V, d)) * np.linspace(2, 0.5, d)
    E_out = rng.standard_normal((V, d))
    Q = random_rotation_fixing_ones(d, rng)
    return w, C, pi, E, E_out, Q, rng


def corrected(w, C, pi, E):
    fit = fit_vocab_map(E, w["W_E"], pi, top_n=V, seed=0)
    mu = pi @ E
    Sig = (E - mu).T @ ((E - mu) * pi[:, None])
    U = np.linalg.eigh(Sig)[1][:, ::-1]
    bases = {"corpus": aligned_corpus_basis(fit["A"], U[:, :K]), "W_E_pca": pca_basis(w["W_E"], K, weights=pi)}
    df = shares_table(w, bases, K)
    top = np.argsort(-pi, kind="stable")[:30]
    X = layernormed(w["W_E"][top])
    qk = np.stack([token_space_scores(M, X) for i in range(L)
                   for M in qk_residual_forms(w[f"L{i}.W_Q"], w[f"L{i}.W_K"], H)])
    att = attention_vs_corpus(w, C, top, H, n_draws=0)
    pc = positive_control(w, C, top)
    return dict(shares=df.share.to_numpy(), normalised=df.normalised.to_numpy(), heldout=fit["heldout_r2"],
                qk=qk, att_r=att.r.to_numpy(), pc=pc["r"])


def test_logits_invariant():
    w, C, pi, E, E_out, Q, rng = setup()
    tok = rng.integers(0, V, size=(2, 8))
    a = forward_logits(w, tok, H)
    f = fold_layernorm(w)
    b = forward_logits(f, tok, H)
    c = forward_logits(rotate_residual(f, Q), tok, H)
    assert np.abs(a - b).max() < 1e-4 and np.abs(b - c).max() < 1e-4


def test_corrected_metrics_invariant_note_metrics_move():
    w, C, pi, E, E_out, Q, rng = setup()
    f = fold_layernorm(w)
    r = rotate_residual(f, Q)
    m0, m1 = corrected(f, C, pi, E), corrected(r, C, pi, E)
    for k in m0:
        a, b = np.asarray(m0[k]), np.asarray(m1[k])
        assert np.allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max()), k
    # note protocol: unaligned corpus basis / T_proj in model coordinates
    mu = pi @ E
    Sig = (E - mu).T @ ((E - mu) * pi[:, None])
    B = note_basis(np.linalg.eigh(Sig)[1][:, ::-1], mu, K)
    n0, n1 = note_projection_r2(f, B, True)["r2"], note_projection_r2(r, B, True)["r2"]
    assert abs(n0 - n1) > 1e-3
    T = sp.diags(1 / np.maximum(np.asarray(C.sum(1)).ravel(), 1)) @ C
    q0 = note_qk_cosines(f, E, E_out, T, n_draws=10)
    q1 = note_qk_cosines(r, E, E_out, T, n_draws=10)
    # the note's literal W_Q W_K^T lives in head-output space: W_Q Q (W_K Q)^T = W_Q W_K^T, so a
    # residual rotation does NOT move it (it is instead not invariant to the per-head gauge
    # W_Q,h -> R W_Q,h, W_K,h -> R^-T W_K,h); the residual form W_Q^T W_K compared with an
    # unaligned T_proj does move.
    assert np.allclose(q0.cos, q1.cos, atol=1e-9)
    assert np.abs(q0.cos_residual_form - q1.cos_residual_form).max() > 1e-3


def test_head_gauge_moves_note_qk_not_token_scores():
    w, C, pi, E, E_out, Q, rng = setup()
    f = fold_layernorm(w)
    g = {k: v.copy() for k, v in f.items()}
    dh = d // H
    for h in range(H):
        R = rng.standard_normal((dh, dh)) + 3 * np.eye(dh)
        sl = slice(h * dh, (h + 1) * dh)
        g["L0.W_Q"][sl] = R @ f["L0.W_Q"][sl]
        g["L0.W_K"][sl] = np.linalg.inv(R).T @ f["L0.W_K"][sl]
    tok = rng.integers(0, V, size=(1, 8))
    assert np.abs(forward_logits(f, tok, H) - forward_logits(g, tok, H)).max() < 1e-4
    top = np.argsort(-pi)[:30]
    a0 = attention_vs_corpus(f, C, top, H, n_draws=0).r.to_numpy()
    a1 = attention_vs_corpus(g, C, top, H, n_draws=0).r.to_numpy()
    assert np.allclose(a0, a1, rtol=1e-6)
    T = sp.diags(1 / np.maximum(np.asarray(C.sum(1)).ravel(), 1)) @ C
    c0 = note_qk_cosines(f, E, E_out, T, n_draws=5).cos.to_numpy()
    c1 = note_qk_cosines(g, E, E_out, T, n_draws=5).cos.to_numpy()
    assert abs(c0[0] - c1[0]) > 1e-3
