"""Bad configuration and bad corpus input stop the run with a message naming the problem."""
from __future__ import annotations

import pytest

from workflow_helpers import make_workdir, snakemake

pytestmark = pytest.mark.workflow  # every test here plans or runs the workflow


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
        ({"analysis": {"top_n": 500}}, "analysis.top_n"),  # tiny's vocabulary is 300
        ({"analysis": {"map_null_draws": 50}}, "map_null_draws"),  # p < 0.01 would be unreachable
        ({"controls": {"seed": 1}}, "controls"),  # removed key: every control runs at the main budget now
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


def test_all_cross_key_errors_in_one_message(tmp_path):
    workdir = make_workdir(tmp_path, {"analysis": {"K": [4, 40], "top_n": 500}, "model": {"n_head": 5}})
    proc = snakemake(workdir, "-n", "results/report.html", timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for key in ("analysis.K", "analysis.top_n", "model.n_head"):
        assert key in output, (key, output[-3000:])


def test_dependent_defaults_follow_the_user_keys(tmp_path):
    """top_n and headline_K unset: they follow V and d instead of stopping the run."""
    import yaml

    workdir = make_workdir(tmp_path, {"tokenizer": {"vocab_size": 40}, "analysis": {"K": [2, 4, 6]}})
    cfg = yaml.safe_load((workdir / "config/test.yaml").read_text())
    del cfg["analysis"]["top_n"], cfg["analysis"]["headline_K"]
    (workdir / "config/test.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "-n", "results/report.html", timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_note_scale_config_plans_the_full_dag(tmp_path):
    """config/note.yaml (the note's architecture) merged over the default plans every rule."""
    from workflow_helpers import planned_rules

    workdir = make_workdir(tmp_path, base_config="config/config.yaml")
    planned = planned_rules(workdir, "results/report.html", configfile="config/note.yaml")
    assert planned["train"] == 3 and planned["fit_projections"] == 4 * 5 and planned["report"] == 1
    for rule in ("prepare_corpus", "tokenize", "corpus_stats", "corpus_ladder", "extract_weights", "align",
                 "measure"):
        assert planned.get(rule), rule


def test_missing_configfile_is_named_in_the_last_line(tmp_path):
    """Snakemake reads --configfile before the workflow, so the workflow cannot word this error; README.md documents
    what the user sees: the last line names the file."""
    workdir = make_workdir(tmp_path)
    proc = snakemake(workdir, "-n", "results/report.html", configfile="my-typo.yaml", timeout=120)
    assert proc.returncode != 0
    last = proc.stdout.strip().splitlines()[-1]  # Snakemake prints the traceback on stdout
    assert "FileNotFoundError" in last and "my-typo.yaml" in last, last


def test_misspelled_top_level_key_is_named(tmp_path):
    workdir = make_workdir(tmp_path)
    (workdir / "typo.yaml").write_text("analysys:\n  K: [4, 8]\n")
    proc = snakemake(workdir, "-n", "results/report.html", "--configfile", "config/test.yaml", "typo.yaml",
                     configfile=None, timeout=120)
    assert proc.returncode != 0
    assert "analysys" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_three_schema_mistakes_in_one_short_message(tmp_path):
    """A misspelt key, a misspelt nested key and a wrong type: all three in one run, each with its key, in ≤ 10 lines
    of the error (no schema dump), misspellings with the key they were meant to be."""
    import yaml

    workdir = make_workdir(tmp_path)
    cfg = yaml.safe_load((workdir / "config/test.yaml").read_text())
    cfg["model"]["n_heads"] = cfg["model"].pop("n_head")
    cfg["train"]["tokens"] = "20k"
    cfg["analysys"] = {"K": [4]}
    (workdir / "config/test.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "-n", "results/report.html", timeout=120)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    start = output.index("problem(s) in the configuration")
    message = output[start:].splitlines()
    block = message[:1 + next(i for i, line in enumerate(message[1:]) if not line.startswith("  ") or "File" in line)]
    assert len(block) <= 10, block
    text = "\n".join(block)
    assert "model.n_heads: unknown key; did you mean 'model.n_head'?" in text
    assert "analysys: unknown key; did you mean 'analysis'?" in text
    assert "train.tokens: '20k' is not valid" in text
    assert "properties" not in output  # no schema dump


@pytest.mark.parametrize("overrides, text, key", [
    ({"train": {"tokens": 100}}, None, "train.tokens"),                      # less than one batch: config time
    ({"model": {"context": 4096}, "train": {"tokens": 70000}}, None, "model.context"),  # found by the train job
    ({"corpus": {"files": ["nine.txt"]}, "tokenizer": {"vocab_size": 5000}}, "to be or not to be that is the\n",
     "model.d_model"),                                                          # a 9-word text: found by its jobs
])
def test_degenerate_inputs_stop_without_a_report(tmp_path, overrides, text, key):
    workdir = make_workdir(tmp_path, overrides)
    if text:
        (workdir / "nine.txt").write_text(text)
    proc = snakemake(workdir, "--cores", "2", "results/report.html", timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # the first job to need it names what the corpus is too small for (with several, whichever job runs first)
    assert key in output or "the corpus is too small for this configuration" in output, output[-3000:]
    assert not (workdir / "results/report.html").exists()
    assert not (workdir / "results/tiny/default/metrics.json").exists()
    # a second run knows the corpus: stops before any job, every problem in one message
    if (workdir / "results/tiny/default/tokens/meta.json").exists():
        again = snakemake(workdir, "-n", "results/report.html", timeout=120)
        assert again.returncode != 0 and key in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
