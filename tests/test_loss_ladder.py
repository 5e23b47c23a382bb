import numpy as np

from corpus_weights.measure.loss_ladder import (
    corpus_ladder, interpolated_bigram, learned_fraction, model_ladder, one_token_logits, position0_cross_entropy,
    unigram_cross_entropy,
)
from corpus_weights.measure.residual_space import forward_logits
from test_residual_space import small_model


def test_unigram_cross_entropy_by_hand():
    train = np.array([0, 0, 0, 1])  # add-½ over V = 3: p = (3.5, 1.5, 0.5) / 5.5
    val = np.array([0, 1, 2])
    expected = -np.mean(np.log(np.array([3.5, 1.5, 0.5]) / 5.5))
    assert np.isclose(unigram_cross_entropy(train, val, 3), expected)


def test_interpolated_bigram_on_a_deterministic_cycle():
    """A corpus 0 1 2 0 1 2 ...: the bigram table is exact, so λ goes to the top of the grid and CE ≈ -log λ."""
    ids = np.tile([0, 1, 2], 400)
    res = interpolated_bigram(ids, ids[:60], 3)
    assert res["lam"] == 0.95
    assert np.isclose(res["ce"], -np.log(0.95 + 0.05 / 3), atol=1e-3)
    # λ is chosen on the training split's tail only: a different validation split cannot change it
    assert interpolated_bigram(ids, np.array([2, 2, 2, 2]), 3)["lam"] == 0.95


def test_one_token_logits_match_the_full_forward_pass():
    rng = np.random.default_rng(0)
    w = small_model(rng, V=30, d=16, L=2)
    tokens = np.array([3, 7, 11])
    full = np.stack([forward_logits(w, np.array([t]), n_head=2)[0] for t in tokens])
    assert np.allclose(one_token_logits(w, tokens), full, atol=1e-10)


def test_position0_cross_entropy_matches_brute_force():
    rng = np.random.default_rng(1)
    w = small_model(rng, V=20, d=8, L=1)
    val = rng.integers(0, 20, 50)
    brute = []
    for a, b in zip(val[:-1], val[1:]):
        logits = forward_logits(w, np.array([a]), n_head=2)[0]
        brute.append(-(logits[b] - np.log(np.exp(logits).sum())))
    assert np.isclose(position0_cross_entropy(w, val, chunk=3), np.mean(brute))


def test_learned_fraction_and_model_ladder():
    assert learned_fraction(6.0, 5.0, 5.5) == 0.5 and learned_fraction(6.0, 5.0, 6.0) == 0.0
    rng = np.random.default_rng(2)
    ids = np.tile(np.arange(20), 20)
    ids[rng.random(400) < 0.3] = rng.integers(0, 20, 400)[rng.random(400) < 0.3][0]  # a noisy cycle: bigrams help
    corpus = corpus_ladder(ids[:300], ids[300:], 20)
    lad = model_ladder(small_model(rng, V=20, d=8, L=1), ids[300:], corpus, val_loss=2.0)
    assert corpus["bigram_ce"] < corpus["unigram_ce"]
    assert np.isclose(lad["val_gain_over_unigram"], corpus["unigram_ce"] - 2.0)
    assert np.isclose(lad["learned_fraction"],
                      (corpus["unigram_ce"] - lad["ce_pos0"]) / (corpus["unigram_ce"] - corpus["bigram_ce"]))
