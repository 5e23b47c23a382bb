"""The loss ladder: how much of the corpus's next-token statistics a model has learned (pure numpy).

Rungs, all cross-entropies in nats on the validation split:
  H_unigram  add-½ unigram model fitted on the training split;
  H_bigram   interpolated bigram  P(b | a) = λ T[a, b] + (1 − λ) P_uni(b), T from training counts, λ chosen on a
             held-out tail of the *training* split (never on validation), then counts refitted on all of it;
  CE_pos0    the model's cross-entropy predicting val[i+1] from the one-token sequence [val[i]] (full forward
             pass at position 0: with uniform random window offsets the loss-optimal output there is T[a, ·]);
  val_loss   the model's ordinary validation loss (full context).
Learned fraction g = (H_unigram − CE_pos0) / (H_unigram − H_bigram): 0 = knows unigrams only, 1 = knows the
interpolated bigram table as well as the count model does.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .residual_space import as_float64, forward_logits, gelu, layernorm, n_layers

LAMBDA_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def unigram_probs(train_ids: np.ndarray, vocab_size: int, add: float = 0.5) -> np.ndarray:
    counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    return (counts + add) / (counts.sum() + add * vocab_size)


def unigram_cross_entropy(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats) of val tokens under the add-½ unigram model of the training split."""
    p = unigram_probs(train_ids, vocab_size)
    return float(-np.log(p[np.asarray(val_ids, dtype=np.int64)]).mean())


def _pair_counts(ids: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    ids = np.asarray(ids, dtype=np.int64)
    return sp.csr_matrix((np.ones(ids.size - 1), (ids[:-1], ids[1:])), shape=(vocab_size, vocab_size))


def _bigram_ce(counts: sp.csr_matrix, p_uni: np.ndarray, ids: np.ndarray, lam: float) -> float:
    """CE of the pairs (ids[i], ids[i+1]) under λ T + (1 − λ) p_uni (rows without counts use p_uni)."""
    ids = np.asarray(ids, dtype=np.int64)
    a, b = ids[:-1], ids[1:]
    row_tot = np.asarray(counts.sum(axis=1)).ravel()
    c_ab = np.asarray(counts[a, b]).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(row_tot[a] > 0, c_ab / row_tot[a], 0.0)
    lam_eff = np.where(row_tot[a] > 0, lam, 0.0)
    return float(-np.log(lam_eff * t + (1 - lam_eff) * p_uni[b]).mean())


def interpolated_bigram(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int,
                        dev_fraction: float = 0.1, grid=LAMBDA_GRID) -> dict:
    """Interpolated-bigram cross-entropy on val with λ chosen on the tail of the training split.

    Returns dict(ce, lam, dev_ce: {λ: CE on the training tail})."""
    train_ids = np.asarray(train_ids, dtype=np.int64)
    cut = int(round(train_ids.size * (1 - dev_fraction)))
    fit, dev = train_ids[:cut], train_ids[cut:]
    counts_fit = _pair_counts(fit, vocab_size)
    p_fit = unigram_probs(fit, vocab_size)
    dev_ce = {float(lam): _bigram_ce(counts_fit, p_fit, dev, lam) for lam in grid}
    lam = min(dev_ce, key=dev_ce.get)
    ce = _bigram_ce(_pair_counts(train_ids, vocab_size), unigram_probs(train_ids, vocab_size), val_ids, lam)
    return dict(ce=ce, lam=lam, dev_ce=dev_ce)


# ----------------------------------------------------------------------------- the model at position 0

def one_token_logits(weights: dict, tokens: np.ndarray, n_head: int | None = None, activation: str = "gelu"
                     ) -> np.ndarray:
    """Logits (n, V) of the model given each one-token sequence [a] (position 0), float64, no torch.

    With a single position, causal attention attends to itself with weight 1, so each block's attention
    output is (LN1(x) W_Vᵀ + b_V) W_Oᵀ + b_O; n_head is irrelevant and accepted for symmetry with forward_logits.
    Biases and LayerNorm biases (checkpoints only) enter as in residual_space.forward_logits; missing ones are 0."""
    f = lambda k: np.asarray(weights[k], dtype=np.float64)  # noqa: E731
    b = lambda k: np.asarray(weights[k], dtype=np.float64) if k in weights else 0.0  # noqa: E731
    ln = lambda x, k: layernorm(x, f(f"{k}.w"), b=b(f"{k}.b") if f"{k}.b" in weights else None)  # noqa: E731
    tokens = np.asarray(tokens, dtype=np.int64)
    x = f("W_E")[tokens] + f("W_pos")[0][None, :]
    for i in range(n_layers(weights)):
        h = ln(x, f"L{i}.ln1")
        x = x + (h @ f(f"L{i}.W_V").T + b(f"L{i}.b_V")) @ f(f"L{i}.W_O").T + b(f"L{i}.b_O")
        h2 = ln(x, f"L{i}.ln2")
        x = x + gelu(h2 @ f(f"L{i}.W_in").T + b(f"L{i}.b_in"), activation) @ f(f"L{i}.W_out").T + b(f"L{i}.b_out")
    W_U = f("W_U") if "W_U" in weights else f("W_E")
    return ln(x, "ln_final") @ W_U.T + b("b_U")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def one_token_logprobs(weights: dict, tokens: np.ndarray, activation: str = "gelu") -> np.ndarray:
    """log P_model(next = · | [a]) for each a in tokens: (n, V)."""
    return log_softmax(one_token_logits(weights, tokens, activation=activation))


def position0_cross_entropy(weights: dict, val_ids: np.ndarray, chunk: int = 512, activation: str = "gelu") -> float:
    """The model's CE predicting val[i+1] from [val[i]], over every adjacent pair of the validation split.

    Each distinct current token is run once (chunks of `chunk` tokens), so the cost is O(#distinct · V · d)."""
    weights = as_float64(weights)  # once, not in every chunk (a GPT-2 W_E is 300 MB in float64)
    val_ids = np.asarray(val_ids, dtype=np.int64)
    a, b = val_ids[:-1], val_ids[1:]
    uniq, inv = np.unique(a, return_inverse=True)
    total = 0.0
    for s in range(0, uniq.size, chunk):
        lp = one_token_logprobs(weights, uniq[s:s + chunk], activation)
        sel = (inv >= s) & (inv < s + chunk)
        total += lp[inv[sel] - s, b[sel]].sum()
    return float(-total / a.size)


# ----------------------------------------------------------------------------- the model's validation loss

def eval_windows(n_tokens: int, eval_tokens: int, context: int) -> np.ndarray:
    """Start offsets of the trainer's fixed, evenly spaced evaluation windows (about eval_tokens targets); the same
    numbers as training.eval_windows, restated here so that the analysis side needs no torch (a test keeps the two
    equal)."""
    n_win = max(1, eval_tokens // context)
    hi = n_tokens - context - 1
    if hi <= 0:
        raise ValueError(f"token file too short ({n_tokens}) for context {context}")
    return np.linspace(0, hi, n_win).astype(np.int64)


#: the most float64 logits one batch of the numpy validation forward may hold (bytes): 16 windows at the default and
#: note scales, 1 window of a 1,024-token GPT-2 context over V = 50,257 (412 MB) instead of 16 (6.6 GB)
LOGITS_BUDGET_BYTES = 256 * 2**20


def validation_loss(weights: dict, val_ids: np.ndarray, n_head: int, context: int, eval_tokens: int,
                    batch: int | None = None, activation: str = "gelu") -> dict:
    """The validation loss of a model that was not trained here (weights from a file): mean cross-entropy of every
    target of the trainer's evaluation windows (same offsets, full context), by the float64 numpy forward pass
    (residual_space.forward_logits). The trainer evaluates the same windows in its training dtype (fp32 or bf16
    autocast), so the two agree to that dtype's rounding, not bit for bit. batch: windows per forward pass (None:
    at most 16, fewer where their logits would pass LOGITS_BUDGET_BYTES)."""
    weights = as_float64(weights)
    val_ids = np.asarray(val_ids, dtype=np.int64)
    starts = eval_windows(val_ids.size, eval_tokens, context)
    if batch is None:
        vocab = int(np.asarray(weights["W_E"]).shape[0])
        batch = int(min(16, max(1, LOGITS_BUDGET_BYTES // (context * vocab * 8))))
    total, n = 0.0, 0
    for s in range(0, starts.size, batch):
        idx = starts[s:s + batch, None] + np.arange(context + 1)[None, :]
        chunk = val_ids[idx]
        logp = log_softmax(forward_logits(weights, chunk[:, :-1], n_head, activation))
        total -= np.take_along_axis(logp, chunk[:, 1:, None], axis=-1).sum()
        n += chunk.shape[0] * context
    return dict(val_loss=float(total / n), windows=int(starts.size), targets=int(n), context=int(context),
                eval_tokens=int(eval_tokens), method="numpy float64 forward over the trainer's evaluation windows")


def learned_fraction(h_unigram: float, h_bigram: float, ce_pos0: float) -> float:
    """g = (H_unigram − CE_pos0) / (H_unigram − H_bigram)."""
    gap = h_unigram - h_bigram
    return float((h_unigram - ce_pos0) / gap) if gap > 0 else float("nan")


def corpus_ladder(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> dict:
    """The training-free rungs (depend on the corpus only; computed once per corpus)."""
    bigram = interpolated_bigram(train_ids, val_ids, vocab_size)
    return dict(unigram_ce=unigram_cross_entropy(train_ids, val_ids, vocab_size), bigram_ce=bigram["ce"],
                bigram_lambda=bigram["lam"], bigram_dev_ce=bigram["dev_ce"], n_val=int(np.asarray(val_ids).size))


def model_ladder(weights: dict, val_ids: np.ndarray, corpus: dict, val_loss: float | None,
                 activation: str = "gelu") -> dict:
    """The model's rungs beside the corpus's: CE_pos0, its validation loss and the learned fraction g (activation:
    the model's GELU, "gelu" or GPT-2's "gelu_new")."""
    ce0 = position0_cross_entropy(weights, val_ids, activation=activation)
    return dict(unigram_ce=corpus["unigram_ce"], bigram_ce=corpus["bigram_ce"], bigram_lambda=corpus["bigram_lambda"],
                ce_pos0=ce0, val_loss=val_loss,
                learned_fraction=learned_fraction(corpus["unigram_ce"], corpus["bigram_ce"], ce0),
                val_gain_over_unigram=(corpus["unigram_ce"] - val_loss) if val_loss is not None else None)
