"""Per-model measurement jobs: what each analysis rule computes, as plain functions of loaded artifacts.

The corrected protocol runs on LayerNorm-folded weights (so that it is invariant to function-preserving rotations
of the residual basis); the note protocol runs on the raw weights, as the note would have.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import note_protocol as note
from .alignment import attention_vs_corpus, fit_vocab_map, linear_cka, positive_control, procrustes_r2, top_tokens
from .corpus_stats import transition_matrix
from .nulls import log_frequency_bins
from .projection import aligned_corpus_basis, pca_basis, random_basis, shares_table
from .residual_space import fold_layernorm, residual_matrix_names, residual_vectors
from .spectra import spectrum_row


def vocabulary_alignment(weights: dict, E_in: np.ndarray, pi: np.ndarray, top_n: int, seed: int) -> tuple[dict, dict]:
    """Corpus -> model map through the vocabulary (least squares, Procrustes, CKA). Returns (arrays, summary)."""
    W_E = fold_layernorm(weights)["W_E"]
    fit = fit_vocab_map(E_in, W_E, pi, top_n=top_n, seed=seed)
    procrustes = procrustes_r2(E_in, W_E, pi, fit["test_idx"])
    top = fit["top_idx"]
    cka = linear_cka(E_in[top], W_E[top], pi[top])
    summary = {
        "vocab_map_heldout_r2": fit["heldout_r2"],
        "vocab_map_train_r2": fit["train_r2"],
        "procrustes_r2": procrustes.get("heldout_r2", procrustes.get("r2")),
        "procrustes": {k: v for k, v in procrustes.items() if np.ndim(v) == 0},
        "linear_cka": cka,
        "top_n": int(top.size),
        "n_fit_tokens": int(fit["train_idx"].size),
        "n_heldout_tokens": int(fit["test_idx"].size),
    }
    arrays = {"A": fit["A"], "mu_E": fit["mu_E"], "mu_W": fit["mu_W"], "train_idx": fit["train_idx"],
              "test_idx": fit["test_idx"]}
    return arrays, summary


def projection_table(weights: dict, init_weights: dict, A: np.ndarray, eigvecs: np.ndarray, mu: np.ndarray,
                     pi: np.ndarray, K: int, random_draws: int, seed: int) -> pd.DataFrame:
    """Projection shares at one K for every basis (corrected protocol) plus the note protocol's R² at that K."""
    folded = fold_layernorm(weights)
    folded_init = fold_layernorm(init_weights)
    d = folded["W_E"].shape[1]
    # Seeded by K too, so each K's random draws are reproducible on their own (each K is its own job).
    rng = np.random.default_rng([seed, K])
    bases = {
        "corpus_aligned": aligned_corpus_basis(A, eigvecs[:, :K]),
        "random": [random_basis(d, K, rng) for _ in range(random_draws)],
        "we_pca": pca_basis(folded["W_E"], K, weights=pi, center=True),
        "note_unaligned": eigvecs[:, :K],
    }
    tables = [shares_table(folded, bases, K, target="W"),
              shares_table(folded, bases, K, target="dW", W_init=folded_init)]
    table = pd.concat(tables, ignore_index=True)
    table["basis"] = table["basis"].replace({"own": "own_pca"})
    # Normalised score (P_basis - K/d) / (P_own - K/d) is already per row; the note protocol's R² follows.
    basis = note.note_basis(eigvecs, mu, K)
    note_rows = []
    for include, label in [(True, "pooled_all"), (False, "pooled_nonembed")]:
        res = note.note_projection_r2(weights, basis, include_embeddings=include)
        note_rows.append(dict(target="W", matrix=label, layer=-1, basis="note_linear", K=K, d=d,
                              share=res["share"], r2=res["r2"], n_draws=1))
    return pd.concat([table, pd.DataFrame(note_rows)], ignore_index=True)


def attention_analysis(weights: dict, n_head: int, counts, pi: np.ndarray, top_n: int, n_bins: int,
                       permutations: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Per-head QK (token space) vs the preceding-token statistic, and the positive control, with nulls."""
    folded = fold_layernorm(weights)
    top = top_tokens(pi, top_n)
    bins = log_frequency_bins(pi[top], n_bins)
    table = attention_vs_corpus(folded, counts, top, n_head, bins=bins, n_draws=permutations, seed=seed)
    control = positive_control(folded, counts, top, bins=bins, n_draws=permutations, seed=seed)
    summary = {"positive_control": control, "top_n": int(top.size), "permutations": int(permutations),
               "freq_bins": int(n_bins)}
    return table, summary


def note_protocol_summary(weights: dict, counts, E_in: np.ndarray, E_out: np.ndarray, pi: np.ndarray, K: int,
                          permutations: int, seed: int) -> dict:
    """The note's protocol reproduced literally: direct/random R², per-layer QK cosines (with their null),
    L0 W_Q alignment and the parameter accounting."""
    T = transition_matrix(counts)
    Tp = note.t_proj(E_in, E_out, T)
    predictions = note.note_predictions(weights, E_in, pi, include_embeddings=True, seed=seed)
    cosines = note.note_qk_cosines(weights, E_in, E_out, T, n_draws=permutations, seed=seed, Tp=Tp)
    l0 = note.l0_wq_alignment(weights, Tp)
    accounting = note.parameter_accounting(weights, K)["ours"]
    return {
        "r2_direct": predictions["direct"]["r2"], "cos_direct": predictions["direct"]["cos"],
        "r2_random": predictions["random"]["r2"], "cos_random": predictions["random"]["cos"],
        "r2_identity": "for a centred, norm-matched prediction R² = 2·cos − 1",
        "qk_cosines": cosines["cos"].tolist(),
        "qk_cosine_null_mean": float(cosines["null_mean"].mean()),
        "qk_cosine_null_sd": float(cosines["null_sd"].mean()),
        "qk_cosine_table": cosines.to_dict("records"),
        "l0_wq_alignment": l0["abs_cos"],
        "l0_wq_alignment_left": l0["abs_cos_left"],
        "l0_wq_alignment_null_mean": l0["null_expected_abs_cos"],
        "accounting": {**accounting, "weight_structure": accounting["structure_params"],
                       "derivable_share": accounting["derivable_share"]},
        "K": int(K),
    }


def weight_spectra(weights: dict, pi: np.ndarray) -> pd.DataFrame:
    """PR and effective rank of W_Eᵀ diag(π) W_E (centred) and of every weight matrix (folded)."""
    folded = fold_layernorm(weights)
    W_E = folded["W_E"].astype(np.float64)
    centred = W_E - pi @ W_E
    cov = centred.T @ (centred * pi[:, None])
    rows = [spectrum_row("W_E^T diag(pi) W_E (centred)", np.linalg.eigvalsh(cov), kind="eigen")]
    for name in residual_matrix_names(folded, embeddings=False):
        s = np.linalg.svd(residual_vectors(name, folded[name]), compute_uv=False)
        rows.append(spectrum_row(name, s, kind="singular"))
    table = pd.DataFrame(rows)
    table["L_opt"] = np.ceil(table["pr"] / 3).astype(int)
    return table
