"""Experiments side by side (corpus_weights.report.compare) on planted metrics: every claim of every experiment, in the
experiment's column, a claim one experiment lacks marked so, failing gates named."""
from __future__ import annotations

import json

import pytest

from corpus_weights.report.compare import comparison_rows, load_experiments, markdown_page


def metrics(name, conclusion, *, tokens=1000, patience=None, g1=True, extra_claim=False, moving=None):
    verdicts = [dict(id="corpus_basis", claim="The corpus basis explains 38.3 %.", conclusion=conclusion,
                     number="does not reproduce", ours=f"0.5 ({name})", reason=None if g1 else "G1 — under-trained",
                     still_moving=moving, still_moving_text="x")]
    if extra_claim:
        verdicts.append(dict(id="intervention", claim="The corpus gives the coordinates.", conclusion="supported",
                             number="—", ours="-0.4", reason=None))
    return dict(config=dict(experiment=name, n_layer=2, d_model=32, n_head=2, context=16, train_tokens=tokens,
                            patience=patience),
                verdicts=verdicts,
                gates={"G1": dict(passed=g1, reason=None if g1 else "under-trained: main-s0")},
                standing=[dict(val_loss=5.2, bigram_ce=5.6, below_bigram=True),
                          dict(val_loss=5.7, bigram_ce=5.6, below_bigram=False)],
                models={})


def test_every_claim_in_its_experiments_column():
    exps = {"default": metrics("default", "not demonstrated", g1=False),
            "reference": metrics("reference", "supported", tokens=3000, patience=4, extra_claim=True, moving=False)}
    rows = {r[""]: r for r in comparison_rows(exps)}
    basis = next(r for k, r in rows.items() if k.startswith("corpus_basis"))
    assert basis["default"].startswith("NOT DEMONSTRATED (failing G1)") and "(default)" in basis["default"]
    assert basis["reference"].startswith("SUPPORTED") and "settled over the last half" in basis["reference"]
    iv = next(r for k, r in rows.items() if k.startswith("intervention"))
    assert iv["default"] == "— (not in this experiment)" and iv["reference"].startswith("SUPPORTED")
    assert rows["gate G1"]["default"] == "FAIL: under-trained: main-s0" and rows["gate G1"]["reference"] == "pass"
    assert "early stopping (patience 4)" in rows["scale"]["reference"] and "≤ 3,000" in rows["scale"]["reference"]
    assert "1 of 2 below" in rows["validation loss (main seeds) vs the bigram count model"]["default"]
    page = markdown_page(exps)
    assert page.count("\n|") == len(rows) + 2  # header, rule, one line per row


def test_load_experiments_names_and_errors(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(metrics("default", "supported")))
    assert list(load_experiments([str(a), f"other={a}"])) == ["default", "other"]
    with pytest.raises(ValueError, match="two experiments named 'default'"):
        load_experiments([str(a), str(a)])
    bad = tmp_path / "b.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a run's metrics.json"):
        load_experiments([str(bad)])
    with pytest.raises(ValueError, match="cannot read"):
        load_experiments([str(tmp_path / "missing.json")])


@pytest.mark.workflow
def test_make_compare_reads_the_committed_studies_where_results_lack_them(tmp_path):
    """On a fresh clone only the default run is under results/: `make compare` takes the other studies' metrics.json
    from docs/results/ (written there by make reference / make note), and a study run here wins over its copy."""
    import shutil
    import subprocess

    from workflow_helpers import REPO

    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for rel in ("results/shakespeare/default/metrics.json", "results/shakespeare/note/metrics.json",
                "docs/results/note.metrics.json", "docs/results/reference.metrics.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").write_text("")
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "compare"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    command = next(line for line in out.splitlines() if "corpus_weights.report.compare" in line).split()
    assert command[3:7] == ["results/shakespeare/default/metrics.json", "docs/results/reference.metrics.json",
                            "results/shakespeare/note/metrics.json", "-o"], command
