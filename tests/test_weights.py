import json

import numpy as np
import torch

from corpus_weights.model.gpt import GPT, GPTConfig
from corpus_weights.measure.residual_space import residual_vectors
from corpus_weights.model.weights import contract_keys, extract_weights, load_model_safetensors, save_model_safetensors
from corpus_weights.core.workflow_io import load_weights_npz, save_weights_npz

CFG = GPTConfig(vocab_size=50, n_layer=2, d_model=32, n_head=4, context=16)


def model():
    torch.manual_seed(0)
    return GPT(CFG)


def test_keys_shapes_dtype():
    w = extract_weights(model(), CFG)
    assert set(w) == set(contract_keys(2))
    d, V = 32, 50
    assert w["W_E"].shape == (V, d) and w["W_pos"].shape == (16, d) and w["ln_final.w"].shape == (d,)
    for i in range(2):
        for k in ("W_Q", "W_K", "W_V", "W_O"):
            assert w[f"L{i}.{k}"].shape == (d, d)
        assert w[f"L{i}.W_in"].shape == (4 * d, d) and w[f"L{i}.W_out"].shape == (d, 4 * d)
        assert w[f"L{i}.ln1.w"].shape == (d,) and w[f"L{i}.ln2.w"].shape == (d,)
    assert all(v.dtype == np.float32 for v in w.values())


def test_orientation():
    m = model()
    w = extract_weights(m.state_dict(), CFG)
    x = torch.randn(32)
    blk = m.blocks[1]
    with torch.no_grad():
        for key, lin in (("W_Q", blk.attn.q), ("W_K", blk.attn.k), ("W_V", blk.attn.v), ("W_O", blk.attn.o),
                         ("W_in", blk.mlp.fc_in)):
            np.testing.assert_allclose(w[f"L1.{key}"] @ x.numpy(), lin(x).numpy(), rtol=1e-5, atol=1e-6)
        h = torch.randn(128)
        np.testing.assert_allclose(w["L1.W_out"] @ h.numpy(), blk.mlp.fc_out(h).numpy(), rtol=1e-5, atol=1e-6)
    assert residual_vectors("L0.W_out", w["L0.W_out"]).shape == (128, 32)
    assert residual_vectors("L0.W_in", w["L0.W_in"]).shape == (128, 32)


def test_npz_and_safetensors_roundtrip(tmp_path):
    m = model()
    w = extract_weights(m, CFG)
    save_weights_npz(w, CFG.to_dict(), tmp_path / "a.npz")
    assert json.loads((tmp_path / "a.json").read_text())["n_head"] == 4
    w2, meta = load_weights_npz(tmp_path / "a.npz")
    assert meta["vocab_size"] == 50
    for k in w:
        np.testing.assert_array_equal(w[k], w2[k])
    save_model_safetensors(m, tmp_path / "m.safetensors")
    m2, cfg2 = load_model_safetensors(tmp_path / "m.safetensors")
    assert cfg2 == CFG
    for k, v in extract_weights(m2, cfg2).items():
        np.testing.assert_array_equal(v, w[k])


def test_safetensors_bytes_do_not_depend_on_metadata_order(tmp_path):
    """Identical tensors and metadata give identical files whatever the order the metadata was built in."""
    from safetensors.torch import load_file, save

    from corpus_weights.model.weights import canonical_safetensors

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(5, dtype=torch.float64)}
    keys = [f"k{i}" for i in range(40)]
    forward = {k: str(i) for i, k in enumerate(keys)}
    backward = {k: forward[k] for k in reversed(keys)}
    one, two = canonical_safetensors(save(tensors, metadata=forward)), canonical_safetensors(save(tensors, metadata=backward))
    assert one == two
    assert int.from_bytes(one[:8], "little") % 8 == 0
    (tmp_path / "x.safetensors").write_bytes(one)
    back = load_file(str(tmp_path / "x.safetensors"))
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    save_model_safetensors(model(), tmp_path / "m1.safetensors", step=3)
    save_model_safetensors(model(), tmp_path / "m2.safetensors", step=3)
    assert (tmp_path / "m1.safetensors").read_bytes() == (tmp_path / "m2.safetensors").read_bytes()
