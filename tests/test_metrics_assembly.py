"""metrics.json assembled from the per-model files (report/metrics.py), traced number by number: every input cell
holds a distinct value, so a number read from the wrong K, basis, target, matrix, column, model or key lands on
another cell's value and the test names it. Fast (no workflow run): the workflow tests check the same on real files."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from corpus_weights.core.ids import Basis, Pooled, Role, Target
from corpus_weights.report.metrics import (_benchmark_table, corpus_basis_test, intervention_metrics, model_metrics,
                                           seed_statistics, standing)

K = 8
COLUMNS = ["share", "share_sd", "n_draws", "normalised", "p_vs_null", "r2", "planted_detected", "share_splits_sd",
           "n_splits", "share_total_sd", "z_total", "planted_delta", "planted_z", "mde"]
ALIGN_KEYS = ["vocab_map_heldout_r2", "vocab_map_train_r2", "vocab_map_null", "ridge_lambda", "effective_sample_size",
              "vocab_map_heldout_r2_E_out", "vocab_map_heldout_r2_E_in_out", "basis_uses", "top_n", "n_splits",
              "vocab_map_heldout_r2_splits", "vocab_map_heldout_r2_split_sd", "procrustes_heldout_cos",
              "procrustes_null", "procrustes_heldout_cos_splits", "procrustes_heldout_cos_split_sd", "cka_debiased",
              "cka_plugin"]
NOTE_KEYS = ["r2_direct", "r2_random", "cos_direct", "cos_random", "qk_cosines", "qk_cosine_null_mean",
             "qk_cosine_null_sd", "l0_wq_alignment", "l0_wq_alignment_null_mean", "accounting"]
BASES = [Basis.CORPUS_ALIGNED, Basis.CORPUS_NULL, Basis.RANDOM, Basis.WE_PCA, Basis.OWN_PCA, Basis.NOTE_LINEAR]


def projections(offset: float = 0.0) -> pd.DataFrame:
    """Every (K, basis, target, matrix) row with distinct values in every column (counts distinct integers,
    planted_detected True only on the headline cell)."""
    rows = []
    for i, (k, basis, target, matrix) in enumerate(itertools.product(
            [4, K, 12], BASES, [Target.W, Target.DW], [Pooled.NONEMBED, Pooled.ALL, "L0.W_Q"])):
        row = dict(K=k, basis=basis, target=target, matrix=matrix)
        for j, col in enumerate(COLUMNS):
            row[col] = offset + 1000 * i + j + 0.5
        row["n_draws"] = row["n_splits"] = float(1000 * i + 7 + offset)
        row["planted_detected"] = (k, basis, target, matrix) == (K, Basis.CORPUS_ALIGNED, Target.W, Pooled.NONEMBED)
        rows.append(row)
    return pd.DataFrame(rows)


def cell(proj, column, basis, target=Target.W, matrix=Pooled.NONEMBED, k=K):
    sel = proj[(proj.K == k) & (proj.basis == basis) & (proj.target == target) & (proj.matrix == matrix)]
    assert len(sel) == 1
    return sel[column].iloc[0]


def results(label="main-s0", role=Role.MAIN, seed=0, offset=0.0) -> dict:
    rng = np.random.default_rng(int(offset) + seed)
    return {
        "summary": {"label": label, "role": role, "seed": seed, "run": f"orig-s{seed}", "tokens": 1000 + seed,
                    "ladder": {"val_loss": 3.0 + offset, "unigram_ce": 5.0 + offset, "bigram_ce": 4.0 + offset,
                               "learned_fraction": 0.5 + offset},
                    "controls": {"bigram": {"r": 0.1 + offset, "z": 9.0 + offset}},
                    "note_protocol": {k: float(rng.random()) for k in NOTE_KEYS}},
        "alignment": {k: float(rng.random()) for k in ALIGN_KEYS},
        "attention_summary": {"significant_bh": int(3 + offset), "token_space": {"significant": 1}},
        "projections": projections(offset),
    }


def test_every_model_number_is_its_own_cell_of_its_own_file():
    res = results()
    proj, al = res["projections"], res["alignment"]
    m = model_metrics(res, K)
    c = m["corrected"]
    assert (m["label"], m["role"], m["seed"], m["run"], m["tokens"]) == ("main-s0", Role.MAIN, 0, "orig-s0", 1000)
    assert c["ladder"] is res["summary"]["ladder"] and c["positive_control"] is res["summary"]["controls"]
    assert c["attention"] is res["attention_summary"]
    for key in ALIGN_KEYS[:12]:
        assert c["vocab_map"][key] == al[key], key
    assert c["procrustes"] == {"heldout_cos": al["procrustes_heldout_cos"], "null": al["procrustes_null"],
                               "heldout_cos_splits": al["procrustes_heldout_cos_splits"],
                               "heldout_cos_split_sd": al["procrustes_heldout_cos_split_sd"]}
    assert c["cka"] == {"debiased": al["cka_debiased"], "plugin": al["cka_plugin"]}
    for b in BASES[:5]:
        assert c["projection_share"][b] == cell(proj, "share", b), b
        assert c["projection_share_dW"][b] == cell(proj, "share", b, Target.DW), b
    for b in (Basis.CORPUS_NULL, Basis.RANDOM):
        assert c["projection_share_sd"][b] == cell(proj, "share_sd", b), b
    assert c["projection_share_p_vs_null"] == cell(proj, "p_vs_null", Basis.CORPUS_ALIGNED)
    assert c["basis_null_draws"] == int(cell(proj, "n_draws", Basis.CORPUS_NULL))
    assert c["normalised_score"] == cell(proj, "normalised", Basis.CORPUS_ALIGNED)
    assert c["normalised_score_null"] == cell(proj, "normalised", Basis.CORPUS_NULL)
    assert c["normalised_score_dW"] == cell(proj, "normalised", Basis.CORPUS_ALIGNED, Target.DW)
    note = m["note_protocol"]
    assert note["r2_linear_all"] == cell(proj, "r2", Basis.NOTE_LINEAR, matrix=Pooled.ALL)
    assert note["r2_linear_nonembed"] == cell(proj, "r2", Basis.NOTE_LINEAR)
    for key in NOTE_KEYS:
        assert note[key] == res["summary"]["note_protocol"][key], key
    assert "source" not in m  # a trained model: no checkpoint origin


def test_the_corpus_basis_test_reads_the_headline_cell_and_the_null_row():
    proj = projections()
    t = corpus_basis_test(proj, K)
    aligned = {k: cell(proj, k, Basis.CORPUS_ALIGNED) for k in COLUMNS}
    assert t["share"] == aligned["share"] and t["p_vs_null"] == aligned["p_vs_null"]
    assert t["null_mean"] == cell(proj, "share", Basis.CORPUS_NULL)
    assert t["null_sd"] == cell(proj, "share_sd", Basis.CORPUS_NULL)
    assert t["n_null_draws"] == int(cell(proj, "n_draws", Basis.CORPUS_NULL))
    assert t["split_sd"] == aligned["share_splits_sd"] and t["n_splits"] == int(aligned["n_splits"])
    for key in ("z_total", "planted_delta", "planted_z", "mde"):
        assert t[key] == aligned[key], key
    assert t["total_sd"] == aligned["share_total_sd"] and t["planted_detected"] is True
    assert corpus_basis_test(proj, 4)["planted_detected"] is False  # another K: another cell
    # a column the table lacks stays None (the verdict then raises naming it)
    assert corpus_basis_test(proj.drop(columns=["z_total", "mde"]), K)["z_total"] is None


def test_a_missing_value_is_none_not_nan():
    proj = projections()
    proj.loc[(proj.K == K) & (proj.basis == Basis.CORPUS_ALIGNED), "share"] = np.nan
    c = model_metrics({**results(), "projections": proj}, K)["corrected"]
    assert c["projection_share"][Basis.CORPUS_ALIGNED] is None
    assert model_metrics({**results(), "projections": proj[proj.K != K]}, K)["corrected"]["basis_null_draws"] == 0


def test_a_checkpoints_origin_is_carried_to_its_model():
    res = results()
    res["summary"].update(source="checkpoint", path="exported", format="hf", weights="w.npz")
    m = model_metrics(res, K)
    assert (m["source"], m["path"], m["format"], m["weights"]) == ("checkpoint", "exported", "hf", "w.npz")


def models_of_a_run():
    """Two main seeds, a step-0 and a shuffled model, each with its own values (offsets 0, 10, 100, 200)."""
    spec = [("main-s0", Role.MAIN, 0, 0.0), ("main-s1", Role.MAIN, 1, 10.0), ("step0", Role.STEP0, 0, 100.0),
            ("shuffled", Role.SHUFFLED, 0, 200.0)]
    return {label: model_metrics(results(label, role, seed, off), K) for label, role, seed, off in spec}


def test_seed_statistics_are_over_the_main_models_only():
    models = models_of_a_run()
    s = seed_statistics(models)
    mains = [models["main-s0"]["corrected"], models["main-s1"]["corrected"]]

    def check(key, values):
        assert s[key]["n_seeds"] == 2, key
        assert s[key]["mean"] == pytest.approx(np.mean(values)), key
        assert s[key]["sd"] == pytest.approx(np.std(values, ddof=1)), key

    check("share_corpus", [c["projection_share"][Basis.CORPUS_ALIGNED] for c in mains])
    check("share_corpus_null", [c["projection_share"][Basis.CORPUS_NULL] for c in mains])
    check("share_random", [c["projection_share"][Basis.RANDOM] for c in mains])
    check("share_we_pca", [c["projection_share"][Basis.WE_PCA] for c in mains])
    check("share_own_pca", [c["projection_share"][Basis.OWN_PCA] for c in mains])
    check("normalised_score", [c["normalised_score"] for c in mains])
    check("normalised_score_null", [c["normalised_score_null"] for c in mains])
    check("vocab_map_heldout_r2", [c["vocab_map"]["vocab_map_heldout_r2"] for c in mains])
    check("bigram_control_r", [0.1, 10.1])
    check("bigram_control_z", [9.0, 19.0])
    check("learned_fraction", [0.5, 10.5])
    check("val_loss", [3.0, 13.0])
    check("attention_heads_significant", [3, 13])
    assert s["share_corpus_null_draw_sd"] == pytest.approx(np.mean([c["projection_share_sd"][Basis.CORPUS_NULL]
                                                                    for c in mains]))
    assert s["p_vs_null_max"] == max(c["projection_share_p_vs_null"] for c in mains)
    assert s["z_total_min"] == min(c["corpus_basis_test"]["z_total"] for c in mains)
    assert s["null_draws"] == min(c["basis_null_draws"] for c in mains)


def test_standing_lists_each_main_model_against_the_count_models():
    models = models_of_a_run()
    models["main-s1"]["corrected"]["ladder"] = {"val_loss": 4.5, "unigram_ce": 5.0, "bigram_ce": 4.0}
    rows = {r["model"]: r for r in standing(models)}
    assert set(rows) == {"main-s0", "main-s1"}
    assert rows["main-s0"] == dict(model="main-s0", val_loss=3.0, unigram_ce=5.0, bigram_ce=4.0, below_unigram_by=2.0,
                                   below_bigram=True, bigram_margin=1.0)
    assert rows["main-s1"]["below_bigram"] is False and rows["main-s1"]["bigram_margin"] == pytest.approx(-0.5)
    models["main-s0"]["corrected"]["ladder"]["val_loss"] = None
    assert standing(models)[0]["below_bigram"] is None


def run(init, seed, final, g, to_bigram=1000):
    return {"init": init, "seed": seed, "measures": {
        "final_val_loss": final, "learned_fraction": g, "tokens_to_bigram": to_bigram, "tokens_to_random_final": 500,
        "aligned_share_by_snapshot": {"snapshot_000": 0.1 * seed, "snapshot_100": 0.2 + seed}}}


def test_intervention_gate_needs_two_seeds_and_every_run_trained():
    unigram = 5.0
    good = [run(v, s, 3.0 + 0.1 * s, 0.9) for v in ("random", "corpus") for s in (0, 1)]
    iv = intervention_metrics(good, unigram)
    assert iv["variants"] == ["random", "corpus"] and iv["seeds"] == [0, 1]
    assert iv["gate"] == {"passed": True, "reason": None}
    assert iv["per_variant"]["corpus"]["final_val_loss"]["mean"] == pytest.approx(3.05)
    assert iv["per_variant"]["corpus"]["share_by_snapshot"]["snapshot_100"]["mean"] == pytest.approx(0.7)
    assert iv["per_variant"]["random"]["reached_bigram"] == 2
    one_seed = intervention_metrics([r for r in good if r["seed"] == 0], unigram)
    assert one_seed["gate"] == {"passed": False, "reason": "fewer than 2 seeds"}
    untrained = [*good[:3], run("corpus", 1, 4.99, 0.0, None)]  # barely below the unigram, nothing learned
    bad = intervention_metrics(untrained, unigram)
    assert bad["gate"]["passed"] is False and bad["gate"]["reason"] == "G1 fails for corpus-s1"
    assert bad["per_variant"]["corpus"]["reached_bigram"] == 1
    assert bad["verdict"]["status"] == "withheld"


def test_benchmark_rows_read_each_jobs_file_and_skip_a_missing_one(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("s\th:m:s\tmax_rss\tcpu_time\n12.5\t0:00:12\t300.0\t11.0\n")
    g = tmp_path / "b.tsv"
    g.write_text("s\th:m:s\n2.0\t0:00:02\n")
    rows = _benchmark_table([{"rule": "align", "job": "main", "path": f}, {"rule": "x", "job": "y", "path": g},
                             {"rule": "gone", "job": "z", "path": tmp_path / "missing.tsv"}])
    assert rows == [{"rule": "align", "job": "main", "seconds": 12.5, "cpu_seconds": 11.0, "max_rss_mb": 300.0},
                    {"rule": "x", "job": "y", "seconds": 2.0, "cpu_seconds": None, "max_rss_mb": None}]
