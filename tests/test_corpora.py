"""A newcomer's own text: the workflow run from an empty directory with `--directory` and a two-line override,
then a second corpus in the same results tree. Each corpus keeps its models, analysis and report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_helpers import REPO, SNAKEMAKE

pytestmark = pytest.mark.slow


def run_from_outside(cwd: Path, project: Path, *configfiles: Path, dry: bool = False):
    """`snakemake -s <repo>/Snakefile --directory <project> ...`, started from a third directory."""
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(project), "--cores", "2",
           "results/report.html", *(["-n", "--quiet", "rules"] if dry else []),
           "--configfile", *map(str, configfiles)]
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


# What the corpora tests need of each run (its own results and report) with one model: no second seed, no control.
LEAN_RUN = "train: {seeds: [0]}\ncontrols: {shuffled: false}\n"


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpora")
    project, elsewhere = base / "project", base / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    text = (REPO / "tests/data/tiny_corpus.txt").read_text(encoding="utf-8")
    (project / "mine.txt").write_text(text, encoding="utf-8")
    (project / "theirs.txt").write_text("\n".join(reversed(text.splitlines())) + "\n", encoding="utf-8")
    for name in ("mine", "theirs"):  # the two-line override a user writes
        (project / f"{name}.yaml").write_text(f"corpus:\n  {{name: {name}, files: [{name}.txt]}}\n".replace(
            "corpus:\n  ", "corpus: "))
        assert len((project / f"{name}.yaml").read_text().splitlines()) <= 2
    (project / "lean.yaml").write_text(LEAN_RUN)
    procs = [run_from_outside(elsewhere, project, REPO / "config/tiny.yaml", project / "lean.yaml",
                              project / f"{name}.yaml") for name in ("mine", "theirs")]
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return project, elsewhere


def test_each_corpus_keeps_its_own_results_and_report(two_corpora):
    project, _ = two_corpora
    assert sorted(os.listdir(project / "results")) == ["metrics.json", "mine", "report.html", "theirs"]
    for name in ("mine", "theirs"):
        folder = project / "results" / name / "default"  # the default experiment of each corpus
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["corpus"]["name"] == name
        assert name in (folder / "report.html").read_text()
        assert (folder / "train/orig-s0/final.safetensors").is_file()
        # the run-time table lists this corpus's jobs only, every one of them found
        jobs = {(row["rule"], row["job"]) for row in metrics["benchmarks"]}
        assert ("tokenize", name) in jobs and not any(other in job for _, job in jobs
                                                      for other in {"mine", "theirs"} - {name})
    # the two corpora give different models (nothing of one was reused for the other)
    losses = [json.loads((project / "results" / n / "default/train/orig-s0/summary.json").read_text())["final_val_loss"]
              for n in ("mine", "theirs")]
    assert losses[0] != losses[1]


def test_top_level_report_is_the_configured_corpus(two_corpora):
    project, elsewhere = two_corpora
    top = json.loads((project / "results/metrics.json").read_text())
    assert top == json.loads((project / "results/theirs/default/metrics.json").read_text())
    # switching back to the first corpus plans only the copy of its (kept) report
    proc = run_from_outside(elsewhere, project, REPO / "config/tiny.yaml", project / "lean.yaml", project / "mine.yaml",
                            dry=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "current_report" in out and not any(f"\n{rule} " in out for rule in ("train", "tokenize", "report")), out


def test_default_config_is_merged_when_run_from_elsewhere(two_corpora):
    """With only the two-line override, the rest comes from config/config.yaml, found next to the Snakefile although
    the command starts in another directory: the dry run plans the default scale's models."""
    project, elsewhere = two_corpora
    proc = run_from_outside(elsewhere, project, project / "mine.yaml", dry=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    import re

    assert re.search(r"^train\s+3$", out, re.M), out  # the default config's two seeds and its shuffled control
    assert not any(elsewhere.iterdir())  # nothing written where the command was started
