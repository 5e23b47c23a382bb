"""Experiments side by side: every claim's verdict and number, every gate, and the loss ladder, per experiment.

    python -m corpus_weights.report.compare results/shakespeare/default/metrics.json \\
        results/shakespeare/reference/metrics.json -o results/compare.html
    python -m corpus_weights.report.compare default=results/.../metrics.json reference=docs/... -o docs/compare.md

Each argument is a metrics.json (optionally NAME=PATH; the name defaults to the experiment's own). The page is
Markdown when the output ends in .md, a self-contained HTML page (the loss-ladder figure inline) otherwise.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import re
import sys
from pathlib import Path

from .gates import gate_status
from .verdicts import fmt
from ..core.workflow_io import read_json, write_text


def load_experiments(args: list[str]) -> dict[str, dict]:
    """{name: metrics} in the order given; a clear error for a missing file, a file that is not a run's
    metrics.json, or two experiments with one name."""
    out: dict[str, dict] = {}
    for arg in args:
        name, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
        try:
            metrics = read_json(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read a metrics.json ({err})") from err
        missing = [k for k in ("config", "verdicts", "gates", "standing") if k not in metrics]
        if missing:
            raise ValueError(f"{path}: not a run's metrics.json (no {', '.join(missing)}); run the workflow first")
        name = name or metrics["config"].get("experiment") or Path(path).parent.name
        if name in out:
            raise ValueError(f"two experiments named {name!r}: name them, e.g. {name}2={path}")
        out[name] = metrics
    if not out:
        raise ValueError("no metrics.json given")
    return out


def _scale(m: dict) -> str:
    c = m["config"]
    budget = (f"≤ {c['train_tokens']:,} tokens, early stopping (patience {c['patience']})" if c.get("patience")
              else f"{c['train_tokens']:,} tokens")
    return f"{c['n_layer']} L, d = {c['d_model']}, {c['n_head']} h, ctx {c['context']}; {budget}"


def _standing(m: dict) -> str:
    rows = m.get("standing") or []
    if not rows:
        return "—"
    vals = ", ".join(fmt(r["val_loss"]) for r in rows)
    below = sum(bool(r["below_bigram"]) for r in rows)
    return f"{vals} vs bigram {fmt(rows[0]['bigram_ce'])} ({below} of {len(rows)} below)"


def comparison_rows(experiments: dict[str, dict]) -> list[dict]:
    """One row per line of the comparison, one column per experiment: scale, standing, gates, each claim's
    conclusion (with the number under the note's protocol, ours, and whether the statistic was still moving)."""
    names = list(experiments)
    rows = [{"": "scale", **{n: _scale(experiments[n]) for n in names}},
            {"": "validation loss (main seeds) vs the bigram count model", **{n: _standing(experiments[n])
                                                                              for n in names}}]
    gate_names = sorted({g for m in experiments.values() for g in m["gates"]})
    for g in gate_names:
        row = {"": f"gate {g}"}
        for n in names:
            gate = experiments[n]["gates"].get(g)
            row[n] = ("—" if gate is None else f"FAIL: {gate['reason']}" if gate["passed"] is False
                      else gate_status(gate))
        rows.append(row)
    claims: dict[str, str] = {}
    for m in experiments.values():
        for v in m["verdicts"]:
            claims.setdefault(v["id"], v["claim"])
    for cid, claim in claims.items():
        row = {"": f"{cid}: {claim}"}
        for n in names:
            v = next((v for v in experiments[n]["verdicts"] if v["id"] == cid), None)
            if v is None:
                row[n] = "— (not in this experiment)"
                continue
            moving = {True: "still moving", False: "settled"}.get(v.get("still_moving"))
            failing = sorted(set(re.findall(r"\bG\d\b", v.get("reason") or "")))
            row[n] = (f"{v['conclusion'].upper()}" + (f" (failing {', '.join(failing)})" if failing else "")
                      + f" · number {v['number']} · ours {v.get('ours', '—')}"
                      + (f" · {moving} over the last half of training" if moving else ""))
        rows.append(row)
    return rows


def ladder_figure(experiments: dict[str, dict]) -> bytes:
    """The loss ladder of each experiment: unigram and interpolated-bigram CE, and every main model's CE at
    position 0 and validation loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    names = list(experiments)
    rungs = [("unigram CE", "unigram_ce"), ("interpolated bigram CE", "bigram_ce"), ("CE at position 0", "ce_pos0"),
             ("validation loss", "val_loss")]
    width = 0.8 / len(rungs)
    for i, (label, key) in enumerate(rungs):
        means, lo, hi = [], [], []
        for n in names:
            vals = [mm["corrected"]["ladder"].get(key) for mm in experiments[n]["models"].values()
                    if mm["role"] == "main"]
            vals = np.array([v for v in vals if v is not None], dtype=float)
            means.append(vals.mean() if vals.size else np.nan)
            lo.append(means[-1] - (vals.min() if vals.size else np.nan))
            hi.append((vals.max() if vals.size else np.nan) - means[-1])
        ax.bar(np.arange(len(names)) + i * width, means, width, yerr=[lo, hi], capsize=2, label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    bottom = min(mm["corrected"]["ladder"]["bigram_ce"] for m in experiments.values() for mm in m["models"].values())
    ax.set_ylim(bottom - 0.6, None)
    ax.set_ylabel("cross-entropy (nats); bars: mean over main seeds, whiskers: range")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def markdown_page(experiments: dict[str, dict]) -> str:
    rows = comparison_rows(experiments)
    cols = list(rows[0])
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["# Experiments side by side (generated from their metrics.json)", "",
             "| " + " | ".join(esc(c) or "experiment" for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_page(experiments: dict[str, dict]) -> str:
    rows = comparison_rows(experiments)
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c or 'experiment')}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
    png = base64.b64encode(ladder_figure(experiments)).decode("ascii")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            "content='width=device-width,initial-scale=1'><title>Experiments side by side</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;line-height:1.4}"
            "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccd;padding:0.3em 0.5em;"
            "vertical-align:top}th{background:#eef}img{max-width:100%}</style></head><body>"
            "<h1>Experiments side by side</h1><p>Every claim's conclusion and number per experiment, every gate, "
            "and the loss ladder of each (generated from their metrics.json by "
            "<code>python -m corpus_weights.report.compare</code>).</p>"
            f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
            f"<h2>Loss ladder per experiment</h2><img alt='loss ladder per experiment' "
            f"src='data:image/png;base64,{png}'></body></html>\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpus_weights.report.compare", description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", help="metrics.json of each experiment, optionally NAME=PATH")
    parser.add_argument("-o", "--output", default="results/compare.html",
                        help="the page to write (.md: Markdown; otherwise HTML); default results/compare.html")
    args = parser.parse_args(argv)
    try:
        experiments = load_experiments(args.metrics)
    except ValueError as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(markdown_page(experiments) if out.suffix == ".md" else html_page(experiments), out)
    print(f"compare: {len(experiments)} experiments ({', '.join(experiments)}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
