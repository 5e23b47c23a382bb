"""A Markdown results page for docs/ generated from a run's metrics.json (the intervention experiment).

    python -m corpus_weights.results_page results/metrics.json > docs/intervention-results.md
"""
from __future__ import annotations

import sys

from .verdicts import fmt, pm as _pm
from .workflow_io import read_json


def tokens(value) -> str:
    """A token count as a whole number with thousands separators (144.597 tokens prints as 145, not as a
    thousands-separated 144.597)."""
    return "—" if value is None else f"{round(float(value)):,}"


def intervention_markdown(metrics: dict, wall_time: str | None = None) -> str:
    iv = metrics.get("intervention")
    if not iv:
        raise ValueError("metrics.json has no 'intervention' block: run with --configfile config/intervention.yaml")
    cfg, corpus = metrics["config"], metrics["corpus"]
    lines = [
        "# Does the corpus coordinate system save training? (generated from a run)", "",
        f"Corpus {corpus['name']} ({corpus['n_tokens']:,} tokens, V = {cfg['vocab_size']:,}); model {cfg['n_layer']} "
        f"layers, d = {cfg['d_model']}, {cfg['n_head']} heads, context {cfg['context']}; {cfg['train_tokens']:,} "
        f"training tokens per model; seeds {', '.join(str(s) for s in iv['seeds'])}; config hash "
        f"{cfg['config_hash']}." + (f" Wall time of the experiment: {wall_time}." if wall_time else ""), "",
        f"**Verdict: {iv['verdict']['status']}.** {iv['verdict']['finding']}", "",
        "| init | final val loss | learned fraction g | tokens to bigram CE | tokens to 1.02× random's final loss | "
        "aligned share (snapshots 0 → 50 → 100 %) |",
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


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m corpus_weights.results_page results/metrics.json [wall time]", file=sys.stderr)
        return 2
    try:
        print(intervention_markdown(read_json(argv[0]), argv[1] if len(argv) > 1 else None))
    except (OSError, ValueError) as err:  # a missing file, or a run without the intervention experiment
        print(f"results_page: {argv[0]}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
