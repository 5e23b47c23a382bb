"""Measures of the intervention experiment (corpus-initialised models against random initialisation).

Per run: the validation-loss curve, the tokens needed to reach the interpolated-bigram cross-entropy and to reach
`RANDOM_FINAL_FRACTION` × the random-init run's final validation loss (same seed), the final loss, the learned
fraction g, and the aligned-basis share of the pooled non-embedding weights at each snapshot. Across runs:
differences to the random initialisation paired by seed, with a t interval.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .analysis import align_model, projection_table
from ..core.ids import Basis, Pooled, Target
from .loss_ladder import model_ladder

RANDOM_FINAL_FRACTION = 1.02  # "reached the random-init run's final loss, within 2 %"


def tokens_to_reach(log: pd.DataFrame, threshold: float) -> float | None:
    """Training tokens at which the validation loss first reaches `threshold` (linear interpolation between
    evaluations); None if it never does."""
    ev = log[log["val_loss"].notna()].sort_values("tokens")
    t, v = ev["tokens"].to_numpy(dtype=float), ev["val_loss"].to_numpy(dtype=float)
    below = np.nonzero(v <= threshold)[0]
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (v[i - 1] - threshold) / (v[i - 1] - v[i]) * (t[i] - t[i - 1]))


def share_over_training(snapshots: dict, init: dict, corpus: dict, K: int, params: dict) -> dict:
    """{snapshot: pooled non-embedding projection share onto the aligned corpus basis at K} (no nulls: this is a
    trajectory, compared between variants, not a test)."""
    out = {}
    cheap = {**params, "map_null_draws": 0, "basis_null_draws": 0, "splits": 1}  # a trajectory: no uncertainty
    for snap, weights in snapshots.items():
        arrays, _ = align_model(weights, corpus, cheap)
        t = projection_table(weights, init, arrays["basis"], arrays["null_bases"], corpus["eigvecs"],
                             corpus["pi"] @ corpus["E_in"], corpus["pi"], K, random_draws=0, seed=int(params["seed"]))
        row = t[(t.basis == Basis.CORPUS_ALIGNED) & (t.target == Target.W) & (t.matrix == Pooled.NONEMBED)]
        out[snap] = float(row["share"].iloc[0])
    return out


def analysed_val_loss(log: pd.DataFrame, step: int | None = None) -> float:
    """The validation loss the trainer logged for the analysed model: at `step` (the step its weights file was saved
    at: the best one under early stopping), or the last evaluation when no step is given."""
    ev = log[log["val_loss"].notna()]
    if step is None:
        return float(ev["val_loss"].iloc[-1])
    row = ev[ev["step"] == step]
    if row.empty:
        raise ValueError(f"the training log has no evaluation at step {step} (the analysed model's step); "
                         f"evaluated steps: {ev['step'].tolist()[:5]}...")
    return float(row["val_loss"].iloc[0])


def run_measures(log: pd.DataFrame, final_weights: dict, val_ids: np.ndarray, ladder: dict,
                 random_final_loss: float, analysed_step: int | None = None) -> dict:
    ev = log[log["val_loss"].notna()]
    final = analysed_val_loss(log, analysed_step)
    lad = model_ladder(final_weights, val_ids, ladder, final)
    return dict(final_val_loss=final, learned_fraction=lad["learned_fraction"], ce_pos0=lad["ce_pos0"],
                tokens_to_bigram=tokens_to_reach(log, ladder["bigram_ce"]),
                tokens_to_random_final=tokens_to_reach(log, RANDOM_FINAL_FRACTION * random_final_loss),
                threshold_random_final=RANDOM_FINAL_FRACTION * random_final_loss,
                curve=ev[["tokens", "val_loss"]].to_dict("list"))


def paired_differences(runs: list[dict], key: str) -> dict:
    """For every non-random variant: metric(variant, seed) − metric(random, seed) over the seeds both have, with the
    mean, sd and a 95 % t interval (None where a run never reached a threshold)."""
    by = {(r["init"], r["seed"]): r["measures"].get(key) for r in runs}
    out = {}
    for variant in sorted({r["init"] for r in runs} - {"random"}):
        seeds = sorted(s for (v, s) in by if v == variant and (("random", s) in by))
        diffs = [by[(variant, s)] - by[("random", s)] for s in seeds
                 if by[(variant, s)] is not None and by[("random", s)] is not None]
        entry = dict(seeds=seeds, diffs=diffs, n=len(diffs), mean=None, sd=None, ci95=None)
        if diffs:
            entry["mean"] = float(np.mean(diffs))
        if len(diffs) >= 2:
            sd = float(np.std(diffs, ddof=1))
            half = float(stats.t.ppf(0.975, len(diffs) - 1) * sd / np.sqrt(len(diffs)))
            entry.update(sd=sd, ci95=[entry["mean"] - half, entry["mean"] + half])
        out[variant] = entry
    return out
