"""Assemble the report: the note's figures, ours under the note's protocol, ours under the corrected protocol.

`build_report` reads the workflow's artifacts, returns (html, metrics). Every number of ours comes from the run;
the note's numbers come from `note_values.NOTE`. The keys of metrics.json are documented in docs/metrics.md.
"""
from __future__ import annotations

import base64
import io
import math
from importlib import resources

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .gates import evaluate_gates  # noqa: E402
from .intervention import paired_differences  # noqa: E402
from . import report_tables as tables  # noqa: E402
from .note_values import NOTE  # noqa: E402
from .report_tables import html_table as _table  # noqa: E402
from .verdicts import all_verdicts, fmt as _fmt  # noqa: E402
from .workflow_io import read_json  # noqa: E402

ANALYSIS_RULES = ("align", "measure", "attention", "fit_projections")
BASIS_LABELS = {
    "corpus_aligned": "corpus basis, aligned through the vocabulary",
    "corpus_null": "its null: corpus token identities scrambled (±2 sd)",
    "random": "random basis (mean over draws)",
    "we_pca": "W_E's own PCA",
    "own_pca": "the weights' own PCA (upper bound)",
    "note_unaligned": "corpus basis used unaligned (note protocol)",
}


def _figure_to_data_uri(fig) -> bytes:
    """PNG bytes of a figure (closed afterwards); the page inlines them as data URIs, the rule also writes files."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


MATRIX_ORDER = ["W_Q", "W_K", "W_V", "W_O", "W_in", "W_out"]


def _heatmap(values: np.ndarray, rows: list[str], cols: list[str], title: str, label: str, cmap: str,
             center: float | None = None, marks: np.ndarray | None = None, digits: int = 2) -> bytes:
    """A small annotated heatmap; marks (same shape, bool) add a '*' to a cell."""
    fig, ax = plt.subplots(figsize=(min(9.0, 1.2 + 0.55 * len(cols)), 0.9 + 0.42 * len(rows)))
    finite = values[np.isfinite(values)]
    if center is not None and finite.size:
        span = max(abs(finite.max() - center), abs(finite.min() - center), 1e-12)
        im = ax.imshow(values, cmap=cmap, vmin=center - span, vmax=center + span, aspect="auto")
    else:
        im = ax.imshow(values, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                star = "*" if marks is not None and marks[i, j] else ""
                ax.text(j, i, f"{values[i, j]:.{digits}f}{star}", ha="center", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=label, fraction=0.04)
    return _figure_to_data_uri(fig)


def matrix_layer_heatmap(proj: pd.DataFrame, K: int) -> bytes:
    """Aligned share minus its basis-null mean, per matrix type (rows) and layer (columns); * where p < 0.05."""
    sel = proj[(proj.K == K) & (proj.target == "W") & (proj.layer >= 0)]
    layers = sorted(sel.layer.unique())
    rows = [m for m in MATRIX_ORDER if m in set(sel.matrix)]
    values = np.full((len(rows), len(layers)), np.nan)
    marks = np.zeros_like(values, dtype=bool)
    for i, m in enumerate(rows):
        for j, layer in enumerate(layers):
            cell = sel[(sel.matrix == m) & (sel.layer == layer)].set_index("basis")
            if {"corpus_aligned", "corpus_null"} <= set(cell.index):
                values[i, j] = cell.loc["corpus_aligned", "share"] - cell.loc["corpus_null", "share"]
                marks[i, j] = bool(cell.loc["corpus_aligned", "p_vs_null"] < 0.05)
    return _heatmap(values, rows, [f"L{x}" for x in layers], f"aligned share − its null (K = {K}); * p < 0.05",
                    "share above null", "RdBu_r", center=0.0, marks=marks, digits=3)


def head_heatmap(att: pd.DataFrame) -> bytes:
    """Attention-vs-PMI z per layer (rows) and head (columns); * = significant after Benjamini–Hochberg."""
    z = att.pivot(index="layer", columns="head", values="z")
    sig = att.pivot(index="layer", columns="head", values="significant_bh").fillna(False).astype(bool)
    return _heatmap(z.to_numpy(dtype=float), [f"L{x}" for x in z.index], [f"h{x}" for x in z.columns],
                    "double-centred QK vs preceding-token PMI, z; * significant (two-sided BH, FDR 0.05)", "z", "RdBu_r",
                    center=0.0, marks=sig.to_numpy(), digits=1)


def spectra_heatmap(ws: pd.DataFrame) -> bytes:
    """Participation ratio of every weight matrix, per matrix type (rows) and layer (columns)."""
    per = ws[ws["name"].str.match(r"^L\d+\.")].copy()
    per["layer"] = per["name"].str.extract(r"^L(\d+)\.")[0].astype(int)
    per["matrix"] = per["name"].str.replace(r"^L\d+\.", "", regex=True)
    pr = per.pivot(index="matrix", columns="layer", values="pr").reindex([m for m in MATRIX_ORDER
                                                                          if m in set(per.matrix)])
    return _heatmap(pr.to_numpy(dtype=float), list(pr.index), [f"L{x}" for x in pr.columns],
                    "participation ratio of each weight matrix (singular values²)", "PR", "viridis", digits=1)


def _mean_sd(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


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


def _share(proj: pd.DataFrame, K: int, basis: str, target="W", matrix="pooled_nonembed", column="share"):
    sel = proj[(proj.K == K) & (proj.basis == basis) & (proj.target == target) & (proj.matrix == matrix)]
    if sel.empty or column not in sel:
        return None
    value = sel[column].iloc[0]
    return None if pd.isna(value) else float(value)


def model_metrics(res: dict, K: int) -> dict:
    """Headline numbers of one analysed model (corrected protocol and note protocol)."""
    proj, summ = res["projections"], res["summary"]
    al = res["alignment"]
    bases = ["corpus_aligned", "corpus_null", "random", "we_pca", "own_pca"]
    corrected = {
        "ladder": summ["ladder"],
        "positive_control": summ["controls"],
        "vocab_map": {k: al.get(k) for k in ("vocab_map_heldout_r2", "vocab_map_train_r2", "vocab_map_null",
                                             "ridge_lambda", "effective_sample_size", "vocab_map_heldout_r2_E_out",
                                             "vocab_map_heldout_r2_E_in_out", "basis_uses", "top_n")},
        "procrustes": {"heldout_cos": al.get("procrustes_heldout_cos"), "null": al.get("procrustes_null")},
        "cka": {"debiased": al.get("cka_debiased"), "plugin": al.get("cka_plugin")},
        "projection_share": {b: _share(proj, K, b) for b in bases},
        "projection_share_sd": {b: _share(proj, K, b, column="share_sd") for b in ["corpus_null", "random"]},
        "projection_share_p_vs_null": _share(proj, K, "corpus_aligned", column="p_vs_null"),
        "basis_null_draws": int(_share(proj, K, "corpus_null", column="n_draws") or 0),
        "normalised_score": _share(proj, K, "corpus_aligned", column="normalised"),
        "normalised_score_null": _share(proj, K, "corpus_null", column="normalised"),
        "projection_share_dW": {b: _share(proj, K, b, target="dW") for b in bases},
        "normalised_score_dW": _share(proj, K, "corpus_aligned", target="dW", column="normalised"),
        "attention": res["attention_summary"],
    }
    return {"label": summ["label"], "role": summ["role"], "seed": summ["seed"], "run": summ["run"],
            "tokens": summ["tokens"], "corrected": corrected, "note_protocol": note_protocol_metrics(summ, proj, K)}


def note_protocol_metrics(summ: dict, proj: pd.DataFrame, K: int) -> dict:
    note = summ["note_protocol"]
    keys = ["r2_direct", "r2_random", "cos_direct", "cos_random", "qk_cosines", "qk_cosine_null_mean",
            "qk_cosine_null_sd", "l0_wq_alignment", "l0_wq_alignment_null_mean", "accounting"]
    return {"r2_linear_all": _share(proj, K, "note_linear", matrix="pooled_all", column="r2"),
            "r2_linear_nonembed": _share(proj, K, "note_linear", matrix="pooled_nonembed", column="r2"),
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


def seed_statistics(models: dict, K_over_d: float) -> dict:
    """Headline numbers as mean ± sd over the main seeds (sd only with ≥ 2 seeds)."""
    mains = [mm for mm in models.values() if mm["role"] == "main"]
    getters = {
        "share_corpus": lambda c: c["projection_share"]["corpus_aligned"],
        "share_corpus_null": lambda c: c["projection_share"]["corpus_null"],
        "share_random": lambda c: c["projection_share"]["random"],
        "share_we_pca": lambda c: c["projection_share"]["we_pca"],
        "share_own_pca": lambda c: c["projection_share"]["own_pca"],
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
        mean, sd = _mean_sd([get(mm["corrected"]) for mm in mains])
        out[key] = {"mean": mean, "sd": sd, "n_seeds": len(mains)}
    draw_sd = [mm["corrected"]["projection_share_sd"]["corpus_null"] for mm in mains]
    out["share_corpus_null_draw_sd"] = (float(np.mean(draw_sd)) if draw_sd and None not in draw_sd else None)
    ps = [mm["corrected"]["projection_share_p_vs_null"] for mm in mains]
    out["p_vs_null_max"] = max(ps) if ps and all(p is not None for p in ps) else None
    zs = []
    for mm in mains:
        c = mm["corrected"]
        share, null, sd = (c["projection_share"]["corpus_aligned"], c["projection_share"]["corpus_null"],
                           c["projection_share_sd"]["corpus_null"])
        zs.append((share - null) / sd if None not in (share, null, sd) and sd > 0 else None)
    out["z_vs_null_min"] = min(zs) if zs and all(z is not None for z in zs) else None
    out["null_draws"] = min((mm["corrected"]["basis_null_draws"] for mm in mains), default=0)
    return out


def _stat(values) -> dict:
    mean, sd = _mean_sd(values)
    return {"mean": mean, "sd": sd}


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
    trained = [r for r in runs if r["measures"]["learned_fraction"] >= 0.5 and ladder_unigram is not None
               and ladder_unigram - r["measures"]["final_val_loss"] >= 0.3]
    gate_ok = len(trained) == len(runs) and len(seeds) >= 2
    reason = None if gate_ok else ("fewer than 2 seeds" if len(seeds) < 2 else
                                   "G1 fails for " + ", ".join(f"{r['init']}-s{r['seed']}" for r in runs
                                                              if r not in trained))
    corpus = diffs["final_val_loss"].get("corpus", {})
    permuted = diffs["final_val_loss"].get("corpus_permuted", {})
    helps = corpus.get("ci95") is not None and corpus["ci95"][1] < 0
    specific = helps and permuted.get("mean") is not None and permuted["mean"] > corpus["mean"]
    status = "withheld" if not gate_ok else ("holds" if helps and specific else "does not hold")
    ci = corpus.get("ci95")
    finding = (f"Final validation loss, corpus-initialised minus random (paired by seed): {_fmt(corpus.get('mean'))}"
               f" nats, 95 % CI {('[' + _fmt(ci[0]) + ', ' + _fmt(ci[1]) + ']') if ci else '—'}; rows permuted "
               f"within frequency strata: {_fmt(permuted.get('mean'))}. ")
    finding += ("Starting in the corpus's coordinate system gives a lower loss at the same budget, and the right "
                "token identities matter." if status == "holds" else
                f"Withheld: {reason}." if status == "withheld" else
                "No reliable gain from starting in the corpus's coordinate system at this budget.")
    return dict(variants=variants, seeds=seeds, per_variant=per_variant, differences=diffs,
                gate=dict(passed=gate_ok, reason=reason), verdict=dict(
                    claim="The corpus gives the coordinate system, training gives the coordinates (tested causally: "
                          "does a corpus-initialised model train better at the same budget?)",
                    status=status, finding=finding), runs=runs)


def _intervention_figure(runs: list[dict]) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for v in sorted({r["init"] for r in runs}, key=lambda v: (v != "random", v)):
        curves = [r["measures"]["curve"] for r in runs if r["init"] == v]
        tokens = np.asarray(curves[0]["tokens"], dtype=float)
        losses = np.array([c["val_loss"] for c in curves if len(c["val_loss"]) == len(tokens)], dtype=float)
        mean = losses.mean(0)
        line, = ax.plot(tokens, mean, "-", lw=1.2, label=f"{v} (n = {len(losses)})")
        if len(losses) > 1:
            ax.fill_between(tokens, losses.min(0), losses.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation cross-entropy (nats)")
    ax.set_ylim(None, min(ax.get_ylim()[1], 8))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _figure_to_data_uri(fig)


def load_inputs(inputs: dict, params: dict) -> dict:
    """Everything the report reads, from the rule's declared inputs and params only."""
    cfg = params["config"]
    runs = {run: {"log": pd.read_parquet(log_path), "summary": read_json(summary_path)}
            for run, log_path, summary_path in zip(params["runs"], inputs["train_logs"], inputs["train_summaries"])}
    results = {mdl["label"]: load_model_results(mdl["files"]) for mdl in params["models"]}
    main_label = next(mdl["label"] for mdl in params["models"] if mdl["role"] == "main")
    return dict(cfg=cfg, K_list=list(params["K"]), K=int(params["headline_K"]), d=int(cfg["model"]["d_model"]),
                manifest=read_json(inputs["manifest"]), tokens_meta=read_json(inputs["tokens_meta"]),
                spectra=pd.read_parquet(inputs["spectra"]), runs=runs, results=results,
                labels=[mdl["label"] for mdl in params["models"]], main_label=main_label,
                main_res=results[main_label], intervention=[read_json(p) for p in inputs.get("intervention", [])])


def spectra_metrics(spectra: pd.DataFrame, weight_spectra: pd.DataFrame) -> dict:
    """Participation ratios of the corpus matrices (and W_E's covariance) and the depth ceil(PR / 3) each implies."""
    def spectrum(name, column="pr"):
        sel = spectra[spectra["name"] == name]
        return None if sel.empty or pd.isna(sel[column].iloc[0]) else float(sel[column].iloc[0])

    we_cov = weight_spectra[weight_spectra["name"].str.startswith("W_E^T diag(pi) W_E")]
    out = {
        "pr_symmetric": spectrum("C + C^T (symmetric raw bigram counts)"),
        "pr_symmetric_abs": spectrum("C + C^T, |eigenvalues| (top-k)"),
        "pr_symmetric_signed": spectrum("C + C^T, signed eigenvalues (exact)"),
        "pr_ppmi": spectrum("PPMI (top-d singular values)"),
        "pr_sigma_e": spectrum("Sigma_E (corpus covariance)"),
        "pr_we_cov": None if we_cov.empty else float(we_cov["pr"].iloc[0]),
    }
    for key in ["symmetric", "symmetric_abs", "ppmi", "sigma_e", "we_cov"]:
        pr = out[f"pr_{key}"]
        out[f"L_opt_{key}"] = None if pr is None else int(math.ceil(pr / 3))
    return out


def run_card(data: dict, params: dict) -> tuple[dict, dict]:
    """metrics.json's `config` and `corpus` blocks: what was run, on what."""
    cfg, meta, manifest = data["cfg"], data["tokens_meta"], data["manifest"]
    config = {"n_layer": cfg["model"]["n_layer"], "d_model": data["d"], "n_head": cfg["model"]["n_head"],
              "context": cfg["model"]["context"], "vocab_size": meta["vocab_size"],
              "requested_vocab_size": meta.get("requested_vocab_size"), "vocab_shrunk": bool(meta.get("shrunk", False)),
              "seeds": list(cfg["train"]["seeds"]), "train_tokens": cfg["train"]["tokens"],
              "config_hash": params.get("config_hash")}
    corpus = {"name": cfg["corpus"]["name"], "n_words": manifest.get("n_words"), "n_chars": manifest.get("n_chars"),
              "n_tokens": meta.get("n_tokens"), "n_train": meta.get("n_train"), "n_val": meta.get("n_val"),
              "sha256": manifest.get("sha256")}
    return config, corpus


TRAINING_KEYS = ["params", "steps", "tokens", "tokens_per_s", "mfu", "device", "dtype", "compiled", "final_train_loss",
                 "final_val_loss", "resumed_from_step", "seed"]


def collect_metrics(data: dict, params: dict) -> dict:
    """metrics.json (docs/metrics.md): per-model metrics, gates, seed statistics, verdicts, run times."""
    K, d, main_label, results = data["K"], data["d"], data["main_label"], data["results"]
    models = {lab: model_metrics(res, K) for lab, res in results.items()}
    gate_inputs = [dict(label=lab, role=mm["role"], seed=mm["seed"], tokens=mm["tokens"],
                        ladder=mm["corrected"]["ladder"], controls=mm["corrected"]["positive_control"],
                        alignment=results[lab]["alignment"]) for lab, mm in models.items()]
    config, corpus = run_card(data, params)
    metrics = {
        "schema": "corpus-weights metrics v2 (docs/metrics.md)", "K": K, "K_list": data["K_list"], "K_over_d": K / d,
        "config": config, "corpus": corpus,
        "spectra": spectra_metrics(data["spectra"], data["main_res"]["weight_spectra"]),
        "training": {run: {**{k: info["summary"].get(k) for k in TRAINING_KEYS},
                           "wall_s": info["summary"].get("elapsed_s")} for run, info in data["runs"].items()},
        "main_label": main_label, "models": models, "gates": evaluate_gates(gate_inputs), "note": NOTE,
    }
    metrics["seeds"] = seed_statistics(models, K / d)
    metrics["note_protocol"] = models[main_label]["note_protocol"]
    metrics["verdicts"] = all_verdicts(metrics, NOTE)
    if data["intervention"]:
        iv = metrics["intervention"] = intervention_metrics(
            data["intervention"], models[main_label]["corrected"]["ladder"]["unigram_ce"])
        metrics["verdicts"].append({"id": "intervention", **iv["verdict"], "note_value": "(a slogan)",
                                    "ours": "see the Intervention section", "null": "random init, same seeds",
                                    "gates": ["G1 (every variant)", "seeds"], "reason": iv["gate"]["reason"]})
    metrics["benchmarks"] = _benchmark_table(list(params.get("benchmarks", [])))
    analysis = [r for r in metrics["benchmarks"] if r["rule"] in ANALYSIS_RULES]
    metrics["analysis"] = {"jobs": len(analysis), "cpu_seconds": sum(r["cpu_seconds"] or 0.0 for r in analysis),
                           "summed_wall_seconds": sum(r["seconds"] for r in analysis)}
    return metrics


def report_figures(data: dict, metrics: dict) -> dict:
    """Every figure of the page as PNG bytes (also written to report_files/)."""
    main_res, K, d = data["main_res"], data["K"], data["d"]
    figures = {"loss_ladder": _ladder_figure(metrics["models"]), "training": _training_figure(data["runs"]),
               "r2k": _r2k_figure(main_res["projections"], d, "W"),
               "r2k_dW": _r2k_figure(main_res["projections"], d, "dW"),
               "attention_layers": _attention_figure(data["results"], data["labels"]),
               "matrix_layer_heatmap": matrix_layer_heatmap(main_res["projections"], K),
               "head_heatmap": head_heatmap(main_res["attention"]),
               "spectra_heatmap": spectra_heatmap(main_res["weight_spectra"])}
    if data["intervention"]:
        figures["intervention"] = _intervention_figure(data["intervention"])
    return figures


def build_report(inputs: dict, params: dict) -> tuple[str, dict, dict]:
    """(html, metrics, {figures, tables}) from the rule's inputs and params."""
    data = load_inputs(inputs, params)
    metrics = collect_metrics(data, params)
    figures = report_figures(data, metrics)
    main_res, proj = data["main_res"], data["main_res"]["projections"]
    tables = {"per_matrix": proj[proj.K == data["K"]], "per_head": main_res["attention"],
              "weight_spectra": main_res["weight_spectra"], "runtimes": pd.DataFrame(metrics["benchmarks"])}
    return render_page(metrics, data, figures), metrics, {"figures": figures, "tables": tables}


def _training_figure(runs) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for run, info in runs.items():
        log = info["log"]
        sel = log[log["val_loss"].notna()]
        ax.plot(sel["tokens"], sel["val_loss"], "o-", ms=2, lw=1, label=f"{run} val")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation cross-entropy (nats)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _figure_to_data_uri(fig)


def _ladder_figure(models: dict) -> str:
    """The loss ladder per model: unigram, interpolated bigram, CE at position 0, validation loss."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    labels = list(models)
    rungs = [("unigram CE", "unigram_ce"), ("interpolated bigram CE", "bigram_ce"), ("model CE at position 0",
                                                                                   "ce_pos0"),
             ("model validation loss", "val_loss")]
    width = 0.8 / len(rungs)
    for i, (name, key) in enumerate(rungs):
        vals = [models[lab]["corrected"]["ladder"].get(key) for lab in labels]
        ax.bar(np.arange(len(labels)) + i * width, [np.nan if v is None else v for v in vals], width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, fontsize=8)
    lo = min(m["corrected"]["ladder"]["bigram_ce"] for m in models.values())
    ax.set_ylim(lo - 0.6, None)
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    return _figure_to_data_uri(fig)


def _r2k_figure(proj: pd.DataFrame, d: int, target: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    pooled = proj[(proj.matrix == "pooled_nonembed") & (proj.target == target)]
    for basis, label in BASIS_LABELS.items():
        sel = pooled[pooled.basis == basis].sort_values("K")
        if sel.empty:
            continue
        ax.plot(sel["K"], sel["share"], "o-", label=label, ms=3)
        if basis in ("random", "corpus_null") and "share_sd" in sel:
            ax.fill_between(sel["K"], sel["share"] - 2 * sel["share_sd"], sel["share"] + 2 * sel["share_sd"], alpha=0.2)
    ks = np.array(sorted(pooled["K"].unique()))
    if len(ks):
        ax.plot(ks, ks / d, "k:", lw=1, label="K/d")
    ax.set_xlabel("K (basis vectors)")
    ax.set_ylabel("projection share (pooled non-embedding)")
    ax.set_title("W" if target == "W" else "ΔW = W − W_init")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _figure_to_data_uri(fig)


def _attention_figure(results, labels) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for lab in labels:
        by_layer = results[lab]["attention"].groupby("layer").agg(r=("r", "mean"))
        ax.plot(by_layer.index, by_layer["r"], "o-", ms=3, label=lab)
    main = results[labels[0]]["attention"].groupby("layer")["null_sd"].mean()
    ax.fill_between(main.index, -2 * main.values, 2 * main.values, color="grey", alpha=0.2, label="null ±2 sd (main)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean head r (double-centred QK vs PMI)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _figure_to_data_uri(fig)


def _gate_summary(g: dict) -> str:
    """One short line of the values behind a gate (the full values are in metrics.json)."""
    v, f = g["values"], _fmt
    if g["name"] == "G1":
        return "; ".join(f"{r['model']}: val {f(r['val_loss'])} vs unigram {f(r['unigram_ce'])}, g = "
                         f"{f(r['learned_fraction'], 2)}" for r in v)
    if g["name"] == "G2":
        return "; ".join(f"{r['model']}: bigram z = {f(r['bigram_z'], 1)}" + (
            f", unigram z = {f(r['unigram_z'], 1)}" if r["role"] == "step0" else "") for r in v)
    if g["name"] == "G3":
        return "; ".join(f"{r['model']}: R² {f(r['heldout_r2'])} vs null {f(r['null_mean'])} (max {f(r['null_max'])}),"
                         f" p = {f(r['p'])}" for r in v)
    return "; ".join(f"seeds {', '.join(str(x) for x in r['seeds'])} at {', '.join(f(x) for x in r['token_budgets'])}"
                     f" tokens" for r in v)


def _gate_rows(gates: dict) -> list[dict]:
    return [{"gate": f"{g['name']} {g['title']}", "status": "pass" if g["passed"] else "FAIL",
             "condition": g["rule"], "values": _gate_summary(g)} for g in gates.values()]


def render_page(metrics: dict, data: dict, figures: dict) -> str:
    """The HTML page (templates/report.html): every table from report_tables, figures inline."""
    K, main_res = data["K"], data["main_res"]
    template = jinja2.Template(resources.files("corpus_weights").joinpath("templates/report.html").read_text(),
                               autoescape=True)
    intervention = tables.intervention_rows(metrics)
    return template.render(
        m=metrics, note=NOTE, K=K, d=data["d"], fmt=_fmt, verdicts=metrics["verdicts"],
        gate_table=_table(_gate_rows(metrics["gates"])), qk_table=_table(tables.qk_rows(metrics)),
        source_table=_table(tables.source_rows(metrics, K)), pr_table=_table(tables.pr_rows(metrics)),
        accounting_table=_table(tables.accounting_rows(metrics)), l0_table=_table(tables.l0_rows(metrics)),
        control_table=_table(tables.control_rows(metrics, data["labels"], K)),
        per_matrix_table=_table(tables.per_matrix_rows(main_res["projections"], K)),
        attention_table=_table(main_res["attention"].to_dict("records")),
        training_table=_table(tables.train_rows(data["runs"])),
        spectra_table=_table(data["spectra"].to_dict("records")),
        weight_spectra_table=_table(main_res["weight_spectra"].to_dict("records")),
        benchmark_table=_table(metrics["benchmarks"]),
        fig={name: data_uri(png) for name, png in figures.items()}, invariance=INVARIANCE_SENTENCE,
        intervention_table=_table(intervention) if intervention else None,
    )


INVARIANCE_SENTENCE = (
    "Invariance (tests/test_invariance.py, on the pipeline's own analysis functions): rotating a model's residual basis "
    "by an orthogonal Q that fixes the all-ones direction, with LayerNorm weights folded into the next matrices, "
    "leaves the logits unchanged and every corrected-protocol metric unchanged, while the note protocol's numbers "
    "move — they depend on an arbitrary choice of coordinates.")
