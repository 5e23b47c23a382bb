"""Every headline statistic along training: the gate values and verdict statistics of one run at each of its
snapshots, and whether a statistic was still moving over the last half of training.

`run_trajectory` is what the `trajectory` rule runs for one trained run (its snapshots in order of step). It calls
the same estimators as the full per-model analysis (analysis.align_model, controls.positive_controls,
attention.attention_heads, note_protocol, loss_ladder), with fewer null draws (`analysis.trajectory_draws`) and no
calibration models, so that a trajectory costs a small fraction of the analysis: the corpus side (top tokens, their
frequency strata, T_proj) is built once per run and reused at every snapshot.

Rows of the table (one per snapshot and statistic): pct, step, tokens, stat, value, null_mean, null_sd. null_mean is
the statistic's reference (its null's mean; for the validation loss the interpolated-bigram CE, for g and the bigram
z 0); null_sd the sd of the null draws where the statistic has a null draw set (NaN for a loss, a cosine, a count).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import note_protocol as note
from .analysis import align_model, we_covariance
from .alignment import top_tokens
from .attention import attention_heads
from .controls import positive_controls
from ..corpus.corpus_stats import transition_matrix
from ..core.ids import WE_COVARIANCE, Basis, Pooled, Target
from .loss_ladder import learned_fraction, position0_cross_entropy, validation_loss
from ..core.nulls import log_frequency_bins
from .projection import pooled_nonembed_gram, share_of_gram
from .residual_space import fold_layernorm
from ..core.spectra import participation_ratio
from ..core.workflow_io import read_json

# stat id -> (what it is, the gate or verdict it belongs to); the order of the report's small multiples
STATISTICS = {
    "val_loss": ("validation loss (nats)", "G1"),
    "learned_fraction": ("learned fraction g", "G1"),
    "bigram_z": ("bigram check z", "G2"),
    "map_r2": ("vocabulary map held-out R²", "G3"),
    "aligned_share": ("aligned share at headline K (pooled non-embedding)", "corpus_basis"),
    "attention_significant": ("heads beating the null over attention", "attention"),
    "l0_cos": ("|cos| L0 W_Q vs T_proj", "l0_alignment"),
    "cos_direct": ("cos(direct prediction)", "norm_matched"),
    "pr_we": ("participation ratio of W_E's covariance", "depth"),
}


class CorpusSide:
    """What every snapshot of a run shares: the top tokens, their frequency strata, T_proj, the corpus arrays."""

    def __init__(self, corpus: dict, ladder: dict, params: dict):
        self.corpus, self.ladder, self.params = corpus, ladder, params
        C = corpus["counts"]
        self.top = top_tokens(corpus["pi"], int(params["top_n"]), corpus.get("special", ()))
        self.bins = log_frequency_bins(np.asarray(C.sum(axis=1)).ravel()[self.top], int(params["freq_bins"]))
        self.Tp = note.t_proj(corpus["E_in"], corpus["E_out"], transition_matrix(C))


def l0_entry(abs_cos: float, null_mean: float, d: int) -> dict:
    """L0's |cos| with its random-direction null: in R^d, E cos² = 1/d, so sd|cos| = sqrt(1/d − (E|cos|)²)."""
    return dict(value=abs_cos, null_mean=null_mean, null_sd=math.sqrt(max(1.0 / d - null_mean ** 2, 0.0)))


def snapshot_statistics(weights: dict, side: CorpusSide, val_ids: np.ndarray, val_loss: float | None,
                        model: dict) -> dict[str, dict]:
    """{stat: {value, null_mean, null_sd}} of one snapshot. model: n_head, context, eval_tokens (the trainer's
    evaluation, recomputed by the numpy forward pass where the trainer logged none at this step)."""
    p, corpus = side.params, side.corpus
    draws, seed, K = int(p["trajectory_draws"]), int(p["seed"]), int(p["headline_K"])
    folded = fold_layernorm(weights)
    nan = float("nan")
    out = {}
    if val_loss is None:
        val_loss = validation_loss(weights, val_ids, int(model["n_head"]), int(model["context"]),
                                   int(model["eval_tokens"]))["val_loss"]
    out["val_loss"] = dict(value=val_loss, null_mean=side.ladder["bigram_ce"], null_sd=nan)
    ce0 = position0_cross_entropy(weights, val_ids)
    out["learned_fraction"] = dict(value=learned_fraction(side.ladder["unigram_ce"], side.ladder["bigram_ce"], ce0),
                                   null_mean=0.0, null_sd=nan)
    big = positive_controls(folded, corpus["counts"], corpus["pi"], side.top, side.bins, draws, seed)["bigram"]
    out["bigram_z"] = dict(value=big["z"], null_mean=0.0, null_sd=1.0)
    arrays, summary = align_model(weights, corpus, {**p, "map_null_draws": draws, "basis_null_draws": draws,
                                                    "splits": 1})
    null = summary["vocab_map_null"]
    out["map_r2"] = dict(value=summary["vocab_map_heldout_r2"], null_mean=null.get("mean"),
                         null_sd=null.get("sd", nan))
    G = pooled_nonembed_gram(folded)
    share = share_of_gram(G, arrays["basis"][:, :K])
    null_shares = np.array([share_of_gram(G, B[:, :K]) for B in arrays["null_bases"]])
    out["aligned_share"] = dict(value=share, null_mean=float(null_shares.mean()),
                                null_sd=float(null_shares.std(ddof=1)) if null_shares.size > 1 else nan)
    table, _ = attention_heads(folded, corpus["counts"], side.top, int(model["n_head"]), n_draws=draws, seed=seed,
                               fpr_models=0, label_test=False)
    out["attention_significant"] = dict(value=float(table["significant"].astype(bool).sum()), null_mean=nan,
                                        null_sd=nan)
    l0 = note.l0_wq_alignment(weights, side.Tp)
    out["l0_cos"] = l0_entry(l0["abs_cos"], l0["null_expected_abs_cos"], int(folded["W_E"].shape[1]))
    direct = note.note_predictions(weights, corpus["E_in"], corpus["pi"], include_embeddings=True, seed=seed)
    out["cos_direct"] = dict(value=direct["direct"]["cos"], null_mean=0.0, null_sd=nan)
    out["pr_we"] = dict(value=participation_ratio(np.linalg.eigvalsh(we_covariance(weights, corpus["pi"]))),
                        null_mean=nan, null_sd=nan)
    return out


def analysed_statistics(summary: dict, alignment: dict, attention: dict, projections: pd.DataFrame,
                        weight_spectra: pd.DataFrame, K: int, d: int) -> dict[str, dict]:
    """The same statistics of a snapshot the full analysis has measured (rules align, measure, attention,
    fit_projections), read from its files instead of measured again: the trajectory's reuse of per-model work
    (with the headline analysis's own null draws)."""
    nan = float("nan")
    lad, big, note_p = summary["ladder"], summary["controls"]["bigram"], summary["note_protocol"]
    null = alignment["vocab_map_null"]
    at = projections[(projections.K == K) & (projections.target == Target.W) & (projections.matrix == Pooled.NONEMBED)]
    aligned, basis_null = (at[at.basis == b].iloc[0] for b in (Basis.CORPUS_ALIGNED, Basis.CORPUS_NULL))
    l0_mean = note_p["l0_wq_alignment_null_mean"]
    we = weight_spectra[weight_spectra["name"] == WE_COVARIANCE]["pr"]
    return {
        "val_loss": dict(value=lad["val_loss"], null_mean=lad["bigram_ce"], null_sd=nan),
        "learned_fraction": dict(value=lad["learned_fraction"], null_mean=0.0, null_sd=nan),
        "bigram_z": dict(value=big.get("z", nan), null_mean=0.0, null_sd=1.0),
        "map_r2": dict(value=alignment["vocab_map_heldout_r2"], null_mean=null.get("mean"), null_sd=null.get("sd")),
        "aligned_share": dict(value=float(aligned.share), null_mean=float(basis_null.share),
                              null_sd=float(basis_null.share_sd)),
        "attention_significant": dict(value=float(attention["token_space"]["significant"]), null_mean=nan,
                                      null_sd=nan),
        "l0_cos": l0_entry(note_p["l0_wq_alignment"], l0_mean, d),
        "cos_direct": dict(value=note_p["cos_direct"], null_mean=0.0, null_sd=nan),
        "pr_we": dict(value=float(we.iloc[0]) if len(we) else nan, null_mean=nan, null_sd=nan),
    }


def analysed_from_files(files: dict[str, str], K: int, d: int) -> dict[int, dict]:
    """{step: statistics} of the analysed snapshots, from the rule's inputs named `<snapshot>_<file>` (file: summary,
    alignment, attention_summary, projection (the headline K's table), weight_spectra)."""
    out = {}
    for snap in sorted({"_".join(key.split("_")[:2]) for key in files}):
        f = {key[len(snap) + 1:]: path for key, path in files.items() if key.startswith(snap + "_")}
        summary = read_json(f["summary"])
        out[int(summary["step"])] = analysed_statistics(summary, read_json(f["alignment"]),
                                                        read_json(f["attention_summary"]), pd.read_parquet(f["projection"]),
                                                        pd.read_parquet(f["weight_spectra"]), K, d)
    return out


def run_trajectory(snapshots: list[tuple[int, int, dict]], side: CorpusSide, val_ids: np.ndarray,
                   logged_val: dict[int, float], model: dict,
                   analysed: dict[int, dict] | None = None) -> pd.DataFrame:
    """The trajectory table of one run. snapshots: (pct, step, weights), any order; a snapshot whose step another
    one already has (under early stopping the best model stands in for the snapshots after the stop) is measured
    once and listed under its first pct. logged_val: the trainer's validation loss by step. analysed: {step: stats}
    of snapshots the full analysis has measured (analysed_statistics), used instead of measuring them again."""
    rows, seen = [], set()
    analysed = analysed or {}
    tokens_per_step = int(model["batch_size"]) * int(model["context"])
    for pct, step, weights in sorted(snapshots, key=lambda s: (s[1], s[0])):
        if step in seen:
            continue
        seen.add(step)
        stats = analysed.get(step) or snapshot_statistics(weights, side, val_ids, logged_val.get(step), model)
        for stat, v in stats.items():
            rows.append(dict(pct=int(pct), step=int(step), tokens=int(step) * tokens_per_step, stat=stat,
                             **{k: (float(x) if x is not None else math.nan) for k, x in v.items()}))
    return pd.DataFrame(rows, columns=["pct", "step", "tokens", "stat", "value", "null_mean", "null_sd"])


def last_half_change(table: pd.DataFrame, stat: str) -> dict | None:
    """Change of one statistic over the last half of training, for one run's trajectory: from the last snapshot at
    or before half of the analysed step to the analysed (last) one. Its uncertainty: the statistic's own sd at both
    ends in quadrature (null_sd for statistics compared with a null draw set); None where the statistic has none."""
    t = table[table.stat == stat].sort_values("step")
    if len(t) < 2:
        return None
    end = t.iloc[-1]
    before = t[t.step <= end.step / 2]
    if before.empty:
        return None
    start = before.iloc[-1]
    delta = float(end.value - start.value)
    sds = [float(x) for x in (start.null_sd, end.null_sd) if not math.isnan(float(x))]
    unc = math.sqrt(sum(s * s for s in sds)) if len(sds) == 2 else None
    return dict(start_step=int(start.step), end_step=int(end.step), start=float(start.value), end=float(end.value),
                delta=delta, uncertainty=unc)


def still_moving(changes: list[dict | None], z: float = 2.0) -> dict:
    """Whether a statistic was still moving over the last half of training across the main seeds' trajectories.
    With an uncertainty per seed: moving when every seed's |Δ| exceeds z × its uncertainty in the same direction.
    Without one (a loss, a cosine, a count): compared with the seeds' spread, moving when the mean Δ exceeds z × the
    sd of Δ over seeds (≥ 2 seeds) and all seeds move the same way; with one seed the verdict is None (unknown)."""
    ch = [c for c in changes if c is not None]
    if not ch:
        return dict(moving=None, reason="no trajectory", deltas=[])
    deltas = [c["delta"] for c in ch]
    same_sign = all(d > 0 for d in deltas) or all(d < 0 for d in deltas)
    if all(c["uncertainty"] is not None for c in ch):
        moving = same_sign and all(abs(c["delta"]) > z * c["uncertainty"] for c in ch)
        basis = f"|Δ| > {z:g} × its null sd at both ends, every seed"
    elif len(ch) >= 2:
        sd = float(np.std(deltas, ddof=1))
        moving = same_sign and abs(float(np.mean(deltas))) > z * sd
        basis = f"|mean Δ| > {z:g} × sd of Δ over seeds"
    else:
        return dict(moving=None, reason="one seed and no uncertainty", deltas=deltas)
    return dict(moving=bool(moving), reason=basis, deltas=deltas, mean_delta=float(np.mean(deltas)),
                start_step=ch[0]["start_step"], end_step=ch[0]["end_step"])


# The statistic each verdict and gate rests on (None: a statistic of the corpus alone, which training cannot move)
VERDICT_STATISTIC = {"corpus_basis": "aligned_share", "attention": "attention_significant", "l0_alignment": "l0_cos",
                     "norm_matched": "cos_direct", "depth": None, "G1": "val_loss", "G2": "bigram_z", "G3": "map_r2"}


def trajectory_metrics(tables: dict[str, pd.DataFrame], roles: dict[str, str]) -> dict:
    """metrics.json's `trajectory` block: per run (label) its rows, and per statistic whether it was still moving
    over the last half of training across the main models (`still_moving` on each main's `last_half_change`)."""
    mains = [label for label, role in roles.items() if role == "main" and label in tables]
    moving = {stat: {**still_moving([last_half_change(tables[label], stat) for label in mains]),
                     "models": mains} for stat in STATISTICS}
    return dict(statistics={k: dict(label=v[0], belongs_to=v[1]) for k, v in STATISTICS.items()},
                runs={label: dict(role=roles[label], rows=t.to_dict("records")) for label, t in tables.items()},
                still_moving=moving)


def moving_text(entry: dict | None, stat: str | None) -> str:
    """One line for a verdict card or gate: was its statistic still moving over the last half of training?"""
    if stat is None:
        return "a statistic of the corpus alone: training does not move it"
    if not entry or entry.get("moving") is None:
        return f"{STATISTICS[stat][0]}: unknown ({(entry or {}).get('reason', 'no trajectory')})"
    deltas = ", ".join(f"{d:+.3g}" for d in entry["deltas"])
    word = "yes" if entry["moving"] else "no"
    return (f"still moving over the last half of training: {word} — {STATISTICS[stat][0]} changed by {deltas} "
            f"(per main seed) from step {entry['start_step']} to {entry['end_step']}; rule: {entry['reason']}")
