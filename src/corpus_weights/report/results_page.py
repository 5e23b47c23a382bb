"""Markdown results pages for docs/, generated from a run's metrics.json.

    python -m corpus_weights.report.results_page results/metrics.json > docs/intervention-results.md
    python -m corpus_weights.report.results_page --experiment results/shakespeare/reference/metrics.json \
        --wall-time "..." > docs/reference-results.md

The intervention page answers the intervention experiment's question; the experiment page is the whole run: where
the models stand, every gate and every verdict with its statistic and whether it was still moving along training
(and the intervention table when the run has it).
"""
from __future__ import annotations

import argparse
import sys

from .gates import gate_status
from .verdicts import fmt, pm as _pm
from ..core.workflow_io import read_json


def tokens(value) -> str:
    """A token count as a whole number with thousands separators (144.597 tokens prints as 145, not as a
    thousands-separated 144.597)."""
    return "—" if value is None else f"{round(float(value)):,}"


def intervention_markdown(metrics: dict, wall_time: str | None = None) -> str:
    iv = metrics.get("intervention")
    if not iv:
        raise ValueError("metrics.json has no 'intervention' block: run with --configfile config/intervention.yaml")
    cfg, corpus = metrics["config"], metrics["corpus"]
    snaps = sorted(iv["per_variant"][iv["variants"][0]]["share_by_snapshot"])
    pcts = " → ".join(str(int(s.rsplit("_", 1)[1])) for s in snaps)
    final = "analysed (best) val loss" if cfg.get("patience") else "final val loss"
    lines = [
        "# Does the corpus coordinate system save training? (generated from a run)", "",
        f"Corpus {corpus['name']} ({corpus['n_tokens']:,} tokens, V = {cfg['vocab_size']:,}); model {cfg['n_layer']} "
        f"layers, d = {cfg['d_model']}, {cfg['n_head']} heads, context {cfg['context']}; {cfg['train_tokens']:,} "
        f"training tokens per model; seeds {', '.join(str(s) for s in iv['seeds'])}; config hash "
        f"{cfg['config_hash']}." + (f" Wall time of the experiment: {wall_time}." if wall_time else ""), "",
        f"**Verdict: {iv['verdict']['status']}.** {iv['verdict']['finding']}", "",
        f"| init | {final} | learned fraction g | tokens to bigram CE | tokens to 1.02× random's final loss | "
        f"aligned share (snapshots {pcts} %) |",
        "|---|---|---|---|---|---|",
    ]
    for v in iv["variants"]:
        pv = iv["per_variant"][v]
        shares = " → ".join(fmt(pv["share_by_snapshot"][k]["mean"]) for k in sorted(pv["share_by_snapshot"]))
        lines.append(f"| {v} | {_pm(pv['final_val_loss'])} | {_pm(pv['learned_fraction'])} | "
                     f"{_pm(pv['tokens_to_bigram'])} ({pv['reached_bigram']} of {len(iv['seeds'])} reached) | "
                     f"{_pm(pv['tokens_to_random_final'])} | {shares} |")
    lines += ["", "Differences to the random initialisation, paired by seed (mean, 95 % t interval; with 2 seeds the "
              "interval uses t(1) = 12.7 and is wide):", "",
              "| init | Δ final val loss (nats) | Δ tokens to random's final loss |", "|---|---|---|"]
    for v in iv["variants"][1:]:
        cells = []
        for key in ("final_val_loss", "tokens_to_random_final"):
            d = iv["differences"][key].get(v, {})
            ci = d.get("ci95")
            f = fmt if key == "final_val_loss" else tokens  # token counts as whole numbers (interpolated: fractional)
            cells.append("—" if d.get("mean") is None else f(d["mean"]) + (
                f" [{f(ci[0])}, {f(ci[1])}]" if ci else "") + f" (per seed: {', '.join(f(x) for x in d['diffs'])})")
        lines.append(f"| {v} | {cells[0]} | {cells[1]} |")
    lines += ["", "Gate: G1 (val loss ≥ 0.3 nats below unigram CE and g ≥ 0.5) for every variant and seed, and ≥ 2 "
              f"seeds: {'pass' if iv['gate']['passed'] else 'FAIL — ' + str(iv['gate']['reason'])}.", ""]
    return "\n".join(lines)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def run_rows(metrics: dict) -> list[str]:
    """One table row per trained run: tokens taken, the analysed step (the best one under early stopping), losses,
    speed."""
    rows = ["| model (folder) | tokens taken | analysed at (tokens) | val loss of the analysed model | stopped early | "
            "tokens/s | wall s | device, dtype |", "|---|---|---|---|---|---|---|---|"]
    for run, t in metrics["training"].items():
        early = t.get("early_stopping")
        analysed = t.get("best_tokens") if early else t.get("tokens")
        val = t.get("best_val_loss") if early else t.get("final_val_loss")
        stopped = ("yes" if t.get("stopped_early") else "no (budget reached)") if early else "— (off)"
        name = f"{t['model']} (train/{run})" if t.get("model") else f"train/{run}"
        rows.append(f"| {name} | {tokens(t.get('tokens'))} | {tokens(analysed)} | {fmt(val)} | {stopped} | "
                    f"{tokens(t.get('tokens_per_s'))} | {tokens(t.get('wall_s'))} | {t.get('device_name') or t.get('device')}, "
                    f"{t.get('dtype')} |")
    return rows


def experiment_markdown(metrics: dict, wall_time: str | None = None, title: str | None = None) -> str:
    """The whole run on one page: run card, where the models stand, gates, verdicts (with still-moving flags), and
    the intervention experiment when the run has it."""
    cfg, corpus = metrics["config"], metrics["corpus"]
    name = cfg.get("experiment") or "default"
    budget = (f"trained until the validation loss stopped improving (patience {cfg['patience']} evaluations; at most "
              f"{cfg['train_tokens']:,} tokens; the analysed model is each run's best checkpoint)"
              if cfg.get("patience") else f"{cfg['train_tokens']:,} training tokens per model")
    lines = [f"# {title or f'Experiment {name!r}'} (generated from a run)", "",
             f"Corpus {corpus['name']} ({corpus['n_tokens']:,} tokens, V = {cfg['vocab_size']:,}); model "
             f"{cfg['n_layer']} layers, d = {cfg['d_model']}, {cfg['n_head']} heads, context {cfg['context']}; {budget}; "
             f"seeds {', '.join(str(s) for s in cfg['seeds'])}; config hash {cfg['config_hash']}."
             + (f" Wall time: {wall_time}." if wall_time else ""), "",
             "## Where the models stand (validation loss, nats)", "",
             "| model | val loss | unigram CE | interpolated-bigram CE | below the bigram count model |",
             "|---|---|---|---|---|"]
    for r in metrics.get("standing", []):
        below = "—" if r["below_bigram"] is None else (
            f"{'yes' if r['below_bigram'] else 'no'}, by {fmt(abs(r['bigram_margin']))} nats"
            + ("" if r["below_bigram"] else " (above it)"))
        lines.append(f"| {r['model']} | {fmt(r['val_loss'])} | {fmt(r['unigram_ce'])} | {fmt(r['bigram_ce'])} | {below} |")
    lines += ["", "## Training", "", *run_rows(metrics), "", "## Gates", "",
              "| gate | status | condition | last half of training |", "|---|---|---|---|"]
    for g in metrics["gates"].values():
        moving = {True: "still moving", False: "settled", None: "unknown"}[g.get("still_moving")] \
            if "still_moving_text" in g else "—"
        status = f"FAIL — {g['reason']}" if g["passed"] is False else gate_status(g)
        lines.append(f"| {g['name']} {g['title']} | {_cell(status)} | {_cell(g['rule'])} | {moving} |")
    lines += ["", "## Verdicts", "", "| claim | conclusion | the number (note's protocol) | statistic | along training |",
              "|---|---|---|---|---|"]
    for v in metrics["verdicts"]:
        if v.get("id") == "intervention":
            continue
        lines.append(f"| {_cell(v['claim'])} | **{v['conclusion']}**{' — ' + _cell(v['reason']) if v.get('reason') else ''}"
                     f" | {_cell(v['number'])}: {_cell(v['number_text'])} | {_cell(v['statistic'])} | "
                     f"{_cell(v.get('still_moving_text', '—'))} |")
    lines += ["", "Findings, claim by claim:", ""]
    lines += [f"- **{v['id']}** ({v['conclusion']}): {v['finding']}" for v in metrics["verdicts"]
              if v.get("id") != "intervention"]
    an = metrics.get("analysis", {})
    if an.get("trajectory_over_analysis") is not None:
        lines += ["", f"Statistics along training: {an['trajectory_jobs']} runs at {len(cfg.get('snapshot_pcts', []))} "
                      f"snapshots each, {fmt(an['trajectory_cpu_seconds'], 3)} CPU s = "
                      f"{fmt(100 * an['trajectory_over_analysis'], 2)} % of the per-model analysis "
                      f"({fmt(an['cpu_seconds'], 3)} CPU s)."]
    if metrics.get("intervention"):
        body = intervention_markdown(metrics).split("\n", 3)[3]  # without its title and run card
        lines += ["", "## Intervention: does starting in the corpus's coordinate system save training?", "", body]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpus_weights.report.results_page",
                                     description="A Markdown results page from a run's metrics.json.")
    parser.add_argument("metrics", help="the run's metrics.json (results/<corpus>/<experiment>/metrics.json)")
    parser.add_argument("wall_time", nargs="?", help="wall time of the run, as text (optional)")
    parser.add_argument("--wall-time", dest="wall_time_opt", help="the same, as an option")
    parser.add_argument("--experiment", action="store_true",
                        help="the whole run (gates, verdicts, training) instead of the intervention page")
    parser.add_argument("--title", help="page title (experiment page)")
    args = parser.parse_args(argv)
    wall = args.wall_time_opt or args.wall_time
    try:
        metrics = read_json(args.metrics)
        print(experiment_markdown(metrics, wall, args.title) if args.experiment else intervention_markdown(metrics, wall))
    except (OSError, ValueError) as err:  # a missing file, or a run without the intervention experiment
        print(f"results_page: {args.metrics}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
