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


# --- the whole of metrics.json: collect_metrics, run_card and load_inputs (what rule `metrics` runs) ---------------

from corpus_weights.core.ids import CORPUS_SPECTRA, WE_COVARIANCE  # noqa: E402
from corpus_weights.core.note_values import NOTE  # noqa: E402
from corpus_weights.report.gates import evaluate_gates  # noqa: E402
from corpus_weights.report.metrics import (ANALYSIS_RULES, TRAINING_KEYS, collect_metrics, load_inputs,  # noqa: E402
                                           run_card)
from corpus_weights.report.verdicts import all_verdicts  # noqa: E402

D = 64
# label, role, seed, run, offset (each model's values apart from every other's)
RUN_MODELS = [("main-s0", Role.MAIN, 0, "orig-s0", 0.0), ("main-s1", Role.MAIN, 1, "orig-s1", 0.01),
              ("step0", Role.STEP0, 0, "orig-s0", 0.02), ("shuffled", Role.SHUFFLED, 0, "shuffled-s0", 0.03)]


def full_results(label, role, seed, run, offset, pr_we=11.0):
    """One analysed model's files as load_model_results returns them, complete enough for gates and verdicts: a
    model that passes every gate (test_gates' numbers), with its own values (offset) in every other field."""
    res = results(label, role, seed, offset)
    gate_ladder = dict(unigram_ce=6.4 + offset, bigram_ce=5.6 + offset, val_loss=5.8 + offset,
                       ce_pos0=5.92 + offset, learned_fraction=0.6 + offset)
    step0_like = role in (Role.STEP0, Role.SHUFFLED)
    res["summary"].update(
        run=run, tokens=1000, ladder=gate_ladder,
        controls=dict(bigram=dict(r=0.0 if step0_like else 0.3 + offset, z=(0.4 if role == Role.STEP0 else
                                                                             -1.0 if role == Role.SHUFFLED else 8.0)),
                      unigram=dict(r=0.1, z=9.0 if role == Role.SHUFFLED else 0.5)))
    res["summary"]["note_protocol"].update(qk_cosines=[0.001 + offset, -0.002] * 4, qk_cosine_null_sd=0.004,
                                           accounting={"offset": offset})
    res["alignment"]["vocab_map_null"] = dict(p=0.005, mean=-0.1, max=0.0, n_draws=100)
    part = dict(significant=3, positive=3, negative=0, step0_qk_significant=0, fpr_heads=0.01, fpr_models=0.0,
                n_fpr_models=20, planted_z=8.0, planted_detected=True)
    res["attention_summary"] = dict(heads=32, significant_bh=3 + int(100 * offset), token_space=dict(part),
                                    functional=dict(part))
    res["weight_spectra"] = pd.DataFrame([{"name": WE_COVARIANCE, "pr": pr_we + 100 * offset}])
    return res


def corpus_spectra():
    return pd.DataFrame([{"name": name, "pr": 20.0 + i} for i, name in enumerate(CORPUS_SPECTRA.values())])


def summary_of(run, i):
    """A training summary with a distinct value in every key the training block reads."""
    return {**{k: f"{run}:{k}" for k in TRAINING_KEYS}, "elapsed_s": 100.0 + i}


def trajectory_table(seed_delta, null_sd=0.01):
    """A main run's trajectory: aligned_share rises by seed_delta over the last half (beyond 2 null sd when
    seed_delta is large); val_loss flat."""
    rows = []
    for step, frac in ((0, 0.0), (5, 0.5), (10, 1.0)):
        rows.append(dict(pct=int(100 * frac), step=step, tokens=step * 10, stat="aligned_share",
                         value=0.5 + seed_delta * frac, null_mean=0.5, null_sd=null_sd))
        rows.append(dict(pct=int(100 * frac), step=step, tokens=step * 10, stat="val_loss", value=6.0,
                         null_mean=np.nan, null_sd=np.nan))
    return pd.DataFrame(rows)


def run_data(main_label="main-s0", trajectories=True, intervention=True):
    res = {label: full_results(label, role, seed, r, off, pr_we=11.0 + i)
           for i, (label, role, seed, r, off) in enumerate(RUN_MODELS)}
    cfg = {"experiment": "exp", "model": {"n_layer": 3, "d_model": D, "n_head": 4, "context": 16},
           "train": {"seeds": [0, 1], "tokens": 5000, "snapshots": [0.25, 1 / 3], "patience": 2},
           "analysis": {"trajectory_draws": 7}, "corpus": {"name": "tiny-corpus"}}
    runs = {run: {"log": pd.DataFrame(), "summary": summary_of(run, i)}
            for i, run in enumerate(["orig-s0", "orig-s1", "shuffled-s0", "orig-s2"])}  # orig-s2: not analysed
    iv = [{"init": v, "seed": s, "measures": {"final_val_loss": 3.0 + s, "learned_fraction": 0.9,
                                              "tokens_to_bigram": 100, "tokens_to_random_final": 50,
                                              "aligned_share_by_snapshot": {"snapshot_100": 0.3}}}
          for v in ("random", "corpus") for s in (0, 1)]
    return dict(cfg=cfg, K_list=[4, K, 12], K=K, d=D, manifest={"n_words": 11, "n_chars": 12, "sha256": "abc"},
                tokens_meta={"vocab_size": 300, "requested_vocab_size": 512, "shrunk": True, "n_tokens": 13,
                             "n_train": 14, "n_val": 15},
                spectra=corpus_spectra(), runs=runs, results=res, labels=[m[0] for m in RUN_MODELS],
                main_label=main_label, main_res=res[main_label], intervention=iv if intervention else [],
                trajectories={"main-s0": trajectory_table(0.2), "main-s1": trajectory_table(0.3)}
                if trajectories else {})


def bench_jobs(tmp_path):
    jobs = []
    for i, (rule, cpu) in enumerate([("align", 10.0), ("measure", 20.0), ("attention", 40.0), ("fit_projections", 1.0),
                                     ("train", 1000.0), ("trajectory", 7.1), ("trajectory", 0.0)]):
        path = tmp_path / f"{i}.tsv"
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{cpu + 0.5}\t0:00:01\t{i}.0\t{cpu}\n")
        jobs.append({"rule": rule, "job": f"job{i}", "path": path})
    return jobs


def test_collect_metrics_wires_every_block_from_its_own_source(tmp_path):
    data = run_data(main_label="main-s1")  # the headline model is not the first one listed
    params = {"config_hash": "h123", "benchmarks": bench_jobs(tmp_path)}
    m = collect_metrics(data, params)
    models = {label: model_metrics(data["results"][label], K) for label in data["results"]}
    assert (m["K"], m["K_list"], m["K_over_d"]) == (K, [4, K, 12], K / D)
    assert m["models"] == models and m["main_label"] == "main-s1" and m["note"] is NOTE
    assert m["note_protocol"] == models["main-s1"]["note_protocol"]
    assert m["note_protocol"]["accounting"] == {"offset": 0.01}
    # spectra: the corpus's from its parquet, W_E's from the headline model's own weight_spectra (PR 12)
    assert [m["spectra"][f"pr_{k}"] for k in CORPUS_SPECTRA] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert m["spectra"]["pr_we_cov"] == pytest.approx(12.0 + 1.0)
    # training: one row per run, named as the analysed model (orig-s0 is main-s0, not its step-0 control)
    assert set(m["training"]) == {"orig-s0", "orig-s1", "shuffled-s0", "orig-s2"}
    assert {r: row["model"] for r, row in m["training"].items()} == {
        "orig-s0": "main-s0", "orig-s1": "main-s1", "shuffled-s0": "shuffled", "orig-s2": None}
    for i, run in enumerate(["orig-s0", "orig-s1", "shuffled-s0", "orig-s2"]):
        row = m["training"][run]
        assert {k: row[k] for k in TRAINING_KEYS} == {k: f"{run}:{k}" for k in TRAINING_KEYS}
        assert row["wall_s"] == 100.0 + i
    # gates, standing, seeds and verdicts: the pipeline's own functions on these models
    assert all(g["passed"] for g in m["gates"].values()), {k: g["reason"] for k, g in m["gates"].items()}
    assert [r["model"] for r in m["standing"]] == ["main-s0", "main-s1"]
    assert m["standing"][1]["val_loss"] == pytest.approx(5.81)
    assert m["seeds"] == seed_statistics(models)
    assert (m["config"], m["corpus"]) == run_card(data, params)
    assert m["config"]["config_hash"] == "h123"


def test_collect_metrics_gates_read_each_models_ladder_controls_and_alignment():
    for where, change in [("ladder", lambda r: r["summary"]["ladder"].update(val_loss=6.3)),
                          ("controls", lambda r: r["summary"]["controls"]["bigram"].update(z=1.0)),
                          ("alignment", lambda r: r["alignment"]["vocab_map_null"].update(p=0.5))]:
        data = run_data()
        change(data["results"]["main-s1"])
        gates = collect_metrics(data, {})["gates"]
        failed = {k: g["reason"] for k, g in gates.items() if not g["passed"]}
        assert len(failed) == 1, (where, failed)
        assert "main-s1" in next(iter(failed.values())) and "main-s0" not in next(iter(failed.values())), where


def test_collect_metrics_verdicts_trajectory_and_intervention():
    data = run_data()
    m = collect_metrics(data, {})
    plain = run_data(trajectories=False, intervention=False)
    bare = collect_metrics(plain, {})
    assert "trajectory" not in bare and "intervention" not in bare
    assert all("still_moving" not in v for v in bare["verdicts"])
    assert bare["verdicts"] == all_verdicts({k: v for k, v in bare.items() if k != "verdicts"}, NOTE)
    # with them: the same verdicts, the intervention's appended, each card told whether its statistic still moved
    assert [v["id"] for v in m["verdicts"]] == [v["id"] for v in bare["verdicts"]] + \
        [m["intervention"]["verdict"]["id"]]
    assert m["intervention"]["gate"] == {"passed": True, "reason": None}
    assert m["intervention"]["per_variant"]["corpus"]["final_val_loss"]["mean"] == pytest.approx(3.5)
    assert set(m["trajectory"]["runs"]) == {"main-s0", "main-s1"}
    cards = {v["id"]: v for v in m["verdicts"]}
    assert cards["corpus_basis"]["still_moving"] is True  # +0.2 and +0.3 against a null sd of 0.01 at both ends
    assert "+0.1, +0.15" in cards["corpus_basis"]["still_moving_text"]  # from step 5 (half of 10) to 10
    assert cards["depth"]["still_moving"] is None
    assert cards["depth"]["still_moving_text"].startswith("a statistic of the corpus alone")
    assert m["gates"]["G1"]["still_moving"] is False  # val_loss flat in both seeds
    assert m["gates"]["G2"]["still_moving"] is None  # no bigram_z rows: unknown
    # the intervention's gate reads the headline model's unigram CE: a unigram below the runs' losses fails it
    data["results"]["main-s0"]["summary"]["ladder"]["unigram_ce"] = 3.2
    assert collect_metrics(data, {})["intervention"]["gate"]["passed"] is False


def test_collect_metrics_times_the_analysis_jobs_only(tmp_path):
    m = collect_metrics(run_data(), {"benchmarks": bench_jobs(tmp_path)})
    assert [r["rule"] for r in m["benchmarks"]] == ["align", "measure", "attention", "fit_projections", "train",
                                                    "trajectory", "trajectory"]
    assert set(ANALYSIS_RULES) == {"align", "measure", "attention", "fit_projections"}
    a = m["analysis"]
    assert a["jobs"] == 4 and a["cpu_seconds"] == pytest.approx(71.0)
    assert a["summed_wall_seconds"] == pytest.approx(73.0)
    assert a["trajectory_jobs"] == 2 and a["trajectory_cpu_seconds"] == pytest.approx(7.1)
    assert a["trajectory_over_analysis"] == pytest.approx(7.1 / 71.0)
    none = collect_metrics(run_data(), {})["analysis"]
    assert none == {"jobs": 0, "cpu_seconds": 0.0, "summed_wall_seconds": 0, "trajectory_jobs": 0,
                    "trajectory_cpu_seconds": 0.0, "trajectory_over_analysis": None}
    no_traj = collect_metrics(run_data(), {"benchmarks": bench_jobs(tmp_path)[:4]})["analysis"]
    assert no_traj["trajectory_over_analysis"] is None


def test_run_card_reads_each_field_from_its_file():
    data = run_data()
    config, corpus = run_card(data, {"config_hash": "h1"})
    assert config == {"experiment": "exp", "n_layer": 3, "d_model": D, "n_head": 4, "context": 16, "vocab_size": 300,
                      "requested_vocab_size": 512, "vocab_shrunk": True, "seeds": [0, 1], "train_tokens": 5000,
                      "snapshot_pcts": [0, 25, 33, 100], "trajectory_draws": 7, "patience": 2, "config_hash": "h1"}
    assert corpus == {"name": "tiny-corpus", "n_words": 11, "n_chars": 12, "n_tokens": 13, "n_train": 14, "n_val": 15,
                      "sha256": "abc"}
    data["tokens_meta"] = {"vocab_size": 300}  # an older tokens_meta: nothing requested, nothing shrunk
    data["cfg"]["train"] = {"seeds": [3], "tokens": 10}
    config, _ = run_card(data, {})
    assert (config["requested_vocab_size"], config["vocab_shrunk"], config["snapshot_pcts"], config["patience"],
            config["config_hash"]) == (None, False, [0, 100], None, None)
    ckpt = {"path": "gpt2/", "format": "hf", "activation": "gelu_new", "tied": True, "tokenizer_source": "vocab.json",
            "vocab_size": 300, "checkpoint_vocab_size": 50257, "seed": 9}
    config, _ = run_card(run_data(), {"checkpoint": ckpt})
    assert config["checkpoint"] == {"path": "gpt2/", "format": "hf", "activation": "gelu_new", "tied": True,
                                    "tokenizer": "vocab.json", "vocab_size": 300, "checkpoint_vocab_size": 50257,
                                    "reinit_seed": 9}
    assert config["train_tokens"] is None and config["seeds"] == []


def test_load_inputs_maps_every_declared_file_to_its_model_and_run(tmp_path):
    import json

    def write_json(name, obj):
        path = tmp_path / name
        path.write_text(json.dumps(obj))
        return str(path)

    def write_parquet(name, frame):
        path = tmp_path / name
        frame.to_parquet(path, index=False)
        return str(path)

    params = {"config": run_data()["cfg"], "K": [4, K], "headline_K": K, "runs": ["orig-s0", "shuffled-s0"],
              "models": [], "trajectory_runs": [{"label": "main-s0"}, {"label": "main-s1"}]}
    inputs = {"train_logs": [], "train_summaries": [], "manifest": write_json("manifest.json", {"n_words": 5}),
              "tokens_meta": write_json("meta.json", {"vocab_size": 300}),
              "spectra": write_parquet("spectra.parquet", corpus_spectra()),
              "intervention": [write_json("iv0.json", {"init": "random"}), write_json("iv1.json", {"init": "corpus"})],
              "trajectories": [write_parquet("t0.parquet", trajectory_table(0.2)),
                               write_parquet("t1.parquet", trajectory_table(0.3))]}
    for run in params["runs"]:
        inputs["train_logs"].append(write_parquet(f"{run}.log.parquet", pd.DataFrame({"step": [len(run)]})))
        inputs["train_summaries"].append(write_json(f"{run}.json", {"run": run}))
    # the step-0 model listed first: the headline model is the first MAIN one, not the first listed
    for label, role, seed, run, off in [RUN_MODELS[2], RUN_MODELS[1], RUN_MODELS[0]]:
        res = full_results(label, role, seed, run, off)
        files = {"summary": write_json(f"{label}.summary.json", res["summary"]),
                 "alignment": write_json(f"{label}.alignment.json", res["alignment"]),
                 "attention_summary": write_json(f"{label}.att.json", res["attention_summary"]),
                 "attention": write_parquet(f"{label}.att.parquet", pd.DataFrame({"head": [len(label)]})),
                 "weight_spectra": write_parquet(f"{label}.ws.parquet", res["weight_spectra"]),
                 "projections": [write_parquet(f"{label}.K{k}.parquet", res["projections"][res["projections"].K == k])
                                 for k in (4, K)]}
        params["models"].append({"label": label, "role": role, "files": files})
    data = load_inputs(inputs, params)
    assert data["main_label"] == "main-s1" and data["labels"] == ["step0", "main-s1", "main-s0"]
    assert data["cfg"] is params["config"]
    assert (data["K"], data["K_list"], data["d"]) == (K, [4, K], D)
    assert data["manifest"] == {"n_words": 5} and data["tokens_meta"] == {"vocab_size": 300}
    assert data["spectra"].equals(corpus_spectra())
    assert {r: (v["summary"]["run"], int(v["log"]["step"].iloc[0])) for r, v in data["runs"].items()} == {
        "orig-s0": ("orig-s0", 7), "shuffled-s0": ("shuffled-s0", 11)}
    for label, role, seed, run, off in RUN_MODELS[:3]:
        got = data["results"][label]
        assert got["summary"]["label"] == label and got["summary"]["role"] == role
        assert got["alignment"]["vocab_map_heldout_r2"] == full_results(label, role, seed, run, off)["alignment"][
            "vocab_map_heldout_r2"]
        assert int(got["attention"]["head"].iloc[0]) == len(label)
        assert got["weight_spectra"].equals(full_results(label, role, seed, run, off)["weight_spectra"])
        assert sorted(got["projections"].K.unique()) == [4, K] and got["projections"].index.is_unique
        assert model_metrics(got, K)["corrected"]["projection_share"] == model_metrics(
            full_results(label, role, seed, run, off), K)["corrected"]["projection_share"]
    assert data["main_res"] is data["results"]["main-s1"]
    assert [iv["init"] for iv in data["intervention"]] == ["random", "corpus"]
    assert data["trajectories"]["main-s1"].equals(trajectory_table(0.3))
    assert data["trajectories"]["main-s0"].equals(trajectory_table(0.2))
    bare = load_inputs({k: v for k, v in inputs.items() if k not in ("intervention", "trajectories")},
                       {k: v for k, v in params.items() if k != "trajectory_runs"})
    assert bare["intervention"] == [] and bare["trajectories"] == {}


def test_collect_metrics_passes_seeds_budgets_and_origin_to_the_gates(tmp_path):
    data = run_data()
    data["results"]["main-s1"]["summary"]["tokens"] = 2000  # unequal budgets: G4
    gates = collect_metrics(data, {})["gates"]
    assert not gates["G4"]["passed"] and [g for g, v in gates.items() if not v["passed"]] == ["G4"]
    data = run_data()
    assert collect_metrics(data, {})["gates"]["G4"]["values"][0]["seeds"] == [0, 1]
    data["results"]["main-s1"]["summary"]["seed"] = 7  # each model's own seed reaches the gate's record
    assert collect_metrics(data, {})["gates"]["G4"]["values"][0]["seeds"] == [0, 7]
    data = run_data()
    for label in ("main-s0", "main-s1", "step0"):
        data["results"][label]["summary"]["source"] = "checkpoint"
    del data["results"]["shuffled"]  # a checkpoint has no shuffled twin: G2's shuffled part not applicable
    gates = collect_metrics(data, {})["gates"]
    assert gates["G2"]["passed"] is True, gates["G2"]
    m = collect_metrics(run_data(), {})
    assert m["schema"] == "corpus-weights metrics v2 (docs/metrics.md)"


def test_analysis_time_with_a_job_missing_its_cpu_time(tmp_path):
    jobs = bench_jobs(tmp_path)
    (tmp_path / "0.tsv").write_text("s\th:m:s\n10.5\t0:00:10\n")  # align without cpu_time: counts 0 s
    a = collect_metrics(run_data(), {"benchmarks": jobs})["analysis"]
    assert a["cpu_seconds"] == pytest.approx(61.0) and a["jobs"] == 4
    for name, cpu in (("1", 0.5), ("2", 0.0), ("3", 0.0)):
        (tmp_path / f"{name}.tsv").write_text(f"s\th:m:s\tmax_rss\tcpu_time\n1.0\t0:00:01\t1.0\t{cpu}\n")
    (tmp_path / "0.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n1.0\t0:00:01\t1.0\t0.0\n")
    a = collect_metrics(run_data(), {"benchmarks": jobs})["analysis"]
    assert a["cpu_seconds"] == pytest.approx(0.5) and a["trajectory_over_analysis"] == pytest.approx(7.1 / 0.5)
    (tmp_path / "1.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n1.0\t0:00:01\t1.0\t0.0\n")
    assert collect_metrics(run_data(), {"benchmarks": jobs})["analysis"]["trajectory_over_analysis"] is None


def test_benchmark_rows_go_on_past_a_missing_file(tmp_path):
    jobs = bench_jobs(tmp_path)
    jobs.insert(1, {"rule": "gone", "job": "z", "path": tmp_path / "missing.tsv"})
    assert [r["rule"] for r in _benchmark_table(jobs)] == ["align", "measure", "attention", "fit_projections",
                                                           "train", "trajectory", "trajectory"]


def test_intervention_block_field_by_field():
    unigram = 5.0
    good = [run(v, s, 3.0 + 0.25 * s, 0.9, to_bigram=1000 + 100 * s) for v in ("random", "corpus") for s in (0, 1)]
    iv = intervention_metrics(good, unigram)
    assert set(iv) == {"variants", "seeds", "per_variant", "differences", "gate", "verdict", "runs"}
    assert iv["runs"] is good
    corpus = iv["per_variant"]["corpus"]
    assert set(corpus) == {"final_val_loss", "learned_fraction", "tokens_to_bigram", "tokens_to_random_final",
                           "reached_bigram", "share_by_snapshot"}
    assert corpus["final_val_loss"] == {"mean": pytest.approx(3.125), "sd": pytest.approx(0.25 / np.sqrt(2))}
    assert corpus["learned_fraction"] == {"mean": pytest.approx(0.9), "sd": pytest.approx(0.0)}
    assert corpus["tokens_to_bigram"]["mean"] == pytest.approx(1050.0)
    assert corpus["tokens_to_random_final"] == {"mean": 500.0, "sd": 0.0}
    assert set(iv["differences"]) == {"final_val_loss", "tokens_to_bigram", "tokens_to_random_final"}
    assert iv["differences"]["tokens_to_bigram"]["corpus"]["diffs"] == [0.0, 0.0]
    bad = [*good[:2], run("corpus", 0, 4.99, 0.0, None), run("corpus", 1, 4.99, 0.0, None)]
    assert intervention_metrics(bad, unigram)["gate"]["reason"] == "G1 fails for corpus-s0, corpus-s1"


def test_seed_statistics_with_missing_values_and_no_main_model():
    models = models_of_a_run()
    models["main-s1"]["corrected"]["projection_share_sd"][Basis.CORPUS_NULL] = None
    models["main-s1"]["corrected"]["projection_share_p_vs_null"] = None
    models["main-s1"]["corrected"]["corpus_basis_test"]["z_total"] = None
    s = seed_statistics(models)
    assert (s["share_corpus_null_draw_sd"], s["p_vs_null_max"], s["z_total_min"]) == (None, None, None)
    none = seed_statistics({k: v for k, v in models.items() if v["role"] != Role.MAIN})
    assert none["null_draws"] == 0 and none["p_vs_null_max"] is None and none["z_total_min"] is None
    assert none["share_corpus_null_draw_sd"] is None and none["val_loss"] == {"mean": None, "sd": None,
                                                                              "n_seeds": 0}


def test_standing_at_the_bigram_line_and_after_other_roles():
    models = models_of_a_run()
    order = {k: models[k] for k in ("step0", "shuffled", "main-s0", "main-s1")}  # mains listed last
    order["main-s1"]["corrected"]["ladder"] = {"val_loss": 4.0, "unigram_ce": 5.0, "bigram_ce": 4.0}
    rows = {r["model"]: r for r in standing(order)}
    assert set(rows) == {"main-s0", "main-s1"}
    assert rows["main-s1"]["below_bigram"] is False and rows["main-s1"]["bigram_margin"] == 0.0


def test_spectra_missing_nan_and_named():
    from corpus_weights.core.ids import MissingValue
    from corpus_weights.report.metrics import spectra_metrics
    spectra = corpus_spectra()
    spectra.loc[spectra["name"] == list(CORPUS_SPECTRA.values())[3], "pr"] = np.nan
    out = spectra_metrics(spectra, pd.DataFrame([{"name": WE_COVARIANCE, "pr": 9.0}]))
    key = list(CORPUS_SPECTRA)[3]
    assert out[f"pr_{key}"] is None and out[f"L_opt_{key}"] is None
    assert out["pr_we_cov"] == 9.0 and out["L_opt_we_cov"] == 3
    with pytest.raises(MissingValue, match=r"^spectrum '.*' is missing from corpus_stats/spectra\.parquet \(names"):
        spectra_metrics(spectra.iloc[1:], pd.DataFrame([{"name": WE_COVARIANCE, "pr": 9.0}]))
    with pytest.raises(MissingValue, match=r"^spectrum 'W_E.*' is missing from the main model's weight_spectra\.parquet"):
        spectra_metrics(corpus_spectra(), pd.DataFrame([{"name": "other", "pr": 9.0}]))


def test_planted_detected_unknown_without_its_column():
    proj = projections().drop(columns=["planted_detected"])
    assert corpus_basis_test(proj, K)["planted_detected"] is None
