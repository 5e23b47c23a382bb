"""A small GPT (pre-LN, tied embeddings, no biases) used as the trained model.

Architecture: token embedding (tied with the unembedding) + learned positional
embedding, ``n_layer`` pre-LN blocks (LayerNorm without bias -> causal
self-attention via ``F.scaled_dot_product_attention`` -> residual; LayerNorm ->
GELU MLP with 4d hidden -> residual), final LayerNorm, logits = h @ W_E^T.
q, k, v are kept as separate ``nn.Linear`` modules so that weight extraction
maps 1:1 onto the contract names (``L{i}.W_Q`` ... see docs/design.md).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """The architecture; no defaults here: the workflow passes the config's `model` block, whose keys the schema
    requires (config/note.yaml is the note's 8 layers, d = 256, 8 heads, context 128)."""
    vocab_size: int
    n_layer: int
    d_model: int
    n_head: int
    context: int

    def __post_init__(self):
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} not divisible by n_head={self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.n_head = cfg.n_head
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.n_head
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)
        k = self.k(x).view(B, T, H, D // H).transpose(1, 2)
        v = self.v(x).view(B, T, H, D // H).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.fc_in = nn.Linear(d, 4 * d, bias=False)
        self.fc_out = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02) everywhere, residual-writing projections
        (attn.o, mlp.fc_out) N(0, 0.02/sqrt(2L)), LayerNorm weights 1.
        Uses the global torch RNG, so ``torch.manual_seed`` before construction
        makes the init deterministic."""
        std = 0.02
        res_std = std / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if p.dim() == 1:  # LayerNorm weights
                nn.init.ones_(p)
            elif name.endswith("attn.o.weight") or name.endswith("mlp.fc_out.weight"):
                nn.init.normal_(p, 0.0, res_std)
            else:
                nn.init.normal_(p, 0.0, std)

    def n_params(self) -> int:
        """Number of distinct parameters (tied W_E counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        if T > self.config.context:
            raise ValueError(f"sequence length {T} > context {self.config.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight)  # tied unembedding
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def flops_per_token(cfg: GPTConfig, n_params: int | None = None) -> int:
    """Training FLOPs per token (forward + backward), PaLM/Chinchilla style:
    ``6 * N + 12 * n_layer * context * d_model`` where N counts every parameter
    that takes part in a matmul (all parameters incl. the tied W_E used as the
    unembedding; the embedding lookup itself is free but W_E is used once as
    the unembedding matmul, W_pos is a lookup and excluded, LayerNorm is
    negligible). The second term is the attention score/value matmuls
    (QK^T and AV: 2 * 2 * T * d per layer per token forward, x3 for fwd+bwd)."""
    d, L, V, T = cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.context
    n_matmul = V * d + L * (4 * d * d + 8 * d * d)
    return 6 * n_matmul + 12 * L * T * d
