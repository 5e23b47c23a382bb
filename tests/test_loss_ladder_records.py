"""The loss ladder's records and edge cases with planted answers (measure/loss_ladder.py): the one-token forward
with every bias of a checkpoint against the full forward at position 0, the ladder records field by field, the
bigram model's unseen rows, the learned fraction's degenerate gap, a log-softmax that must not underflow."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from corpus_weights.measure.loss_ladder import (_bigram_ce, _pair_counts, corpus_ladder, interpolated_bigram,
                                                learned_fraction, log_softmax, model_ladder, one_token_logits,
                                                position0_cross_entropy, unigram_cross_entropy, unigram_probs)
from corpus_weights.measure.residual_space import forward_logits

V, D, H = 17, 8, 2


def biased_model(rng, untied=True):
    """Two layers with every bias a GPT-2 checkpoint has (Q/K/V/O, MLP, LayerNorms, final LN, unembedding)."""
    w = {"W_E": rng.standard_normal((V, D)), "W_pos": rng.standard_normal((4, D)),
         "ln_final.w": rng.random(D) + 0.5, "ln_final.b": rng.standard_normal(D)}
    if untied:
        w["W_U"], w["b_U"] = rng.standard_normal((V, D)), rng.standard_normal(V)
    for i in range(2):
        for m in ("Q", "K", "V", "O"):
            w[f"L{i}.W_{m}"] = rng.standard_normal((D, D)) / np.sqrt(D)
            w[f"L{i}.b_{m}"] = rng.standard_normal(D)
        w[f"L{i}.W_in"], w[f"L{i}.b_in"] = rng.standard_normal((4 * D, D)) / np.sqrt(D), rng.standard_normal(4 * D)
        w[f"L{i}.W_out"], w[f"L{i}.b_out"] = rng.standard_normal((D, 4 * D)) / np.sqrt(4 * D), rng.standard_normal(D)
        for ln in ("ln1", "ln2"):
            w[f"L{i}.{ln}.w"], w[f"L{i}.{ln}.b"] = rng.random(D) + 0.5, rng.standard_normal(D)
    return w


@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
@pytest.mark.parametrize("untied", [True, False])
def test_one_token_logits_equal_the_full_forward_at_position_0_with_every_bias(activation, untied):
    w = biased_model(np.random.default_rng(0), untied)
    tokens = np.arange(V)
    full = forward_logits(w, tokens[:, None], H, activation)[:, 0]
    assert np.allclose(one_token_logits(w, tokens, activation=activation), full, rtol=1e-12, atol=1e-12)
    for key in ("L1.b_V", "L0.b_O", "L1.b_in", "L0.b_out", "L0.ln1.b", "ln_final.b") + (("b_U",) if untied else ()):
        # every bias reaches the logits (a random shift: a constant one along the all-ones direction is removed by
        # the next LayerNorm)
        moved = {**w, key: w[key] + np.random.default_rng(1).standard_normal(w[key].shape)}
        assert not np.allclose(one_token_logits(moved, tokens, activation=activation), full), key


def test_log_softmax_shifts_each_row_by_its_own_maximum():
    logits = np.array([[0.0, -1.0, -2.0], [1000.0, 999.0, 998.0]])
    out = log_softmax(logits)
    assert np.all(np.isfinite(out)) and np.allclose(out[0], out[1], rtol=1e-12)
    assert np.allclose(np.exp(out).sum(1), 1.0)


def test_learned_fraction_by_hand_and_without_a_gap():
    assert learned_fraction(6.0, 4.0, 5.0) == pytest.approx(0.5)
    assert math.isnan(learned_fraction(5.0, 5.0, 4.0)) and math.isnan(learned_fraction(4.0, 5.0, 4.5))


def test_bigram_ce_uses_the_unigram_for_an_unseen_current_token():
    """Training pairs 0→1 and 1→0 only: a validation pair starting at token 2 (no row) costs −log p_uni, a seen
    row's pair −log(λ T + (1 − λ) p_uni); a row seen once (total 1) is a counted row."""
    counts = _pair_counts(np.array([0, 1, 0]), 3)
    p = np.array([0.5, 0.3, 0.2])
    assert _bigram_ce(counts, p, np.array([2, 1]), 0.7) == pytest.approx(-np.log(0.3), rel=1e-12)
    assert _bigram_ce(counts, p, np.array([1, 0]), 0.7) == pytest.approx(-np.log(0.7 * 1.0 + 0.3 * 0.5), rel=1e-12)
    assert _bigram_ce(counts, p, np.array([0, 2]), 0.7) == pytest.approx(-np.log(0.3 * 0.2), rel=1e-12)
    assert counts.shape == (3, 3)


def test_the_ladder_records_field_by_field():
    rng = np.random.default_rng(1)
    train, val = rng.integers(0, V, 400), rng.integers(0, V, 60)
    corpus = corpus_ladder(train, val, V)
    big = interpolated_bigram(train, val, V)
    assert corpus == dict(unigram_ce=unigram_cross_entropy(train, val, V), bigram_ce=big["ce"],
                          bigram_lambda=big["lam"], bigram_dev_ce=big["dev_ce"], n_val=60)
    assert corpus["unigram_ce"] == pytest.approx(-np.log(unigram_probs(train, V)[val]).mean())
    w = biased_model(rng)
    ce0 = position0_cross_entropy(w, val)
    rec = model_ladder(w, val, corpus, 2.5)
    assert rec == dict(unigram_ce=corpus["unigram_ce"], bigram_ce=corpus["bigram_ce"],
                       bigram_lambda=corpus["bigram_lambda"], ce_pos0=ce0, val_loss=2.5,
                       learned_fraction=learned_fraction(corpus["unigram_ce"], corpus["bigram_ce"], ce0),
                       val_gain_over_unigram=corpus["unigram_ce"] - 2.5)
    assert model_ladder(w, val, corpus, None)["val_gain_over_unigram"] is None
    assert model_ladder(w, val, corpus, None, activation="gelu_new")["ce_pos0"] != ce0
