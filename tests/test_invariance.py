"""Invariance: a function-preserving rotation of the residual basis (LN folded, Q 1 = 1) leaves logits and every
corrected metric unchanged, computed by the pipeline's own measure_model / projection_table with nulls on; the note
protocol's numbers move."""
import numpy as np
import scipy.sparse as sp

from corpus_weights.measure.analysis import align_model, attention_model, measure_model, projection_table
from corpus_weights.measure.attention import attention_vs_corpus
from corpus_weights.measure.loss_ladder import corpus_ladder
from corpus_weights.measure.note_protocol import note_basis, note_projection_r2, note_qk_cosines
from test_residual_space import small_model

from corpus_weights.measure.residual_space import (
    fold_layernorm, forward_logits, random_rotation_fixing_ones, rotate_residual,
)

V, d, L, H, K = 40, 16, 2, 2, 4  # V > 2d: the fit half has more tokens than dimensions (Procrustes unique)
PARAMS = dict(top_n=40, freq_bins=3, permutations=50, map_null_draws=100, basis_null_draws=5, splits=5, headline_K=K,
              seed=0)


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


def corpus_dict(C, pi, E, E_out):
    mu = pi @ E
    eigvecs = np.linalg.eigh((E - mu).T @ ((E - mu) * pi[:, None]))[1][:, ::-1]
    return dict(counts=C, E_in=E, E_out=E_out, pi=pi, eigvecs=eigvecs, mu=mu, special=[])


def corrected(w, init, C, pi, E, E_out, rng_seed=0):
    """Every corrected-protocol number the pipeline reports for one model, as a flat dict of arrays."""
    corpus = corpus_dict(C, pi, E, E_out)
    ids = np.random.default_rng(rng_seed).integers(0, V, 600)
    ladder = corpus_ladder(ids[:500], ids[500:], V)
    out = measure_model(w, corpus, ladder, ids[500:], 5.0, PARAMS)
    out["attention"], _ = attention_model(w, corpus, H, PARAMS)
    arrays, out["alignment"] = align_model(w, corpus, PARAMS)
    t = projection_table(w, init, arrays["basis"], arrays["null_bases"],
                         corpus["eigvecs"], corpus["mu"], pi, K, random_draws=0, seed=0,
                         split_bases=arrays["split_bases"], min_effect=0.05)
    t = t[~t.basis.isin(["note_unaligned", "note_linear", "random"])]
    a, c = out["alignment"], out["controls"]
    aligned = t[t.basis == "corpus_aligned"]
    assert a["n_splits"] == PARAMS["splits"] and aligned.share_total_sd.notna().all()  # the columns below are real
    return dict(
        shares=t.share.to_numpy(), normalised=t.normalised.to_numpy(), p_vs_null=t.p_vs_null.to_numpy(),
        split_uncertainty=aligned[["share_splits_sd", "n_splits", "share_total_sd", "z_total"]].to_numpy(float),
        power=aligned[["planted_delta", "planted_z", "planted_detected", "mde"]].to_numpy(float, na_value=np.nan),
        map=[a["vocab_map_heldout_r2"], a["vocab_map_train_r2"], a["vocab_map_null"]["mean"],
             a["vocab_map_null"]["p"], a["procrustes_heldout_cos"], a["procrustes_null"]["mean"],
             a["cka_debiased"], a["cka_plugin"], a["vocab_map_heldout_r2_E_out"]],
        map_splits=[*a["vocab_map_heldout_r2_splits"], a["vocab_map_heldout_r2_split_sd"],
                    *a["procrustes_heldout_cos_splits"], a["procrustes_heldout_cos_split_sd"]],
        controls=[c["bigram"]["r"], c["bigram"]["z"], c["unigram"]["r"], c["direct_path_r"]],
        ladder=[out["ladder"]["ce_pos0"], out["ladder"]["learned_fraction"]],
        attention=out["attention"][["r", "label_z", "label_p", "qk_null_mean", "qk_null_sd", "qk_z",
                                    "qk_p"]].to_numpy(),  # label-permutation test and the null over attention
        spectra=out["weight_spectra"]["pr"].to_numpy(),
    ), out


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
    init = small_model(np.random.default_rng(1), V=V, d=d, L=L)
    f, f_init = fold_layernorm(w), fold_layernorm(init)
    r, r_init = rotate_residual(f, Q), rotate_residual(f_init, Q)
    m_raw, out_raw = corrected(w, init, C, pi, E, E_out)
    m_fold, _ = corrected(f, f_init, C, pi, E, E_out)
    m_rot, out_rot = corrected(r, r_init, C, pi, E, E_out)
    for m in (m_fold, m_rot):
        for k in m_raw:
            a, b = np.asarray(m_raw[k], dtype=float), np.asarray(m[k], dtype=float)
            assert np.allclose(a, b, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(a)), equal_nan=True), k
    # the note protocol (raw weights, unaligned coordinates) is not invariant
    assert abs(out_raw["note_protocol"]["l0_wq_alignment"] - out_rot["note_protocol"]["l0_wq_alignment"]) > 1e-4
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


def test_power_of_the_basis_test_is_invariant():
    """planted_power on a rotated model with its bases rotated alongside (B -> Qᵀ B) gives the same planted z and
    the same minimum detectable excess (the pipeline case above has a noise map, where mde is NaN)."""
    from corpus_weights.measure.projection import planted_power

    w, C, pi, E, E_out, Q, rng = setup()
    f = fold_layernorm(w)
    B = np.linalg.qr(rng.standard_normal((d, K)))[0]
    nulls = np.stack([np.linalg.qr(rng.standard_normal((d, K)))[0] for _ in range(20)])
    splits = np.stack([B] + [np.linalg.qr(B + 0.05 * rng.standard_normal((d, K)))[0] for _ in range(4)])
    raw = planted_power(f, B, nulls, splits, 0.05)
    rot = planted_power(rotate_residual(f, Q), Q.T @ B, Q.T @ nulls, Q.T @ splits, 0.05)
    assert np.isfinite(raw["mde"]) and raw["mde"] > 0 and np.isfinite(raw["planted_z"])
    for key in raw:
        assert np.isclose(raw[key], rot[key], rtol=1e-6), key
