"""Scale benchmark: the workflow's own rules, from a text file on disk to the corpus statistics, on synthetic
Zipf-Markov corpora of growing size (benchmarks/synthetic_corpus.py). Wall time and peak resident memory per rule
come from each rule's Snakemake `benchmark:` file; the result table is written into benchmarks/RESULTS.md.

    python benchmarks/bench_scale.py                       # the three sizes of the issue (about 10 min)
    python benchmarks/bench_scale.py --sizes 15007:1000000 # one size, V:tokens
    python benchmarks/bench_scale.py --baseline            # + ARPACK (the solver replaced) on the sizes it can afford
    python benchmarks/bench_scale.py --curve --d 96 --threads 1 2 --budget 600 --no-write   # the scaling curve

--threads N pins the whole run to N cores (taskset), so the threaded sparse products use N threads too; --budget
stops a size after that many seconds and reports which rule was still running.

Run it on an otherwise idle machine: every rule uses all cores, and a second job halves the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import synthetic_corpus  # noqa: E402

SIZES = [(15_007, 1_000_000), (50_000, 10_000_000), (50_000, 100_000_000)]
# the scaling curve of issue 25: two vocabularies, tokens from 1 M to 100 M
CURVE = [(15_007, 1_000_000), (15_007, 10_000_000), (50_000, 1_000_000), (50_000, 10_000_000), (50_000, 30_000_000),
         (50_000, 100_000_000)]
RULES = ["prepare_corpus", "tokenize", "corpus_stats"]
D_MODEL = 256  # the note's d: the PPMI SVD computes d = 256 components
BEGIN, END = "<!-- bench-scale: begin -->", "<!-- bench-scale: end -->"


def run_size(work: Path, vocab: int, tokens: int, d: int = D_MODEL, threads: int | None = None,
             budget: float | None = None) -> dict:
    name = f"synthetic_v{vocab}_t{tokens}"
    text = work / f"{name}.txt"
    if not text.exists():
        print(f"generating {text} ...", flush=True)
        synthetic_corpus.write_corpus(text, vocab, tokens)
    override = {"corpus": {"name": name, "files": [str(text)]}, "tokenizer": {"vocab_size": vocab},
                "model": {"d_model": d, "n_head": 8}, "analysis": {"K": [4, 8, 32], "headline_K": 32}}
    cfg = work / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(override))
    results = work / "results" / name / "default"  # the corpus's default experiment (config key `experiment`)
    target = f"results/{name}/default/corpus_stats/spectra.parquet"
    subprocess.run(["rm", "-rf", str(work / "results" / name), str(work / "resources")], check=True)
    cores = threads or len(os.sched_getaffinity(0))
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--cores", str(cores), target, "--configfile", str(cfg)]
    if threads:  # every process of the run on `threads` cores: the library's threaded products follow the affinity
        cmd = ["taskset", "-c", ",".join(map(str, sorted(os.sched_getaffinity(0))[:threads])), *cmd]
    row = {"V": vocab, "tokens": tokens, "text_MB": text.stat().st_size / 1e6, "d": d, "threads": cores}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        done = [r for r in RULES if (results / "benchmarks" / f"{r}.tsv").exists()]
        running = next((r for r in RULES if r not in done), "?")
        log = results / "logs" / f"{running}.log"
        row.update(stopped_after_s=budget, running=running, done={r: _bench(results, r) for r in done},
                   stages=stage_times(log.read_text()) if log.exists() else {})
        return row
    row["snakemake_wall_s"] = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(out[-3000:] + err[-5000:])
    base = results / "benchmarks"
    for rule in RULES:
        frame = pd.read_csv(base / f"{rule}.tsv", sep="\t")
        row[f"{rule}_s"] = float(frame["s"].iloc[0])
        row[f"{rule}_rss_GB"] = float(frame["max_rss"].iloc[0]) / 1024
    meta = json.loads((results / "tokens/meta.json").read_text())
    stats_log = (results / "logs/corpus_stats.log").read_text()
    nnz = re.search(r"V=\d+, (\d+) nonzero", stats_log)
    row.update(vocab_size=meta["vocab_size"], n_train=meta["n_train"], bigram_nnz=int(nnz.group(1)) if nnz else None)
    row["tokenize_plus_stats_s"] = row["tokenize_s"] + row["corpus_stats_s"]
    row["peak_rss_GB"] = max(row[f"{r}_rss_GB"] for r in RULES)
    row["stages"] = stage_times(stats_log)
    return row


def _bench(results: Path, rule: str) -> dict:
    frame = pd.read_csv(results / "benchmarks" / f"{rule}.tsv", sep="\t")
    return {"s": float(frame["s"].iloc[0]), "rss_GB": float(frame["max_rss"].iloc[0]) / 1024}


def curve_markdown(rows: list[dict], started: str, host: str) -> str:
    """The scaling curve: one row per size and thread count; a size stopped at its budget shows what had finished
    and the stages of the rule still running."""
    lines = [f"Generated by `benchmarks/bench_scale.py --curve` on {started}. Machine: {host}.", "",
             "| V | tokens | d | threads | prepare_corpus | tokenize | corpus_stats | peak RSS | corpus_stats stages |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("stages", {}).items())
        if "stopped_after_s" in r:
            done = r["done"]
            cells = [f"{done[x]['s']:.1f} s" if x in done else (f"> {r['stopped_after_s']:.0f} s (stopped)"
                     if x == r["running"] else "—") for x in RULES]
            rss = max([v["rss_GB"] for v in done.values()], default=float("nan"))
        else:
            cells = [f"{r[f'{x}_s']:.1f} s" for x in RULES]
            rss = r["peak_rss_GB"]
        lines.append(f"| {r['V']:,} | {r['tokens']:,} | {r['d']} | {r['threads']} | {' | '.join(cells)} | "
                     f"{rss:.2f} GB | {stages} |")
    return "\n".join(lines) + "\n"


def stage_times(log_text: str) -> dict:
    """Seconds between the corpus_stats log's stage lines (the script logs one line per stage)."""
    stamps = []
    for line in log_text.splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) .*? stage ([^:]+):", line)
        if m:
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
            stamps.append((m.group(3), t))
    return {name: round(t - prev, 2) for (name, t), (_, prev) in zip(stamps[1:], stamps[:-1])}


def baseline(work: Path, vocab: int, tokens: int) -> dict:
    """ARPACK (the solver this project used before) on the same PPMI matrix, and how far PROPACK's result is
    from it: relative error of the top-d singular values and the largest principal angle between the subspaces."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    from corpus_weights.corpus.corpus_stats import ppmi, top_singular

    name = f"synthetic_v{vocab}_t{tokens}"
    P = ppmi(sp.load_npz(work / "results" / name / "default" / "corpus_stats/bigram_counts.npz"))
    t0 = time.perf_counter()
    U0, s0, _ = svds(P, k=D_MODEL, v0=np.random.default_rng(0).standard_normal(min(P.shape)), solver="arpack",
                     random_state=0)
    arpack_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    U1, s1, _ = top_singular(P, D_MODEL)
    propack_s = time.perf_counter() - t0
    order = np.argsort(s0)[::-1]
    U0, s0 = U0[:, order], s0[order]
    cos = np.linalg.svd(U0.T @ U1, compute_uv=False)
    return {"arpack_svd_s": arpack_s, "propack_svd_s": propack_s,
            "max_rel_error": float(np.max(np.abs(s1 - s0) / s0)),
            "max_principal_angle_deg": float(np.degrees(np.arccos(np.clip(cos.min(), -1, 1))))}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0]
    return (f"{cpu}; {len(os.sched_getaffinity(0))} usable cores; Python {platform.python_version()}; "
            f"load average at the start {load:.2f}")


def markdown(rows: list[dict], base: list[dict], started: str, host: str) -> str:
    lines = [BEGIN, "# Scale benchmark (corpus side)", "",
             f"Generated by `benchmarks/bench_scale.py` on {started}. Machine: {host}.", "",
             "The workflow's own rules (`prepare_corpus`, `tokenize`, `corpus_stats`, d = 256) on synthetic "
             "Zipf-Markov text on disk; seconds and peak resident memory from each rule's Snakemake benchmark file.",
             "", "| V | tokens | text | bigram nnz | prepare_corpus | tokenize | corpus_stats | **tokenize + stats** "
             "| peak RSS | corpus_stats stages |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
        lines.append(f"| {r['vocab_size']:,} | {r['tokens']:,} | {r['text_MB']:.0f} MB | {r['bigram_nnz'] or 0:,} | "
                     f"{r['prepare_corpus_s']:.1f} s | {r['tokenize_s']:.1f} s | {r['corpus_stats_s']:.1f} s | "
                     f"**{r['tokenize_plus_stats_s']:.1f} s** | {r['peak_rss_GB']:.2f} GB | {stages} |")
    if base:
        lines += ["", "Baseline in the same run: ARPACK (the solver replaced) vs PROPACK (now) on the same PPMI "
                  "matrix, d = 256.", "", "| V | tokens | ARPACK | PROPACK | ratio | max rel. error of s | "
                  "largest principal angle |", "|---|---|---|---|---|---|---|"]
        for b in base:
            lines.append(f"| {b['V']:,} | {b['tokens']:,} | {b['arpack_svd_s']:.1f} s | {b['propack_svd_s']:.1f} s |"
                         f" {b['arpack_svd_s'] / b['propack_svd_s']:.1f}x | {b['max_rel_error']:.1e} | "
                         f"{b['max_principal_angle_deg']:.2g}° |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", help="V:tokens pairs (default: the three of the issue)")
    ap.add_argument("--work", type=Path, default=ROOT / "results" / "bench_scale")
    ap.add_argument("--baseline", action="store_true", help="also time ARPACK where it takes under ~2 min")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    ap.add_argument("--curve", action="store_true", help="the scaling curve's sizes and table (printed, not written)")
    ap.add_argument("--d", type=int, default=D_MODEL, help="d_model, the PPMI SVD's rank (default 256)")
    ap.add_argument("--threads", type=int, nargs="*", help="run each size pinned to these core counts")
    ap.add_argument("--budget", type=float, help="seconds a size may take before it is stopped")
    args = ap.parse_args()
    sizes = [tuple(map(int, s.split(":"))) for s in args.sizes] if args.sizes else (CURVE if args.curve else SIZES)
    if args.curve:
        args.work.mkdir(parents=True, exist_ok=True)
        started, host = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine()
        rows = []
        for vocab, tokens in sizes:
            for threads in args.threads or [None]:
                print(f"V={vocab} tokens={tokens} d={args.d} threads={threads} ...", flush=True)
                rows.append(run_size(args.work, vocab, tokens, args.d, threads, args.budget))
                print(json.dumps(rows[-1]), flush=True)
        print(curve_markdown(rows, started, host))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    started, host = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine()
    rows, base = [], []
    for vocab, tokens in sizes:
        print(f"V={vocab} tokens={tokens} ...", flush=True)
        rows.append(run_size(args.work, vocab, tokens))
        print(json.dumps(rows[-1]), flush=True)
        if args.baseline and tokens <= 10_000_000:
            base.append({"V": vocab, "tokens": tokens, **baseline(args.work, vocab, tokens)})
            print(json.dumps(base[-1]), flush=True)
    text = markdown(rows, base, started, host)
    print(text)
    if not args.no_write:
        results = ROOT / "benchmarks" / "RESULTS.md"
        old = results.read_text()
        if BEGIN in old:
            new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1:]
        else:
            new = old.rstrip("\n") + "\n\n" + text
        results.write_text(new)


if __name__ == "__main__":
    main()
