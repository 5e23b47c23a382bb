"""Every rule's code inputs are what its script imports, so editing a library module reruns exactly its users.

The expected sets are computed here independently of the workflow's own helper (`script_code` in common.smk, which
reads the sources with `ast`): with the standard library's `modulefinder`, run over each rule's script with only the
library on its path. The declared sets are read from a Snakemake dry run, and the planned jobs after an edit from
Snakemake's own planner, in a temporary copy whose library (a copy of src/) is the one Snakemake imports.
"""
from __future__ import annotations

import modulefinder
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from workflow_helpers import REPO, make_workdir, snakemake

pytestmark = pytest.mark.workflow  # every test here plans or runs the workflow

# intervention on (rules init_embedding, intervention); with calibration on too (plant_weights, validation_loss)
# every rule of the workflow but import_checkpoint is in the DAG of results/report.html (a checkpoint run's DAG has it)
INTERVENTION = {"experiments": {"init": ["random", "corpus"]}}
EVERY_RULE = {**INTERVENTION, "calibration": {"recipe": "corpus_span"}}
TARGET = "results/report.html"
PACKAGE = "corpus_weights"
# Package data each rule's modules read (not visible to an import graph): the report's page template.
EXPECTED_DATA = {"report": {"report/templates/report.html"}}
# The leaf: imported by no library module, only by scripts (`from corpus_weights.corpus.tokenizing import ...`).
LEAF = "corpus/tokenizing.py"
# Rules whose scripts import the leaf only for `special_token_ids` (the stale-cache bug: lib("analysis")
# and lib("intervention") never reached it).
LEAF_ONLY_THROUGH_SCRIPT = {"align", "measure", "attention", "intervention"}
# The rules that make the token files; frozen in the second half of the leaf test.
TOKEN_STAGE = {"prepare_corpus", "tokenize", "shuffle_tokens"}


def workdir_with_library(dest: Path, overrides: dict) -> tuple[Path, dict]:
    """A workflow copy with its own copy of the library, imported by Snakemake through PYTHONPATH."""
    workdir = make_workdir(dest, overrides)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return workdir, {"PYTHONPATH": str(workdir / "src")}


def rule_scripts(workdir: Path) -> dict[str, Path]:
    """{rule: script path} read from the rule files' `script:` directives."""
    scripts = {}
    for smk in sorted((workdir / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M)
        for block in blocks:
            name = re.match(r"rule (\w+):", block)
            script = re.search(r"^    script:\s*\n\s*\"([^\"]+)\"", block, flags=re.M)
            if name:
                assert script, f"rule {name.group(1)} runs no script"
                scripts[name.group(1)] = (smk.parent / script.group(1)).resolve()
    return scripts


def imported_library_files(script: Path, library: Path) -> set[Path]:
    """Library files the script imports, transitively (modulefinder, with only the library on the path)."""
    finder = modulefinder.ModuleFinder(path=[str(library.parent)])
    finder.run_script(str(script))
    return {Path(m.__file__).resolve() for name, m in finder.modules.items()
            if (name == PACKAGE or name.startswith(PACKAGE + ".")) and m.__file__}


def dry_run_jobs(workdir: Path, env: dict, *args: str, configfile="config/test.yaml") -> list[dict]:
    """Every planned job of a dry run: rule, input files, reason."""
    proc = snakemake(workdir, TARGET, "-n", *args, env=env, timeout=300, configfile=configfile)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if m := re.match(r"rule (\w+):$", line):
            jobs.append(dict(rule=m.group(1), input=[], reason=""))
        elif jobs and line.startswith("    input: "):
            jobs[-1]["input"] = line[len("    input: "):].split(", ")
        elif jobs and line.startswith("    reason: "):
            jobs[-1]["reason"] = line[len("    reason: "):]
    return jobs


def rule_graph(workdir: Path, env: dict) -> tuple[set[str], set[tuple[str, str]]]:
    """The rules in the DAG of TARGET and the edges between them (producer, consumer)."""
    proc = snakemake(workdir, TARGET, "--rulegraph", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = dict(re.findall(r'(\d+)\[label = "(\w+)"', proc.stdout))
    return set(names.values()), {(names[a], names[b]) for a, b in re.findall(r"(\d+) -> (\d+)", proc.stdout)}


def downstream_closure(rules: set[str], edges: set[tuple[str, str]]) -> set[str]:
    closed = set(rules)
    while new := {b for a, b in edges if a in closed} - closed:
        closed |= new
    return closed


def checkpoint_config(workdir: Path) -> list[str]:
    """Config files of a checkpoint run (rule import_checkpoint is planned only there, and a checkpoint run trains
    nothing): a model in this workflow's own format with the tiny corpus's tokenizer beside it."""
    import yaml

    from corpus_weights.corpus.tokenizing import text_blocks, train_tokenizer
    from corpus_weights.model.gpt import GPT, GPTConfig
    from corpus_weights.model.weights import save_model_safetensors

    tok, info = train_tokenizer(text_blocks(workdir / "tests/data/tiny_corpus.txt"), "word", 300)
    (workdir / "ckpt").mkdir()
    tok.save(str(workdir / "ckpt" / "tokenizer.json"))
    save_model_safetensors(GPT(GPTConfig(vocab_size=info["vocab_size"], n_layer=1, d_model=16, n_head=2, context=8)),
                           workdir / "ckpt" / "model.safetensors")
    (workdir / "config" / "ckpt.yaml").write_text(yaml.safe_dump(
        {"experiment": "ckpt", "model": {"source": "checkpoint", "path": "ckpt/model.safetensors",
                                         "format": "corpus-weights"}}))
    return ["config/tiny.yaml", "config/ckpt.yaml"]


def test_every_rule_declares_exactly_what_its_script_imports(tmp_path):
    workdir, env = workdir_with_library(tmp_path / "wd", EVERY_RULE)
    library = workdir / "src" / PACKAGE
    scripts = rule_scripts(workdir)
    jobs = dry_run_jobs(workdir, env) + dry_run_jobs(workdir, env, configfile=checkpoint_config(workdir))
    assert {job["rule"] for job in jobs} == set(scripts), "every rule must be in these DAGs to be checked"
    declared_data = set()
    for job in jobs:
        declared = {Path(f).resolve() for f in job["input"] if Path(f).is_absolute()}
        declared = {f for f in declared if f.is_relative_to(library)}
        expected = imported_library_files(scripts[job["rule"]], library)
        assert {f for f in declared if f.suffix == ".py"} == expected, job["rule"]
        data = {str(f.relative_to(library)) for f in declared if f.suffix != ".py"}
        assert data == EXPECTED_DATA.get(job["rule"], set()), job["rule"]
        declared_data |= data
    # no package data file goes undeclared
    shipped = {str(p.relative_to(library)) for p in library.rglob("*")
               if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert shipped <= declared_data


def test_editing_a_leaf_module_plans_exactly_its_dependent_rules(tmp_path):
    workdir, env = workdir_with_library(tmp_path / "wd", INTERVENTION)
    library = workdir / "src" / PACKAGE
    scripts = rule_scripts(workdir)
    rules, edges = rule_graph(workdir, env)
    users = {rule for rule in rules if (library / LEAF).resolve() in imported_library_files(scripts[rule], library)}
    assert LEAF_ONLY_THROUGH_SCRIPT <= users, users
    # every output present and up to date without running anything: empty files, all of one mtime, later than
    # every input (Snakemake reruns a job only for an input strictly newer than an output)
    proc = snakemake(workdir, TARGET, "--detailed-summary", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = [line.split("\t")[0] for line in proc.stdout.splitlines()[1:] if "\t" in line]
    assert len(outputs) > 50
    now = time.time()
    for out in outputs:
        (workdir / out).parent.mkdir(parents=True, exist_ok=True)
        (workdir / out).touch()
        os.utime(workdir / out, (now, now))
    assert dry_run_jobs(workdir, env) == []

    leaf = library / LEAF
    leaf.write_text(leaf.read_text() + "\n# an edit\n")
    later = now + 5
    os.utime(leaf, (later, later))

    # The whole DAG: the leaf's users and everything downstream of them, nothing else.
    assert {job["rule"] for job in dry_run_jobs(workdir, env)} == downstream_closure(users, edges)

    # The token stage frozen (its outputs taken as given): the analysis rules must rerun because of the leaf
    # itself, not merely because tokenize reran above them.
    allowed = sorted(set(scripts) - TOKEN_STAGE)
    jobs = dry_run_jobs(workdir, env, "--allowed-rules", *allowed)
    # every user's job declares the leaf as an input, and reruns because of it; Snakemake names the leaf in the
    # reason of every user that reads no other user's outputs (trajectory reads align's: its reason names those)
    declared = {job["rule"] for job in jobs if str(leaf) in job["input"]}
    assert declared == users - TOKEN_STAGE
    direct = {job["rule"] for job in jobs if job["reason"].startswith("Updated input files:")
              and str(leaf) in job["reason"]}
    downstream_of_another = {b for a, b in edges if a in users - TOKEN_STAGE and b in users}
    assert direct == users - TOKEN_STAGE - downstream_of_another, (direct, downstream_of_another)
    assert {job["rule"] for job in jobs} == downstream_closure(users - TOKEN_STAGE, edges) - TOKEN_STAGE
