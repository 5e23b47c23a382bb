"""The trainer's own validation evaluation, run on a saved snapshot: the same windows, batch and compute dtype as
`training.evaluate` during training, so a snapshot's value equals what the trainer would have logged at its step
(used by the trajectory for snapshots taken between evaluations). The one torch-using module of the analysis side.
"""
from __future__ import annotations

import numpy as np

from .training import TrainConfig, eval_windows, evaluate, resolve_runtime
from .weights import load_model_safetensors


def snapshot_val_loss(path, val_ids: np.ndarray, *, eval_tokens: int, batch_size: int, device: str = "cpu",
                      dtype: str = "auto", threads: int | None = None) -> float:
    """Mean cross-entropy of the model in the safetensors file `path` over the trainer's evaluation windows of
    val_ids (eval_tokens targets, batch_size windows at a time), in the dtype the trainer resolves for `dtype`."""
    model, cfg = load_model_safetensors(path)
    runtime = resolve_runtime(TrainConfig(tokens=1, batch_size=batch_size, device=device, dtype=dtype, compile=False,
                                          threads=threads), total_steps=1)
    model = model.to(runtime.device)
    windows = eval_windows(len(val_ids), eval_tokens, cfg.context)
    return evaluate(model, val_ids, windows, batch_size, cfg.context, runtime)
