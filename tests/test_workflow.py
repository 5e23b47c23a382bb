"""End-to-end: the real Snakemake workflow on the tiny config (tiny corpus, 2 layers, d=32), real training."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from workflow_helpers import make_workdir, planned_rules, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("e2e"))
    proc = snakemake(workdir, "--cores", "2", "results/report.html")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return workdir


def test_report_and_metrics(finished_run):
    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    html = (finished_run / "results/report.html").read_text()
    for heading in ["note's value", "ours, note protocol", "ours, corrected", "Verdict", "Parameter accounting",
                    "L_opt", "R²(K) curves", "Training", "data:image/png;base64,"]:
        assert heading in html, heading
    main = metrics["models"][metrics["main_label"]]
    assert set(metrics["models"]) == {"main-s0", "step0", "second_seed", "shuffled"}
    assert 0 <= main["corrected"]["projection_share"]["corpus_aligned"] <= 1
    assert len(main["note_protocol"]["qk_cosines"]) == 2
    assert metrics["K_list"] == [4, 8]
    assert len(metrics["verdicts"]) >= 4
    # The tiny corpus has fewer distinct words than vocab_size=300: V shrinks visibly.
    assert metrics["config"]["vocab_shrunk"] is True and metrics["config"]["vocab_size"] < 300
    assert "shrunk" in html
    # Verdict text is escaped: "p < 0.01" must not open a tag and swallow the rest of the sentence.
    assert "permutation null at p &lt; 0.01" in html
    # Training really happened: the loss fell from about log(V).
    log_loss = metrics["training"]["orig-s0"]["final_train_loss"]
    assert log_loss < np.log(metrics["config"]["vocab_size"])


def test_second_run_plans_nothing(finished_run):
    assert planned_rules(finished_run, "results/report.html") == {}


def test_adding_K_plans_only_projection_and_report(finished_run):
    write_config(finished_run, {"analysis": {"K": [4, 8, 12]}}, name="test.yaml")
    try:
        planned = planned_rules(finished_run, "results/report.html")
    finally:
        write_config(finished_run, {"analysis": {"K": [4, 8]}}, name="test.yaml")
    assert set(planned) == {"fit_projections", "report"}, planned
    assert planned["fit_projections"] == 4  # one per analysed model (main, step 0, second seed, shuffled)


def test_training_hyperparameter_reruns_train_not_corpus(finished_run):
    write_config(finished_run, {"train": {"lr": 0.001}}, name="test.yaml")
    try:
        planned = planned_rules(finished_run, "results/report.html")
    finally:
        write_config(finished_run, {"train": {"lr": 0.002}}, name="test.yaml")
    assert "train" in planned and "report" in planned, planned
    assert not {"prepare_corpus", "tokenize", "corpus_stats", "shuffle_tokens"} & set(planned), planned


def test_killed_training_resumes_bit_identical(finished_run, tmp_path):
    workdir = make_workdir(tmp_path / "resume")
    target = "results/train/orig-s0/final.safetensors"
    crashed = snakemake(workdir, "--cores", "2", target, env={"CW_CRASH_AFTER_STEP": "40"})
    assert crashed.returncode != 0
    assert not (workdir / target).exists()
    resumed = snakemake(workdir, "--cores", "2", target)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads((workdir / "results/train/orig-s0/summary.json").read_text())
    assert summary["resumed_from_step"] == 40
    reference = load_file(str(finished_run / target))
    again = load_file(str(workdir / target))
    assert reference.keys() == again.keys()
    for key in reference:
        assert np.array_equal(reference[key], again[key]), key
