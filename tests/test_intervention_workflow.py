"""End-to-end: the tiny config with every initialisation variant produces the report's Intervention section."""
from __future__ import annotations

import json

import pytest

from workflow_helpers import finished_tiny_run, snakemake, write_config

pytestmark = pytest.mark.slow
VARIANTS = ["random", "corpus", "corpus_permuted", "shuffled_corpus"]


def test_intervention_section_on_the_tiny_run(tmp_path_factory):
    workdir = finished_tiny_run(tmp_path_factory, "iv")  # the baseline runs trained once; the variants added here
    write_config(workdir, {"experiments": {"init": VARIANTS}})
    proc = snakemake(workdir, "--cores", "2", "results/report.html")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    metrics = json.loads((workdir / "results/metrics.json").read_text())
    iv = metrics["intervention"]
    assert iv["variants"] == VARIANTS and iv["seeds"] == [0, 1]
    for v in VARIANTS[1:]:
        d = iv["differences"]["final_val_loss"][v]
        assert d["n"] == 2 and d["ci95"] is not None  # paired by seed, with an interval
    assert len(iv["runs"]) == 8 and all("snapshot_000" in r["measures"]["aligned_share_by_snapshot"]
                                        for r in iv["runs"])
    verdict = next(v for v in metrics["verdicts"] if v["id"] == "intervention")
    assert verdict["status"] in ("supported", "contradicted", "not demonstrated", "withheld")
    assert (verdict["status"] == "withheld") == (not iv["gate"]["passed"])
    html = (workdir / "results/report.html").read_text()
    assert "Intervention: does starting in the corpus" in html and "corpus_permuted" in html
    # the corpus-initialised run really started from the corpus embedding, the random one did not
    init = json.loads((workdir / "results/tiny/default/train/corpus-s0/summary.json").read_text())["train_config"]
    assert init["init_embedding"].endswith("results/tiny/default/init/corpus.npy")
    assert json.loads((workdir / "results/tiny/default/train/orig-s0/summary.json").read_text())["train_config"][
        "init_embedding"] is None


def test_results_page_needs_the_experiment():
    from corpus_weights.report.results_page import intervention_markdown

    with pytest.raises(ValueError, match="intervention"):
        intervention_markdown({"config": {}, "corpus": {}})
