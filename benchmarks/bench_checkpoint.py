"""A GPT-2-small-shaped checkpoint analysed end to end by the workflow (`model.source: checkpoint`): every rule's wall
time and peak memory, from the Snakemake benchmark files the run writes.

Nothing is downloaded. The model is a `transformers` GPT2LMHeadModel built from a config (by default GPT-2 small's
shape: 12 layers, d = 768, 12 heads, context 1,024, V = 50,257; random weights, seeded) and saved as a Hugging Face
folder; its tokenizer is a word-level `tokenizer.json` over the words of a synthetic Zipf–Markov corpus
(benchmarks/synthetic_corpus.py: V − 1 words and [UNK], one token per word, so the corpus has `--tokens` tokens in
the model's own ids). The attention test is reduced for 144 heads of d = 768 (ANALYSIS below: 100 token-space draws,
50 on text, 4 of the 20 calibration models on text, 16 windows of the context's first 128 positions); every other key at its default.

    python benchmarks/bench_checkpoint.py [--tokens 10000000] [--layers 12 --d 768 --heads 12 --context 1024]
        [--vocab 50257] [--cores 2] [--out results/benchmarks/checkpoint.md]

Writes its inputs under results/bench-checkpoint-inputs/, runs `snakemake --cores N results/bench_checkpoint/<exp>/metrics.json`
(corpus `bench_checkpoint`, experiment `gpt2-<layers>x<d>`), and prints / writes a table of every job's seconds and
peak RSS with the total after the corpus statistics (the issue's budget: ≤ 20 min and ≤ 8 GB on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_corpus  # noqa: E402

CORPUS_RULES = ("prepare_corpus", "tokenize", "corpus_stats", "corpus_ladder")
# The attention test at this size (144 heads of d = 768): 100 rotation draws in token space (analysis.permutations,
# which the positive controls' and the note protocol's nulls use too) and 50 on text; the 20 calibration models
# (norm-matched random heads, the schema's minimum) in token space, 4 of them on text; 16 windows of the context's
# first 128 positions.
ANALYSIS = {"permutations": 100, "attention_functional_fpr_models": 4,
            "attention_functional_draws": 50, "attention_windows": 16}


def build_inputs(root: Path, args) -> dict:
    """The corpus, the model folder with its tokenizer, and the config file; each made once (kept between runs)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    root.mkdir(parents=True, exist_ok=True)
    text = root / f"corpus_{args.tokens}.txt"
    if not text.exists():
        print(synthetic_corpus.write_corpus(text, args.vocab - 1, args.tokens, seed=0), flush=True)
    folder = root / f"gpt2-{args.layers}x{args.d}-V{args.vocab}"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(n_layer=args.layers, n_embd=args.d, n_head=args.heads,
                                      n_positions=args.context, vocab_size=args.vocab)
        transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
        words = synthetic_corpus.word_list(args.vocab - 1)
        tok = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.save(str(folder / "tokenizer.json"))
    experiment = f"gpt2-{args.layers}x{args.d}"
    config = {
        "corpus": {"name": "bench_checkpoint", "files": [str(text.relative_to(REPO))]},
        "experiment": experiment,
        "model": {"source": "checkpoint", "path": str(folder.relative_to(REPO)), "format": "hf"},
        "train": {"seeds": [0]},
        "analysis": ANALYSIS,
    }
    config_file = root / f"{experiment}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return dict(config=config_file, experiment=experiment, text=text, folder=folder)


def table(metrics: dict, wall_s: float, args) -> str:
    rows = metrics["benchmarks"]
    after = [r for r in rows if r["rule"] not in CORPUS_RULES]
    total_after = sum(r["seconds"] for r in after)
    peak = max((r["max_rss_mb"] or 0.0) for r in rows)
    peak_after = max(((r["max_rss_mb"] or 0.0) for r in after), default=0.0)
    lines = [f"GPT-2-shaped checkpoint ({args.layers} layers, d = {args.d}, {args.heads} heads, context {args.context}, "
             f"V = {args.vocab:,}), {metrics['corpus']['n_tokens']:,}-token corpus, --cores {args.cores}: "
             f"wall {wall_s / 60:.1f} min in all; the jobs after the corpus statistics summed "
             f"{total_after / 60:.1f} min, peak RSS {peak_after / 1024:.2f} GB (whole run {peak / 1024:.2f} GB).", "",
             "| rule | job | seconds | CPU s | peak RSS (MB) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['job']} | {r['seconds']:.1f} | "
                     f"{(r['cpu_seconds'] or 0):.1f} | {(r['max_rss_mb'] or 0):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--vocab", type=int, default=50_257)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--root", type=Path, default=REPO / "results" / "bench-checkpoint-inputs")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "checkpoint.md")
    args = ap.parse_args(argv)
    inputs = build_inputs(args.root, args)
    target = f"results/bench_checkpoint/{inputs['experiment']}/metrics.json"
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--cores", str(args.cores), target,
                           "--configfile", str(inputs["config"])], cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode:
        return proc.returncode
    text = table(json.loads((REPO / target).read_text()), wall, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
