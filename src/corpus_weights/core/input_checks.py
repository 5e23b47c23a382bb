"""Degenerate inputs refused before anything is measured, each problem naming the config key to change and a value
that would work.

`budget_problems` runs at config time (workflow/rules/common.smk: the token budget against one batch);
`corpus_problems` runs at config time too once tokens/meta.json exists (a later run), and its parts run in the first
job that needs them on a first run (train: the splits against the context; corpus_stats: the distinct tokens against
the width; align: the top-N token sample of the map), so that changing one of these keys reruns nothing upstream. A run that would
otherwise train one step, pad the corpus embedding with zero components or fit d regressors on a handful of tokens
stops with one message instead of producing verdicts.
"""
from __future__ import annotations


def budget_problems(tokens: int, batch_size: int, context: int) -> list[tuple[str, str]]:
    """train.tokens must hold at least one batch (batch_size sequences of context tokens)."""
    batch = batch_size * context
    if tokens < batch:
        return [("train.tokens", f"{tokens:,} is less than one batch (train.batch_size × model.context = {batch_size}"
                                 f" × {context} = {batch:,} tokens): the run would train one step of {batch:,} tokens "
                                 f"while reporting {tokens:,}; use train.tokens ≥ {batch:,} (or a smaller batch)")]
    return []


def split_problems(n_train: int, n_val: int, context: int, val_fraction: float) -> list[tuple[str, str]]:
    """The validation split must hold one evaluation window (context + 2 tokens), the training split a few."""
    problems = []
    need = context + 2
    if n_val < need:
        frac = min(0.49, val_fraction * need / max(n_val, 1))
        problems.append(("model.context", f"the validation split has {n_val:,} tokens, shorter than model.context + 2 "
                                          f"= {need:,}: use model.context ≤ {max(n_val - 2, 1):,}, or raise "
                                          f"corpus.val_fraction (≈ {frac:.2f}) or use more text"))
    if n_train < 4 * need:
        problems.append(("corpus.files", f"the training split has {n_train:,} tokens, fewer than 4 × (model.context + "
                                         f"2) = {4 * need:,}: use more text or model.context ≤ "
                                         f"{max(n_train // 4 - 2, 1):,}"))
    return problems


def width_problems(vocab_size: int, d_model: int) -> list[tuple[str, str]]:
    """The corpus embedding has rank ≤ V: a width d ≥ V would pad it with zero components."""
    if vocab_size <= d_model:
        return [("model.d_model", f"the corpus has {vocab_size:,} distinct tokens, not more than model.d_model = "
                                  f"{d_model}: the corpus embedding (rank ≤ {vocab_size:,}) would be padded with zero "
                                  f"components; use model.d_model ≤ {max(vocab_size // 2, 4)} or more text")]
    return []


def map_problems(vocab_size: int, top_n: int, d_model: int) -> list[tuple[str, str]]:
    """The vocabulary map fits d regressors on half of the top-N tokens: it needs at least 2 d tokens there."""
    usable = min(top_n, vocab_size)
    if usable < 2 * d_model:
        return [("analysis.top_n", f"the vocabulary map would be fitted on {usable // 2:,} tokens (half of "
                                   f"min(analysis.top_n, V) = {usable:,}) for {d_model} regressors: it needs ≥ 2 × "
                                   f"model.d_model = {2 * d_model} tokens in the top-N; use more text, a larger "
                                   f"analysis.top_n / tokenizer.vocab_size, or model.d_model ≤ {max(usable // 2, 4)}")]
    return []


def corpus_problems(n_train: int, n_val: int, vocab_size: int, context: int, d_model: int, top_n: int,
                    val_fraction: float) -> list[tuple[str, str]]:
    """Everything the corpus is too small for, once its size is known (tokens/meta.json)."""
    return (split_problems(n_train, n_val, context, val_fraction) + width_problems(vocab_size, d_model)
            + map_problems(vocab_size, top_n, d_model))


def format_problems(problems: list[tuple[str, str]], what: str) -> str:
    return f"{what}:\n" + "\n".join(f"  {key}: {text}" for key, text in problems)
