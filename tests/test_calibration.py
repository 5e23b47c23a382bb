"""Verdict calibration through the pipeline (benchmarks/calibrate.py, config key `calibration`, rules plant_weights
and validation_loss): the planned DAG of a calibration run, the default DAG left as it was, the calibration table's
bookkeeping, and (slow) planted models through the real workflow reaching the conclusions they were built for."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from test_dag_wiring import DUMP
from workflow_helpers import REPO, make_workdir, planned_rules, write_config

spec = importlib.util.spec_from_file_location("calibrate", REPO / "benchmarks" / "calibrate.py")
calibrate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate)

T = "results/tiny/default"
# The jobs the default and the tiny config planned before runs could come from a file (and still must).
TINY_JOBS = {"prepare_corpus": 1, "tokenize": 1, "corpus_ladder": 1, "corpus_stats": 1, "shuffle_tokens": 1,
             "train": 3, "extract_weights": 6, "align": 4, "attention": 4, "measure": 4, "fit_projections": 8,
             "trajectory": 3, "metrics": 1, "report": 1, "current_report": 1}  # snapshot 0 and 100 of each trained run
# (the analysed ones and ΔW's initial weights; the trajectory reads its other snapshots from the model files)
DEFAULT_JOBS = {**TINY_JOBS, "fit_projections": 20}  # 5 K


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("calibration-dag"))


@pytest.mark.workflow
def test_default_and_tiny_config_plan_what_they_planned_before(workdir):
    assert planned_rules(workdir, "results/report.html") == TINY_JOBS
    assert planned_rules(workdir, "results/report.html", configfile=None) == DEFAULT_JOBS
    write_config(workdir, {"calibration": {"recipe": None}})  # the key present but off: the same plan
    try:
        assert planned_rules(workdir, "results/report.html") == TINY_JOBS
    finally:
        (workdir / "config/test.yaml").write_text((REPO / "config/tiny.yaml").read_text())


def dump_plan(workdir, calibration):
    write_config(workdir, {"calibration": calibration})
    try:
        out = workdir / "plan.json"
        proc = subprocess.run([sys.executable, "-c", DUMP, str(workdir), str(out)], cwd=workdir, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return json.loads(out.read_text())["jobs"]
    finally:
        (workdir / "config/test.yaml").write_text((REPO / "config/tiny.yaml").read_text())


@pytest.mark.workflow
def test_a_planted_run_is_a_run_whose_weights_come_from_a_rule(workdir):
    jobs = dump_plan(workdir, {"recipe": "shuffled_embedding", "seed": 3})
    planted = {f"planted_shuffled_embedding_d3-s{s}": s for s in (0, 1)}
    by_rule = {}
    for j in jobs:
        by_rule.setdefault(j["rule"], []).append(j)
    # no training beyond the recipe's base runs and the controls; the planted weights come from plant_weights
    assert {j["wildcards"]["run"] for j in by_rule["train"]} == {"orig-s0", "orig-s1", "shuffled-s0"}
    assert {j["wildcards"]["run"] for j in by_rule["extract_weights"]} == {"orig-s0", "orig-s1", "shuffled-s0"}
    plant = {j["wildcards"]["run"]: j for j in by_rule["plant_weights"]}
    assert set(plant) == set(planted)
    for run, seed in planted.items():
        job = plant[run]
        assert job["input"]["base"] == f"{T}/weights/orig-s{seed}/snapshot_100.npz"
        assert job["input"]["base_init"] == f"{T}/weights/orig-s{seed}/snapshot_000.npz"
        assert job["input"]["shuffled_embedding"] == f"{T}/init/shuffled_corpus.npy"
        assert "bigrams" not in job["input"] and "covariance" not in job["input"]  # only what the recipe reads
        assert job["params"]["plant"] == dict(recipe="shuffled_embedding", draw=3, seed=seed, base=f"orig-s{seed}",
                                              K=8, top_n=100)
        assert sorted(job["output"].values()) == sorted(f"{T}/weights/{run}/snapshot_{p}.{ext}"
                                                        for p in ("000", "100") for ext in ("npz", "json"))
    assert [j["wildcards"]["variant"] for j in by_rule["init_embedding"]] == ["shuffled_corpus"]
    # the validation loss of a planted model comes from rule validation_loss, never from a train log
    measure = {(j["wildcards"]["run"], j["wildcards"]["snap"]): j for j in by_rule["measure"]}
    for run, seed in planted.items():
        m = measure[(run, "snapshot_100")]
        assert m["input"]["validation"] == f"{T}/analysis/{run}/snapshot_100/validation.json"
        assert "train_log" not in m["input"]
        assert m["params"]["identity"] == dict(label=f"main-s{seed}", role="main", run=run, snapshot="snapshot_100",
                                               seed=seed, tokens=12000, data="orig", init="random", source="file",
                                               recipe="shuffled_embedding", base=f"orig-s{seed}", draw=3)
    assert measure[("orig-s0", "snapshot_000")]["params"]["identity"]["role"] == "step0"
    assert measure[("orig-s0", "snapshot_000")]["input"]["train_log"] == f"{T}/train/orig-s0/log.parquet"
    assert measure[("shuffled-s0", "snapshot_100")]["params"]["identity"]["role"] == "shuffled"
    assert {(j["wildcards"]["run"], j["wildcards"]["snap"]) for j in by_rule["validation_loss"]} == {
        (run, "snapshot_100") for run in planted}
    # ΔW of a planted model is taken against its base run's step 0 (copied by plant_weights)
    for j in by_rule["fit_projections"]:
        if j["wildcards"]["run"] in planted:
            assert j["input"]["init"] == f"{T}/weights/{j['wildcards']['run']}/snapshot_000.npz"
    # metrics: the planted runs are the analysed mains; the train logs are the trained runs' only
    (metrics,) = by_rule["metrics"]
    assert [m["run"] for m in metrics["params"]["models"] if m["role"] == "main"] == list(planted)
    assert metrics["params"]["runs"] == ["orig-s0", "orig-s1", "shuffled-s0"]
    assert metrics["input"]["train_logs"] == [f"{T}/train/{r}/log.parquet" for r in ("orig-s0", "orig-s1", "shuffled-s0")]
    assert not any("/train/planted" in str(v) for j in jobs for v in j["input"].values())
    bench = {(b["rule"], b["job"]) for b in metrics["params"]["benchmarks"]}
    assert {("plant_weights", run) for run in planted} <= bench and ("train", "planted_shuffled_embedding_d3-s0") not in bench


@pytest.mark.workflow
def test_a_recipe_without_corpus_inputs_plans_no_more_than_its_base(workdir):
    write_config(workdir, {"calibration": {"recipe": "random", "seed": 0}})
    try:
        planned = planned_rules(workdir, "results/report.html")
    finally:
        (workdir / "config/test.yaml").write_text((REPO / "config/tiny.yaml").read_text())
    # the planted mains come from files: only the shuffled control has a trajectory (the base runs' 000 and 100 and
    # the shuffled control's are extracted as before)
    assert planned == {**TINY_JOBS, "plant_weights": 2, "validation_loss": 2, "trajectory": 1}


@pytest.mark.workflow
def test_a_misspelt_recipe_is_a_config_error(workdir):
    from workflow_helpers import snakemake

    write_config(workdir, {"calibration": {"recipe": "corpus_spam"}})
    try:
        proc = snakemake(workdir, "-n", "results/report.html")
    finally:
        (workdir / "config/test.yaml").write_text((REPO / "config/tiny.yaml").read_text())
    assert proc.returncode != 0 and "calibration" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- the calibration table's bookkeeping

def verdict(claim, ungated, gated="withheld"):
    return {"id": claim, "number": "reproduces", "conclusion": gated, "conclusion_ungated": ungated}


def case(**ungated):
    claims = {"corpus_basis": "not demonstrated", "attention": "not demonstrated", "l0_alignment": "contradicted",
              "depth": "not demonstrated", "norm_matched": "not demonstrated", **ungated}
    return calibrate.summarise({"metrics": {"verdicts": [verdict(c, u) for c, u in claims.items()],
                                            "gates": {"G1": {"passed": False}, "G2": {"passed": True}}}})


def test_conclusions_come_from_one_place_with_the_status_fallback():
    assert calibrate.conclusions(verdict("x", "supported")) == ("withheld", "supported")
    assert calibrate.conclusions({"id": "x", "status": "holds"}) == ("supported", "supported")
    assert calibrate.conclusions({"id": "x", "status": "withheld"}) == ("withheld", "n/a")
    assert calibrate.DETECTION == {"corpus_basis": "supported", "attention": "contradicted",
                                   "l0_alignment": "supported"}


def test_expectations_catch_a_missed_planted_case_and_a_false_positive():
    good = {"corpus_span": case(corpus_basis="supported"), "routing_qk": case(attention="contradicted"),
            "l0_aligned": case(l0_alignment="supported"), "random": case(), "trained": case(corpus_basis="supported")}
    noise = [case() for _ in range(20)]
    assert calibrate.expectation_failures(good, noise) == []
    missed = {**good, "corpus_span": case()}
    assert calibrate.expectation_failures(missed, noise) == [
        "corpus_span: corpus_basis is 'not demonstrated', built to be 'supported'"]
    false_pos = {**good, "random_qk": case(attention="contradicted")}
    assert calibrate.expectation_failures(false_pos, noise) == ["random_qk: attention is 'contradicted' (a false positive)"]
    one_in_20 = [case(l0_alignment="supported")] + noise[1:]
    assert calibrate.expectation_failures(good, one_in_20) == []  # 5 %: within the bound
    two_in_20 = [case(l0_alignment="supported")] * 2 + noise[2:]
    assert calibrate.expectation_failures(good, two_in_20) == [
        "noise: l0_alignment reaches 'supported' in 2 of 20 noise models"]
    results = {k: {"seconds": 30.0, "jobs": {}} for k in good}
    text = calibrate.render(good, noise, results, [{"seconds": 20.0, "jobs": {"plant_weights": 2}}] * 20,
                            dict(date="d", commit="c", base_config="config/tiny.yaml", cores=2, first_case="trained",
                                 first_seconds=90.0, total_seconds=600.0, problems=[]))
    assert "| corpus_basis | **supported** ✓ · gated: withheld | **not demonstrated** ✓ · gated: withheld |" in text
    assert "| 0 / 20 | 0% |" in text


# ----------------------------------------------------------------------------- through the real workflow

@pytest.mark.slow
def test_planted_models_reach_the_conclusions_they_were_built_for(tmp_path):
    """Tiny config, four recipes through the workflow's own rules (the trained base models shared): corpus_span,
    routing_qk and l0_aligned (each true by construction for one claim) and random (false for every claim). Fails when
    a decision rule is inverted (docs/calibration.md names the one tried)."""
    workdir = calibrate.copy_workflow(tmp_path / "w", "config/tiny.yaml")
    summaries = {}
    for recipe in ("corpus_span", "routing_qk", "l0_aligned", "random"):
        summaries[recipe] = calibrate.summarise(calibrate.run_case(workdir, recipe, 0, 2, T))
    assert calibrate.expectation_failures(summaries, []) == [], summaries
    assert summaries["corpus_span"]["claims"]["corpus_basis"]["ungated"] == "supported"
    assert summaries["routing_qk"]["claims"]["attention"]["ungated"] == "contradicted"
    assert summaries["l0_aligned"]["claims"]["l0_alignment"]["ungated"] == "supported"
    for claim, detection in calibrate.DETECTION.items():
        assert summaries["random"]["claims"][claim]["ungated"] != detection, claim


def test_calibration_runs_in_the_base_configs_experiment_folder():
    """Every case runs in one folder, results/<corpus>/<experiment> of the base config, so the trained models are
    shared by all cases."""
    import yaml

    assert calibrate.results_folder(yaml.safe_load((REPO / "config/tiny.yaml").read_text())) == T
    assert calibrate.results_folder({"corpus": {"name": "x"}, "experiment": "y"}) == "results/x/y"
