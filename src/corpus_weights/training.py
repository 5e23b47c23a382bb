"""Fast, resumable, deterministic trainer for :class:`corpus_weights.model.GPT`.

Outputs (``out_dir``), written only after a successful run:
  ``final.safetensors``, ``snapshot_{pct:03d}.safetensors`` (pct = round(100*frac),
  taken at step round(frac*total_steps); frac 0.0 -> the init weights),
  ``log.parquet`` (step, tokens, train_loss, val_loss, lr, tokens_per_s, elapsed_s),
  ``summary.json``.
Safetensors files hold the GPTConfig as metadata (see weights.py).

Resume state (``state_dir``), never pickled:
  ``latest.json`` -> pointer {step, fingerprint, files}, written last (atomically);
  ``state_{step:06d}.safetensors`` (model params ``model.*``, AdamW tensors
  ``opt.{i}.{exp_avg,exp_avg_sq,step}``, ``rng.torch`` [, ``rng.cuda``]) and
  ``state_{step:06d}.json`` (step, elapsed, log rows, fingerprint, resolved
  device/dtype/compile, numpy bit-generator state). ``snapshots/`` holds the
  snapshot files as they are taken (copied into out_dir at the end, so a crash
  between a snapshot and the end loses nothing). Every file goes tmp + rename.
  A state is resumed only if its fingerprint (sha256 of model config, train
  config minus threads/checkpoint_every/eval-irrelevant fields, resolved
  device/dtype/compile and the token files' sizes) matches.
  After a successful run the state directory is REMOVED (outputs are complete;
  keeping several model+optimizer copies per run is waste). A failed run
  (crash, divergence, kill) leaves it in place.

Determinism: the data sampler is a pure function of (seed, step)
(``np.random.default_rng([seed, step])``), the LR is a pure function of step,
evaluation uses fixed windows, there is no dropout, init uses
``torch.manual_seed(seed)``; on CPU ``torch.use_deterministic_algorithms(True,
warn_only=True)``. So a resumed run gives bit-identical weights on CPU.

Test hook: env ``CW_CRASH_AFTER_STEP=k`` raises :class:`InjectedCrash`
(exit status 1 when uncaught) right after the state at step k is saved.
Only for tests.

Compute dtype (``dtype="auto"``): CUDA -> bfloat16 autocast if supported
(TF32 on for the fp32 parts); CPU -> bfloat16 autocast if the CPU has native
bf16 matmul (amx_bf16 / avx512_bf16 flag), decided by the flags alone so that
the choice cannot change between runs; otherwise float32 (e.g. AMD Zen 3: bf16
~300x slower).
Compile (``compile="auto"``): CUDA -> compile if total_steps >= 300; CPU -> never
(measured in benchmarks/RESULTS.md: on this 2-core CPU inductor compile costs
tens of seconds and gains too little for the pipeline's ~150-step runs).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .model import GPT, GPTConfig, flops_per_token
from .weights import save_model_safetensors


class TrainingDiverged(RuntimeError):
    """Loss became non-finite."""


class InjectedCrash(RuntimeError):
    """Raised by the CW_CRASH_AFTER_STEP test hook."""


@dataclass
class TrainConfig:
    tokens: int
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_frac: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 25
    eval_tokens: int = 8192
    checkpoint_every: int = 25
    snapshot_fracs: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    seed: int = 0
    device: str = "auto"
    compile: str | bool = "auto"
    dtype: str = "auto"
    threads: int | None = None
    init_embedding: str | None = None  # a (V, d) .npy that replaces W_E at step 0 (the intervention experiment)


# ----------------------------------------------------------------------------- helpers

def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _time_matmul(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Achieved TFLOP/s of an n x n matmul (median of reps)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    (a @ b)
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(ts) / 1e12


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    if n is None:
        n = 8192 if device.type == "cuda" else 512
    return _time_matmul(device, dtype, n, reps)


def resolve_dtype(dtype: str, device: torch.device) -> tuple[torch.dtype, str]:
    """Returns (compute dtype, reason)."""
    if dtype in ("float32", "fp32"):
        return torch.float32, "configured"
    if dtype in ("bfloat16", "bf16"):
        return torch.bfloat16, "configured"
    if dtype != "auto":
        raise ValueError(f"unknown dtype {dtype!r}")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "cuda supports bf16"
        return torch.float32, "cuda without bf16"
    # Decided by the CPU's flags alone, never by a timing probe: a probe run on a busy machine can flip the choice
    # between two runs of the same config, and then "same config + same seed -> identical weights" (and resuming
    # a killed run bit-identically) no longer holds.
    native = {"amx_bf16", "avx512_bf16"} & _cpu_flags()
    if not native:
        return torch.float32, "cpu lacks amx_bf16/avx512_bf16 (bf16 matmul emulated, slow)"
    return torch.bfloat16, f"cpu has native bf16 matmul ({', '.join(sorted(native))})"


def resolve_compile(compile, device: torch.device, total_steps: int) -> tuple[bool, str]:
    if isinstance(compile, bool):
        return compile, "configured"
    c = str(compile).lower()
    if c in ("true", "1", "yes"):
        return True, "configured"
    if c in ("false", "0", "no"):
        return False, "configured"
    if c != "auto":
        raise ValueError(f"unknown compile setting {compile!r}")
    if device.type == "cuda":
        return total_steps >= 300, f"cuda auto: total_steps={total_steps} {'>=' if total_steps >= 300 else '<'} 300"
    return False, "cpu auto: compile does not pay at this scale (see benchmarks/RESULTS.md)"


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr over warmup steps, then cosine to min_lr_frac*lr."""
    warm = max(1, round(cfg.warmup_frac * total_steps)) if cfg.warmup_frac > 0 else 0
    if step < warm:
        return cfg.lr * (step + 1) / warm
    span = max(1, total_steps - warm)
    prog = min(1.0, (step - warm) / span)
    mn = cfg.lr * cfg.min_lr_frac
    return mn + 0.5 * (cfg.lr - mn) * (1 + math.cos(math.pi * prog))


def sample_offsets(seed: int, step: int, n_tokens: int, batch_size: int, context: int) -> np.ndarray:
    """Batch start offsets: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - context - 1, size=batch_size, dtype=np.int64)


def get_batch(data: np.ndarray, offsets: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = offsets[:, None] + np.arange(context + 1, dtype=np.int64)[None, :]
    chunk = torch.from_numpy(np.asarray(data[idx], dtype=np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def eval_windows(n_tokens: int, eval_tokens: int, context: int) -> np.ndarray:
    """Fixed, evenly spaced eval windows covering about eval_tokens targets."""
    n_win = max(1, eval_tokens // context)
    hi = n_tokens - context - 1
    if hi <= 0:
        raise ValueError(f"token file too short ({n_tokens}) for context {context}")
    return np.linspace(0, hi, n_win).astype(np.int64)


def _fingerprint(model_cfg: GPTConfig, train_cfg: TrainConfig, resolved: dict, files: list[Path]) -> str:
    tc = asdict(train_cfg)
    for k in ("threads", "checkpoint_every", "device", "dtype", "compile"):
        tc.pop(k, None)
    payload = {
        "model": asdict(model_cfg),
        "train": tc,
        "resolved": resolved,
        "files": [[p.name, p.stat().st_size] for p in files],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# ----------------------------------------------------------------------------- state

def _save_state(state_dir: Path, step: int, model: GPT, opt: torch.optim.Optimizer, params: list,
                meta: dict, device: torch.device) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, p in enumerate(params):
        st = opt.state.get(p, {})
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    name = f"state_{step:06d}"
    st_path = state_dir / f"{name}.safetensors"
    tmp = state_dir / f"{name}.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, st_path)
    _atomic_write_text(state_dir / f"{name}.json", json.dumps({**meta, "step": step}))
    _atomic_write_text(state_dir / "latest.json", json.dumps(
        {"step": step, "fingerprint": meta["fingerprint"], "name": name}))
    for old in state_dir.glob("state_*"):  # drop older states
        if not old.name.startswith(name):
            old.unlink(missing_ok=True)


def _load_state(state_dir: Path, fingerprint: str):
    latest = state_dir / "latest.json"
    if not latest.exists():
        return None
    try:
        ptr = json.loads(latest.read_text())
    except json.JSONDecodeError:
        return None
    if ptr.get("fingerprint") != fingerprint:
        return "mismatch"
    from safetensors.torch import load_file

    name = ptr.get("name", "")
    try:
        tensors = load_file(str(state_dir / f"{name}.safetensors"))
        meta = json.loads((state_dir / f"{name}.json").read_text())
    except (OSError, ValueError, json.JSONDecodeError):
        return "mismatch"  # unreadable/incomplete state: discard and start fresh
    return tensors, meta


# ----------------------------------------------------------------------------- training

def build_optimizer(model: GPT, train_cfg: TrainConfig, device: torch.device):
    """AdamW(betas=(0.9, 0.95)); weight decay only on 2-D weights; ``fused=True`` on CUDA *and* CPU
    (torch >= 2.4 has a fused CPU kernel: measured 4-20x faster than foreach here for 10M params),
    falling back to foreach where fused is unavailable. Returns (optimizer, params in optimizer order)."""
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    return opt, decay + no_decay


def autocast_ctx(device: torch.device, cdtype: torch.dtype):
    if cdtype != torch.float32:
        return torch.autocast(device_type=device.type, dtype=cdtype)
    return torch.autocast(device_type=device.type, enabled=False)


def train_step(fwd, opt, params, data, it: int, total_steps: int, cfg: "TrainConfig", device: torch.device,
               autocast, batch_size: int, context: int):
    """One optimisation step exactly as the pipeline runs it (the benchmark times this same function).

    The batch is a pure function of (seed, it), which is what makes resumed runs bit-identical.
    Returns (loss tensor, learning rate used)."""
    lr = lr_at(it, total_steps, cfg)
    for g in opt.param_groups:
        g["lr"] = lr
    x, y = get_batch(data, sample_offsets(cfg.seed, it, len(data), batch_size, context), context)
    if device.type == "cuda":
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    with autocast:
        _, loss = fwd(x, y)
    loss.backward()
    if cfg.grad_clip and cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss, lr


def train_model(model_cfg: GPTConfig, train_cfg: TrainConfig, train_tokens_path, val_tokens_path,
                out_dir, state_dir, log=print, progress_every_s: float = 10.0) -> dict:
    t_start = time.perf_counter()
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    train_tokens_path, val_tokens_path = Path(train_tokens_path), Path(val_tokens_path)
    if train_cfg.threads:
        torch.set_num_threads(int(train_cfg.threads))
    device = resolve_device(train_cfg.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    train_data = np.load(train_tokens_path, mmap_mode="r")
    val_data = np.load(val_tokens_path, mmap_mode="r")
    C, B = model_cfg.context, train_cfg.batch_size
    tokens_per_step = B * C
    total_steps = max(1, train_cfg.tokens // tokens_per_step)
    for name, d in (("train", train_data), ("val", val_data)):
        if len(d) < C + 2:
            raise ValueError(f"{name} tokens ({len(d)}) shorter than context+2 ({C + 2})")

    cdtype, dtype_reason = resolve_dtype(train_cfg.dtype, device)
    use_compile, compile_reason = resolve_compile(train_cfg.compile, device, total_steps)
    resolved = {"device": device.type, "dtype": str(cdtype).removeprefix("torch."), "compile": use_compile}
    fp = _fingerprint(model_cfg, train_cfg, resolved, [train_tokens_path, val_tokens_path])
    log(f"[train] device={device} dtype={resolved['dtype']} ({dtype_reason}) compile={use_compile} "
        f"({compile_reason}) threads={torch.get_num_threads()} steps={total_steps} "
        f"batch={B}x{C} fingerprint={fp}")

    # snapshot schedule
    snap_steps: dict[int, list[int]] = {}
    for frac in train_cfg.snapshot_fracs:
        s = round(frac * total_steps)
        snap_steps.setdefault(s, []).append(round(100 * frac))

    torch.manual_seed(train_cfg.seed)
    model = GPT(model_cfg)
    if train_cfg.init_embedding:  # after the seeded construction: every other tensor stays bit-identical
        init = torch.from_numpy(np.load(train_cfg.init_embedding)).float()
        if tuple(init.shape) != tuple(model.wte.weight.shape):
            raise ValueError(f"init_embedding {train_cfg.init_embedding}: shape {tuple(init.shape)}, expected "
                             f"{tuple(model.wte.weight.shape)} (vocab_size, d_model)")
        with torch.no_grad():
            model.wte.weight.copy_(init)
    model = model.to(device)
    n_params = model.n_params()
    fpt = flops_per_token(model_cfg)
    opt, params = build_optimizer(model, train_cfg, device)

    state_dir.mkdir(parents=True, exist_ok=True)
    snap_dir = state_dir / "snapshots"
    snap_dir.mkdir(exist_ok=True)
    start_step, elapsed_prev, rows, resumed_interval = 0, 0.0, [], []
    loaded = _load_state(state_dir, fp)
    if loaded == "mismatch":
        log(f"[train] state in {state_dir} has a different fingerprint or is unreadable; starting fresh")
        for old in state_dir.glob("state_*"):
            old.unlink()
        for old in snap_dir.glob("*"):
            old.unlink()
        (state_dir / "latest.json").unlink(missing_ok=True)
    elif loaded is not None:
        tensors, meta = loaded
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        sd = opt.state_dict()
        new_state = {}
        for i in range(len(params)):
            st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
            if st:
                new_state[i] = st
        sd["state"] = new_state
        opt.load_state_dict(sd)
        torch.set_rng_state(tensors["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        start_step = int(meta["step"])
        elapsed_prev = float(meta["elapsed_s"])
        rows = meta["rows"]
        resumed_interval = list(meta.get("interval_losses", []))
        log(f"[train] resumed from state step {start_step} in {state_dir}")

    fwd = torch.compile(model) if use_compile else model
    autocast = autocast_ctx(device, cdtype)
    peak = matmul_peak_tflops(device, cdtype)
    log(f"[train] params={n_params:,} flops/token={fpt:,} matmul peak ({resolved['dtype']})={peak:.3f} TFLOP/s")

    val_win = eval_windows(len(val_data), train_cfg.eval_tokens, C)
    trn_win = eval_windows(len(train_data), train_cfg.eval_tokens, C)

    @torch.no_grad()
    def evaluate(data, wins) -> float:
        model.eval()
        tot, n = 0.0, 0
        for j in range(0, len(wins), B):
            x, y = get_batch(data, wins[j:j + B], C)
            with autocast:  # eager model: avoids recompiling for eval mode / ragged last batch
                _, loss = model(x.to(device), y.to(device))
            tot += loss.item() * len(x)
            n += len(x)
        model.train()
        return tot / n

    def snapshot(step: int) -> None:
        for pct in snap_steps.get(step, []):
            save_model_safetensors(model, snap_dir / f"snapshot_{pct:03d}.safetensors", step=step)

    crash_at = os.environ.get("CW_CRASH_AFTER_STEP")
    crash_at = int(crash_at) if crash_at not in (None, "") else None
    pending: list[tuple[int, torch.Tensor]] = []  # (iteration, loss) not yet checked
    interval_losses: list[float] = resumed_interval
    tps_hist: list[float] = []
    tokens_per_s = float("nan")

    def flush() -> None:
        if not pending:
            return
        vals = torch.stack([l for _, l in pending]).float().cpu().tolist()
        for (it, _), v in zip(pending, vals):
            if not math.isfinite(v):
                raise TrainingDiverged(f"training diverged: non-finite loss ({v}) at step {it + 1} "
                                       f"(iteration {it}, lr={lr_at(it, total_steps, train_cfg):.3g})")
            interval_losses.append(v)
        pending.clear()

    if start_step == 0:
        snapshot(0)
        vl, tl = evaluate(val_data, val_win), evaluate(train_data, trn_win)
        rows.append(dict(step=0, tokens=0, train_loss=tl, val_loss=vl, lr=lr_at(0, total_steps, train_cfg),
                         tokens_per_s=float("nan"), elapsed_s=elapsed_prev + time.perf_counter() - t_start))
        log(f"[train] step 0/{total_steps} val_loss={vl:.4f} train_loss={tl:.4f}")

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    log_every = max(1, min(train_cfg.eval_every, 50))
    t_int, steps_int = time.perf_counter(), 0
    t_progress, progress_step = time.perf_counter(), start_step
    model.train()
    for it in range(start_step, total_steps):
        loss, lr = train_step(fwd, opt, params, train_data, it, total_steps, train_cfg, device, autocast, B, C)
        pending.append((it, loss.detach()))
        step = it + 1
        steps_int += 1
        if device.type == "cpu":
            flush()  # cheap on CPU: exact divergence step, nothing is ever saved after a NaN
        now = time.perf_counter()
        if now - t_progress >= progress_every_s:  # a line a person can follow, at most every ~10 s
            flush()
            rate = (step - progress_step) * tokens_per_step / (now - t_progress)
            recent = statistics.fmean(interval_losses[-20:]) if interval_losses else float("nan")
            log(f"[train] step {step}/{total_steps} tokens {step * tokens_per_step:,} loss {recent:.3f} "
                f"{rate:,.0f} tok/s eta {(total_steps - step) * tokens_per_step / max(rate, 1e-9):.0f}s")
            t_progress, progress_step = now, step

        is_eval = step % train_cfg.eval_every == 0 or step == total_steps
        is_ckpt = train_cfg.checkpoint_every > 0 and step % train_cfg.checkpoint_every == 0 and step < total_steps
        if is_eval or is_ckpt or step in snap_steps or step % log_every == 0:
            flush()
            sync()
            dt = time.perf_counter() - t_int
            tokens_per_s = steps_int * tokens_per_step / max(dt, 1e-9)
            tps_hist.append(tokens_per_s)
            snapshot(step)
            elapsed = elapsed_prev + time.perf_counter() - t_start
            if is_eval:
                vl = evaluate(val_data, val_win)
                tl = statistics.fmean(interval_losses) if interval_losses else float("nan")
                interval_losses.clear()
                rows.append(dict(step=step, tokens=step * tokens_per_step, train_loss=tl, val_loss=vl, lr=lr,
                                 tokens_per_s=tokens_per_s, elapsed_s=elapsed))
                eta = (total_steps - step) * tokens_per_step / tokens_per_s
                log(f"[train] step {step}/{total_steps} train_loss={tl:.4f} val_loss={vl:.4f} lr={lr:.2e} "
                    f"tok/s={tokens_per_s:,.0f} elapsed={elapsed:.0f}s eta={eta:.0f}s")
            if is_ckpt:
                _save_state(state_dir, step, model, opt, params, dict(
                    fingerprint=fp, elapsed_s=elapsed, rows=rows, resolved=resolved,
                    interval_losses=interval_losses,
                    total_steps=total_steps), device)
                if crash_at is not None and step == crash_at:
                    raise InjectedCrash(f"CW_CRASH_AFTER_STEP={crash_at}: injected crash after saving state "
                                        f"at step {step}")
            t_int, steps_int = time.perf_counter(), 0
    flush()

    # ------------------------------------------------------------------ outputs
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, pcts in snap_steps.items():
        for pct in pcts:
            src = snap_dir / f"snapshot_{pct:03d}.safetensors"
            if not src.exists():
                raise RuntimeError(f"snapshot {pct} (step {s}) missing from {snap_dir}")
            _atomic_copy(src, out_dir / f"snapshot_{pct:03d}.safetensors")
    save_model_safetensors(model, out_dir / "final.safetensors", step=total_steps)

    import pandas as pd

    df = pd.DataFrame(rows, columns=["step", "tokens", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"])
    df = df.astype({"step": "int64", "tokens": "int64"})
    tmp = out_dir / "log.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out_dir / "log.parquet")

    valid_tps = [t for t in tps_hist if math.isfinite(t)] or [r["tokens_per_s"] for r in rows if
                                                                 math.isfinite(r["tokens_per_s"])]
    tps_med = statistics.median(valid_tps) if valid_tps else float("nan")
    last = rows[-1]
    summary = {
        "params": n_params,
        "steps": total_steps,
        "tokens": total_steps * tokens_per_step,
        "batch_size": B,
        "context": C,
        "tokens_per_s": tps_med,
        "final_train_loss": last["train_loss"],
        "final_val_loss": last["val_loss"],
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()),
        "threads": torch.get_num_threads(),
        "dtype": resolved["dtype"],
        "dtype_reason": dtype_reason,
        "compiled": use_compile,
        "compile_reason": compile_reason,
        "flops_per_token": fpt,
        "flops_formula": "6*(V*d + 12*L*d^2) + 12*L*ctx*d  (matmul params incl. tied unembedding; "
                         "attention scores/values term; fwd+bwd)",
        "matmul_peak_tflops": peak,
        "mfu": (fpt * tps_med / (peak * 1e12)) if peak > 0 else float("nan"),
        "elapsed_s": elapsed_prev + time.perf_counter() - t_start,
        "resumed_from_step": start_step,
        "seed": train_cfg.seed,
        "fingerprint": fp,
        "train_config": asdict(train_cfg),
        "model_config": asdict(model_cfg),
    }
    _atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    shutil.rmtree(state_dir, ignore_errors=True)
    log(f"[train] done: {total_steps} steps, final val_loss={last['val_loss']:.4f}, "
        f"{tps_med:,.0f} tok/s median, MFU={summary['mfu']:.1%}")
    return summary


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"
