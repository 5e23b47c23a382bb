"""Spectrum summaries against planted spectra."""

import math

import numpy as np
import pytest

from corpus_weights.core.spectra import depth_heuristic, effective_rank, participation_ratio, spectrum_row


@pytest.mark.parametrize("k", [1, 3, 17])
def test_pr_and_effective_rank_of_k_equal_values(k):
    vals = np.r_[np.full(k, 2.5), np.zeros(5)]
    assert math.isclose(participation_ratio(vals), k)
    assert math.isclose(effective_rank(vals), k)


def test_pr_one_nonzero_and_known_spectrum():
    assert participation_ratio([7.0, 0, 0, 0]) == 1.0
    # (3+1)^2 / (9+1) = 1.6
    assert math.isclose(participation_ratio([3.0, 1.0]), 1.6)
    # tiny negative round-off clipped by default; signed on request
    assert math.isclose(participation_ratio([1.0, 1.0, -1e-15]), 2.0)
    assert math.isclose(participation_ratio([1.0, -1.0, 2.0], clip_negative=False), 4 / 6)
    assert math.isnan(participation_ratio([0.0, 0.0]))


def test_effective_rank_known_distribution():
    # p = (1/2, 1/4, 1/4): H = 1.5 log 2, exp(H) = 2^1.5
    assert math.isclose(effective_rank([2.0, 1.0, 1.0]), 2**1.5)


def test_depth_heuristic():
    assert depth_heuristic(1.0) == 1
    assert depth_heuristic(3.0) == 1
    assert depth_heuristic(3.01) == 2
    assert depth_heuristic(12.4) == 5


def test_spectrum_row_kinds_agree():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((20, 5))
    sv = np.linalg.svd(W, compute_uv=False)
    ev = np.linalg.eigvalsh(W.T @ W)
    r_s = spectrum_row("W", sv, kind="singular")
    r_e = spectrum_row("WtW", ev, kind="eigen")
    assert set(r_s) == {"name", "pr", "effective_rank", "n", "top1_share"}
    assert r_s["n"] == 5 and r_s["name"] == "W"
    assert math.isclose(r_s["pr"], r_e["pr"])
    assert math.isclose(r_s["top1_share"], r_e["top1_share"])
    assert math.isclose(r_s["effective_rank"], effective_rank(sv))
    with pytest.raises(ValueError):
        spectrum_row("x", [1.0], kind="other")


def test_spectrum_row_planted_every_key():
    row = spectrum_row("M", [1.0, 3.0, -0.5, 0.0], kind="eigen")  # sorted descending, negatives clipped
    assert row == {"name": "M", "pr": 16 / 10, "effective_rank": effective_rank([3.0, 1.0]), "n": 4,
                   "top1_share": 0.75}
    sv = spectrum_row("W", [1.0, 2.0], kind="singular")  # energies 4, 1
    assert math.isclose(sv["top1_share"], 0.8) and math.isclose(sv["pr"], 25 / 17)
    small = spectrum_row("s", [0.3, 0.1])  # energies below 1 still give a share
    assert math.isclose(small["top1_share"], 0.75)
    zero = spectrum_row("z", [0.0, 0.0])
    assert math.isnan(zero["top1_share"]) and math.isnan(zero["pr"]) and math.isnan(zero["effective_rank"])
    empty = spectrum_row("e", [])
    assert empty["n"] == 0 and math.isnan(empty["top1_share"])
    with pytest.raises(ValueError, match="kind must be 'eigen' or 'singular', got 'other'"):
        spectrum_row("x", [1.0], kind="other")


def test_effective_rank_and_pr_edges():
    assert math.isnan(effective_rank([0.0, 0.0]))
    assert math.isclose(effective_rank([0.5, 0.5]), 2.0)  # values summing to 1 are a spectrum like any other
    assert math.isclose(effective_rank([1.0, -1.0]), 1.0)  # negatives clipped
    assert math.isclose(participation_ratio([0.5, 0.5]), 2.0)


def test_participation_ratio_clips_negatives_by_default():
    assert participation_ratio([1.0, -0.5]) == 1.0
    assert math.isclose(participation_ratio([1.0, -0.5], clip_negative=False), 0.25 / 1.25)
