"""Weight extraction in the contract layout of docs/design.md (no pickle anywhere).

Keys: ``W_E`` (V, d), ``W_pos`` (ctx, d), ``ln_final.w`` (d,), per layer i
``L{i}.ln1.w``, ``L{i}.ln2.w`` (d,), ``L{i}.W_Q/W_K/W_V/W_O`` (d, d),
``L{i}.W_in`` (4d, d), ``L{i}.W_out`` (d, 4d); all float32 in ``nn.Linear``
(out, in) layout, so e.g. ``W_Q @ x == model.blocks[i].attn.q(x)``.

Files: ``save_weights_npz(w, meta, "x.npz")`` writes ``x.npz`` (np.savez,
allow_pickle never needed) and ``x.json`` (meta). Safetensors model files
carry the GPTConfig as string metadata (one JSON-encoded value per field,
plus ``"config"`` holding the whole config as JSON).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .gpt import GPT, GPTConfig

_LAYER_MAP = {
    "ln1.w": "ln1.weight",
    "ln2.w": "ln2.weight",
    "W_Q": "attn.q.weight",
    "W_K": "attn.k.weight",
    "W_V": "attn.v.weight",
    "W_O": "attn.o.weight",
    "W_in": "mlp.fc_in.weight",
    "W_out": "mlp.fc_out.weight",
}


def contract_keys(n_layer: int) -> list[str]:
    keys = ["W_E", "W_pos", "ln_final.w"]
    for i in range(n_layer):
        keys += [f"L{i}.{k}" for k in _LAYER_MAP]
    return keys


def _strip_prefix(sd: dict) -> dict:
    # tolerate torch.compile's "_orig_mod." prefix
    return {k.removeprefix("_orig_mod."): v for k, v in sd.items()}


def extract_weights(model_or_state_dict, config: GPTConfig | None = None) -> dict[str, np.ndarray]:
    if isinstance(model_or_state_dict, torch.nn.Module):
        m = getattr(model_or_state_dict, "_orig_mod", model_or_state_dict)
        config = config or m.config
        sd = m.state_dict()
    else:
        sd = model_or_state_dict
    if config is None:
        raise ValueError("config is required when passing a state dict")
    sd = _strip_prefix(sd)

    def get(name):
        return sd[name].detach().to("cpu", torch.float32).numpy().copy()

    out = {"W_E": get("wte.weight"), "W_pos": get("wpe.weight"), "ln_final.w": get("ln_f.weight")}
    for i in range(config.n_layer):
        for k, tn in _LAYER_MAP.items():
            out[f"L{i}.{k}"] = get(f"blocks.{i}.{tn}")
    d, V = config.d_model, config.vocab_size
    assert out["W_E"].shape == (V, d) and out["W_pos"].shape == (config.context, d)
    return out


def config_metadata(config: GPTConfig, **extra) -> dict[str, str]:
    """Safetensors metadata (str -> str) for a GPTConfig."""
    md = {k: json.dumps(v) for k, v in config.to_dict().items()}
    md["config"] = json.dumps(config.to_dict())
    for k, v in extra.items():
        md[k] = json.dumps(v)
    return md


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header written in one fixed form (keys sorted, no spaces, padded
    to 8 bytes): the library writes metadata in hash-map order, so two saves of identical tensors and metadata could
    differ byte for byte. Tensor offsets are relative to the data block, so rewriting the header moves nothing."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def save_model_safetensors(model: GPT, path, **extra_meta) -> None:
    """Write model weights (+ config as metadata) atomically, byte-identical for identical weights and metadata
    (canonical header). Tied W_E stored once."""
    from safetensors.torch import save

    m = getattr(model, "_orig_mod", model)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in m.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(canonical_safetensors(save(sd, metadata=config_metadata(m.config, **extra_meta))))
    os.replace(tmp, path)


def read_safetensors_config(path) -> GPTConfig:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    if "config" in md:
        return GPTConfig(**json.loads(md["config"]))
    fields = ("vocab_size", "n_layer", "d_model", "n_head", "context")
    return GPTConfig(**{k: json.loads(md[k]) for k in fields})


def load_model_safetensors(path) -> tuple[GPT, GPTConfig]:
    from safetensors.torch import load_file

    cfg = read_safetensors_config(path)
    model = GPT(cfg)
    sd = _strip_prefix(load_file(str(path)))
    model.load_state_dict(sd)
    model.eval()
    return model, cfg


def read_safetensors_step(path) -> int | None:
    """The training step a safetensors model file was saved at (None for files without it)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    return json.loads(md["step"]) if "step" in md else None
