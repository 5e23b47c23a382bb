"""metrics.json (docs/metrics.md): every number of the report, assembled from the workflow's declared inputs.

`collect_metrics(load_inputs(inputs, params), params)` is all the `metrics` rule runs: per-model metrics from the
per-model files, gates, seed statistics, verdicts, the intervention experiment and this run's job times. No
plotting, no HTML (that is `report`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.decision_rules import trained_enough
from .gates import evaluate_gates
from ..core.ids import CORPUS_SPECTRA, WE_COVARIANCE, Basis, MissingValue, Pooled, Role, Target
from ..measure.intervention import paired_differences
from ..core.note_values import NOTE
from ..core.spectra import depth_heuristic
from ..measure.trajectory import VERDICT_STATISTIC, moving_text, trajectory_metrics
from .verdicts import all_verdicts, intervention_verdict, mean_sd
from ..core.workflow_io import read_json

ANALYSIS_RULES = ("align", "measure", "attention", "fit_projections")


def load_model_results(files: dict) -> dict:
    """One analysed model's artifacts, from the paths the report rule declares as inputs."""
    return {
        "summary": read_json(files["summary"]),
        "alignment": read_json(files["alignment"]),
        "attention_summary": read_json(files["attention_summary"]),
        "attention": pd.read_parquet(files["attention"]),
        "weight_spectra": pd.read_parquet(files["weight_spectra"]),
        "projections": pd.concat([pd.read_parquet(p) for p in files["projections"]], ignore_index=True),
    }


def _share(proj: pd.DataFrame, K: int, basis: str, target=Target.W, matrix=Pooled.NONEMBED, column="share"):
    sel = proj[(proj.K == K) & (proj.basis == basis) & (proj.target == target) & (proj.matrix == matrix)]
    if sel.empty or column not in sel:
        return None
    value = sel[column].iloc[0]
    return None if pd.isna(value) else float(value)


def _count(value):
    return None if value is None else int(value)


def corpus_basis_test(proj: pd.DataFrame, K: int) -> dict:
    """The corpus-basis test at the headline K (pooled non-embedding matrices, target W): the aligned share, its
    basis null, the split-to-split spread, z on the whole uncertainty, and the power measured by a planted increase
    (projection.py, rule fit_projections). A column the table lacks stays None; the verdict then raises naming it."""
    def aligned(column):
        return _share(proj, K, Basis.CORPUS_ALIGNED, column=column)

    detected = aligned("planted_detected")
    return dict(share=aligned("share"), null_mean=_share(proj, K, Basis.CORPUS_NULL),
                null_sd=_share(proj, K, Basis.CORPUS_NULL, column="share_sd"),
                n_null_draws=_count(_share(proj, K, Basis.CORPUS_NULL, column="n_draws")),
                split_sd=aligned("share_splits_sd"), n_splits=_count(aligned("n_splits")),
                total_sd=aligned("share_total_sd"),
                z_total=aligned("z_total"), p_vs_null=aligned("p_vs_null"), planted_delta=aligned("planted_delta"),
                planted_z=aligned("planted_z"), planted_detected=None if detected is None else bool(detected),
                mde=aligned("mde"))


def model_metrics(res: dict, K: int) -> dict:
    """Headline numbers of one analysed model (corrected protocol and note protocol)."""
    proj, summ = res["projections"], res["summary"]
    al = res["alignment"]
    bases = [Basis.CORPUS_ALIGNED, Basis.CORPUS_NULL, Basis.RANDOM, Basis.WE_PCA, Basis.OWN_PCA]
    corrected = {
        "ladder": summ["ladder"],
        "positive_control": summ["controls"],
        "vocab_map": {k: al.get(k) for k in ("vocab_map_heldout_r2", "vocab_map_train_r2", "vocab_map_null",
                                             "ridge_lambda", "effective_sample_size", "vocab_map_heldout_r2_E_out",
                                             "vocab_map_heldout_r2_E_in_out", "basis_uses", "top_n", "n_splits",
                                             "vocab_map_heldout_r2_splits", "vocab_map_heldout_r2_split_sd")},
        "procrustes": {"heldout_cos": al.get("procrustes_heldout_cos"), "null": al.get("procrustes_null"),
                       "heldout_cos_splits": al.get("procrustes_heldout_cos_splits"),
                       "heldout_cos_split_sd": al.get("procrustes_heldout_cos_split_sd")},
        "cka": {"debiased": al.get("cka_debiased"), "plugin": al.get("cka_plugin")},
        "projection_share": {b: _share(proj, K, b) for b in bases},
        "projection_share_sd": {b: _share(proj, K, b, column="share_sd") for b in [Basis.CORPUS_NULL, Basis.RANDOM]},
        "projection_share_p_vs_null": _share(proj, K, Basis.CORPUS_ALIGNED, column="p_vs_null"),
        "basis_null_draws": int(_share(proj, K, Basis.CORPUS_NULL, column="n_draws") or 0),
        "normalised_score": _share(proj, K, Basis.CORPUS_ALIGNED, column="normalised"),
        "normalised_score_null": _share(proj, K, Basis.CORPUS_NULL, column="normalised"),
        "projection_share_dW": {b: _share(proj, K, b, target=Target.DW) for b in bases},
        "normalised_score_dW": _share(proj, K, Basis.CORPUS_ALIGNED, target=Target.DW, column="normalised"),
        "corpus_basis_test": corpus_basis_test(proj, K),
        "attention": res["attention_summary"],
    }
    origin = {k: summ[k] for k in ("source", "path", "format", "weights") if k in summ}  # (not trained here)
    return {"label": summ["label"], "role": summ["role"], "seed": summ["seed"], "run": summ["run"],
            "tokens": summ["tokens"], **origin, "corrected": corrected,
            "note_protocol": note_protocol_metrics(summ, proj, K)}


def note_protocol_metrics(summ: dict, proj: pd.DataFrame, K: int) -> dict:
    note = summ["note_protocol"]
    keys = ["r2_direct", "r2_random", "cos_direct", "cos_random", "qk_cosines", "qk_cosine_null_mean",
            "qk_cosine_null_sd", "l0_wq_alignment", "l0_wq_alignment_null_mean", "accounting"]
    return {"r2_linear_all": _share(proj, K, Basis.NOTE_LINEAR, matrix=Pooled.ALL, column="r2"),
            "r2_linear_nonembed": _share(proj, K, Basis.NOTE_LINEAR, matrix=Pooled.NONEMBED, column="r2"),
            **{k: note.get(k) for k in keys}}


def _benchmark_table(jobs: list[dict]) -> list[dict]:
    """One row per benchmarked job ({rule, job, path} as the workflow declares them)."""
    rows = []
    for job in jobs:
        try:
            frame = pd.read_csv(job["path"], sep="\t")
        except (OSError, ValueError, pd.errors.EmptyDataError):  # a missing benchmark must not break the report
            continue
        rows.append({"rule": job["rule"], "job": job["job"], "seconds": float(frame["s"].iloc[0]),
                     "cpu_seconds": float(frame["cpu_time"].iloc[0]) if "cpu_time" in frame else None,
                     "max_rss_mb": float(frame["max_rss"].iloc[0]) if "max_rss" in frame else None})
    return rows


def seed_statistics(models: dict) -> dict:
    """Headline numbers as mean ± sd over the main seeds (sd only with ≥ 2 seeds)."""
    mains = [mm for mm in models.values() if mm["role"] == Role.MAIN]
    getters = {
        "share_corpus": lambda c: c["projection_share"][Basis.CORPUS_ALIGNED],
        "share_corpus_null": lambda c: c["projection_share"][Basis.CORPUS_NULL],
        "share_random": lambda c: c["projection_share"][Basis.RANDOM],
        "share_we_pca": lambda c: c["projection_share"][Basis.WE_PCA],
        "share_own_pca": lambda c: c["projection_share"][Basis.OWN_PCA],
        "normalised_score": lambda c: c["normalised_score"],
        "normalised_score_null": lambda c: c["normalised_score_null"],
        "vocab_map_heldout_r2": lambda c: c["vocab_map"]["vocab_map_heldout_r2"],
        "bigram_control_r": lambda c: c["positive_control"]["bigram"]["r"],
        "bigram_control_z": lambda c: c["positive_control"]["bigram"].get("z"),
        "learned_fraction": lambda c: c["ladder"]["learned_fraction"],
        "val_loss": lambda c: c["ladder"]["val_loss"],
        "attention_heads_significant": lambda c: c["attention"]["significant_bh"],
    }
    out = {}
    for key, get in getters.items():
        stat = mean_sd(get(mm["corrected"]) for mm in mains)
        out[key] = {"mean": stat["mean"], "sd": stat["sd"], "n_seeds": len(mains)}
    draw_sd = [mm["corrected"]["projection_share_sd"][Basis.CORPUS_NULL] for mm in mains]
    out["share_corpus_null_draw_sd"] = (float(np.mean(draw_sd)) if draw_sd and None not in draw_sd else None)
    ps = [mm["corrected"]["projection_share_p_vs_null"] for mm in mains]
    out["p_vs_null_max"] = max(ps) if ps and all(p is not None for p in ps) else None
    zs = [mm["corrected"]["corpus_basis_test"]["z_total"] for mm in mains]
    out["z_total_min"] = min(zs) if zs and all(z is not None for z in zs) else None  # on null draws ⊕ splits
    out["null_draws"] = min((mm["corrected"]["basis_null_draws"] for mm in mains), default=0)
    return out


def _stat(values) -> dict:
    stat = mean_sd(values)
    return {"mean": stat["mean"], "sd": stat["sd"]}


def intervention_metrics(runs: list[dict], ladder_unigram: float | None) -> dict:
    """The intervention experiment's measures per variant, differences to random init paired by seed, its gate and
    the verdict on the note's slogan."""
    variants = sorted({r["init"] for r in runs}, key=lambda v: (v != "random", v))
    seeds = sorted({r["seed"] for r in runs})
    per_variant = {}
    for v in variants:
        rs = [r for r in runs if r["init"] == v]
        per_variant[v] = {k: _stat([r["measures"].get(k) for r in rs])
                          for k in ("final_val_loss", "learned_fraction", "tokens_to_bigram", "tokens_to_random_final")}
        per_variant[v]["reached_bigram"] = sum(r["measures"]["tokens_to_bigram"] is not None for r in rs)
        per_variant[v]["share_by_snapshot"] = {
            snap: _stat([r["measures"]["aligned_share_by_snapshot"].get(snap) for r in rs])
            for snap in sorted(rs[0]["measures"]["aligned_share_by_snapshot"])}
    diffs = {k: paired_differences(runs, k) for k in ("final_val_loss", "tokens_to_bigram", "tokens_to_random_final")}
    trained = [r for r in runs if ladder_unigram is not None
               and trained_enough(ladder_unigram - r["measures"]["final_val_loss"], r["measures"]["learned_fraction"])]
    gate_ok = len(trained) == len(runs) and len(seeds) >= 2
    reason = None if gate_ok else ("fewer than 2 seeds" if len(seeds) < 2 else
                                   "G1 fails for " + ", ".join(f"{r['init']}-s{r['seed']}" for r in runs
                                                              if r not in trained))
    return dict(variants=variants, seeds=seeds, per_variant=per_variant, differences=diffs,
                gate=dict(passed=gate_ok, reason=reason), verdict=intervention_verdict(diffs, reason), runs=runs)


def load_inputs(inputs: dict, params: dict) -> dict:
    """Everything the report reads, from the rule's declared inputs and params only."""
    cfg = params["config"]
    runs = {run: {"log": pd.read_parquet(log_path), "summary": read_json(summary_path)}
            for run, log_path, summary_path in zip(params["runs"], inputs["train_logs"], inputs["train_summaries"])}
    results = {mdl["label"]: load_model_results(mdl["files"]) for mdl in params["models"]}
    main_label = next(mdl["label"] for mdl in params["models"] if mdl["role"] == Role.MAIN)
    return dict(cfg=cfg, K_list=list(params["K"]), K=int(params["headline_K"]), d=int(cfg["model"]["d_model"]),
                manifest=read_json(inputs["manifest"]), tokens_meta=read_json(inputs["tokens_meta"]),
                spectra=pd.read_parquet(inputs["spectra"]), runs=runs, results=results,
                labels=[mdl["label"] for mdl in params["models"]], main_label=main_label,
                main_res=results[main_label], intervention=[read_json(p) for p in inputs.get("intervention", [])],
                trajectories={t["label"]: pd.read_parquet(path)
                              for t, path in zip(params.get("trajectory_runs", []), inputs.get("trajectories", []))})


def spectra_metrics(spectra: pd.DataFrame, weight_spectra: pd.DataFrame) -> dict:
    """Participation ratios of the corpus matrices (and W_E's covariance) and the depth ceil(PR / 3) each implies."""
    def spectrum(table, name, where):
        sel = table[table["name"] == name]
        if sel.empty:
            raise MissingValue(f"spectrum '{name}' is missing from {where} (names there: {list(table['name'])})")
        value = sel["pr"].iloc[0]
        return None if pd.isna(value) else float(value)  # a PR that could not be computed (e.g. a zero spectrum)

    out = {f"pr_{key}": spectrum(spectra, name, "corpus_stats/spectra.parquet") for key, name in CORPUS_SPECTRA.items()}
    out["pr_we_cov"] = spectrum(weight_spectra, WE_COVARIANCE, "the main model's weight_spectra.parquet")
    for key in ["symmetric", "symmetric_abs", "ppmi", "sigma_e", "we_cov"]:
        pr = out[f"pr_{key}"]
        out[f"L_opt_{key}"] = None if pr is None else depth_heuristic(pr)
    return out


def run_card(data: dict, params: dict) -> tuple[dict, dict]:
    """metrics.json's `config` and `corpus` blocks: what was run, on what."""
    cfg, meta, manifest = data["cfg"], data["tokens_meta"], data["manifest"]
    config = {"experiment": cfg["experiment"],
              "n_layer": cfg["model"]["n_layer"], "d_model": data["d"], "n_head": cfg["model"]["n_head"],
              "context": cfg["model"]["context"], "vocab_size": meta["vocab_size"],
              "requested_vocab_size": meta.get("requested_vocab_size"), "vocab_shrunk": bool(meta.get("shrunk", False)),
              "seeds": list(cfg["train"]["seeds"]), "train_tokens": cfg["train"]["tokens"],
              "snapshot_pcts": sorted({0, 100} | {round(100 * f) for f in cfg["train"].get("snapshots", [])}),
              "trajectory_draws": cfg["analysis"].get("trajectory_draws"),
              "patience": cfg["train"].get("patience"),
              "config_hash": params.get("config_hash")}
    ckpt = params.get("checkpoint")
    if ckpt:  # model.source: checkpoint — where the analysed model came from
        config["checkpoint"] = {"path": ckpt["path"], "format": ckpt["format"], "activation": ckpt["activation"],
                                "tied": ckpt["tied"], "tokenizer": ckpt["tokenizer_source"],
                                "vocab_size": ckpt["vocab_size"], "checkpoint_vocab_size": ckpt["checkpoint_vocab_size"],
                                "reinit_seed": ckpt["seed"]}
        config["train_tokens"] = None
        config["seeds"] = []
    corpus = {"name": cfg["corpus"]["name"], "n_words": manifest.get("n_words"), "n_chars": manifest.get("n_chars"),
              "n_tokens": meta.get("n_tokens"), "n_train": meta.get("n_train"), "n_val": meta.get("n_val"),
              "sha256": manifest.get("sha256")}
    return config, corpus


def standing(models: dict) -> list[dict]:
    """Where each main model stands on the loss ladder: its validation loss against the unigram and the
    interpolated-bigram cross-entropy of the corpus (a count model a trained transformer should beat)."""
    rows = []
    for label, mm in models.items():
        if mm["role"] != Role.MAIN:
            continue
        lad = mm["corrected"]["ladder"]
        val, uni, big = lad["val_loss"], lad["unigram_ce"], lad["bigram_ce"]
        rows.append(dict(model=label, val_loss=val, unigram_ce=uni, bigram_ce=big,
                         below_unigram_by=None if val is None else uni - val,
                         below_bigram=None if val is None else bool(val < big),
                         bigram_margin=None if val is None else big - val))
    return rows


TRAINING_KEYS = ["params", "steps", "tokens", "tokens_per_s", "mfu", "device", "dtype", "compiled", "final_train_loss",
                 "final_val_loss", "resumed_from_step", "seed", "device_name", "planned_steps", "early_stopping",
                 "stopped_early", "best_step", "best_tokens", "best_val_loss", "analysed_step"]


def collect_metrics(data: dict, params: dict) -> dict:
    """metrics.json (docs/metrics.md): per-model metrics, gates, seed statistics, verdicts, run times."""
    K, d, main_label, results = data["K"], data["d"], data["main_label"], data["results"]
    models = {lab: model_metrics(res, K) for lab, res in results.items()}
    gate_inputs = [dict(label=lab, role=mm["role"], seed=mm["seed"], tokens=mm["tokens"], source=mm.get("source"),
                        ladder=mm["corrected"]["ladder"], controls=mm["corrected"]["positive_control"],
                        alignment=results[lab]["alignment"]) for lab, mm in models.items()]
    config, corpus = run_card(data, params)
    # the name every table gives a trained run's analysed model (main-s0, shuffled, …; None: a run not analysed)
    model_of = {m["run"]: label for label, m in models.items() if m["role"] != Role.STEP0}
    metrics = {
        "schema": "corpus-weights metrics v2 (docs/metrics.md)", "K": K, "K_list": data["K_list"], "K_over_d": K / d,
        "config": config, "corpus": corpus,
        "spectra": spectra_metrics(data["spectra"], data["main_res"]["weight_spectra"]),
        "training": {run: {"model": model_of.get(run), **{k: info["summary"].get(k) for k in TRAINING_KEYS},
                           "wall_s": info["summary"].get("elapsed_s")} for run, info in data["runs"].items()},
        "main_label": main_label, "models": models, "gates": evaluate_gates(gate_inputs), "note": NOTE,
    }
    metrics["standing"] = standing(models)
    metrics["seeds"] = seed_statistics(models)
    metrics["note_protocol"] = models[main_label]["note_protocol"]
    metrics["verdicts"] = all_verdicts(metrics, NOTE)
    if data.get("trajectories"):
        tr = metrics["trajectory"] = trajectory_metrics(data["trajectories"],
                                                        {lab: mm["role"] for lab, mm in models.items()})
        for item in [*metrics["verdicts"], *metrics["gates"].values()]:
            key = item.get("id", item.get("name"))
            if key in VERDICT_STATISTIC:
                stat = VERDICT_STATISTIC[key]
                entry = tr["still_moving"].get(stat) if stat else None
                item["still_moving"] = None if entry is None else entry["moving"]
                item["still_moving_text"] = moving_text(entry, stat)
    if data["intervention"]:
        iv = metrics["intervention"] = intervention_metrics(
            data["intervention"], models[main_label]["corrected"]["ladder"]["unigram_ce"])
        metrics["verdicts"].append(iv["verdict"])
    metrics["benchmarks"] = _benchmark_table(list(params.get("benchmarks", [])))
    analysis = [r for r in metrics["benchmarks"] if r["rule"] in ANALYSIS_RULES]
    # what the statistics along training add: the trajectory jobs (they read their snapshots' model files themselves)
    trajectory = [r for r in metrics["benchmarks"] if r["rule"] == "trajectory"]
    cpu = sum(r["cpu_seconds"] or 0.0 for r in analysis)
    traj_cpu = sum(r["cpu_seconds"] or 0.0 for r in trajectory)
    metrics["analysis"] = {"jobs": len(analysis), "cpu_seconds": cpu,
                           "summed_wall_seconds": sum(r["seconds"] for r in analysis),
                           "trajectory_jobs": len(trajectory), "trajectory_cpu_seconds": traj_cpu,
                           "trajectory_over_analysis": traj_cpu / cpu if cpu > 0 and trajectory else None}
    return metrics
