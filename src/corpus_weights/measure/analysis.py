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
from .attention import attention_heads
from .controls import positive_controls
from ..corpus.corpus_stats import transition_matrix
from ..core.ids import WE_COVARIANCE, Basis, Pooled, Target
from ..core.linalg import haar_frame
from .loss_ladder import model_ladder
from ..core.nulls import empirical_p, log_frequency_bins
from .projection import pca_basis, planted_power, share_uncertainty, shares_table
from .residual_space import fold_layernorm, residual_matrix_names, residual_vectors
from ..core.spectra import spectrum_row


def align_model(weights: dict, corpus: dict, params: dict) -> tuple[dict, dict]:
    """The corpus -> model map with its nulls, and the corpus basis with its basis null (all K at once), refitted on
    `splits` fit/test splits for the split-to-split spread (split 0 carries the headline values and the nulls).
    params: top_n, freq_bins, map_null_draws, basis_null_draws, splits, seed. Returns (arrays, summary)."""
    folded = fold_layernorm(weights)
    return vocabulary_alignment(
        corpus["E_in"], folded["W_E"], corpus["pi"], int(params["top_n"]), int(params["freq_bins"]),
        int(params["map_null_draws"]), int(params["seed"]), exclude=corpus.get("special", ()),
        E_out=corpus["E_out"], eigvecs=corpus["eigvecs"], basis_draws=int(params["basis_null_draws"]),
        n_splits=int(params["splits"]))


def _top_and_bins(corpus: dict, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The top-N tokens (special tokens excluded) and their frequency strata, shared by every token-space test."""
    C = corpus["counts"]
    top = top_tokens(corpus["pi"], int(params["top_n"]), corpus.get("special", ()))
    return top, log_frequency_bins(np.asarray(C.sum(axis=1)).ravel()[top], int(params["freq_bins"]))


def measure_model(weights: dict, corpus: dict, ladder: dict, val_ids: np.ndarray, val_loss: float | None,
                  params: dict) -> dict:
    """The loss ladder, the positive controls, the note's protocol and the weight spectra of one model.
    corpus: counts (sparse C), E_in, E_out, pi, special (token ids excluded from token-space statistics).
    params: top_n, freq_bins, permutations, headline_K, seed; activation (the model's GELU: "gelu", the default,
    or GPT-2's "gelu_new"; a checkpoint's weights meta says which)."""
    folded = fold_layernorm(weights)
    activation = params.get("activation", "gelu")
    pi, C, seed = corpus["pi"], corpus["counts"], int(params["seed"])
    top, bins = _top_and_bins(corpus, params)
    return dict(
        ladder=model_ladder(weights, val_ids, ladder, val_loss, activation),
        controls=positive_controls(folded, C, pi, top, bins, int(params["permutations"]), seed, activation),
        note_protocol=note_protocol_summary(weights, C, corpus["E_in"], corpus["E_out"], pi,
                                            int(params["headline_K"]), int(params["permutations"]), seed),
        weight_spectra=weight_spectra(weights, pi),
    )


def attention_model(weights: dict, corpus: dict, n_head: int, params: dict, step0: dict | None = None,
                    val_ids: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """Every head against the null over attention (its W_Q/W_K rotated at random, the rest of the model kept): in
    token space, and on validation text when val_ids is given (the functional test); the step-0 reference when
    step0 (the same run's step-0 weights) is given; the calibration (false-positive rate on norm-matched random
    heads, a planted routing head). The label-permutation test is kept as `label_*` columns.
    corpus: counts, pi, special. params: top_n, freq_bins (also the key-frequency strata of the functional test),
    permutations (null draws), seed; optional attention_fpr_models (20), attention_windows (32 windows of the model's
    context), attention_functional_draws (100: the functional null's first draws), attention_functional_fpr_models
    (all). Returns (per-head table, summary)."""
    top, bins = _top_and_bins(corpus, params)
    table, calibration = attention_heads(
        fold_layernorm(weights), corpus["counts"], top, n_head,
        step0=None if step0 is None else fold_layernorm(step0), val_ids=val_ids,
        exclude=corpus.get("special", ()), n_draws=int(params["permutations"]), seed=int(params["seed"]),
        fpr_models=int(params.get("attention_fpr_models", 20)), windows=int(params.get("attention_windows", 32)),
        functional_draws=params.get("attention_functional_draws", 100),
        functional_fpr_models=params.get("attention_functional_fpr_models"), key_bins=int(params["freq_bins"]),
        label_bins=bins, activation=params.get("activation", "gelu"), window_tokens=params.get("attention_window_tokens"))
    return table, attention_summary(table, calibration)


NULL_OVER_ATTENTION = ("each head's W_Q and W_K rotated on the residual side by independent Haar orthogonal "
                       "matrices (spectrum kept, the rest of the model unchanged); z against the draws' mean and sd, "
                       "two-sided normal p, Benjamini–Hochberg (FDR 0.05) over the model's heads")


def _test_summary(table: pd.DataFrame, prefix: str, calibration: dict | None) -> dict:
    """Counts of one test (token space: prefix '', functional: 'functional_') and its calibration entries."""
    sig_col = f"{prefix}significant"
    if sig_col not in table:
        return {k: None for k in ("significant", "positive", "negative", "step0_qk_significant", "fpr_heads",
                                  "fpr_models", "n_fpr_models", "planted_z", "planted_detected")}
    sig = table[sig_col].astype(bool)
    step0 = f"{prefix}step0_qk_significant"
    out = dict(significant=int(sig.sum()), positive=int((sig & (table[f"{prefix}direction"] > 0)).sum()),
               negative=int((sig & (table[f"{prefix}direction"] < 0)).sum()),
               step0_qk_significant=int(table[step0].astype(bool).sum()) if step0 in table else None)
    cal = dict(calibration or {})
    out.update({k: cal.get(k) for k in ("fpr_heads", "fpr_models", "n_fpr_models", "planted_z",
                                        "planted_detected")})
    return out


def attention_summary(table: pd.DataFrame, calibration: dict | None = None) -> dict:
    """attention.json: counts per test (positive/negative = the direction of r relative to its null's mean among
    significant heads), the step-0 reference, the calibration, and the older top-level keys (= token space)."""
    calibration = calibration or {}
    token = _test_summary(table, "", calibration.get("token_space"))
    functional = _test_summary(table, "functional_", calibration.get("functional"))
    functional.update({k: calibration.get("functional", {}).get(k) for k in ("n_pairs", "n_null_draws")})
    return dict(
        heads=int(len(table)), n_null_draws=int(table["n_null_draws"].iloc[0]) if len(table) else 0,
        null=NULL_OVER_ATTENTION, token_space=token, functional=functional,
        mean_r_by_layer=[float(v) for v in table.groupby("layer")["r"].mean().values],
        significant_bh=token["significant"], significant_positive=token["positive"],
        significant_negative=token["negative"],
        max_z=float(table["qk_z"].max()) if len(table) else None,
        test="token space: Pearson r of the double-centred X M_h Xᵀ (X = LayerNorm'd W_E of the top-N tokens) with "
             "the double-centred preceding-token PMI, against the null over attention; functional: Pearson r over "
             "(query, earlier key) pairs of validation text of the attention weight with PMI(query token, key "
             "token), per-query and per-distance means removed, against the same null")


def projection_table(weights: dict, init_weights: dict, basis: np.ndarray, null_bases: np.ndarray,
                     eigvecs: np.ndarray, mu: np.ndarray, pi: np.ndarray, K: int, random_draws: int,
                     seed: int, split_bases: np.ndarray | None = None,
                     min_effect: float | None = None) -> pd.DataFrame:
    """Projection shares at one K for every basis (corrected protocol), the aligned basis's null and empirical p,
    plus the note protocol's R² at that K. basis / null_bases / split_bases: the per-model corpus basis (d x d), its
    null draws (n x d x d) and its refits on other fit/test splits (n_splits x d x d, split 0 = basis) from
    align_model; every K slices their first K columns.

    corpus_aligned rows gain share_splits_sd (sd over the split bases), n_splits, share_total_sd (null draw sd and
    split sd in quadrature) and z_total (= (share − null mean) / share_total_sd); NaN without split_bases. The pooled
    non-embedding corpus_aligned row of target W gains the test's power at this size (projection.planted_power with
    δ = min_effect): planted_delta, planted_z, planted_detected, mde; NaN (NA) elsewhere."""
    folded = fold_layernorm(weights)
    folded_init = fold_layernorm(init_weights)
    d = folded["W_E"].shape[1]
    rng = np.random.default_rng([seed, K])  # seeded by K too: each K is its own job
    bases = {
        "corpus_aligned": basis[:, :K],  # = ids.Basis.*, literal: tests/mutants.py pins this line
        "corpus_null": list(null_bases[:, :, :K]),
        "random": [haar_frame(d, K, rng) for _ in range(random_draws)],
        "we_pca": pca_basis(folded["W_E"], K, weights=pi, center=True),
        "note_unaligned": eigvecs[:, :K],
        SPLITS: [] if split_bases is None else list(split_bases[:, :, :K]),
    }
    tables = [shares_table(folded, bases, K, target=Target.W, keep_draws=True),
              shares_table(folded, bases, K, target=Target.DW, W_init=folded_init, keep_draws=True)]
    table = pd.concat(tables, ignore_index=True)
    table["basis"] = table["basis"].replace({"own": Basis.OWN_PCA})
    table["p_vs_null"] = np.nan
    keys = ["target", "matrix", "layer"]
    null = table[table.basis == Basis.CORPUS_NULL].set_index(keys)["share_draws"]
    for i in table.index[table.basis == Basis.CORPUS_ALIGNED]:
        key = tuple(table.loc[i, keys])
        if key in null.index and len(null[key]):
            table.loc[i, "p_vs_null"] = empirical_p(table.loc[i, "share"], null[key])
    table = _add_split_uncertainty(table, keys)
    table = _add_power(table, folded, bases, K, min_effect)
    table = table[table.basis != SPLITS].drop(columns=["share_draws"]).reset_index(drop=True)
    basis_note = note.note_basis(eigvecs, mu, K)
    note_rows = []
    for include, label in [(True, Pooled.ALL), (False, Pooled.NONEMBED)]:
        res = note.note_projection_r2(weights, basis_note, include_embeddings=include)
        note_rows.append(dict(target=Target.W, matrix=label, layer=-1, basis=Basis.NOTE_LINEAR, K=K, d=d,
                              share=res["share"], r2=res["r2"], n_draws=1))
    return pd.concat([table, pd.DataFrame(note_rows)], ignore_index=True)


SPLITS = "corpus_splits"  # the aligned basis refitted on other fit/test splits: read into columns, then dropped
SPLIT_COLUMNS = ("share_splits_sd", "n_splits", "share_total_sd", "z_total")
POWER_COLUMNS = ("planted_delta", "planted_z", "planted_detected", "mde")


def _add_split_uncertainty(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Columns SPLIT_COLUMNS on every corpus_aligned row, from the per-draw shares of the same (target, matrix,
    layer) on the null bases and on the split bases (projection.share_uncertainty); NaN elsewhere."""
    for column in SPLIT_COLUMNS:
        table[column] = np.nan
    draws = {b: table[table.basis == b].set_index(keys)["share_draws"] for b in (Basis.CORPUS_NULL, SPLITS)}
    for i in table.index[table.basis == Basis.CORPUS_ALIGNED]:
        key = tuple(table.loc[i, keys])
        null, splits = (draws[b][key] if key in draws[b].index else [] for b in (Basis.CORPUS_NULL, SPLITS))
        u = share_uncertainty(table.loc[i, "share"], null, splits)
        table.loc[i, list(SPLIT_COLUMNS)] = [u["split_sd"], u["n_splits"], u["total_sd"], u["z_total"]]
    return table


def _add_power(table: pd.DataFrame, folded: dict, bases: dict, K: int, min_effect: float | None) -> pd.DataFrame:
    """Columns POWER_COLUMNS (projection.planted_power at δ = min_effect) on the pooled non-embedding corpus_aligned
    row of target W, from the same aligned, null and split bases at this K; NaN / NA elsewhere, and everywhere when
    the split bases, min_effect or ≥ 2 null draws are missing."""
    for column in POWER_COLUMNS:
        table[column] = pd.array([pd.NA] * len(table), dtype="boolean") if column == "planted_detected" else np.nan
    nulls, splits = bases[Basis.CORPUS_NULL], bases[SPLITS]
    if min_effect is None or len(nulls) < 2 or len(splits) < 2:
        return table
    power = planted_power(folded, bases[Basis.CORPUS_ALIGNED], np.stack(nulls), np.stack(splits), min_effect)
    headline = ((table.basis == Basis.CORPUS_ALIGNED) & (table.target == Target.W)
                & (table.matrix == Pooled.NONEMBED))
    for column, value in power.items():
        table.loc[headline, column] = value
    return table


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


def we_covariance(weights: dict, pi: np.ndarray) -> np.ndarray:
    """W_Eᵀ diag(π) W_E of the centred, LayerNorm-folded embedding (d x d)."""
    W_E = fold_layernorm(weights)["W_E"].astype(np.float64)
    centred = W_E - pi @ W_E
    return centred.T @ (centred * pi[:, None])


def weight_spectra(weights: dict, pi: np.ndarray) -> pd.DataFrame:
    """PR and effective rank of W_Eᵀ diag(π) W_E (centred) and of every weight matrix (folded)."""
    folded = fold_layernorm(weights)
    rows = [spectrum_row(WE_COVARIANCE, np.linalg.eigvalsh(we_covariance(weights, pi)), kind="eigen")]
    for name in residual_matrix_names(folded, embeddings=False):
        s = np.linalg.svd(residual_vectors(name, folded[name]), compute_uv=False)
        rows.append(spectrum_row(name, s, kind="singular"))
    table = pd.DataFrame(rows)
    table["L_opt"] = np.ceil(table["pr"] / 3).astype(int)
    return table
