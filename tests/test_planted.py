"""Planted models (corpus_weights.measure.planted): each recipe builds what it says, checked on the construction itself with
the pipeline's own measuring functions; and the numpy validation loss of a model from a file."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from corpus_weights.measure import planted
from corpus_weights.measure.alignment import top_tokens
from corpus_weights.measure.attention import (TokenSpace, attention_vs_corpus, double_centred_pearson, planted_routing_head,
                                      preceding_token_statistic)
from corpus_weights.corpus.corpus_stats import bigram_counts, corpus_covariance, eigh_desc, ppmi, ppmi_embeddings
from corpus_weights.measure.loss_ladder import eval_windows, validation_loss
from corpus_weights.measure.note_protocol import l0_wq_alignment
from corpus_weights.core.nulls import log_frequency_bins
from corpus_weights.measure.residual_space import (fold_layernorm, forward_logits, layernorm, residual_matrix_names,
                                           residual_vectors)
from workflow_helpers import REPO

V, D, H, L, CTX = 60, 16, 2, 2, 8


def markov_ids(rng, n=40_000):
    """A token stream with strong, sparse bigram structure (each token has a few likely successors)."""
    T = rng.dirichlet(np.full(V, 0.1), size=V)
    ids = np.empty(n, dtype=np.int64)
    ids[0] = 0
    u = rng.random(n)
    cum = T.cumsum(1)
    for i in range(1, n):
        ids[i] = min(np.searchsorted(cum[ids[i - 1]], u[i]), V - 1)
    return ids


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    ids = markov_ids(rng)
    C = bigram_counts(ids, V)
    pi = np.bincount(ids, minlength=V) / ids.size
    E_in, E_out, _ = ppmi_embeddings(ppmi(C), D, power=0.5, seed=0)
    sigma, mu = corpus_covariance(E_in, pi)
    _, eigvecs = eigh_desc(sigma)
    shuffled = rng.permutation(ids)
    E_shuf = ppmi_embeddings(ppmi(bigram_counts(shuffled, V)), D, power=0.5, seed=0)[0]
    return dict(counts=C, pi=pi, E_in=E_in, E_out=E_out, mu=mu, eigvecs=eigvecs, E_shuffled=E_shuf, ids=ids)


@pytest.fixture(scope="module")
def base():
    """A stand-in for a trained base model: random matrices of different norms, LayerNorm weights far from 1."""
    rng = np.random.default_rng(1)
    w = {"W_E": 0.5 * rng.standard_normal((V, D)), "W_pos": 0.1 * rng.standard_normal((CTX, D)),
         "ln_final.w": rng.uniform(0.5, 1.5, D)}
    for i in range(L):
        for t, shape in (("W_Q", (D, D)), ("W_K", (D, D)), ("W_V", (D, D)), ("W_O", (D, D)), ("W_in", (4 * D, D)),
                         ("W_out", (D, 4 * D))):
            w[f"L{i}.{t}"] = rng.uniform(0.1, 1.0) * rng.standard_normal(shape)
        w[f"L{i}.ln1.w"] = rng.uniform(0.5, 1.5, D)
        w[f"L{i}.ln2.w"] = rng.uniform(0.5, 1.5, D)
    return w


def heads(W, n_head=H):
    dh = W.shape[0] // n_head
    return [W[h * dh:(h + 1) * dh] for h in range(n_head)]


def test_recipes_are_the_schema_enum_and_dispatch():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["calibration"]["properties"]["recipe"]["oneOf"][1]["enum"]
    assert tuple(enum) == planted.RECIPES == tuple(planted.BUILT_FOR)
    common = (REPO / "workflow/rules/common.smk").read_text()
    for recipe in planted.RECIPES:
        assert f'"{recipe}":' in common  # PLANT_RECIPE_INPUTS names every recipe's inputs
    with pytest.raises(ValueError, match="unknown recipe"):
        planted.plant("nonsense", {}, {}, H, 4, None, 0)


def test_corpus_span_lies_in_the_corpus_span(corpus, base):
    K = 4
    w = planted.corpus_span(base, corpus["E_in"], corpus["mu"], corpus["eigvecs"], K)
    B = corpus["eigvecs"][:, :K]
    folded_base = fold_layernorm(base)
    assert np.allclose(fold_layernorm(w)["W_E"], w["W_E"])  # LN weights 1: folded = raw
    for name in residual_matrix_names(w, embeddings=False):
        R = residual_vectors(name, w[name])
        assert np.linalg.norm(R - R @ B @ B.T) < 1e-10 * np.linalg.norm(R), name
        # each residual vector keeps its (folded) base norm
        np.testing.assert_allclose(np.linalg.norm(R, axis=1),
                                   np.linalg.norm(residual_vectors(name, folded_base[name]), axis=1), rtol=1e-10)
    for k in w:
        if k.endswith("ln1.w") or k.endswith("ln2.w") or k == "ln_final.w":
            assert np.all(w[k] == 1.0), k
    E = corpus["E_in"] - corpus["mu"]
    assert np.isclose(np.linalg.norm(w["W_E"]), np.linalg.norm(base["W_E"]))
    assert np.allclose(w["W_E"] / np.linalg.norm(w["W_E"]), E / np.linalg.norm(E))
    assert np.array_equal(w["W_pos"], base["W_pos"]) and "W_U" not in w


def test_routing_qk_heads_route_by_the_pmi(corpus, base):
    top = top_tokens(corpus["pi"], 40)
    w = planted.routing_qk(base, corpus["counts"], top, H)
    S = preceding_token_statistic(corpus["counts"], top, "pmi")
    X = layernorm(w["W_E"][top])
    folded = fold_layernorm(w)
    for i in range(L):
        for t in ("W_Q", "W_K"):  # norm-matched per head, raw weights
            for new, old in zip(heads(w[f"L{i}.{t}"]), heads(base[f"L{i}.{t}"])):
                assert np.isclose(np.linalg.norm(new), np.linalg.norm(old))
    # the best any bilinear form on these embeddings can do (full rank d) bounds what a rank-d_h head can reach
    q_full, k_full = planted_routing_head(TokenSpace(X, S), D, 1.0)
    ceiling = double_centred_pearson(X @ (q_full.T @ k_full) @ X.T, S)
    for i in range(L):
        for q, k in zip(heads(folded[f"L{i}.W_Q"]), heads(folded[f"L{i}.W_K"])):
            r = double_centred_pearson(X @ (q.T @ k / np.sqrt(q.shape[0])) @ X.T, S)
            assert 0.9 * ceiling < r <= ceiling + 1e-12, (r, ceiling)
    # the pipeline's own attention test: every planted head significant and positive, no head of the base model
    bins = log_frequency_bins(np.asarray(corpus["counts"].sum(1)).ravel()[top], 5)
    table = attention_vs_corpus(w, corpus["counts"], top, H, bins=bins, n_draws=200)
    assert table["significant_bh"].all() and (table["z"] > 5).all()
    assert not attention_vs_corpus(base, corpus["counts"], top, H, bins=bins, n_draws=200)["significant_bh"].any()
    for k in w:  # nothing but W_Q / W_K changed
        if not (k.endswith("W_Q") or k.endswith("W_K")):
            assert np.array_equal(w[k], base[k]), k


def test_l0_aligned_is_aligned_by_the_note_protocols_own_function(corpus, base):
    Tp = planted.l0_target(corpus["counts"], corpus["E_in"], corpus["E_out"])
    w = planted.l0_aligned(base, Tp)
    res = l0_wq_alignment(w, Tp)
    assert abs(res["abs_cos"] - 1) < 1e-10
    assert l0_wq_alignment(base, Tp)["abs_cos"] < 0.9
    np.testing.assert_allclose(np.linalg.svd(w["L0.W_Q"], compute_uv=False),
                               np.linalg.svd(base["L0.W_Q"], compute_uv=False), rtol=1e-10)
    assert [k for k in w if not np.array_equal(w[k], base[k])] == ["L0.W_Q"]


def test_random_is_norm_matched_and_seeded(base):
    a, b, c = planted.random_weights(base, [0, 0]), planted.random_weights(base, [0, 0]), planted.random_weights(base, [1, 0])
    for k, v in base.items():
        if v.ndim == 2:
            assert np.isclose(np.linalg.norm(a[k]), np.linalg.norm(v)) and not np.allclose(a[k], v), k
            assert np.array_equal(a[k], b[k]) and not np.allclose(a[k], c[k]), k
        else:
            assert np.array_equal(a[k], v), k  # LayerNorm weights kept


def test_random_qk_replaces_only_the_heads(base):
    w = planted.random_qk(base, H, [2, 0])
    for k in base:
        if k.endswith("W_Q") or k.endswith("W_K"):
            for new, old in zip(heads(w[k]), heads(base[k])):
                assert np.isclose(np.linalg.norm(new), np.linalg.norm(old)) and not np.allclose(new, old)
        else:
            assert np.array_equal(w[k], base[k]), k
    assert np.array_equal(w["L0.W_Q"], planted.random_qk(base, H, [2, 0])["L0.W_Q"])


def test_shuffled_embedding_replaces_only_W_E(corpus, base):
    w = planted.shuffled_embedding(base, corpus["E_shuffled"])
    assert np.isclose(np.linalg.norm(w["W_E"]), np.linalg.norm(base["W_E"]))
    assert np.allclose(w["W_E"].mean(0), 0)
    assert [k for k in w if not np.array_equal(w[k], base[k])] == ["W_E"]


def test_validation_loss_uses_the_trainers_windows_and_forward(base, corpus):
    from corpus_weights.model.training import eval_windows as trainer_windows

    for n, eval_tokens, ctx in [(5000, 256, 16), (100_000, 16384, 32), (40, 1000, 8), (1000, 3, 8)]:
        assert np.array_equal(eval_windows(n, eval_tokens, ctx), trainer_windows(n, eval_tokens, ctx))
    val = corpus["ids"][:3000]
    out = validation_loss(base, val, H, CTX, 200, batch=7)
    starts = eval_windows(val.size, 200, CTX)
    assert out["windows"] == starts.size and out["targets"] == starts.size * CTX
    ce = []
    for s in starts:  # one window at a time, the long way
        logits = forward_logits(base, val[s:s + CTX], H)
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
        ce.append(-logp[np.arange(CTX), val[s + 1:s + CTX + 1]])
    assert np.isclose(out["val_loss"], np.mean(ce))
    # the batch is a memory choice only: one window at a time, or the default, gives the same loss
    assert np.isclose(validation_loss(base, val, H, CTX, 200, batch=1)["val_loss"], out["val_loss"], rtol=1e-12)
    assert np.isclose(validation_loss(base, val, H, CTX, 200)["val_loss"], out["val_loss"], rtol=1e-12)


def test_validation_batches_are_sized_by_the_memory_of_their_logits(monkeypatch):
    """16 windows where their float64 logits fit LOGITS_BUDGET_BYTES, fewer where not (a GPT-2 context over its
    vocabulary: one), never 0."""
    from corpus_weights.measure import loss_ladder

    seen = []
    real = loss_ladder.forward_logits
    monkeypatch.setattr(loss_ladder, "forward_logits", lambda w, toks, *a: seen.append(len(toks)) or real(w, toks, *a))
    rng = np.random.default_rng(0)
    V_, d_ = 50, 8
    w = {"W_E": rng.standard_normal((V_, d_)), "W_pos": rng.standard_normal((16, d_)), "ln_final.w": np.ones(d_)}
    val = rng.integers(0, V_, 5000)
    loss_ladder.validation_loss(w, val, 2, 16, 16 * 40)
    assert max(seen) == 16
    seen.clear()
    monkeypatch.setattr(loss_ladder, "LOGITS_BUDGET_BYTES", 16 * V_ * 8 * 3)  # room for 3 windows' logits
    loss_ladder.validation_loss(w, val, 2, 16, 16 * 40)
    assert max(seen) == 3 and sum(seen) == 40
    monkeypatch.setattr(loss_ladder, "LOGITS_BUDGET_BYTES", 10)
    seen.clear()
    loss_ladder.validation_loss(w, val, 2, 16, 16 * 40)
    assert set(seen) == {1}


def test_validation_loss_equals_the_trainers_evaluation():
    """On a real torch model: the numpy validation loss of its extracted weights is the trainer's `evaluate` (fp32)."""
    import torch

    from corpus_weights.model.gpt import GPT, GPTConfig
    from corpus_weights.model.training import Runtime, evaluate, eval_windows as trainer_windows
    from corpus_weights.model.weights import extract_weights

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, n_layer=2, d_model=D, n_head=H, context=CTX)
    model = GPT(cfg)
    val = np.random.default_rng(5).integers(0, V, 2000)
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dtype_reason="", compile=False, compile_reason="")
    expected = evaluate(model, val, trainer_windows(val.size, 300, CTX), 16, CTX, rt)
    got = validation_loss(extract_weights(model, cfg), val, H, CTX, 300)["val_loss"]
    assert abs(got - expected) < 1e-4
