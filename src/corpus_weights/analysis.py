"""Per-model measurements as plain functions of loaded artifacts (what the analysis rules compute).

`align_model` fits the corpus -> model map with its nulls and the corpus basis with its basis null (for every K at
once); `measure_model` computes the loss ladder, the positive controls, the note's protocol and the weight spectra;
`attention_model` tests every head against the corpus. `projection_table` is the cheap per-K part: it only slices
bases. Each is one rule, so a parameter reruns only the rules that use it.

The corrected protocol runs on LayerNorm-folded weights (so that it is invariant to function-preserving rotations of
the residual basis); the note protocol runs on the raw weights, as the note would have.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import note_protocol as note
from .alignment import top_tokens, vocabulary_alignment
from .attention import attention_vs_corpus
from .controls import positive_controls
from .corpus_stats import transition_matrix
from .linalg import haar_frame
from .loss_ladder import model_ladder
from .nulls import empirical_p, log_frequency_bins
from .projection import pca_basis, shares_table
from .residual_space import fold_layernorm, residual_matrix_names, residual_vectors
from .spectra import spectrum_row


def align_model(weights: dict, corpus: dict, params: dict) -> tuple[dict, dict]:
    """The corpus -> model map with its nulls, and the corpus basis with its basis null (all K at once).
    params: top_n, freq_bins, map_null_draws, basis_null_draws, seed. Returns (arrays, summary)."""
    folded = fold_layernorm(weights)
    return vocabulary_alignment(
        corpus["E_in"], folded["W_E"], corpus["pi"], int(params["top_n"]), int(params["freq_bins"]),
        int(params["map_null_draws"]), int(params["seed"]), exclude=corpus.get("special", ()),
        E_out=corpus["E_out"], eigvecs=corpus["eigvecs"], basis_draws=int(params["basis_null_draws"]))


def _top_and_bins(corpus: dict, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The top-N tokens (special tokens excluded) and their frequency strata, shared by every token-space test."""
    C = corpus["counts"]
    top = top_tokens(corpus["pi"], int(params["top_n"]), corpus.get("special", ()))
    return top, log_frequency_bins(np.asarray(C.sum(axis=1)).ravel()[top], int(params["freq_bins"]))


def measure_model(weights: dict, corpus: dict, ladder: dict, val_ids: np.ndarray, val_loss: float | None,
                  params: dict) -> dict:
    """The loss ladder, the positive controls, the note's protocol and the weight spectra of one model.
    corpus: counts (sparse C), E_in, E_out, pi, special (token ids excluded from token-space statistics).
    params: top_n, freq_bins, permutations, headline_K, seed."""
    folded = fold_layernorm(weights)
    pi, C, seed = corpus["pi"], corpus["counts"], int(params["seed"])
    top, bins = _top_and_bins(corpus, params)
    return dict(
        ladder=model_ladder(weights, val_ids, ladder, val_loss),
        controls=positive_controls(folded, C, pi, top, bins, int(params["permutations"]), seed),
        note_protocol=note_protocol_summary(weights, C, corpus["E_in"], corpus["E_out"], pi,
                                            int(params["headline_K"]), int(params["permutations"]), seed),
        weight_spectra=weight_spectra(weights, pi),
    )


def attention_model(weights: dict, corpus: dict, n_head: int, params: dict) -> tuple[pd.DataFrame, dict]:
    """Attention per head against the preceding-token PMI (params: top_n, freq_bins, permutations, seed).
    Returns (per-head table, summary)."""
    top, bins = _top_and_bins(corpus, params)
    table = attention_vs_corpus(fold_layernorm(weights), corpus["counts"], top, n_head, bins=bins,
                                n_draws=int(params["permutations"]), seed=int(params["seed"]))
    return table, attention_summary(table)


def attention_summary(table: pd.DataFrame) -> dict:
    sig = table["significant_bh"].astype(bool)
    return dict(heads=int(len(table)), significant_bh=int(sig.sum()),
                significant_positive=int((sig & (table["z"] > 0)).sum()),
                significant_negative=int((sig & (table["z"] < 0)).sum()),
                max_z=float(table["z"].max()) if len(table) else None,
                mean_r_by_layer=[float(v) for v in table.groupby("layer")["r"].mean().values],
                n_draws=int(table["n_draws"].iloc[0]) if len(table) else 0,
                test="double-centred Pearson r vs preceding-token PMI; within-bin permutation null; "
                     "Benjamini–Hochberg (FDR 0.05) over heads on two-sided normal-approximation p")


def projection_table(weights: dict, init_weights: dict, basis: np.ndarray, null_bases: np.ndarray,
                     eigvecs: np.ndarray, mu: np.ndarray, pi: np.ndarray, K: int, random_draws: int,
                     seed: int) -> pd.DataFrame:
    """Projection shares at one K for every basis (corrected protocol), the aligned basis's null and empirical p,
    plus the note protocol's R² at that K. basis / null_bases: the per-model corpus basis (d x d) and its null
    draws (n x d x d) from measure_model; every K slices their first K columns."""
    folded = fold_layernorm(weights)
    folded_init = fold_layernorm(init_weights)
    d = folded["W_E"].shape[1]
    rng = np.random.default_rng([seed, K])  # seeded by K too: each K is its own job
    bases = {
        "corpus_aligned": basis[:, :K],
        "corpus_null": list(null_bases[:, :, :K]),
        "random": [haar_frame(d, K, rng) for _ in range(random_draws)],
        "we_pca": pca_basis(folded["W_E"], K, weights=pi, center=True),
        "note_unaligned": eigvecs[:, :K],
    }
    tables = [shares_table(folded, bases, K, target="W", keep_draws=True),
              shares_table(folded, bases, K, target="dW", W_init=folded_init, keep_draws=True)]
    table = pd.concat(tables, ignore_index=True)
    table["basis"] = table["basis"].replace({"own": "own_pca"})
    table["p_vs_null"] = np.nan
    keys = ["target", "matrix", "layer"]
    null = table[table.basis == "corpus_null"].set_index(keys)["share_draws"]
    for i in table.index[table.basis == "corpus_aligned"]:
        key = tuple(table.loc[i, keys])
        if key in null.index and len(null[key]):
            table.loc[i, "p_vs_null"] = empirical_p(table.loc[i, "share"], null[key])
    table = table.drop(columns=["share_draws"])
    basis_note = note.note_basis(eigvecs, mu, K)
    note_rows = []
    for include, label in [(True, "pooled_all"), (False, "pooled_nonembed")]:
        res = note.note_projection_r2(weights, basis_note, include_embeddings=include)
        note_rows.append(dict(target="W", matrix=label, layer=-1, basis="note_linear", K=K, d=d,
                              share=res["share"], r2=res["r2"], n_draws=1))
    return pd.concat([table, pd.DataFrame(note_rows)], ignore_index=True)


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
