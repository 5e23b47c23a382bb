"""Experiments never overwrite each other (issue 21, item 1): every result path is results/<corpus>/<experiment>/...,
results/report.html is a copy of the configured experiment's, and switching back and forth recomputes nothing but
that copy. Two experiments on the tiny config run for real; the note's and the intervention's configs after the
default are checked on their planned DAG (no job runs)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from test_dag_wiring import DUMP
from workflow_helpers import deep_update, finished_tiny_run, make_workdir, planned_rules, snakemake

SECOND = {"experiment": "short", "train": {"tokens": 8000}}  # another budget: other models, in their own folder


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory):
    """The tiny config as the default experiment, then the experiment `short` (a smaller budget) in the same tree."""
    workdir = finished_tiny_run(tmp_path_factory, "experiments")  # the default experiment, already run
    cfg = deep_update(yaml.safe_load((workdir / "config/test.yaml").read_text()), SECOND)
    (workdir / "config/short.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    procs = {"short": snakemake(workdir, "--cores", "2", "results/report.html", configfile="config/short.yaml")}
    for proc in procs.values():
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return workdir, procs


@pytest.mark.slow
def test_each_experiment_keeps_its_own_models_and_report(two_experiments):
    workdir, procs = two_experiments
    assert sorted(os.listdir(workdir / "results")) == ["metrics.json", "report.html", "tiny"]
    assert sorted(os.listdir(workdir / "results/tiny")) == ["default", "short"]
    budgets = {"default": 12000, "short": 8000}
    for name, tokens in budgets.items():
        folder = workdir / "results/tiny" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["config"]["experiment"] == name and metrics["config"]["train_tokens"] == tokens
        html = (folder / "report.html").read_text()
        assert f"experiment {name}</title>" in html and f"<strong>Experiment</strong> {name}." in html
        for run in ("orig-s0", "orig-s1", "shuffled-s0"):
            assert (folder / f"train/{run}/final.safetensors").is_file(), (name, run)
            assert json.loads((folder / f"train/{run}/summary.json").read_text())["train_config"]["tokens"] == tokens
        # the run-time table lists this experiment's jobs, read from its own benchmark files
        jobs = {(row["rule"], row["job"]) for row in metrics["benchmarks"]}
        assert ("tokenize", "tiny") in jobs and ("train", "orig-s0") in jobs, (name, jobs)
        assert (folder / "logs/train/orig-s0.log").is_file() and (folder / "benchmarks/train/orig-s0.tsv").is_file()
    # the two experiments trained different models; the prepared text is the corpus's, made once for both
    losses = [json.loads((workdir / f"results/tiny/{n}/train/orig-s0/summary.json").read_text())["final_val_loss"]
              for n in budgets]
    assert losses[0] != losses[1]
    assert sorted(os.listdir(workdir / "resources/corpus")) == ["tiny.manifest.json", "tiny.txt"]
    second = procs["short"].stdout + procs["short"].stderr
    assert not re.search(r"^prepare_corpus\s+\d+$", second, re.M) and re.search(r"^train\s+3$", second, re.M), second


@pytest.mark.slow
def test_top_level_report_is_the_configured_experiment_and_switching_copies_only(two_experiments):
    workdir, _ = two_experiments

    def top_is(name):
        assert json.loads((workdir / "results/metrics.json").read_text()) == json.loads(
            (workdir / f"results/tiny/{name}/metrics.json").read_text())
        links = re.findall(r'href="([^"#:]+\.csv)"', (workdir / "results/report.html").read_text())
        assert len(links) == 4 and all(link.startswith(f"tiny/{name}/report_files/") for link in links), links
        assert all((workdir / "results" / link).is_file() for link in links)

    top_is("short")
    # switching back to the default experiment plans only the copy of its (kept) report, and makes only that
    assert planned_rules(workdir, "results/report.html") == {"current_report": 1}
    proc = snakemake(workdir, "--cores", "2", "results/report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    top_is("default")
    # and switching forth again likewise
    assert planned_rules(workdir, "results/report.html", configfile="config/short.yaml") == {"current_report": 1}


def dag_outputs(workdir, *configfiles) -> list[dict]:
    """Every job of the DAG of results/report.html (forced: as if nothing existed) under these config files, merged
    over config/config.yaml as `--configfile` merges them."""
    out = workdir / "plan.json"
    proc = subprocess.run([sys.executable, "-c", DUMP, str(workdir), str(out), *configfiles], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())["jobs"]


@pytest.mark.parametrize("configfile, experiment", [("config/note.yaml", "note"),
                                                    ("config/intervention.yaml", "intervention"),
                                                    ("config/reference.yaml", "reference")])
@pytest.mark.workflow
def test_another_config_after_the_default_writes_only_its_own_folder(tmp_path, configfile, experiment):
    """Running config/note.yaml (or config/intervention.yaml) after the default leaves both reports and both sets of
    models in place: its plan trains its own models under results/shakespeare/<its name>/, and no file of the default
    run (results/shakespeare/default/) is an output, a log or a training state of any of its jobs."""
    workdir = make_workdir(tmp_path / "w", base_config="config/config.yaml")
    default_jobs = dag_outputs(workdir, "config/config.yaml")
    jobs = dag_outputs(workdir, "config/config.yaml", configfile)
    own, default = f"results/shakespeare/{experiment}/", "results/shakespeare/default/"
    shared = {"results/report.html", "results/metrics.json", "resources/corpus/shakespeare.txt",
              "resources/corpus/shakespeare.manifest.json"}  # the top-level copy and the corpus's prepared text
    for job_list, folder in ((default_jobs, default), (jobs, own)):
        written = [p for j in job_list for p in [*j["output"].values(), *j["log"]]
                   for p in ([p] if isinstance(p, str) else p)]
        assert written and all(p in shared or p.startswith(folder) for p in written), \
            [p for p in written if p not in shared and not p.startswith(folder)]
    train = [j for j in jobs if j["rule"] == "train"]
    assert len(train) >= 3 and all(j["output"]["final"].startswith(own + "train/") for j in train)
    assert all(j["params"]["state_dir"].startswith(own + ".train_state/") for j in train)
    read = [p for j in jobs for p in j["input"].values() for p in ([p] if isinstance(p, str) else p)]
    assert not [p for p in read if p.startswith(default)]
    current = next(j for j in jobs if j["rule"] == "current_report")
    assert current["input"]["html"] == own + "report.html"
    if experiment == "reference":  # early stopping for the models of the real text; the shuffled control trains on
        patience = {j["wildcards"]["run"]: j["params"]["train"]["patience"] for j in train}
        assert patience.pop("shuffled-s0") is None
        assert len(patience) == 8 and set(patience.values()) == {4}, patience  # 2 seeds x 4 initialisations

