#!/usr/bin/env bash
# Prepared CUDA check (not yet run: no GPU was available when it was written).
# 1) trainer-step vs baseline benchmark on CUDA (bf16 autocast, compile as "auto" would pick for a long run),
# 2) a real train_model run of the default model on random tokens for ~2-3 minutes,
#    printing tokens/s and MFU vs the card's measured bf16 matmul peak (and the datasheet dense peak);
# 3) the corpus decompositions on CUDA (analysis.svd_solver: torch) against ARPACK on the node's CPUs, 10 M tokens,
#    V = 50 k, k = 96 and 256, every solve with the accuracy guard's residual (benchmarks/bench_solvers.py).
# Usage: bash benchmarks/gpu_check.sh [python]   (from the repo root; writes to ${OUT:-/tmp}/gpu_check)
set -euo pipefail
PY=${1:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUTDIR=${OUT:-/tmp}/gpu_check
mkdir -p "$OUTDIR"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true

# 1) benchmark (baseline fp32 eager vs trainer bf16 + compile), results to $OUTDIR
timeout 240 "$PY" benchmarks/bench_training.py --device cuda --steps 50 --repeats 3 --warmup 5 \
  --compile true --out "$OUTDIR/RESULTS_gpu.md" 2>&1 | tail -8 || echo "bench failed/timed out"

# 2) ~2-3 min real training run (default model, random tokens)
timeout 300 "$PY" - "$OUTDIR" <<'EOF'
import json, sys, time, pathlib
import numpy as np, torch
from corpus_weights.model.gpt import GPTConfig, flops_per_token
from corpus_weights.model.training import TrainConfig, train_model
out = pathlib.Path(sys.argv[1])
rng = np.random.default_rng(0)
np.save(out / "train.npy", rng.integers(0, 15007, 5_000_000, dtype=np.int32))
np.save(out / "val.npy", rng.integers(0, 15007, 200_000, dtype=np.int32))
mc = GPTConfig(vocab_size=15007, n_layer=8, d_model=256, n_head=8, context=128)  # the note's scale
# ~2-3 min on an H100 at an expected ~0.5-1.5M tok/s; batch 64 to fill the GPU
tc = TrainConfig(tokens=100_000_000, batch_size=64, lr=2e-3, min_lr_frac=0.1, warmup_frac=0.05,
                 weight_decay=0.1, grad_clip=1.0, eval_every=500, eval_tokens=65536, checkpoint_every=2000,
                 snapshot_fracs=[0.0, 1.0], seed=0, device="cuda", compile="auto", dtype="auto")
t0 = time.time()
s = train_model(mc, tc, out / "train.npy", out / "val.npy", out / "run", out / "state", log=print)
peaks = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 datasheet
name = torch.cuda.get_device_name()
dpk = next((v for k, v in peaks.items() if k in name), float("nan"))
print(json.dumps({k: s[k] for k in ("tokens_per_s", "mfu", "matmul_peak_tflops", "dtype", "compiled", "steps",
                                    "flops_per_token", "final_val_loss")}, indent=1))
print(f"GPU {name}: {s['tokens_per_s']:,.0f} tok/s, MFU {s['mfu']:.1%} of measured bf16 matmul peak "
      f"({s['matmul_peak_tflops']:.0f} TFLOP/s), {s['flops_per_token'] * s['tokens_per_s'] / dpk:.1%} of datasheet "
      f"dense bf16 peak; wall {time.time() - t0:.0f}s")
EOF

# 3) corpus decompositions on the GPU vs ARPACK on this node's CPUs (each solve stopped after 150 s)
timeout 420 "$PY" benchmarks/bench_solvers.py --tokens 10000000 --ranks 96,256 --solvers torch:cuda,arpack \
  --budget 150 --out "$OUTDIR/solvers.jsonl" 2>&1 | tail -8 || echo "solver bench failed/timed out"
