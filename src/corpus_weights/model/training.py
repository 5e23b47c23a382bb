"""Fast, resumable, deterministic trainer for :class:`corpus_weights.model.gpt.GPT`.

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

Early stopping (``patience`` set): after every evaluation the best validation loss so far is kept, with the
model at that step (``best.safetensors`` in the state directory, so a resumed run keeps it); after ``patience``
evaluations without a new best (by more than ``min_delta``) training stops. The learning-rate schedule stays the
one of the full budget (stopping changes where the run ends, not the steps it took). The analysed model is the best
one: ``final.safetensors`` and ``snapshot_100`` hold it, and a snapshot scheduled after the stop holds it too (its
``step`` metadata says which step it is, so a trajectory counts it once). summary.json records best_step,
best_val_loss, stop_step and stopped_early.

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

from . import hardware
from .gpt import GPT, GPTConfig, flops_per_token
from .weights import save_model_safetensors
from ..core.workflow_io import write_text


class TrainingDiverged(RuntimeError):
    """Loss became non-finite."""


class InjectedCrash(RuntimeError):
    """Raised by the CW_CRASH_AFTER_STEP test hook."""


@dataclass
class TrainConfig:
    """One run's training. The defaults are the schema's (workflow/schemas/config.schema.yaml, the only home of the
    config's defaults; tests/test_config_defaults.py keeps them equal); the workflow passes every key explicitly."""
    tokens: int
    batch_size: int = 64
    lr: float = 0.004
    min_lr_frac: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_tokens: int = 16384
    checkpoint_every: int = 50
    snapshot_fracs: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.25, 0.5, 1.0])  # train.snapshots
    seed: int = 0
    device: str = "auto"
    compile: str | bool = "auto"
    dtype: str = "auto"
    threads: int | None = None
    init_embedding: str | None = None  # a (V, d) .npy that replaces W_E at step 0 (the intervention experiment)
    patience: int | None = None  # early stopping: stop after this many evaluations without a new best val loss
    min_delta: float = 0.0  # an evaluation is a new best only if it beats the best val loss by more than this


# ----------------------------------------------------------------------------- helpers

def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    native = hardware.native_bf16_flags()
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
    write_text(json.dumps({**meta, "step": step}), state_dir / f"{name}.json")
    write_text(json.dumps({"step": step, "fingerprint": meta["fingerprint"], "name": name}), state_dir / "latest.json")
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name = ptr.get("name", "")
    try:
        tensors = load_file(str(state_dir / f"{name}.safetensors"))
        meta = json.loads((state_dir / f"{name}.json").read_text())
    except (OSError, ValueError, json.JSONDecodeError, SafetensorError):  # (a truncated file: SafetensorError)
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




# ----------------------------------------------------------------------------- runtime

@dataclass(frozen=True)
class Runtime:
    """Where and how the steps run, each choice with its reason (logged and kept in the summary)."""
    device: torch.device
    dtype: torch.dtype
    dtype_reason: str
    compile: bool
    compile_reason: str

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def resolved(self) -> dict:
        """The choices that change the numbers, so they enter the resume fingerprint."""
        return {"device": self.device.type, "dtype": self.dtype_name, "compile": self.compile}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def resolve_runtime(train_cfg: TrainConfig, total_steps: int) -> Runtime:
    """Threads, device, determinism (CPU) or TF32 (CUDA), compute dtype and compile, from the config."""
    if train_cfg.threads:
        torch.set_num_threads(int(train_cfg.threads))
    device = resolve_device(train_cfg.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cdtype, dtype_reason = resolve_dtype(train_cfg.dtype, device)
    use_compile, compile_reason = resolve_compile(train_cfg.compile, device, total_steps)
    return Runtime(device, cdtype, dtype_reason, use_compile, compile_reason)


# ----------------------------------------------------------------------------- checkpointer

class Checkpointer:
    """The resume state of one run (see the module docstring): fingerprint check, save, resume, snapshots."""

    def __init__(self, state_dir, fingerprint: str, log=print):
        self.dir = Path(state_dir)
        self.snap_dir = self.dir / "snapshots"
        self.fingerprint, self.log = fingerprint, log
        self.snap_dir.mkdir(parents=True, exist_ok=True)

    def resume(self, model: GPT, opt, params: list, device: torch.device) -> dict | None:
        """Load the latest state into model and optimiser; its meta, or None to start from step 0."""
        loaded = _load_state(self.dir, self.fingerprint)
        if loaded == "mismatch":
            self.log(f"[train] state in {self.dir} has a different fingerprint or is unreadable; starting fresh")
            for old in [*self.dir.glob("state_*"), *self.snap_dir.glob("*")]:
                old.unlink()
            (self.dir / "latest.json").unlink(missing_ok=True)
            return None
        if loaded is None:
            return None
        tensors, meta = loaded
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        sd = opt.state_dict()
        sd["state"] = {i: st for i in range(len(params))
                       if (st := {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")})}
        opt.load_state_dict(sd)
        torch.set_rng_state(tensors["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        self.log(f"[train] resumed from state step {int(meta['step'])} in {self.dir}")
        return meta

    def save(self, step: int, model: GPT, opt, params: list, meta: dict, device: torch.device) -> None:
        _save_state(self.dir, step, model, opt, params, {**meta, "fingerprint": self.fingerprint}, device)

    def snapshot(self, model: GPT, step: int, pcts: list[int]) -> None:
        for pct in pcts:
            save_model_safetensors(model, self.snap_dir / f"snapshot_{pct:03d}.safetensors", step=step)

    def publish(self, out_dir: Path, snap_steps: dict[int, list[int]]) -> None:
        """Copy every scheduled snapshot into the run's outputs (each must exist)."""
        for s, pcts in snap_steps.items():
            for pct in pcts:
                src = self.snap_dir / f"snapshot_{pct:03d}.safetensors"
                if not src.exists():
                    raise RuntimeError(f"snapshot {pct} (step {s}) missing from {self.snap_dir}")
                _atomic_copy(src, out_dir / f"snapshot_{pct:03d}.safetensors")

    def save_best(self, model: GPT, step: int) -> None:
        save_model_safetensors(model, self.dir / "best.safetensors", step=step)

    def publish_best(self, snap_steps: dict[int, list[int]], stop_step: int) -> None:
        """Early stopping: the best model stands in for snapshot_100 and every snapshot scheduled after the stop."""
        for s, pcts in snap_steps.items():
            for pct in pcts:
                if s > stop_step or pct == 100:
                    _atomic_copy(self.dir / "best.safetensors", self.snap_dir / f"snapshot_{pct:03d}.safetensors")

    def remove(self) -> None:
        """After a successful run: the outputs are complete, the state is waste."""
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- evaluation and losses

@torch.no_grad()
def evaluate(model: GPT, data: np.ndarray, windows: np.ndarray, batch_size: int, context: int,
             runtime: Runtime) -> float:
    """Mean cross-entropy over fixed windows, eager model (no recompiling for eval mode or a ragged batch)."""
    model.eval()
    total, n = 0.0, 0
    for j in range(0, len(windows), batch_size):
        x, y = get_batch(data, windows[j:j + batch_size], context)
        with autocast_ctx(runtime.device, runtime.dtype):
            _, loss = model(x.to(runtime.device), y.to(runtime.device))
        total += loss.item() * len(x)
        n += len(x)
    model.train()
    return total / n


class LossMonitor:
    """Training losses kept on the device until checked (one sync per check, not per step); names the exact
    first non-finite step."""

    def __init__(self, interval_losses: list[float], lr_of):
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.interval = list(interval_losses)  # checked losses since the last evaluation
        self.lr_of = lr_of

    def add(self, it: int, loss: torch.Tensor) -> None:
        self.pending.append((it, loss.detach()))

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack([l for _, l in self.pending]).float().cpu().tolist()
        for (it, _), v in zip(self.pending, values):
            if not math.isfinite(v):
                raise TrainingDiverged(f"training diverged: non-finite loss ({v}) at step {it + 1} "
                                       f"(iteration {it}, lr={self.lr_of(it):.3g})")
            self.interval.append(v)
        self.pending.clear()

    def recent(self, n: int = 20) -> float:
        return statistics.fmean(self.interval[-n:]) if self.interval else float("nan")

    def take_mean(self) -> float:
        mean = statistics.fmean(self.interval) if self.interval else float("nan")
        self.interval.clear()
        return mean


# ----------------------------------------------------------------------------- the run

def build_model(model_cfg: GPTConfig, train_cfg: TrainConfig, device: torch.device) -> GPT:
    """The seeded initial model; an ``init_embedding`` replaces W_E after the seeded construction, so every other
    tensor stays bit-identical to the random-init run (the intervention experiment)."""
    torch.manual_seed(train_cfg.seed)
    model = GPT(model_cfg)
    if train_cfg.init_embedding:
        init = torch.from_numpy(np.load(train_cfg.init_embedding)).float()
        if tuple(init.shape) != tuple(model.wte.weight.shape):
            raise ValueError(f"init_embedding {train_cfg.init_embedding}: shape {tuple(init.shape)}, expected "
                             f"{tuple(model.wte.weight.shape)} (vocab_size, d_model)")
        with torch.no_grad():
            model.wte.weight.copy_(init)
    return model.to(device)


def snapshot_schedule(fracs: list[float], total_steps: int) -> dict[int, list[int]]:
    """{step: [percent, ...]}: frac f is taken at step round(f * total_steps), named round(100 f)."""
    steps: dict[int, list[int]] = {}
    for frac in fracs:
        steps.setdefault(round(frac * total_steps), []).append(round(100 * frac))
    return steps


class Trainer:
    """One training run, in the order nanoGPT's train.py reads: data, runtime, model and optimiser, resume, loop,
    outputs. ``train_model`` is the entry point."""

    def __init__(self, model_cfg: GPTConfig, cfg: TrainConfig, train_path, val_path, log=print,
                 progress_every_s: float = 10.0):
        self.t_start = time.perf_counter()
        self.model_cfg, self.cfg, self.log, self.progress_every_s = model_cfg, cfg, log, progress_every_s
        self.paths = [Path(train_path), Path(val_path)]
        self.train_data, self.val_data = (np.load(p, mmap_mode="r") for p in self.paths)
        self.C, self.B = model_cfg.context, cfg.batch_size
        self.tokens_per_step = self.B * self.C
        self.total_steps = max(1, cfg.tokens // self.tokens_per_step)
        for name, d in (("train", self.train_data), ("val", self.val_data)):
            if len(d) < self.C + 2:
                raise ValueError(f"{name} tokens ({len(d)}) shorter than context+2 ({self.C + 2})")
        self.rt = resolve_runtime(cfg, self.total_steps)
        self.fingerprint = _fingerprint(model_cfg, cfg, self.rt.resolved(), self.paths)
        log(f"[train] device={self.rt.device} dtype={self.rt.dtype_name} ({self.rt.dtype_reason}) "
            f"compile={self.rt.compile} ({self.rt.compile_reason}) threads={torch.get_num_threads()} "
            f"steps={self.total_steps} batch={self.B}x{self.C} fingerprint={self.fingerprint}")
        self.snap_steps = snapshot_schedule(cfg.snapshot_fracs, self.total_steps)
        self.model = build_model(model_cfg, cfg, self.rt.device)
        self.opt, self.params = build_optimizer(self.model, cfg, self.rt.device)
        self.val_win = eval_windows(len(self.val_data), cfg.eval_tokens, self.C)
        self.trn_win = eval_windows(len(self.train_data), cfg.eval_tokens, self.C)

    def lr(self, it: int) -> float:
        return lr_at(it, self.total_steps, self.cfg)

    def evaluate(self, data, windows) -> float:
        return evaluate(self.model, data, windows, self.B, self.C, self.rt)

    def elapsed(self) -> float:
        return self.elapsed_prev + time.perf_counter() - self.t_start

    def resume(self, checkpointer: Checkpointer) -> None:
        meta = checkpointer.resume(self.model, self.opt, self.params, self.rt.device)
        self.start_step = int(meta["step"]) if meta else 0
        self.elapsed_prev = float(meta["elapsed_s"]) if meta else 0.0
        self.rows = meta["rows"] if meta else []
        self.monitor = LossMonitor(meta.get("interval_losses", []) if meta else [], self.lr)
        self.best = dict(meta["best"]) if meta and "best" in meta else dict(step=0, val_loss=math.inf, evals_since=0)
        self.stop_step = None

    def track_best(self, checkpointer: Checkpointer, step: int, val_loss: float) -> bool:
        """Early stopping's bookkeeping after an evaluation; True when training should stop here."""
        if self.cfg.patience is None:
            return False
        if val_loss < self.best["val_loss"] - self.cfg.min_delta:
            self.best = dict(step=step, val_loss=val_loss, evals_since=0)
            checkpointer.save_best(self.model, step)
            return False
        self.best["evals_since"] += 1
        if self.best["evals_since"] >= self.cfg.patience:
            self.log(f"[train] early stop at step {step}: no val_loss below {self.best['val_loss']:.4f} "
                     f"(step {self.best['step']}) for {self.cfg.patience} evaluations")
            return True
        return False

    def record_eval(self, step: int, lr: float, tokens_per_s: float) -> float:
        vl, tl = self.evaluate(self.val_data, self.val_win), self.monitor.take_mean()
        self.rows.append(dict(step=step, tokens=step * self.tokens_per_step, train_loss=tl, val_loss=vl, lr=lr,
                              tokens_per_s=tokens_per_s, elapsed_s=self.elapsed()))
        eta = (self.total_steps - step) * self.tokens_per_step / tokens_per_s
        self.log(f"[train] step {step}/{self.total_steps} train_loss={tl:.4f} val_loss={vl:.4f} lr={lr:.2e} "
                 f"tok/s={tokens_per_s:,.0f} elapsed={self.elapsed():.0f}s eta={eta:.0f}s")
        return vl

    def record_start(self, checkpointer: Checkpointer) -> None:
        """Step 0: the init snapshot and both losses of the untrained model."""
        checkpointer.snapshot(self.model, 0, self.snap_steps.get(0, []))
        vl, tl = self.evaluate(self.val_data, self.val_win), self.evaluate(self.train_data, self.trn_win)
        self.rows.append(dict(step=0, tokens=0, train_loss=tl, val_loss=vl, lr=self.lr(0), tokens_per_s=float("nan"),
                              elapsed_s=self.elapsed()))
        self.log(f"[train] step 0/{self.total_steps} val_loss={vl:.4f} train_loss={tl:.4f}")
        self.track_best(checkpointer, 0, vl)

    def loop(self, checkpointer: Checkpointer, fwd, crash_at: int | None) -> list[float]:
        """The training loop; returns the tokens/s of every measured interval."""
        cfg, total, tps_hist = self.cfg, self.total_steps, []
        log_every = max(1, min(cfg.eval_every, 50))
        autocast = autocast_ctx(self.rt.device, self.rt.dtype)
        t_int, steps_int = time.perf_counter(), 0
        self.progress = (time.perf_counter(), self.start_step)
        self.model.train()
        for it in range(self.start_step, total):
            loss, lr = train_step(fwd, self.opt, self.params, self.train_data, it, total, cfg, self.rt.device,
                                  autocast, self.B, self.C)
            self.monitor.add(it, loss)
            step, steps_int = it + 1, steps_int + 1
            if self.rt.device.type == "cpu":
                self.monitor.flush()  # cheap on CPU: exact divergence step, nothing is ever saved after a NaN
            self.maybe_report_progress(step)
            is_eval = step % cfg.eval_every == 0 or step == total
            is_ckpt = cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0 and step < total
            if not (is_eval or is_ckpt or step in self.snap_steps or step % log_every == 0):
                continue
            self.monitor.flush()
            self.rt.sync()
            tps_hist.append(steps_int * self.tokens_per_step / max(time.perf_counter() - t_int, 1e-9))
            checkpointer.snapshot(self.model, step, self.snap_steps.get(step, []))
            stop = is_eval and self.track_best(checkpointer, step, self.record_eval(step, lr, tps_hist[-1]))
            if stop:
                self.stop_step = step
                break
            if is_ckpt:
                checkpointer.save(step, self.model, self.opt, self.params, dict(
                    elapsed_s=self.elapsed(), rows=self.rows, resolved=self.rt.resolved(),
                    interval_losses=self.monitor.interval, total_steps=total, best=self.best), self.rt.device)
                if crash_at is not None and step == crash_at:
                    raise InjectedCrash(f"CW_CRASH_AFTER_STEP={crash_at}: injected crash after saving state "
                                        f"at step {step}")
            t_int, steps_int = time.perf_counter(), 0
        self.monitor.flush()
        return tps_hist

    def steps_run(self) -> int:
        return self.stop_step if self.stop_step is not None else self.total_steps

    def analysed_step(self) -> int:
        """The step of the model the analysis reads: the best one under early stopping, else the last."""
        return self.best["step"] if self.cfg.patience is not None else self.total_steps

    def stopping_summary(self) -> dict:
        if self.cfg.patience is None:
            return dict(early_stopping=False, analysed_step=self.analysed_step())
        return dict(early_stopping=True, patience=self.cfg.patience, min_delta=self.cfg.min_delta,
                    stopped_early=self.steps_run() < self.total_steps, stop_step=self.steps_run(),
                    best_step=self.best["step"], best_tokens=self.best["step"] * self.tokens_per_step,
                    best_val_loss=self.best["val_loss"], analysed_step=self.analysed_step())

    def maybe_report_progress(self, step: int) -> None:
        """A line a person can follow, at most every ``progress_every_s`` seconds."""
        now, (t_last, step_last) = time.perf_counter(), self.progress
        if now - t_last < self.progress_every_s:
            return
        self.monitor.flush()
        rate = (step - step_last) * self.tokens_per_step / (now - t_last)
        self.log(f"[train] step {step}/{self.total_steps} tokens {step * self.tokens_per_step:,} "
                 f"loss {self.monitor.recent():.3f} {rate:,.0f} tok/s "
                 f"eta {(self.total_steps - step) * self.tokens_per_step / max(rate, 1e-9):.0f}s")
        self.progress = (now, step)


# ----------------------------------------------------------------------------- outputs

LOG_COLUMNS = ["step", "tokens", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"]


def write_log(rows: list[dict], path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(rows, columns=LOG_COLUMNS).astype({"step": "int64", "tokens": "int64"})
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def summarise(run: Trainer, tps_hist: list[float], peak: float) -> dict:
    """summary.json: size, speed (median tokens/s, MFU against the peak measured at the start), final losses,
    every runtime choice with its reason, and both configs."""
    valid = [t for t in tps_hist if math.isfinite(t)] or [r["tokens_per_s"] for r in run.rows
                                                           if math.isfinite(r["tokens_per_s"])]
    tps = statistics.median(valid) if valid else float("nan")
    fpt, device, last = flops_per_token(run.model_cfg), run.rt.device, run.rows[-1]
    return {
        "params": run.model.n_params(), "steps": run.steps_run(), "tokens": run.steps_run() * run.tokens_per_step,
        "planned_steps": run.total_steps,
        "batch_size": run.B, "context": run.C, "tokens_per_s": tps,
        "final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"],
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else hardware.cpu_name(),
        "threads": torch.get_num_threads(), "dtype": run.rt.dtype_name, "dtype_reason": run.rt.dtype_reason,
        "compiled": run.rt.compile, "compile_reason": run.rt.compile_reason, "flops_per_token": fpt,
        "flops_formula": "6*(V*d + 12*L*d^2) + 12*L*ctx*d  (matmul params incl. tied unembedding; "
                         "attention scores/values term; fwd+bwd)",
        "matmul_peak_tflops": peak, "mfu": (fpt * tps / (peak * 1e12)) if peak > 0 else float("nan"),
        "elapsed_s": run.elapsed(), "resumed_from_step": run.start_step, "seed": run.cfg.seed,
        **run.stopping_summary(),
        "fingerprint": run.fingerprint, "train_config": asdict(run.cfg), "model_config": asdict(run.model_cfg),
    }


def train_model(model_cfg: GPTConfig, train_cfg: TrainConfig, train_tokens_path, val_tokens_path,
                out_dir, state_dir, log=print, progress_every_s: float = 10.0) -> dict:
    """Train one model (resuming from ``state_dir`` when its fingerprint matches) and write its outputs."""
    run = Trainer(model_cfg, train_cfg, train_tokens_path, val_tokens_path, log, progress_every_s)
    checkpointer = Checkpointer(state_dir, run.fingerprint, log)
    run.resume(checkpointer)
    fwd = torch.compile(run.model) if run.rt.compile else run.model
    peak = hardware.matmul_peak_tflops(run.rt.device, run.rt.dtype)
    log(f"[train] params={run.model.n_params():,} flops/token={flops_per_token(model_cfg):,} "
        f"matmul peak ({run.rt.dtype_name})={peak:.3f} TFLOP/s")
    if run.start_step == 0:
        run.record_start(checkpointer)
    crash_at = os.environ.get("CW_CRASH_AFTER_STEP")
    tps_hist = run.loop(checkpointer, fwd, int(crash_at) if crash_at not in (None, "") else None)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if train_cfg.patience is not None:
        checkpointer.publish_best(run.snap_steps, run.steps_run())
        _atomic_copy(checkpointer.dir / "best.safetensors", out_dir / "final.safetensors")
    else:
        save_model_safetensors(run.model, out_dir / "final.safetensors", step=run.total_steps)
    checkpointer.publish(out_dir, run.snap_steps)
    write_log(run.rows, out_dir / "log.parquet")
    summary = summarise(run, tps_hist, peak)
    write_text(json.dumps(summary, indent=2), out_dir / "summary.json")
    checkpointer.remove()
    log(f"[train] done: {run.steps_run()} steps (analysed: step {run.analysed_step()}), final val_loss={run.rows[-1]['val_loss']:.4f}, "
        f"{summary['tokens_per_s']:,.0f} tok/s median, MFU={summary['mfu']:.1%}")
    return summary
