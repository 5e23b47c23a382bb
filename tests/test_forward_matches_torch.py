"""The numpy reference forward pass (used by the invariance test) computes what the torch GPT computes."""
import numpy as np
import torch

from corpus_weights.model.gpt import GPT, GPTConfig
from corpus_weights.measure.residual_space import fold_layernorm, forward_logits
from corpus_weights.model.weights import extract_weights


def test_numpy_forward_equals_torch_model():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, n_layer=2, d_model=16, n_head=2, context=8)
    model = GPT(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm weights, so that folding is exercised
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
    tokens = np.random.default_rng(0).integers(0, 40, size=(3, 8))
    with torch.no_grad():
        expected = model(torch.as_tensor(tokens))[0].double().numpy()
    weights = extract_weights(model, cfg)
    np.testing.assert_allclose(forward_logits(weights, tokens, cfg.n_head), expected, atol=1e-4)
    np.testing.assert_allclose(forward_logits(fold_layernorm(weights), tokens, cfg.n_head), expected, atol=1e-4)
