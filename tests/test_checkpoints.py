"""Checkpoints from elsewhere into the weight contract (corpus_weights.model.checkpoints) and our models out to the Hugging
Face format (corpus_weights.model.export), checked against `transformers`' own GPT-2 forward pass: models built here from
a config (nothing downloaded), with non-zero biases and LayerNorm parameters so that every bias and its orientation
is exercised."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from corpus_weights.model.checkpoints import CheckpointError, read_checkpoint
from corpus_weights.model.export import export_hf
from corpus_weights.model.gpt import GPT, GPTConfig
from corpus_weights.measure.residual_space import forward_logits
from corpus_weights.model.weights import extract_weights, save_model_safetensors

transformers = pytest.importorskip("transformers")

V, L, D, H, CTX = 50, 2, 32, 2, 16


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def hf_model(activation="gelu_new", tied=True, seed=0):
    """A random GPT2LMHeadModel with every bias and LayerNorm parameter perturbed away from its init (0 / 1)."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=L, n_embd=D, n_head=H, n_positions=CTX, vocab_size=V,
                                  activation_function=activation, tie_word_embeddings=tied,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
                                  eos_token_id=None)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1)
            elif "ln_" in name and name.endswith(".weight"):
                p.uniform_(0.5, 1.5)
        if not tied:
            model.lm_head.weight.normal_(0.0, 0.05)
    return model


def tokens(n=2, seed=1):
    return np.random.default_rng(seed).integers(0, V, size=(n, CTX))


def hf_logprobs(model, toks):
    with torch.no_grad():
        return torch.log_softmax(model(torch.as_tensor(toks)).logits.double(), -1).numpy()


@pytest.mark.parametrize("activation,tied", [("gelu_new", True), ("gelu", True), ("gelu_new", False)])
def test_a_hugging_face_gpt2_reads_into_the_contract_with_its_own_forward(tmp_path, activation, tied):
    model = hf_model(activation, tied)
    model.save_pretrained(tmp_path)
    weights, spec = read_checkpoint(tmp_path, "hf")
    assert spec["biases"] and spec["activation"] == activation and spec["tied"] is tied
    assert (spec["vocab_size"], spec["n_layer"], spec["d_model"], spec["n_head"], spec["context"]) == (V, L, D, H, CTX)
    assert ("W_U" in weights) is (not tied)
    # orientation: W_Q @ x is the query of x, as for nn.Linear (the fused Conv1D split in Q, K, V order)
    x = np.random.default_rng(2).standard_normal(D).astype(np.float32)
    with torch.no_grad():
        qkv = model.transformer.h[1].attn.c_attn(torch.as_tensor(x)[None])[0].numpy()
    np.testing.assert_allclose(weights["L1.W_K"] @ x + weights["L1.b_K"], qkv[D:2 * D], atol=1e-5)
    toks = tokens()
    ours = log_softmax(forward_logits(weights, toks, H, spec["activation"], spec["ln_eps"]))
    assert np.abs(ours - hf_logprobs(model, toks)).max() < 1e-4


def nanogpt_state(model, bias=True, prefix="_orig_mod."):
    """The nanoGPT state dict of the same weights: nn.Linear (out, in) layout, transformer.* names, tied lm_head."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("lm_head") or k.endswith(".attn.bias") or k.endswith("masked_bias"):
            continue
        if not bias and k.endswith(".bias"):
            continue
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.T.contiguous()  # Conv1D (in, out) -> nn.Linear (out, in)
        sd[prefix + k] = v.clone()
    sd[prefix + "lm_head.weight"] = sd[prefix + "transformer.wte.weight"]
    return sd


def test_a_nanogpt_checkpoint_of_the_same_weights_gives_the_same_log_probabilities(tmp_path):
    model = hf_model("gelu")  # nanoGPT's MLP uses the exact GELU
    args = dict(n_layer=L, n_head=H, n_embd=D, block_size=CTX, bias=True, vocab_size=V, dropout=0.0)
    torch.save({"model": nanogpt_state(model), "model_args": args, "iter_num": 7, "best_val_loss": torch.tensor(3.2),
                "config": {"dataset": "shakespeare_char"}}, tmp_path / "ckpt.pt")
    weights, spec = read_checkpoint(tmp_path / "ckpt.pt", "nanogpt")
    assert spec["biases"] and spec["tied"] and spec["activation"] == "gelu"
    toks = tokens()
    ours = log_softmax(forward_logits(weights, toks, H, spec["activation"], spec["ln_eps"]))
    assert np.abs(ours - hf_logprobs(model, toks)).max() < 1e-4
    hf_weights, _ = read_checkpoint(_saved(model, tmp_path / "hf"), "hf")
    assert weights.keys() == hf_weights.keys()
    for k in weights:
        np.testing.assert_array_equal(weights[k], hf_weights[k], err_msg=k)


def _saved(model, folder):
    model.save_pretrained(folder)
    return folder


def test_a_bias_free_nanogpt_checkpoint_reads_as_a_model_trained_here(tmp_path):
    """bias=False (nanoGPT's option, and this project's architecture): no bias key at all, and the forward pass is
    the trainer's own."""
    torch.manual_seed(3)
    ours_cfg = GPTConfig(vocab_size=V, n_layer=L, d_model=D, n_head=H, context=CTX)
    ours = GPT(ours_cfg).eval()
    names = {"wte.weight": "transformer.wte.weight", "wpe.weight": "transformer.wpe.weight",
             "ln_f.weight": "transformer.ln_f.weight"}
    for i in range(L):
        b, t = f"blocks.{i}.", f"transformer.h.{i}."
        names |= {b + "ln1.weight": t + "ln_1.weight", b + "ln2.weight": t + "ln_2.weight",
                  b + "attn.o.weight": t + "attn.c_proj.weight", b + "mlp.fc_in.weight": t + "mlp.c_fc.weight",
                  b + "mlp.fc_out.weight": t + "mlp.c_proj.weight"}
    sd = {names[k]: v for k, v in ours.state_dict().items() if k in names}
    for i in range(L):
        a = ours.blocks[i].attn
        sd[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([a.q.weight, a.k.weight, a.v.weight]).detach()
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    args = dict(n_layer=L, n_head=H, n_embd=D, block_size=CTX, bias=False, vocab_size=V, dropout=0.0)
    torch.save({"model": sd, "model_args": args}, tmp_path / "ckpt.pt")
    weights, spec = read_checkpoint(tmp_path / "ckpt.pt", "nanogpt")
    assert not spec["biases"] and spec["tied"]
    expected = extract_weights(ours, ours_cfg)
    assert weights.keys() == expected.keys()
    for k in weights:
        np.testing.assert_array_equal(weights[k], expected[k], err_msg=k)


def test_export_opens_in_transformers_with_the_same_logits_and_reads_back_bit_for_bit(tmp_path):
    torch.manual_seed(4)
    cfg = GPTConfig(vocab_size=V, n_layer=L, d_model=D, n_head=H, context=CTX)
    ours = GPT(cfg).eval()
    with torch.no_grad():
        for blk in ours.blocks:  # LayerNorm weights away from 1, so that their orientation matters
            blk.ln1.weight.uniform_(0.5, 1.5)
            blk.ln2.weight.uniform_(0.5, 1.5)
    save_model_safetensors(ours, tmp_path / "final.safetensors")
    (tmp_path / "tokenizer.json").write_text("{}")
    folder = export_hf(tmp_path / "final.safetensors", tmp_path / "hf", tmp_path / "tokenizer.json")
    config = json.loads((folder / "config.json").read_text())
    assert config["activation_function"] == "gelu" and config["tie_word_embeddings"] is True
    assert (folder / "tokenizer.json").read_text() == "{}"
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    toks = torch.as_tensor(tokens())
    with torch.no_grad():
        ours_logits = ours(toks)[0].double().numpy()
        hf_logits = hf(toks).logits.double().numpy()
    assert np.abs(ours_logits - hf_logits).max() < 1e-5
    back, spec = read_checkpoint(folder, "hf")
    expected = extract_weights(ours, cfg)
    assert not spec["biases"] and back.keys() == expected.keys()  # the zero biases GPT-2 needs are dropped again
    for k in back:
        np.testing.assert_array_equal(back[k], expected[k], err_msg=k)


class NotATensor:
    pass


def test_a_checkpoint_that_needs_unpickling_is_refused_saying_why(tmp_path):
    model = hf_model("gelu")
    args = dict(n_layer=L, n_head=H, n_embd=D, block_size=CTX, bias=True, vocab_size=V)
    torch.save({"model": nanogpt_state(model), "model_args": args, "extra": NotATensor()}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"ckpt.pt: refused .*weights_only=True"):
        read_checkpoint(tmp_path / "ckpt.pt", "nanogpt")


def test_bad_hugging_face_folders_are_named_with_what_was_expected(tmp_path):
    with pytest.raises(CheckpointError, match=r"config.json: not found"):
        read_checkpoint(tmp_path, "hf")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match=r"model_type 'llama'"):
        read_checkpoint(tmp_path, "hf")
    hf_model().save_pretrained(tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").rename(tmp_path / "ok" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"only pytorch_model.bin"):
        read_checkpoint(tmp_path / "ok", "hf")
    with pytest.raises(CheckpointError, match=r"model.format: 'onnx'"):
        read_checkpoint(tmp_path, "onnx")


def test_every_analysis_forward_pass_takes_the_biases_and_folding_keeps_the_function(tmp_path):
    """A biased GPT-2 (tanh GELU, untied): the one-token forward, the attention-keeping forward (its probabilities
    against transformers' own attentions) and the logits after folding the LayerNorms (weights and biases) and after a
    residual rotation fixing the ones direction all give transformers' numbers."""
    from corpus_weights.measure.attention import forward_attention
    from corpus_weights.measure.loss_ladder import one_token_logits
    from corpus_weights.measure.residual_space import fold_layernorm, random_rotation_fixing_ones, rotate_residual

    model = hf_model("gelu_new", tied=False)
    model.save_pretrained(tmp_path)
    weights, spec = read_checkpoint(tmp_path, "hf")
    act, toks = spec["activation"], tokens()
    model.set_attn_implementation("eager")  # (SDPA returns no attention probabilities)
    with torch.no_grad():
        out = model(torch.as_tensor(toks), output_attentions=True)
    expected = torch.log_softmax(out.logits.double(), -1).numpy()
    one = np.arange(V)
    with torch.no_grad():
        first = torch.log_softmax(model(torch.as_tensor(one)[:, None]).logits.double(), -1).numpy()[:, 0]
    assert np.abs(log_softmax(one_token_logits(weights, one, H, act)) - first).max() < 1e-4
    _, probs, logits = forward_attention(weights, toks, H, logits=True, activation=act)
    assert np.abs(log_softmax(logits) - expected).max() < 1e-4
    for layer, p in enumerate(probs):
        assert np.abs(p - out.attentions[layer].double().numpy()).max() < 1e-5, layer
    folded = fold_layernorm(weights)
    assert not any(k.endswith((".ln1.b", ".ln2.b")) or k == "ln_final.b" for k in folded)
    assert np.abs(log_softmax(forward_logits(folded, toks, H, act)) - expected).max() < 1e-4
    Q = random_rotation_fixing_ones(D, np.random.default_rng(5))
    rotated = rotate_residual(folded, Q)
    assert np.abs(log_softmax(forward_logits(rotated, toks, H, act)) - expected).max() < 1e-4
