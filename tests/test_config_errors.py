"""Bad configuration and bad corpus input stop the run with a message naming the problem."""
from __future__ import annotations

import pytest

from workflow_helpers import make_workdir, snakemake


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"analysis": {"K": [4, 32]}}, "analysis.K"),
        ({"train": {"tokens": 0}}, "tokens"),
        ({"train": {"tokens": -5}}, "tokens"),
        ({"corpus": {"files": ["no/such/*.txt"]}}, "corpus.files"),
        ({"tokenizer": {"kind": "sentencepiece"}}, "kind"),
        ({"model": {"n_head": 5}}, "model.n_head"),
        ({"analysis": {"headline_K": 5}}, "analysis.headline_K"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, overrides, expected):
    workdir = make_workdir(tmp_path, overrides)
    proc = snakemake(workdir, "-n", "results/report.html", timeout=120)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert expected in output, output[-3000:]
    assert not (workdir / "results").exists()


def test_empty_corpus_file(tmp_path):
    workdir = make_workdir(tmp_path, {"corpus": {"files": ["data/empty.txt"]}})
    (workdir / "data").mkdir()
    (workdir / "data/empty.txt").write_text("")
    proc = snakemake(workdir, "-n", "results/report.html", timeout=120)
    assert proc.returncode != 0
    assert "data/empty.txt" in proc.stdout + proc.stderr and "empty" in proc.stdout + proc.stderr


def test_non_utf8_corpus_names_file(tmp_path):
    workdir = make_workdir(tmp_path, {"corpus": {"files": ["data/*.txt"]}})
    (workdir / "data").mkdir()
    (workdir / "data/good.txt").write_text("to be or not to be\n" * 50)
    (workdir / "data/latin1.txt").write_bytes("caf\xe9 na\xefve\n".encode("latin-1"))
    proc = snakemake(workdir, "--cores", "1", "resources/corpus/tiny.txt", timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "latin1.txt" in output and "UTF-8" in output, output[-3000:]
    assert not (workdir / "resources/corpus/tiny.txt").exists()
