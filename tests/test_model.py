import torch

from corpus_weights.model.gpt import GPT, GPTConfig, flops_per_token


def tiny():
    return GPTConfig(vocab_size=50, n_layer=2, d_model=32, n_head=4, context=16)


def test_shapes_and_loss():
    torch.manual_seed(0)
    m = GPT(tiny())
    idx = torch.randint(0, 50, (3, 16))
    logits, loss = m(idx)
    assert logits.shape == (3, 16, 50) and loss is None
    logits, loss = m(idx[:, :10], idx[:, 1:11])
    assert logits.shape == (3, 10, 50)
    assert loss.ndim == 0 and abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.5


def test_tied_and_no_biases():
    m = GPT(tiny())
    names = [n for n, _ in m.named_parameters()]
    assert not any("bias" in n for n in names)
    assert all(getattr(mod, "bias", None) is None for mod in m.modules()
               if isinstance(mod, (torch.nn.Linear, torch.nn.LayerNorm)))
    # tied: unembedding uses W_E -> gradient of logits reaches wte through both paths
    idx = torch.randint(0, 50, (2, 8))
    logits, _ = m(idx)
    h = m.ln_f(m.blocks[1](m.blocks[0](m.wte(idx) + m.wpe(torch.arange(8)))))
    assert torch.allclose(logits, h @ m.wte.weight.T, atol=1e-5)
    assert not any(isinstance(mod, torch.nn.Linear) and mod.weight.shape == (50, 32) for mod in m.modules())


def test_causal():
    torch.manual_seed(0)
    m = GPT(tiny()).eval()
    idx = torch.randint(0, 50, (1, 16))
    a, _ = m(idx)
    idx2 = idx.clone()
    idx2[0, 10] = (idx2[0, 10] + 1) % 50
    b, _ = m(idx2)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_seeded_init_and_scaling():
    torch.manual_seed(1)
    a = GPT(tiny())
    torch.manual_seed(1)
    b = GPT(tiny())
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    cfg = GPTConfig(vocab_size=50, n_layer=2, d_model=128, n_head=4, context=16)
    m = GPT(cfg)
    assert abs(m.blocks[0].attn.q.weight.std().item() - 0.02) < 0.002
    assert abs(m.blocks[0].attn.o.weight.std().item() - 0.01) < 0.001  # 0.02/sqrt(2*2)
    assert torch.all(m.ln_f.weight == 1)


def test_note_scale_param_count():
    cfg = GPTConfig(vocab_size=15007, n_layer=8, d_model=256, n_head=8, context=128)
    n = 15007 * 256 + 128 * 256 + 8 * (12 * 256 * 256 + 2 * 256) + 256
    m = GPT(cfg)
    print("default params:", m.n_params())
    assert m.n_params() == n
    assert 10.1e6 < n < 10.3e6
    assert flops_per_token(cfg) == 6 * (15007 * 256 + 8 * 12 * 256 * 256) + 12 * 8 * 128 * 256
