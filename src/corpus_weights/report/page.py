"""Render the report: the note's figures, ours under the note's protocol, ours under the corrected protocol.

`build_report` takes metrics.json (made by `metrics.collect_metrics`, rule `metrics`) and the per-model files the
figures and tables need, and returns the page, its figures and its full tables. The note's numbers come from
`note_values.NOTE`; the tables are built in `report_tables`.
"""
from __future__ import annotations

import base64
import html
import io
from importlib import resources

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import report_tables as tables  # noqa: E402
from ..core.ids import Basis, Pooled  # noqa: E402
from .gates import gate_status  # noqa: E402
from .metrics import collect_metrics, load_inputs  # noqa: E402
from ..core.note_values import NOTE  # noqa: E402
from .report_tables import html_table as _table  # noqa: E402
from .verdicts import fmt as _fmt  # noqa: E402

BASIS_LABELS = {
    Basis.CORPUS_ALIGNED: "corpus basis, aligned through the vocabulary",
    Basis.CORPUS_NULL: "its null: corpus token identities scrambled (±2 sd)",
    "random": "random basis (mean over draws)",
    "we_pca": "W_E's own PCA",
    "own_pca": "the weights' own PCA (upper bound)",
    "note_unaligned": "corpus basis used unaligned (note protocol)",
}


def _figure_png(fig) -> bytes:
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
    return _figure_png(fig)


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
            if {Basis.CORPUS_ALIGNED, Basis.CORPUS_NULL} <= set(cell.index):
                values[i, j] = cell.loc[Basis.CORPUS_ALIGNED, "share"] - cell.loc[Basis.CORPUS_NULL, "share"]
                marks[i, j] = bool(cell.loc[Basis.CORPUS_ALIGNED, "p_vs_null"] < 0.05)
    return _heatmap(values, rows, [f"L{x}" for x in layers], f"aligned share − its null (K = {K}); * p < 0.05",
                    "share above null", "RdBu_r", center=0.0, marks=marks, digits=3)


def head_heatmap(att: pd.DataFrame) -> bytes:
    """Per layer (rows) and head (columns): z of the head's trained W_Q/W_K against the null over attention (its
    W_Q/W_K rotated at random, the rest of the model kept); * = significant after Benjamini–Hochberg."""
    z = att.pivot(index="layer", columns="head", values="qk_z")
    sig = att.pivot(index="layer", columns="head", values="significant").fillna(False).astype(bool)
    return _heatmap(z.to_numpy(dtype=float), [f"L{x}" for x in z.index], [f"h{x}" for x in z.columns],
                    "QK vs preceding-token PMI against random W_Q/W_K, z; * significant (two-sided BH, FDR 0.05)", "z",
                    "RdBu_r", center=0.0, marks=sig.to_numpy(), digits=1)


def spectra_heatmap(ws: pd.DataFrame) -> bytes:
    """Participation ratio of every weight matrix, per matrix type (rows) and layer (columns)."""
    per = ws[ws["name"].str.match(r"^L\d+\.")].copy()
    per["layer"] = per["name"].str.extract(r"^L(\d+)\.")[0].astype(int)
    per["matrix"] = per["name"].str.replace(r"^L\d+\.", "", regex=True)
    pr = per.pivot(index="matrix", columns="layer", values="pr").reindex([m for m in MATRIX_ORDER
                                                                          if m in set(per.matrix)])
    return _heatmap(pr.to_numpy(dtype=float), list(pr.index), [f"L{x}" for x in pr.columns],
                    "participation ratio of each weight matrix (singular values²)", "PR", "viridis", digits=1)


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
    return _figure_png(fig)


def _trajectory_figure(trajectory: dict | None) -> bytes:
    """Small multiples: every headline statistic against training tokens; main seeds as solid lines, controls
    dashed; the null band (null mean ± 2 null sd, the main models' draws) or the reference line in grey."""
    stats = list((trajectory or {}).get("statistics", {}))
    if not stats:
        fig, ax = plt.subplots(figsize=(6.5, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no trained run to follow along training in this experiment", ha="center", va="center")
        return _figure_png(fig)
    cols = 3
    rows = -(-len(stats) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.5 * rows), squeeze=False)
    runs = trajectory["runs"]
    for ax, stat in zip(axes.ravel(), stats):
        first_main = True
        for label, run in runs.items():
            t = pd.DataFrame(run["rows"])
            t = t[t.stat == stat].sort_values("tokens")
            if t.empty:
                continue
            main = run["role"] == "main"
            ax.plot(t.tokens, t.value, "o-" if main else "s--", ms=3, lw=1.1 if main else 0.9,
                    color=None if main else "0.45", label=label)
            if main and first_main:  # the null band of the first main model (the seeds' bands overlap)
                first_main = False
                lo, hi = t.null_mean - 2 * t.null_sd, t.null_mean + 2 * t.null_sd
                if t.null_sd.notna().any():
                    ax.fill_between(t.tokens, lo, hi, color="grey", alpha=0.25, lw=0, label="null ± 2 sd")
                elif t.null_mean.notna().any():
                    ax.plot(t.tokens, t.null_mean, ":", color="k", lw=1,
                            label="bigram CE" if stat == "val_loss" else "null / reference")
        ax.set_xscale("symlog", linthresh=max(1.0, float(pd.DataFrame(next(iter(runs.values()))["rows"])
                                                          .query("tokens > 0")["tokens"].min() or 1.0)))
        ax.set_title(trajectory["statistics"][stat]["label"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(stats):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("training tokens (symlog)", fontsize=7)
    fig.tight_layout()
    return _figure_png(fig)


def report_figures(data: dict, metrics: dict) -> dict:
    """Every figure of the page as PNG bytes (also written to report_files/)."""
    main_res, K, d = data["main_res"], data["K"], data["d"]
    figures = {"loss_ladder": _ladder_figure(metrics["models"]), "training": _training_figure(data["runs"]),
               "r2k": _r2k_figure(main_res["projections"], d, "W"),
               "r2k_dW": _r2k_figure(main_res["projections"], d, "dW"),
               "attention_layers": _attention_figure(data["results"], data["labels"]),
               "matrix_layer_heatmap": matrix_layer_heatmap(main_res["projections"], K),
               "head_heatmap": head_heatmap(main_res["attention"]),
               "spectra_heatmap": spectra_heatmap(main_res["weight_spectra"]),
               "trajectory": _trajectory_figure(metrics.get("trajectory"))}
    if data["intervention"]:
        figures["intervention"] = _intervention_figure(data["intervention"])
    return figures


def build_report(inputs: dict, params: dict, metrics: dict | None = None) -> tuple[str, dict, dict]:
    """(html, metrics, {figures, tables}) from the rule's inputs and params; ``metrics`` as the `metrics` rule
    wrote them (computed here when not given)."""
    data = load_inputs(inputs, params)
    metrics = collect_metrics(data, params) if metrics is None else metrics
    figures = report_figures(data, metrics)
    main_res, proj = data["main_res"], data["main_res"]["projections"]
    csv_tables = {"per_matrix": proj[proj.K == data["K"]], "per_head": main_res["attention"],
                  "weight_spectra": main_res["weight_spectra"], "runtimes": pd.DataFrame(metrics["benchmarks"])}
    return render_page(metrics, data, figures), metrics, {"figures": figures, "tables": csv_tables}


def _finish(fig, ax, xlabel: str, ylabel: str, legend_cols: int = 1, grid_axis: str = "both") -> bytes:
    """Labels, legend and grid of a line or bar figure, then its PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=legend_cols)
    ax.grid(alpha=0.3, axis=grid_axis)
    return _figure_png(fig)


def _training_figure(runs) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for run, info in runs.items():
        log = info["log"]
        sel = log[log["val_loss"].notna()]
        ax.plot(sel["tokens"], sel["val_loss"], "o-", ms=2, lw=1, label=f"{run} val")
    return _finish(fig, ax, "training tokens", "validation cross-entropy (nats)")


def _ladder_figure(models: dict) -> bytes:
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
    return _finish(fig, ax, "", "cross-entropy (nats)", legend_cols=2, grid_axis="y")


def _r2k_figure(proj: pd.DataFrame, d: int, target: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    pooled = proj[(proj.matrix == Pooled.NONEMBED) & (proj.target == target)]
    for basis, label in BASIS_LABELS.items():
        sel = pooled[pooled.basis == basis].sort_values("K")
        if sel.empty:
            continue
        ax.plot(sel["K"], sel["share"], "o-", label=label, ms=3)
        if basis in (Basis.RANDOM, Basis.CORPUS_NULL) and "share_sd" in sel:
            ax.fill_between(sel["K"], sel["share"] - 2 * sel["share_sd"], sel["share"] + 2 * sel["share_sd"], alpha=0.2)
    ks = np.array(sorted(pooled["K"].unique()))
    if len(ks):
        ax.plot(ks, ks / d, "k:", lw=1, label="K/d")
    ax.set_title("W" if target == "W" else "ΔW = W − W_init")
    return _finish(fig, ax, "K (basis vectors)", "projection share (pooled non-embedding)")


def _attention_figure(results, labels) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for lab in labels:
        by_layer = results[lab]["attention"].groupby("layer").agg(r=("r", "mean"))
        ax.plot(by_layer.index, by_layer["r"], "o-", ms=3, label=lab)
    main = results[labels[0]]["attention"].groupby("layer")["qk_null_sd"].mean()  # the null over W_Q/W_K: mean 0
    ax.fill_between(main.index, -2 * main.values, 2 * main.values, color="grey", alpha=0.2,
                    label="random W_Q/W_K ±2 sd (main)")
    ax.axhline(0, color="k", lw=0.5)
    return _finish(fig, ax, "layer", "mean head r (double-centred QK vs PMI)")


def _gate_summary(g: dict) -> str:
    """One short line of the values behind a gate (the full values are in metrics.json)."""
    v, f = g["values"], _fmt
    if g["name"] == "G1":
        return "; ".join(f"{r['model']}: val {f(r['val_loss'])} vs unigram {f(r['unigram_ce'])}, g = "
                         f"{f(r['learned_fraction'], 2)}" for r in v)
    if g["name"] == "G2":
        return "; ".join(f"{r['model']}: not applicable (trained elsewhere, no shuffled twin)" if r.get("ok") is None
                         else f"{r['model']}: bigram z = {f(r['bigram_z'], 1)}" + (
            f", unigram z = {f(r['unigram_z'], 1)}" if r["role"] == "step0" else "") for r in v)
    if g["name"] == "G3":
        return "; ".join(f"{r['model']}: R² {f(r['heldout_r2'])}"
                         + (f" (± {f(r['heldout_r2_split_sd'])} over fit/test splits)"
                            if r.get("heldout_r2_split_sd") is not None else "")
                         + f" vs null {f(r['null_mean'])} (max {f(r['null_max'])}), p = {f(r['p'])}" for r in v)
    if g["passed"] is None:
        return "one checkpoint, no seeds"
    return "; ".join(f"seeds {', '.join(str(x) for x in r['seeds'])} at {', '.join(f(x) for x in r['token_budgets'])}"
                     f" tokens" for r in v)


GATE_ADVICE = {
    "G1": "train longer (raise train.tokens) or on more text; the measured values are above",
    "G2": "a main model without bigram knowledge needs more training (train.tokens); a control that shows bigrams "
          "points at repeated text in the corpus or too few tokens for the null",
    "G3": "the corpus -> model map is no better than chance: train longer (train.tokens) or use more tokens in the map "
          "(analysis.top_n)",
    "G4": "list at least two seeds in train.seeds, all at one train.tokens",
}


# What to change when the model was trained elsewhere (model.source: checkpoint): nothing here trains it
CHECKPOINT_GATE_ADVICE = {
    "G1": "the checkpoint predicts this corpus too poorly for its weights to be read against it: analyse it on the "
          "text it was trained on (corpus.files), or a checkpoint trained longer",
    "G2": "the checkpoint shows no bigram knowledge of this corpus (or its re-initialised step 0 does): analyse it on "
          "the text it was trained on",
    "G3": "the corpus -> model map is no better than chance: analyse the checkpoint on the text it was trained on, or "
          "use more tokens in the map (analysis.top_n)",
}


def _gate_rows(gates: dict, checkpoint: bool = False) -> list[dict]:
    advice = {**GATE_ADVICE, **CHECKPOINT_GATE_ADVICE} if checkpoint else GATE_ADVICE
    return [{"gate": f"{g['name']} {g['title']}", "status": gate_status(g),
             "condition": g["rule"], "values": _gate_summary(g),
             "last half of training": {True: "still moving", False: "settled", None: "unknown"}[g.get("still_moving")]
             if "still_moving_text" in g else "—",
             "what to change": advice.get(g["name"], "") if g["passed"] is False else ""}
            for g in gates.values()]


STATUS_CLASS = {"pass": "pass", "FAIL": "fail", "not applicable": "na"}


def gate_table(gates: dict, checkpoint: bool = False) -> str:
    """The gate panel: pass / FAIL coloured, and for a failing gate what to change (for a checkpoint trained
    elsewhere: not "train longer")."""
    rows = _gate_rows(gates, checkpoint)
    if all(r["status"] != "FAIL" for r in rows):
        rows = [{k: v for k, v in r.items() if k != "what to change"} for r in rows]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td class="{STATUS_CLASS.get(r["status"], "fail")}">{html.escape(v)}</td>'
                         if c == "status" else f"<td>{html.escape(str(v))}</td>" for c, v in r.items()) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(metrics: dict, data: dict, figures: dict) -> str:
    """The HTML page (templates/report.html): every table from report_tables, figures inline."""
    K, main_res = data["K"], data["main_res"]
    template = jinja2.Template(resources.files("corpus_weights.report").joinpath("templates/report.html").read_text(),
                               autoescape=True)
    intervention = tables.intervention_rows(metrics)
    return template.render(
        m=metrics, note=NOTE, K=K, d=data["d"], fmt=_fmt, verdicts=metrics["verdicts"],
        gate_table=gate_table(metrics["gates"], checkpoint=bool(metrics["config"].get("checkpoint"))), qk_table=_table(tables.qk_rows(metrics)),
        source_table=_table(tables.source_rows(metrics, K)), pr_table=_table(tables.pr_rows(metrics)),
        accounting_table=_table(tables.accounting_rows(metrics)), l0_table=_table(tables.l0_rows(metrics)),
        control_table=_table(tables.control_rows(metrics, data["labels"], K)),
        per_matrix_table=_table(tables.per_matrix_rows(main_res["projections"], K)),
        attention_table=_table(main_res["attention"].to_dict("records")),
        training_table=_table(tables.train_rows(data["runs"], metrics["models"])),
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
