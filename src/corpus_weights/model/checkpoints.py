"""Models trained elsewhere, read into the weight contract (docs/design.md): Hugging Face GPT-2 folders, nanoGPT
``ckpt.pt`` files, and this project's own safetensors models.

Every format maps onto the same keys, in ``nn.Linear`` (out, in) layout, so ``W_Q @ x`` is the query of x:
``W_E`` (V, d), ``W_pos`` (ctx, d), ``ln_final.w``; per layer ``L{i}.ln1.w``, ``L{i}.ln2.w``, ``L{i}.W_Q/W_K/W_V/W_O``
(d, d), ``L{i}.W_in`` (d_mlp, d), ``L{i}.W_out`` (d, d_mlp). Where the checkpoint has them, biases are added under
TransformerLens names — ``L{i}.b_Q/b_K/b_V/b_O`` (d,), ``L{i}.b_in`` (d_mlp,), ``L{i}.b_out`` (d,), LayerNorm biases
``L{i}.ln1.b``, ``L{i}.ln2.b``, ``ln_final.b`` — and an untied unembedding as ``W_U`` (V, d). A bias that is zero
everywhere is left out (a bias-free model reads exactly as one trained here).

Orientation of each format:
- Hugging Face GPT-2 (``config.json`` + ``model.safetensors``, or shards listed in ``model.safetensors.index.json``):
  ``Conv1D`` weights are stored (in, out) and are transposed; the fused ``c_attn`` (d, 3d) splits into Q, K, V along
  its output axis in that order; ``lm_head.weight`` (V, d) is the unembedding when the model is untied.
- nanoGPT (``ckpt.pt``: ``model_args`` + ``model``): ``nn.Linear`` weights, already (out, in); ``c_attn`` (3d, d)
  splits along rows; the ``_orig_mod.`` prefix of a compiled model is dropped; read with
  ``torch.load(weights_only=True)`` only: a file that needs arbitrary unpickling is refused.
- corpus-weights (a ``.safetensors`` model written by rule train): the trainer's own layout.

``read_checkpoint`` returns the weights and a ``spec`` dict: the architecture (vocab_size, n_layer, d_model, n_head,
context), ``activation`` ("gelu": exact erf; "gelu_new": the tanh approximation of GPT-2), ``ln_eps``, ``tied``,
``biases`` (any non-zero bias) and where it came from.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

FORMATS = ("hf", "nanogpt", "corpus-weights")
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu_fast": None}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read into the weight contract; the message names the file and what was expected."""


def read_checkpoint(path: str | Path, fmt: str) -> tuple[dict[str, np.ndarray], dict]:
    """(weights in the contract, spec) of the checkpoint at `path` in format `fmt` (one of FORMATS)."""
    path = Path(path)
    if fmt == "hf":
        return read_hf_gpt2(path)
    if fmt == "nanogpt":
        return read_nanogpt(path)
    if fmt == "corpus-weights":
        return read_own(path)
    raise CheckpointError(f"model.format: {fmt!r} is not one of {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- Hugging Face GPT-2

def _hf_state(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    if (folder / "pytorch_model.bin").is_file():
        raise CheckpointError(f"{folder}: only pytorch_model.bin (a pickle) is there; this project reads safetensors "
                              f"only (convert it once, e.g. with transformers: model.save_pretrained(folder, "
                              f"safe_serialization=True))")
    raise CheckpointError(f"{folder}: no model.safetensors (or model.safetensors.index.json) in the folder")


def _hf_spec(folder: Path) -> dict:
    """The architecture a Hugging Face GPT-2 folder's config.json states, checked (model type, activation, the
    attention options this project reads); the state files are not opened."""
    config_file = folder / "config.json"
    if not folder.is_dir() or not config_file.is_file():
        raise CheckpointError(f"{config_file}: not found (a Hugging Face model folder has config.json and "
                              f"model.safetensors)")
    cfg = json.loads(config_file.read_text())
    if cfg.get("model_type") != "gpt2":
        raise CheckpointError(f"{config_file}: model_type {cfg.get('model_type')!r}; only GPT-2-family models "
                              f"(model_type 'gpt2') are read")
    activation = ACTIVATIONS.get(cfg.get("activation_function", "gelu_new"))
    if activation is None:
        raise CheckpointError(f"{config_file}: activation_function {cfg.get('activation_function')!r} is not one of "
                              f"gelu, gelu_new, gelu_pytorch_tanh")
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("reorder_and_upcast_attn", False), ("add_cross_attention", False)):
        if bool(cfg.get(key, ok)) != ok:
            raise CheckpointError(f"{config_file}: {key} = {cfg.get(key)!r} is not supported (expected {ok})")
    d = int(cfg["n_embd"])
    return dict(vocab_size=int(cfg["vocab_size"]), n_layer=int(cfg["n_layer"]), d_model=d, n_head=int(cfg["n_head"]),
                context=int(cfg.get("n_positions") or cfg.get("n_ctx")), d_mlp=int(cfg.get("n_inner") or 4 * d),
                activation=activation, ln_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
                tied=bool(cfg.get("tie_word_embeddings", True)))


def read_hf_gpt2(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    folder = Path(folder)
    arch = _hf_spec(folder)
    n_layer, d, n_head = arch["n_layer"], arch["d_model"], arch["n_head"]
    state = {k.removeprefix("transformer."): v for k, v in _hf_state(folder).items()}

    def get(key: str, shape: tuple) -> np.ndarray:
        if key not in state:
            raise CheckpointError(f"{folder}: tensor {key!r} missing from the safetensors file")
        value = np.asarray(state[key], dtype=np.float32)
        if value.shape != shape:
            raise CheckpointError(f"{folder}: tensor {key!r} has shape {value.shape}, expected {shape} from "
                                  f"config.json")
        return value

    V, ctx, d_mlp = arch["vocab_size"], arch["context"], arch["d_mlp"]
    w = {"W_E": get("wte.weight", (V, d)), "W_pos": get("wpe.weight", (ctx, d)),
         "ln_final.w": get("ln_f.weight", (d,)), "ln_final.b": get("ln_f.bias", (d,))}
    for i in range(n_layer):
        p = f"h.{i}."
        qkv = get(p + "attn.c_attn.weight", (d, 3 * d)).T  # Conv1D (in, out) -> (out, in)
        qkv_b = get(p + "attn.c_attn.bias", (3 * d,))
        for j, name in enumerate("QKV"):
            w[f"L{i}.W_{name}"] = np.ascontiguousarray(qkv[j * d:(j + 1) * d])
            w[f"L{i}.b_{name}"] = qkv_b[j * d:(j + 1) * d].copy()
        w[f"L{i}.W_O"] = np.ascontiguousarray(get(p + "attn.c_proj.weight", (d, d)).T)
        w[f"L{i}.b_O"] = get(p + "attn.c_proj.bias", (d,))
        w[f"L{i}.W_in"] = np.ascontiguousarray(get(p + "mlp.c_fc.weight", (d, d_mlp)).T)
        w[f"L{i}.b_in"] = get(p + "mlp.c_fc.bias", (d_mlp,))
        w[f"L{i}.W_out"] = np.ascontiguousarray(get(p + "mlp.c_proj.weight", (d_mlp, d)).T)
        w[f"L{i}.b_out"] = get(p + "mlp.c_proj.bias", (d,))
        for ln, hf in (("ln1", "ln_1"), ("ln2", "ln_2")):
            w[f"L{i}.{ln}.w"] = get(p + f"{hf}.weight", (d,))
            w[f"L{i}.{ln}.b"] = get(p + f"{hf}.bias", (d,))
    if not arch["tied"]:
        if "lm_head.weight" not in state:
            raise CheckpointError(f"{folder}: tie_word_embeddings is false but lm_head.weight is missing")
        w["W_U"] = get("lm_head.weight", (V, d))
    spec = dict(arch, format="hf", path=str(folder))
    return _finish(w, spec)


# ----------------------------------------------------------------------------- nanoGPT

def read_nanogpt(file: Path) -> tuple[dict[str, np.ndarray], dict]:
    import torch

    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file}: not found (a nanoGPT checkpoint is the ckpt.pt that train.py writes)")
    try:
        ckpt = torch.load(str(file), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        raise CheckpointError(f"{file}: refused — it cannot be read with torch.load(weights_only=True), i.e. it holds "
                              f"objects other than tensors and plain values, and unpickling arbitrary objects could "
                              f"run code ({str(err).splitlines()[0][:200]}). Save the model's state_dict and "
                              f"model_args only.") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise CheckpointError(f"{file}: expected a dict with 'model' (the state dict) and 'model_args' (n_layer, "
                              f"n_head, n_embd, block_size, vocab_size, bias), as nanoGPT's train.py saves")
    args = ckpt["model_args"]
    missing = [k for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size") if k not in args]
    if missing:
        raise CheckpointError(f"{file}: model_args lacks {', '.join(missing)}")
    n_layer, d, n_head = int(args["n_layer"]), int(args["n_embd"]), int(args["n_head"])
    V, ctx = int(args["vocab_size"]), int(args["block_size"])
    state = {k.removeprefix("_orig_mod.").removeprefix("transformer."): v for k, v in ckpt["model"].items()}

    def get(key: str, shape: tuple, required: bool = True) -> np.ndarray | None:
        if key not in state:
            if required:
                raise CheckpointError(f"{file}: tensor {key!r} missing from the state dict")
            return None
        value = state[key].detach().to(torch.float32).numpy().copy()
        if value.shape != shape:
            raise CheckpointError(f"{file}: tensor {key!r} has shape {value.shape}, expected {shape} from "
                                  f"model_args")
        return value

    w = {"W_E": get("wte.weight", (V, d)), "W_pos": get("wpe.weight", (ctx, d)), "ln_final.w": get("ln_f.weight", (d,)),
         "ln_final.b": get("ln_f.bias", (d,), False)}
    for i in range(n_layer):
        p = f"h.{i}."
        qkv, qkv_b = get(p + "attn.c_attn.weight", (3 * d, d)), get(p + "attn.c_attn.bias", (3 * d,), False)
        for j, name in enumerate("QKV"):
            w[f"L{i}.W_{name}"] = qkv[j * d:(j + 1) * d].copy()
            w[f"L{i}.b_{name}"] = None if qkv_b is None else qkv_b[j * d:(j + 1) * d].copy()
        w[f"L{i}.W_O"] = get(p + "attn.c_proj.weight", (d, d))
        w[f"L{i}.b_O"] = get(p + "attn.c_proj.bias", (d,), False)
        w[f"L{i}.W_in"] = get(p + "mlp.c_fc.weight", (4 * d, d))
        w[f"L{i}.b_in"] = get(p + "mlp.c_fc.bias", (4 * d,), False)
        w[f"L{i}.W_out"] = get(p + "mlp.c_proj.weight", (d, 4 * d))
        w[f"L{i}.b_out"] = get(p + "mlp.c_proj.bias", (d,), False)
        for ln, ng in (("ln1", "ln_1"), ("ln2", "ln_2")):
            w[f"L{i}.{ln}.w"] = get(p + f"{ng}.weight", (d,))
            w[f"L{i}.{ln}.b"] = get(p + f"{ng}.bias", (d,), False)
    head = get("lm_head.weight", (V, d), False)
    tied = head is None or np.array_equal(head, w["W_E"])
    if not tied:
        w["W_U"] = head
    spec = dict(vocab_size=V, n_layer=n_layer, d_model=d, n_head=n_head, context=ctx, d_mlp=4 * d, activation="gelu",
                ln_eps=1e-5, tied=tied, format="nanogpt", path=str(file))
    return _finish({k: v for k, v in w.items() if v is not None}, spec)


# ----------------------------------------------------------------------------- this project's models

def read_own(file: Path) -> tuple[dict[str, np.ndarray], dict]:
    from .weights import extract_weights, load_model_safetensors

    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file}: not found (a model written by rule train: results/.../train/<run>/*.safetensors)")
    model, cfg = load_model_safetensors(file)
    spec = dict(cfg.to_dict(), d_mlp=4 * cfg.d_model, activation="gelu", ln_eps=1e-5, tied=True,
                format="corpus-weights", path=str(file))
    return _finish(extract_weights(model, cfg), spec)


def _finish(w: dict[str, np.ndarray], spec: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Drop biases that are zero everywhere (a bias-free model reads as one trained here); record whether any is
    left."""
    out = {k: np.asarray(v, dtype=np.float32) for k, v in w.items()
           if not (_is_bias(k) and not np.any(v))}
    spec["biases"] = any(_is_bias(k) for k in out)
    return out, spec


def _is_bias(key: str) -> bool:
    tail = key.rsplit(".", 1)[-1]
    return tail.startswith("b_") or tail == "b"


# ----------------------------------------------------------------------------- planning a checkpoint run

def _architecture(spec: dict) -> dict:
    return {k: spec[k] for k in ("vocab_size", "n_layer", "d_model", "n_head", "context", "d_mlp", "activation",
                                 "ln_eps", "tied")}


def read_spec(path: str | Path, fmt: str) -> dict:
    """The architecture of a checkpoint (vocab_size, n_layer, d_model, n_head, context, d_mlp, activation, ln_eps,
    tied) without reading its tensors where the format allows (Hugging Face: config.json; corpus-weights: the
    safetensors header; nanoGPT: model_args of a memory-mapped torch.load). The workflow plans a checkpoint run from
    it, so every error here comes before any job."""
    path = Path(path)
    if fmt not in FORMATS:
        raise CheckpointError(f"model.format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "hf":
        spec = _hf_spec(path)
        _hf_state_files(path)
        return spec
    if fmt == "corpus-weights":
        from .weights import read_safetensors_config

        if not path.is_file() or path.suffix != ".safetensors":
            raise CheckpointError(f"model.path {path}: format 'corpus-weights' expects a .safetensors model written "
                                  f"by rule train (results/<corpus>/<experiment>/train/<run>/final.safetensors)")
        cfg = read_safetensors_config(path).to_dict()
        return dict(cfg, d_mlp=4 * cfg["d_model"], activation="gelu", ln_eps=1e-5, tied=True)
    weights, spec = read_nanogpt(path)  # nanoGPT: model_args and the head's tying need the state dict
    return _architecture(spec)


def _hf_state_files(folder: Path) -> list[Path]:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        return [index] + [folder / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    _hf_state(folder)  # raises, saying what is there instead
    return []


def checkpoint_files(path: str | Path, fmt: str) -> list[str]:
    """The files a checkpoint consists of (the inputs of the rule that reads it: editing one reruns the analysis)."""
    path = Path(path)
    if fmt == "hf":
        return [str(path / "config.json")] + [str(p) for p in _hf_state_files(path)]
    return [str(path)]


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")


def tokenizer_files(path: str | Path, fmt: str, override: str | Path | None = None) -> dict[str, str]:
    """The model's own tokenizer: `override` (model.tokenizer: a tokenizer.json, or a folder holding one of the
    pairs below) or, next to the checkpoint (in its folder for 'hf', beside the file otherwise), a Hugging Face
    ``tokenizer.json`` or GPT-2's ``vocab.json`` + ``merges.txt``. Returns {"tokenizer_json": …} or
    {"vocab": …, "merges": …}."""
    path = Path(path)
    if override is not None:
        where = Path(override)
        if where.is_file():
            return {"tokenizer_json": str(where)}
        if not where.is_dir():
            raise CheckpointError(f"model.tokenizer {where}: not found (a tokenizer.json, or a folder with "
                                  f"tokenizer.json or vocab.json + merges.txt)")
    else:
        where = path if fmt == "hf" else path.parent
    if (where / "tokenizer.json").is_file():
        return {"tokenizer_json": str(where / "tokenizer.json")}
    if (where / "vocab.json").is_file() and (where / "merges.txt").is_file():
        return {"vocab": str(where / "vocab.json"), "merges": str(where / "merges.txt")}
    raise CheckpointError(f"{where}: no tokenizer of the model (expected tokenizer.json, or vocab.json and merges.txt; "
                          f"model.tokenizer names one elsewhere). The corpus must be tokenized with the model's own "
                          f"tokenizer: a model's ids mean nothing under another vocabulary")


def check_vocabulary(spec: dict, tokenizer_size: int, trim: bool, where: str) -> int:
    """The vocabulary the analysis uses: the tokenizer's size, which must equal the checkpoint's (or, with
    model.trim_vocab, be smaller: rows past it are padding, as nanoGPT's 50,304 for GPT-2's 50,257)."""
    V = int(spec["vocab_size"])
    if tokenizer_size == V:
        return V
    if tokenizer_size < V and trim:
        return tokenizer_size
    hint = (" If the checkpoint's extra rows are padding (nanoGPT pads GPT-2's 50,257 to 50,304), set "
            "model.trim_vocab: true to analyse the first rows only." if tokenizer_size < V else "")
    raise CheckpointError(f"vocabulary mismatch: the tokenizer ({where}) has {tokenizer_size:,} tokens, the "
                          f"checkpoint {V:,} embedding rows.{hint}")


def trim_vocabulary(weights: dict[str, np.ndarray], V: int) -> dict[str, np.ndarray]:
    """The first V rows of W_E (and of an untied W_U): the tokens the tokenizer can produce."""
    out = dict(weights)
    for key in ("W_E", "W_U"):
        if key in out:
            out[key] = np.ascontiguousarray(out[key][:V])
    return out


def reinitialised_weights(spec: dict, seed: int) -> dict[str, np.ndarray]:
    """The step-0 control of a checkpoint run: this project's initialisation of the same architecture (every matrix
    as rule train draws it with this seed: bit for bit the step-0 snapshot of a run trained here; biases 0 and
    LayerNorm gains 1, as GPT-2 initialises them; W_U tied). The checkpoint's own initial weights are unknown, so ΔW
    of a checkpoint run is measured against this re-initialisation."""
    import torch

    from .gpt import GPT, GPTConfig
    from .weights import extract_weights

    if int(spec.get("d_mlp", 4 * spec["d_model"])) != 4 * int(spec["d_model"]):
        raise CheckpointError(f"MLP width {spec['d_mlp']} ≠ 4 · d_model: the re-initialised step-0 control needs the "
                              f"GPT-2 shape (n_inner = 4 · n_embd)")
    cfg = GPTConfig(**{k: int(spec[k]) for k in ("vocab_size", "n_layer", "d_model", "n_head", "context")})
    torch.manual_seed(int(seed))
    return extract_weights(GPT(cfg), cfg)
