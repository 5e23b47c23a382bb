"""Assemble the report: the note's figures, ours under the note's protocol, ours under the corrected protocol.

`build_report` reads the workflow's artifacts, returns (html, metrics). Every number of ours comes from the run;
the note's numbers come from `note_values.NOTE`. The keys of metrics.json are documented in docs/metrics.md.
"""
from __future__ import annotations

import base64
import glob
import html
import io
import math
import os
from importlib import resources

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .note_values import NOTE  # noqa: E402
from .workflow_io import read_json  # noqa: E402

BASIS_LABELS = {
    "corpus_aligned": "corpus basis, aligned through the vocabulary",
    "random": "random basis (mean over draws)",
    "we_pca": "W_E's own PCA",
    "own_pca": "the weights' own PCA (upper bound)",
    "note_unaligned": "corpus basis used unaligned (note protocol)",
}


def _fmt(value, digits=3):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    value = float(value)
    if not math.isfinite(value):
        return "—"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _figure_to_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>(no rows)</em></p>"
    columns = columns or list(rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _mean_sd(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def load_model_results(run: str, snap: str, K_list: list[int]) -> dict:
    base = f"results/analysis/{run}/{snap}"
    projections = pd.concat([pd.read_parquet(f"{base}/projection/K{k}.parquet") for k in K_list], ignore_index=True)
    return {
        "alignment": read_json(f"{base}/alignment.json"),
        "attention": pd.read_parquet(f"{base}/attention.parquet"),
        "attention_summary": read_json(f"{base}/attention.json"),
        "note": read_json(f"{base}/note_protocol.json"),
        "weight_spectra": pd.read_parquet(f"{base}/weight_spectra.parquet"),
        "projections": projections,
    }


def _share(proj: pd.DataFrame, K: int, basis: str, target="W", matrix="pooled_nonembed", column="share"):
    sel = proj[(proj.K == K) & (proj.basis == basis) & (proj.target == target) & (proj.matrix == matrix)]
    if sel.empty or column not in sel:
        return None
    value = sel[column].iloc[0]
    return None if pd.isna(value) else float(value)


def model_metrics(res: dict, K: int) -> dict:
    """Headline numbers of one analysed model (corrected protocol and note protocol)."""
    proj = res["projections"]
    att = res["attention"]
    ctrl = res["attention_summary"]["positive_control"]
    layer_r = att.groupby("layer")["r"].mean()
    corrected = {
        "vocab_map_heldout_r2": res["alignment"].get("vocab_map_heldout_r2"),
        "procrustes_r2": res["alignment"].get("procrustes_r2"),
        "linear_cka": res["alignment"].get("linear_cka"),
        "projection_share": {b: _share(proj, K, b) for b in ["corpus_aligned", "random", "we_pca", "own_pca"]},
        "projection_share_random_sd": _share(proj, K, "random", column="share_sd"),
        "normalised_score": _share(proj, K, "corpus_aligned", column="normalised"),
        "projection_share_dW": {b: _share(proj, K, b, target="dW") for b in ["corpus_aligned", "random", "own_pca"]},
        "normalised_score_dW": _share(proj, K, "corpus_aligned", target="dW", column="normalised"),
        "attention_r_by_layer": [float(v) for v in layer_r.values],
        "attention_max_z": float(att["z"].max()) if len(att) else None,
        "attention_heads_significant": int((att["p"] < 0.01).sum()),
        "attention_heads": int(len(att)),
        "positive_control": ctrl,
    }
    note = res["note"]
    note_metrics = {
        "r2_linear_all": _share(proj, K, "note_linear", matrix="pooled_all", column="r2"),
        "r2_linear_nonembed": _share(proj, K, "note_linear", matrix="pooled_nonembed", column="r2"),
        "r2_direct": note.get("r2_direct"),
        "r2_random": note.get("r2_random"),
        "cos_direct": note.get("cos_direct"),
        "cos_random": note.get("cos_random"),
        "qk_cosines": note.get("qk_cosines"),
        "qk_cosine_null_mean": note.get("qk_cosine_null_mean"),
        "qk_cosine_null_sd": note.get("qk_cosine_null_sd"),
        "l0_wq_alignment": note.get("l0_wq_alignment"),
        "l0_wq_alignment_null_mean": note.get("l0_wq_alignment_null_mean"),
        "accounting": note.get("accounting"),
    }
    return {"corrected": corrected, "note_protocol": note_metrics}


def _benchmark_table(bench_dir: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(bench_dir, "*", "*.tsv"))):
        try:
            frame = pd.read_csv(path, sep="\t")
        except Exception:  # a half-written benchmark file must not break the report
            continue
        rows.append({"rule": os.path.basename(os.path.dirname(path)),
                     "job": os.path.basename(path)[:-4], "seconds": float(frame["s"].iloc[0]),
                     "max_rss_mb": float(frame["max_rss"].iloc[0]) if "max_rss" in frame else None})
    return rows


def _verdicts(m: dict, note: dict, K: int) -> list[dict]:
    """One sentence per claim of the note, filled from the run."""
    main = m["models"][m["main_label"]]
    corr, notep = main["corrected"], main["note_protocol"]
    out = []
    share = corr["projection_share"]
    rnd_sd = corr.get("projection_share_random_sd")
    out.append({
        "claim": f"The corpus basis explains {note['r2_corpus_linear']:.1%} of weight variance (K={note['K']}).",
        "finding": (
            f"Under the note's protocol we get R² = {_fmt(notep['r2_linear_all'])} pooled with the embeddings and "
            f"{_fmt(notep['r2_linear_nonembed'])} without them. Corrected (aligned basis, non-embedding matrices, K={K}): "
            f"projection share {_fmt(share['corpus_aligned'])} against {_fmt(share['random'])} ± {_fmt(rnd_sd)} for a "
            f"random basis (K/d = {_fmt(m['K_over_d'])}) and {_fmt(share['own_pca'])} for the weights' own PCA; "
            f"normalised score {_fmt(corr['normalised_score'])} (0 = random, 1 = own PCA)."),
    })
    pc = corr["positive_control"]
    layer_r = corr["attention_r_by_layer"]
    out.append({
        "claim": "Attention does not learn corpus bigram routing (cos(QKᵀ, T_proj) ≈ 0 in every layer).",
        "finding": (
            f"The note's cosines reproduce as {', '.join(_fmt(c) for c in (notep['qk_cosines'] or []))} with a "
            f"random-rotation null of {_fmt(notep['qk_cosine_null_mean'])} ± {_fmt(notep['qk_cosine_null_sd'])}: "
            f"they sit inside the null and say nothing. Coordinate-free, per head in token space, the mean row-centred r "
            f"with the preceding-token statistic per layer is {', '.join(_fmt(r) for r in layer_r)}; "
            f"{corr['attention_heads_significant']} of {corr['attention_heads']} heads beat the frequency-binned "
            f"permutation null at p < 0.01 (max z = {_fmt(corr['attention_max_z'], 1)}). Positive control (direct path vs "
            f"log T): r = {_fmt(pc.get('r'))}, z = {_fmt(pc.get('z'), 1)}, p = {_fmt(pc.get('p'))}."),
    })
    out.append({
        "claim": f"The depth formula fails: PR of the symmetric corpus matrix ≈ {note['pr_symmetric']} → L_opt = 1.",
        "finding": (
            f"PR of C + Cᵀ (raw symmetric bigram counts) = {_fmt(m['spectra']['pr_symmetric'])} → L_opt = "
            f"{m['spectra']['L_opt_symmetric']}: "
            + ("frequency dominates the raw counts, which explains the note's ≈ 1."
               if m['spectra']['pr_symmetric'] is not None and m['spectra']['pr_symmetric'] < 3 else
               "this does not reproduce the note's ≈ 1, so frequency dominance of the raw counts alone does not "
               "explain it.")
            + f" The same heuristic on PPMI gives {_fmt(m['spectra']['pr_ppmi'])} → {m['spectra']['L_opt_ppmi']} and on Σ_E "
            f"{_fmt(m['spectra']['pr_sigma_e'])} → {m['spectra']['L_opt_sigma_e']}, against the real depth "
            f"{m['config']['n_layer']}: the heuristic depends entirely on which matrix is fed to it."),
    })
    out.append({
        "claim": f"L0's W_Q aligns with T_proj's leading singular vector (|cos| = {note['l0_wq_alignment']}).",
        "finding": (
            f"We measure |cos| = {_fmt(notep['l0_wq_alignment'])} against a random-direction expectation of "
            f"{_fmt(notep['l0_wq_alignment_null_mean'])}; without alignment the corpus and model coordinates are unrelated, "
            f"so this number is not interpretable on its own."),
    })
    out.append({
        "claim": "Norm-matched 'direct' and 'random' predictions give R² ≈ −0.968 and −1.001.",
        "finding": (
            f"For a centred, norm-matched prediction R² = 2·cos − 1 by arithmetic. We get direct R² = "
            f"{_fmt(notep['r2_direct'])} (cos {_fmt(notep['cos_direct'])}) and random R² = {_fmt(notep['r2_random'])} "
            f"(cos {_fmt(notep['cos_random'])}): both ≈ −1 because both cosines ≈ 0; neither measures anything."),
    })
    return out


def build_report(inputs: dict, params: dict) -> tuple[str, dict]:
    K_list = list(params["K"])
    K = int(params["headline_K"])
    cfg = params["config"]
    d = int(cfg["model"]["d_model"])
    manifest = read_json(inputs["manifest"])
    tokens_meta = read_json(inputs["tokens_meta"])
    spectra = pd.read_parquet(inputs["spectra"])

    runs = {}
    for log_path, summary_path in zip(inputs["train_logs"], inputs["train_summaries"]):
        run = os.path.basename(os.path.dirname(log_path))
        runs[run] = {"log": pd.read_parquet(log_path), "summary": read_json(summary_path)}

    results = {mdl["label"]: load_model_results(mdl["run"], mdl["snap"], K_list) for mdl in params["models"]}
    labels = [mdl["label"] for mdl in params["models"]]
    main_labels = [lab for lab in labels if lab.startswith("main-")]
    main_label = main_labels[0]

    def spectrum(name_start):
        sel = spectra[spectra["name"].str.startswith(name_start)]
        return None if sel.empty else float(sel["pr"].iloc[0])

    main_res = results[main_label]
    ws = main_res["weight_spectra"]
    we_cov = ws[ws["name"].str.startswith("W_E^T diag(pi) W_E")]
    spectra_m = {
        "pr_symmetric": spectrum("C + C^T"),
        "pr_ppmi": spectrum("PPMI"),
        "pr_sigma_e": spectrum("Sigma_E"),
        "pr_we_cov": None if we_cov.empty else float(we_cov["pr"].iloc[0]),
    }
    for key in ["symmetric", "ppmi", "sigma_e", "we_cov"]:
        pr = spectra_m[f"pr_{key}"]
        spectra_m[f"L_opt_{key}"] = None if pr is None else int(math.ceil(pr / 3))

    metrics = {
        "schema": "corpus-weights metrics v1 (docs/metrics.md)",
        "K": K, "K_list": K_list, "K_over_d": K / d,
        "config": {"n_layer": cfg["model"]["n_layer"], "d_model": d, "n_head": cfg["model"]["n_head"],
                   "context": cfg["model"]["context"], "vocab_size": tokens_meta["vocab_size"],
                   "requested_vocab_size": tokens_meta.get("requested_vocab_size"),
                   "vocab_shrunk": bool(tokens_meta.get("shrunk", False))},
        "corpus": {"n_words": manifest.get("n_words"), "n_chars": manifest.get("n_chars"),
                   "n_tokens": tokens_meta.get("n_tokens"), "n_train": tokens_meta.get("n_train"),
                   "n_val": tokens_meta.get("n_val"), "sha256": manifest.get("sha256")},
        "spectra": spectra_m,
        "training": {run: {k: info["summary"].get(k) for k in
                           ["params", "steps", "tokens", "tokens_per_s", "mfu", "device", "dtype", "compiled",
                            "final_train_loss", "final_val_loss", "resumed_from_step", "wall_s"]}
                     for run, info in runs.items()},
        "main_label": main_label,
        "models": {lab: model_metrics(res, K) for lab, res in results.items()},
        "note": NOTE,
    }
    # Seeds: mean ± sd of the headline numbers over main seeds.
    seed_stats = {}
    for key, getter in {
        "normalised_score": lambda mm: mm["corrected"]["normalised_score"],
        "projection_share_corpus": lambda mm: mm["corrected"]["projection_share"]["corpus_aligned"],
        "positive_control_r": lambda mm: mm["corrected"]["positive_control"].get("r"),
        "note_r2_linear_all": lambda mm: mm["note_protocol"]["r2_linear_all"],
    }.items():
        mean, sd = _mean_sd([getter(metrics["models"][lab]) for lab in main_labels])
        seed_stats[key] = {"mean": mean, "sd": sd, "n_seeds": len(main_labels)}
    metrics["seeds"] = seed_stats
    metrics["verdicts"] = _verdicts(metrics, NOTE, K)
    pc = metrics["models"][main_label]["corrected"]["positive_control"]
    # "Clearly positive": a real correlation (r > 0.1) far outside its permutation null (z > 3). z rather than p,
    # because p can never fall below 1/(1 + draws).
    metrics["suspect"] = not (pc.get("r") is not None and pc["r"] > 0.1 and (pc.get("z") or 0) > 3)
    metrics["benchmarks"] = _benchmark_table(params.get("benchmarks_dir", "results/benchmarks"))

    html_text = _render(metrics, runs, results, labels, K, K_list, d, spectra, main_res)
    return html_text, metrics


def _training_figure(runs) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for run, info in runs.items():
        log = info["log"]
        ax.plot(log["tokens"], log["train_loss"], label=f"{run} train", lw=1)
        if "val_loss" in log and log["val_loss"].notna().any():
            sel = log[log["val_loss"].notna()]
            ax.plot(sel["tokens"], sel["val_loss"], "o--", ms=3, label=f"{run} val")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _figure_to_data_uri(fig)


def _r2k_figure(proj: pd.DataFrame, d: int, target: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    pooled = proj[(proj.matrix == "pooled_nonembed") & (proj.target == target)]
    for basis, label in BASIS_LABELS.items():
        sel = pooled[pooled.basis == basis].sort_values("K")
        if sel.empty:
            continue
        ax.plot(sel["K"], sel["share"], "o-", label=label, ms=3)
        if basis == "random" and "share_sd" in sel:
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
        att = results[lab]["attention"]
        by_layer = att.groupby("layer").agg(r=("r", "mean"), null_sd=("null_sd", "mean"))
        ax.plot(by_layer.index, by_layer["r"], "o-", ms=3, label=lab)
    main = results[labels[0]]["attention"].groupby("layer")["null_sd"].mean()
    ax.fill_between(main.index, -2 * main.values, 2 * main.values, color="grey", alpha=0.2, label="null ±2 sd (main)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean head r (QK vs preceding-token stat.)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _figure_to_data_uri(fig)


def _render(metrics, runs, results, labels, K, K_list, d, spectra, main_res) -> str:
    note = NOTE
    main = metrics["models"][metrics["main_label"]]
    corr, notep = main["corrected"], main["note_protocol"]
    n_layer = metrics["config"]["n_layer"]

    qk_rows = []
    null_mean, null_sd = notep.get("qk_cosine_null_mean"), notep.get("qk_cosine_null_sd")
    for layer in range(max(n_layer, len(note["qk_cosines"]))):
        ours_note = (notep.get("qk_cosines") or [None] * n_layer)
        qk_rows.append({
            "layer": f"L{layer}",
            "note's value": note["qk_cosines"][layer] if layer < len(note["qk_cosines"]) else None,
            "ours, note protocol (cos)": ours_note[layer] if layer < len(ours_note) else None,
            "random-rotation null": (f"{_fmt(null_mean)} ± {_fmt(null_sd)}" if layer < n_layer else "—"),
            "ours, corrected (mean head r)": (corr["attention_r_by_layer"][layer]
                                              if layer < len(corr["attention_r_by_layer"]) else None),
        })

    share = corr["projection_share"]
    source_rows = [
        {"source": f"corpus basis, linear (K={K})", "note's value": note["r2_corpus_linear"],
         "ours, note protocol": notep["r2_linear_all"],
         "ours, note protocol without embeddings": notep["r2_linear_nonembed"],
         "ours, corrected (projection share, aligned)": share["corpus_aligned"]},
        {"source": "direct (corpus-derived) prediction", "note's value": note["r2_direct"],
         "ours, note protocol": notep["r2_direct"], "ours, note protocol without embeddings": None,
         "ours, corrected (projection share, aligned)": None},
        {"source": "random", "note's value": note["r2_random"], "ours, note protocol": notep["r2_random"],
         "ours, note protocol without embeddings": None,
         "ours, corrected (projection share, aligned)": share["random"]},
        {"source": "weights' own PCA (upper bound)", "note's value": None, "ours, note protocol": None,
         "ours, note protocol without embeddings": None,
         "ours, corrected (projection share, aligned)": share["own_pca"]},
    ]

    sp = metrics["spectra"]
    pr_rows = [
        {"matrix": "symmetric corpus matrix C + Cᵀ", "note's PR": note["pr_symmetric"], "our PR": sp["pr_symmetric"],
         "note's L_opt": note["L_opt"], "our L_opt": sp["L_opt_symmetric"], "actual depth": n_layer},
        {"matrix": "PPMI", "note's PR": None, "our PR": sp["pr_ppmi"], "note's L_opt": None,
         "our L_opt": sp["L_opt_ppmi"], "actual depth": n_layer},
        {"matrix": "Σ_E (corpus covariance)", "note's PR": None, "our PR": sp["pr_sigma_e"], "note's L_opt": None,
         "our L_opt": sp["L_opt_sigma_e"], "actual depth": n_layer},
        {"matrix": "W_Eᵀ diag(π) W_E (trained)", "note's PR": None, "our PR": sp["pr_we_cov"], "note's L_opt": None,
         "our L_opt": sp["L_opt_we_cov"], "actual depth": n_layer},
    ]

    acc = notep.get("accounting") or {}
    nacc = note["accounting"]
    acc_rows = [{"quantity": key, "note's value": nacc.get(key), "ours (note protocol)": acc.get(key)}
                for key in ["basis_params", "score_params", "non_weight_params", "weight_structure", "raw_weight_params",
                            "rows", "compression", "derivable_share"]]

    l0_rows = [{"quantity": "|cos| of L0 W_Q's top singular vector with T_proj's leading singular vector",
                "note's value": note["l0_wq_alignment"], "ours, note protocol": notep["l0_wq_alignment"],
                "random-direction expectation": notep["l0_wq_alignment_null_mean"],
                "ours, corrected": "see per-head attention table (coordinate-free)"}]

    control_rows = []
    for lab in labels:
        mm = metrics["models"][lab]
        c = mm["corrected"]
        control_rows.append({
            "model": lab,
            "vocab-map held-out R²": c["vocab_map_heldout_r2"],
            f"share corpus (K={K})": c["projection_share"]["corpus_aligned"],
            "share random": c["projection_share"]["random"],
            "share own PCA": c["projection_share"]["own_pca"],
            "normalised": c["normalised_score"],
            "normalised ΔW": c["normalised_score_dW"],
            "positive control r": c["positive_control"].get("r"),
            "positive control z": c["positive_control"].get("z"),
            "heads p<0.01": f"{c['attention_heads_significant']}/{c['attention_heads']}",
            "note R² (all)": mm["note_protocol"]["r2_linear_all"],
        })

    proj = main_res["projections"]
    per_matrix = proj[(proj.K == K) & (proj.target == "W") & proj.basis.isin(["corpus_aligned", "random", "own_pca"])]
    pm = per_matrix.pivot_table(index=["matrix", "layer"], columns="basis", values="share").reset_index()
    norm = proj[(proj.K == K) & (proj.target == "W") & (proj.basis == "corpus_aligned")][["matrix", "layer", "normalised"]]
    pm = pm.merge(norm, on=["matrix", "layer"], how="left")
    per_matrix_rows = pm.to_dict("records")

    att = main_res["attention"]
    att_rows = att.to_dict("records")

    train_rows = []
    for run, info in runs.items():
        s = info["summary"]
        train_rows.append({"run": run, "params": s.get("params"), "tokens": s.get("tokens"), "steps": s.get("steps"),
                           "final train loss": s.get("final_train_loss"), "final val loss": s.get("final_val_loss"),
                           "tokens/s": s.get("tokens_per_s"), "MFU": s.get("mfu"), "device": s.get("device"),
                           "dtype": s.get("dtype"), "compiled": str(s.get("compiled")),
                           "resumed from step": s.get("resumed_from_step")})

    template = jinja2.Template(resources.files("corpus_weights").joinpath("templates/report.html").read_text())
    return template.render(
        m=metrics, note=note, K=K, d=d, fmt=_fmt,
        verdicts=metrics["verdicts"],
        qk_table=_table(qk_rows), source_table=_table(source_rows), pr_table=_table(pr_rows),
        accounting_table=_table(acc_rows), l0_table=_table(l0_rows), control_table=_table(control_rows),
        per_matrix_table=_table(per_matrix_rows), attention_table=_table(att_rows),
        training_table=_table(train_rows), spectra_table=_table(spectra.to_dict("records")),
        weight_spectra_table=_table(main_res["weight_spectra"].to_dict("records")),
        benchmark_table=_table(metrics["benchmarks"]),
        training_fig=_training_figure(runs), r2k_fig=_r2k_figure(proj, d, "W"), r2k_dw_fig=_r2k_figure(proj, d, "dW"),
        attention_fig=_attention_figure(results, labels),
        alignment=main_res["alignment"], invariance=INVARIANCE_SENTENCE,
    )


INVARIANCE_SENTENCE = (
    "Invariance (tests/test_invariance.py): rotating a model's residual basis by an orthogonal Q that fixes the all-ones "
    "direction, with LayerNorm weights folded into the next matrices, leaves the logits unchanged (to 1e-4) and every "
    "corrected-protocol metric unchanged (to 1e-6 relative), while the note protocol's numbers move — they depend on "
    "an arbitrary choice of coordinates.")
