"""Statistics along training (corpus_weights.measure.trajectory): each snapshot measured by the pipeline's own estimators,
a repeated step measured once, the logged validation loss used where the trainer has one, and the "still moving"
rule on planted trajectories."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corpus_weights.measure import planted
from corpus_weights.measure.alignment import top_tokens
from corpus_weights.measure.analysis import align_model, projection_table
from corpus_weights.corpus.corpus_stats import bigram_counts, corpus_covariance, eigh_desc, ppmi, ppmi_embeddings
from corpus_weights.core.ids import Basis, Pooled, Target
from corpus_weights.measure.loss_ladder import corpus_ladder, validation_loss
from corpus_weights.measure.trajectory import STATISTICS, CorpusSide, last_half_change, run_trajectory, still_moving
from test_planted import CTX, D, H, V, markov_ids

K = 4
PARAMS = dict(top_n=50, freq_bins=5, headline_K=K, trajectory_draws=12, seed=0)
MODEL = dict(n_head=H, context=CTX, batch_size=4, eval_tokens=64)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    ids = markov_ids(rng, n=20_000)
    train, val = ids[:18_000], ids[18_000:]
    C = bigram_counts(train, V)
    pi = np.bincount(train, minlength=V) / train.size
    E_in, E_out, _ = ppmi_embeddings(ppmi(C), D, power=0.5, seed=0)
    sigma, mu = corpus_covariance(E_in, pi)
    corpus = dict(counts=C, pi=pi, E_in=E_in, E_out=E_out, mu=mu, eigvecs=eigh_desc(sigma)[1], special=())
    ladder = corpus_ladder(train, val, V)
    base = planted.random_weights(_base(), seed=3)
    span = planted.corpus_span(base, E_in, mu, corpus["eigvecs"], K)
    return dict(corpus=corpus, ladder=ladder, val=val, base=base, span=span)


def _base():
    from test_planted import L
    rng = np.random.default_rng(1)
    w = {"W_E": 0.5 * rng.standard_normal((V, D)), "W_pos": 0.1 * rng.standard_normal((CTX, D)),
         "ln_final.w": np.ones(D)}
    for i in range(L):
        for t, shape in (("W_Q", (D, D)), ("W_K", (D, D)), ("W_V", (D, D)), ("W_O", (D, D)), ("W_in", (4 * D, D)),
                         ("W_out", (D, 4 * D))):
            w[f"L{i}.{t}"] = rng.standard_normal(shape) / np.sqrt(D)
        w[f"L{i}.ln1.w"], w[f"L{i}.ln2.w"] = np.ones(D), np.ones(D)
    return w


@pytest.fixture(scope="module")
def table(setup):
    side = CorpusSide(setup["corpus"], setup["ladder"], PARAMS)
    # under early stopping the best model stands in for the snapshots after the stop: (100, step 20) repeats (50, 20)
    snaps = [(100, 20, setup["span"]), (0, 0, setup["base"]), (50, 20, setup["span"])]
    return run_trajectory(snaps, side, setup["val"], {20: 1.234}, MODEL)


def test_every_statistic_at_every_distinct_step_once(table):
    assert sorted(table.step.unique()) == [0, 20]
    assert table.groupby("step").stat.apply(list).map(len).tolist() == [len(STATISTICS)] * 2
    assert set(table.stat) == set(STATISTICS)
    assert table[table.step == 20].pct.unique().tolist() == [50]  # listed under its first pct
    assert table[table.step == 20].tokens.unique().tolist() == [20 * 4 * CTX]


def test_values_are_the_pipelines_estimators(setup, table):
    at = table.set_index(["step", "stat"])
    # the logged validation loss where the trainer has one; the numpy forward over the same windows elsewhere
    assert at.loc[(20, "val_loss"), "value"] == 1.234
    expect = validation_loss(setup["base"], setup["val"], H, CTX, 64)["val_loss"]
    assert at.loc[(0, "val_loss"), "value"] == pytest.approx(expect, rel=1e-12)
    assert at.loc[(0, "val_loss"), "null_mean"] == setup["ladder"]["bigram_ce"]
    # the aligned share: the headline estimator's value (projection_table on align_model's basis), same draws
    params = {**PARAMS, "map_null_draws": 12, "basis_null_draws": 12, "splits": 1}
    for step, w in ((0, setup["base"]), (20, setup["span"])):
        arrays, summary = align_model(w, setup["corpus"], params)
        t = projection_table(w, setup["base"], arrays["basis"], arrays["null_bases"], setup["corpus"]["eigvecs"],
                             setup["corpus"]["mu"], setup["corpus"]["pi"], K, random_draws=2, seed=0)
        row = t[(t.basis == Basis.CORPUS_ALIGNED) & (t.target == Target.W) & (t.matrix == Pooled.NONEMBED)]
        null = t[(t.basis == Basis.CORPUS_NULL) & (t.target == Target.W) & (t.matrix == Pooled.NONEMBED)]
        assert at.loc[(step, "aligned_share"), "value"] == pytest.approx(float(row.share.iloc[0]), rel=1e-9)
        assert at.loc[(step, "aligned_share"), "null_mean"] == pytest.approx(float(null.share.iloc[0]), rel=1e-9)
        assert at.loc[(step, "map_r2"), "value"] == pytest.approx(summary["vocab_map_heldout_r2"], rel=1e-12)


def test_planted_corpus_span_model_rises_above_the_null_and_the_random_one_does_not(table):
    """The planted answer: a model whose non-embedding matrices lie in the corpus span has an aligned share far
    above its null; the random model at step 0 sits inside it."""
    s = table[table.stat == "aligned_share"].set_index("step")
    z = (s.value - s.null_mean) / s.null_sd
    assert z[20] > 5 and abs(z[0]) < 3


def _planted(values: dict[int, float], null_sd: float | None) -> pd.DataFrame:
    return pd.DataFrame([dict(pct=round(100 * s / 100), step=s, tokens=s, stat="x", value=v, null_mean=0.0,
                              null_sd=np.nan if null_sd is None else null_sd) for s, v in values.items()])


def test_last_half_change_reads_from_half_of_the_analysed_step():
    t = _planted({0: 0.0, 10: 1.0, 25: 2.0, 50: 3.0, 100: 7.0}, 0.5)
    c = last_half_change(t, "x")
    assert (c["start_step"], c["end_step"], c["delta"]) == (50, 100, 4.0)
    assert c["uncertainty"] == pytest.approx(0.5 * np.sqrt(2))
    # early stopping: the analysed step is 60 -> the last half starts at or before step 30 (the 25 snapshot)
    c = last_half_change(_planted({0: 0.0, 25: 2.0, 50: 3.0, 60: 3.5}, None), "x")
    assert (c["start_step"], c["delta"], c["uncertainty"]) == (25, 1.5, None)
    assert last_half_change(_planted({100: 1.0}, 0.1), "x") is None


@pytest.mark.parametrize("deltas, unc, expected", [
    ([4.0, 3.0], 0.5, True),        # every seed beyond 2 × its uncertainty, same direction
    ([0.5, 0.6], 0.5, False),       # inside the uncertainty
    ([4.0, -4.0], 0.5, False),      # seeds disagree on the direction
    ([1.0, 1.1], None, True),       # no uncertainty: against the seeds' spread (mean 1.05 > 2 × sd 0.07)
    ([1.0, 0.2], None, False),      # mean 0.6 < 2 × sd 0.57
    ([1.0], None, None),            # one seed, nothing to compare with: unknown
])
def test_still_moving_rule(deltas, unc, expected):
    changes = [dict(start_step=50, end_step=100, start=0.0, end=d, delta=d, uncertainty=unc) for d in deltas]
    assert still_moving(changes)["moving"] is expected


def test_l0_null_sd_is_the_random_direction_sd(table):
    """|cos| of a fixed and a uniformly random direction in R^d (d = 16 here): sd = sqrt(1/d − (E|cos|)²), checked
    against a Monte Carlo of random directions."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, D))
    cos = np.abs(x[:, 0]) / np.linalg.norm(x, axis=1)
    row = table[table.stat == "l0_cos"].iloc[0]
    assert row.null_mean == pytest.approx(cos.mean(), rel=0.01)
    assert row.null_sd == pytest.approx(cos.std(), rel=0.01)
