"""The report's tables, one short function each: rows (list of dicts) from metrics.json and the per-run files.

Each function answers one question of the page; `html_table` renders any of them. The note's values come from
`note_values.NOTE`, ours from metrics (docs/metrics.md).
"""
from __future__ import annotations

import html

import pandas as pd

from ..core.ids import Basis
from ..core.note_values import NOTE
from .verdicts import fmt, pm


def html_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>(no rows)</em></p>"
    columns = columns or list(rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def qk_rows(metrics: dict) -> list[dict]:
    """Per layer: the note's QK cosine, ours under its protocol with the rotation null, ours corrected."""
    notep, n_layer = metrics["note_protocol"], metrics["config"]["n_layer"]
    layer_r = metrics["models"][metrics["main_label"]]["corrected"]["attention"]["mean_r_by_layer"]
    ours_note, note_qk = notep.get("qk_cosines") or [], NOTE["qk_cosines"]
    return [{"layer": f"L{layer}",
             "note's value": note_qk[layer] if layer < len(note_qk) else None,
             "ours, note protocol (cos)": ours_note[layer] if layer < len(ours_note) else None,
             "random-rotation null": (f"{fmt(notep.get('qk_cosine_null_mean'))} ± "
                                      f"{fmt(notep.get('qk_cosine_null_sd'))}" if layer < n_layer else "—"),
             "ours, corrected (mean head r)": layer_r[layer] if layer < len(layer_r) else None}
            for layer in range(max(n_layer, len(note_qk)))]


def source_rows(metrics: dict, K: int) -> list[dict]:
    """How much of the weights each source of directions explains: the note's R², ours both ways."""
    notep, seeds = metrics["note_protocol"], metrics["seeds"]
    ours = "ours, corrected (uncentred share, aligned, non-embedding; mean ± sd over seeds)"

    def row(source, note=None, note_protocol=None, nonembed=None, corrected=None):
        return {"source": source, "note's value": note, "ours, note protocol": note_protocol,
                "ours, note protocol without embeddings": nonembed, ours: corrected}

    main = metrics["main_label"]
    test = metrics["models"][main]["corrected"]["corpus_basis_test"]
    null = (f"{fmt(test['null_mean'])} ± {fmt(test['null_sd'])} (sd over {fmt(test['n_null_draws'])} null draws, "
            f"{main}); fit/test splits add ± {fmt(test['split_sd'])} (sd over {fmt(test['n_splits'])} splits)")
    d = metrics["config"]["d_model"]
    label = (f"corpus basis, linear (the note: K = {NOTE['K']} of d = {NOTE['accounting']['d']}; ours: K = {K} of "
             f"d = {d}, K/d = {fmt(K / d)})")
    return [row(label, NOTE["r2_corpus_linear"], notep["r2_linear_all"],
                notep["r2_linear_nonembed"], pm(seeds["share_corpus"])),
            row("its null (corpus token identities scrambled within frequency bins)", corrected=null),
            row("direct (corpus-derived) prediction", NOTE["r2_direct"], notep["r2_direct"]),
            row("random", NOTE["r2_random"], notep["r2_random"], corrected=pm(seeds["share_random"])),
            row("W_E's own PCA", corrected=pm(seeds["share_we_pca"])),
            row("weights' own PCA (upper bound)", corrected=pm(seeds["share_own_pca"]))]


def pr_rows(metrics: dict) -> list[dict]:
    """Participation ratios of the corpus matrices and of W_E's covariance, with the depth they would suggest."""
    sp, n_layer = metrics["spectra"], metrics["config"]["n_layer"]
    table = [("C + Cᵀ, squared eigenvalues", NOTE["pr_symmetric"], "symmetric", NOTE["L_opt"]),
             ("C + Cᵀ, |eigenvalues| (top-k)", None, "symmetric_abs", None),
             ("C + Cᵀ, signed eigenvalues", None, "symmetric_signed", None),
             ("PPMI", None, "ppmi", None), ("Σ_E (corpus covariance)", None, "sigma_e", None),
             ("W_Eᵀ diag(π) W_E (trained)", None, "we_cov", None)]
    return [{"matrix": name, "note's PR": note_pr, "our PR": sp[f"pr_{key}"], "note's L_opt": note_l,
             "our L_opt": sp.get(f"L_opt_{key}"), "actual depth": n_layer} for name, note_pr, key, note_l in table]


def accounting_rows(metrics: dict) -> list[dict]:
    acc = metrics["note_protocol"].get("accounting") or {}
    return [{"quantity": key, "note's value": NOTE["accounting"].get(key), "ours (note protocol)": acc.get(key)}
            for key in ["basis_params", "score_params", "non_weight_params", "weight_structure", "raw_weight_params",
                        "rows", "compression", "derivable_share"]]


def l0_rows(metrics: dict) -> list[dict]:
    notep = metrics["note_protocol"]
    return [{"quantity": "|cos| of L0 W_Q's top singular vector with T_proj's leading singular vector",
             "note's value": NOTE["l0_wq_alignment"], "ours, note protocol": notep["l0_wq_alignment"],
             "random-direction expectation": notep["l0_wq_alignment_null_mean"]}]


def control_rows(metrics: dict, labels: list[str], K: int) -> list[dict]:
    """Every analysed model side by side: ladder, positive controls, map, Procrustes, CKA, shares, heads."""
    rows = []
    for lab in labels:
        c = metrics["models"][lab]["corrected"]
        pc, vm, null = c["positive_control"], c["vocab_map"], c["vocab_map"]["vocab_map_null"] or {}
        rows.append({
            "model": lab, "val loss": c["ladder"]["val_loss"], "CE pos 0": c["ladder"]["ce_pos0"],
            "g": c["ladder"]["learned_fraction"], "bigram r": pc["bigram"]["r"], "bigram z": pc["bigram"].get("z"),
            "unigram r": pc["unigram"]["r"], "direct/full": pc.get("direct_over_full"),
            "map held-out R²": vm["vocab_map_heldout_r2"], "map null mean": null.get("mean"), "map p": null.get("p"),
            "Procrustes cos": c["procrustes"]["heldout_cos"], "CKA (debiased)": c["cka"]["debiased"],
            f"share corpus (K={K})": c["projection_share"][Basis.CORPUS_ALIGNED],
            "share null": c["projection_share"][Basis.CORPUS_NULL], "p vs null": c["projection_share_p_vs_null"],
            "share W_E PCA": c["projection_share"]["we_pca"],
            "heads beyond random QK (BH)": f"{c['attention']['token_space']['significant']}/{c['attention']['heads']}",
            "heads, on text (BH)": f"{c['attention']['functional']['significant']}/{c['attention']['heads']}"})
    return rows


def per_matrix_rows(proj: pd.DataFrame, K: int) -> list[dict]:
    """Main model, per weight matrix and layer: share in each basis at the headline K, normalised score, p."""
    at_k = proj[(proj.K == K) & (proj.target == "W")]
    sel = at_k[at_k.basis.isin([Basis.CORPUS_ALIGNED, Basis.CORPUS_NULL, Basis.RANDOM, Basis.OWN_PCA])]
    wide = sel.pivot_table(index=["matrix", "layer"], columns="basis", values="share").reset_index()
    extra = at_k[at_k.basis == Basis.CORPUS_ALIGNED][["matrix", "layer", "normalised", "p_vs_null"]]
    return wide.merge(extra, on=["matrix", "layer"], how="left").to_dict("records")


def train_rows(runs: dict, models: dict | None = None) -> list[dict]:
    """One row per trained run, named as every other table names the model (main-s0, shuffled, …; the step-0
    control is a snapshot of the first main run, not a run of its own), with the folder its files are in."""
    labels = {m["run"]: label for label, m in (models or {}).items() if m.get("role") != "step0"}
    rows = []
    for run, info in runs.items():
        s = info["summary"]
        row = {"model": labels.get(run, run), "folder": f"train/{run}", "params": s.get("params"), "tokens": s.get("tokens"), "steps": s.get("steps"),
               "final train loss": s.get("final_train_loss"), "final val loss": s.get("final_val_loss")}
        if s.get("early_stopping"):  # the analysed model is the best one, not the last
            row.update({"analysed: step": s.get("best_step"), "analysed: tokens": s.get("best_tokens"),
                        "analysed: val loss": s.get("best_val_loss"), "stopped early": s.get("stopped_early")})
        rows.append({**row,
                     "tokens/s": s.get("tokens_per_s"), "MFU": s.get("mfu"), "wall s": s.get("elapsed_s"),
                     "device": s.get("device"), "dtype": s.get("dtype"),
                     "resumed from step": s.get("resumed_from_step")})
    return rows


def _difference(dd: dict | None) -> str:
    if not dd or dd["mean"] is None:
        return "—"
    return fmt(dd["mean"]) + (f" [{fmt(dd['ci95'][0])}, {fmt(dd['ci95'][1])}]" if dd["ci95"] else "")


def intervention_rows(metrics: dict) -> list[dict]:
    """Per initialisation: losses, tokens to the bigram CE and to random's final loss, differences to random."""
    iv = metrics.get("intervention")
    if not iv:
        return []
    rows = []
    for v in iv["variants"]:
        pv, snaps = iv["per_variant"][v], iv["per_variant"][v]["share_by_snapshot"]
        rows.append({"init": v, "final val loss": pm(pv["final_val_loss"]), "g": pm(pv["learned_fraction"]),
                     "tokens to bigram CE": pm(pv["tokens_to_bigram"]),
                     f"tokens to {1.02:.2f}× random's final loss": pm(pv["tokens_to_random_final"]),
                     "Δ final loss vs random": _difference(iv["differences"]["final_val_loss"].get(v)),
                     "Δ tokens vs random": _difference(iv["differences"]["tokens_to_random_final"].get(v)),
                     "aligned share (start → end)": " → ".join(fmt(snaps[k]["mean"]) for k in sorted(snaps))})
    return rows
