"""Export a model trained by this workflow to the Hugging Face GPT-2 format, so that it opens in `transformers`
(``GPT2LMHeadModel.from_pretrained(folder)``) or TransformerLens.

    python -m corpus_weights.model.export results/shakespeare/default/train/orig-s0/final.safetensors out/orig-s0 \
        [--tokenizer results/shakespeare/default/tokens/tokenizer.json]

writes ``out/orig-s0/config.json`` (model_type gpt2, activation_function "gelu": the exact erf GELU the trainer uses,
layer_norm_epsilon 1e-5, tied embeddings) and ``model.safetensors`` (``Conv1D`` layout: every weight (in, out); Q, K,
V fused into ``c_attn``; the biases GPT-2 has and this model does not, zero), and with ``--tokenizer`` a copy of the
run's ``tokenizer.json``. Reading the folder back (``checkpoints.read_checkpoint(folder, "hf")``) gives the
contract weights bit for bit.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from .checkpoints import CheckpointError, read_checkpoint


def hf_gpt2_tensors(weights: dict[str, np.ndarray], spec: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """(config.json content, safetensors tensors) of contract weights in the Hugging Face GPT-2 layout."""
    d, n_layer, d_mlp = spec["d_model"], spec["n_layer"], spec.get("d_mlp", 4 * spec["d_model"])
    zeros = lambda n: np.zeros(n, dtype=np.float32)  # noqa: E731
    get = lambda k, n: np.asarray(weights[k], dtype=np.float32) if k in weights else zeros(n)  # noqa: E731
    t = {"transformer.wte.weight": weights["W_E"], "transformer.wpe.weight": weights["W_pos"],
         "transformer.ln_f.weight": weights["ln_final.w"], "transformer.ln_f.bias": get("ln_final.b", d)}
    for i in range(n_layer):
        p, L = f"transformer.h.{i}.", f"L{i}."
        t[p + "attn.c_attn.weight"] = np.concatenate([weights[L + "W_Q"], weights[L + "W_K"], weights[L + "W_V"]]).T
        t[p + "attn.c_attn.bias"] = np.concatenate([get(L + "b_Q", d), get(L + "b_K", d), get(L + "b_V", d)])
        t[p + "attn.c_proj.weight"] = weights[L + "W_O"].T
        t[p + "attn.c_proj.bias"] = get(L + "b_O", d)
        t[p + "mlp.c_fc.weight"] = weights[L + "W_in"].T
        t[p + "mlp.c_fc.bias"] = get(L + "b_in", d_mlp)
        t[p + "mlp.c_proj.weight"] = weights[L + "W_out"].T
        t[p + "mlp.c_proj.bias"] = get(L + "b_out", d)
        for ln, hf in (("ln1", "ln_1"), ("ln2", "ln_2")):
            t[p + f"{hf}.weight"] = weights[L + f"{ln}.w"]
            t[p + f"{hf}.bias"] = get(L + f"{ln}.b", d)
    tied = "W_U" not in weights
    if not tied:
        t["lm_head.weight"] = weights["W_U"]
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": spec["vocab_size"],
              "n_positions": spec["context"], "n_embd": d, "n_layer": n_layer, "n_head": spec["n_head"],
              "n_inner": d_mlp, "activation_function": spec.get("activation", "gelu"),
              "layer_norm_epsilon": spec.get("ln_eps", 1e-5), "tie_word_embeddings": tied,
              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "scale_attn_weights": True,
              "bos_token_id": None, "eos_token_id": None}
    return config, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}


def export_hf(model_file: str | Path, folder: str | Path, tokenizer: str | Path | None = None) -> Path:
    from safetensors.numpy import save_file

    weights, spec = read_checkpoint(model_file, "corpus-weights")
    config, tensors = hf_gpt2_tensors(weights, spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        shutil.copyfile(tokenizer, folder / "tokenizer.json")
    return folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpus_weights.model.export", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model written by rule train (results/<corpus>/<experiment>/train/<run>/"
                                      "final.safetensors or snapshot_XXX.safetensors)")
    parser.add_argument("folder", help="the Hugging Face model folder to write")
    parser.add_argument("--tokenizer", help="the run's tokens/tokenizer.json, copied into the folder")
    args = parser.parse_args(argv)
    try:
        out = export_hf(args.model, args.folder, args.tokenizer)
    except (CheckpointError, OSError) as err:
        print(f"export: {err}", file=sys.stderr)
        return 2
    print(f"export: {args.model} -> {out}/config.json, {out}/model.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
