"""The documentation works as written: every command in README.md's and config/README.md's shell blocks is run (in
dry-run form where the real run is long), and docs/metrics.md matches a real metrics.json."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from workflow_helpers import REPO, make_workdir, snakemake

DOCS = ["README.md", "config/README.md"]
SKIP = {  # commands that need what a test cannot have, with the test that covers them instead
    "profiles/slurm": "needs a SLURM cluster (tests/test_slurm.py runs the profile on a real one)",
    "start_cluster.sh": "tests/test_slurm.py", "stop_cluster.sh": "tests/test_slurm.py",
    "pip install": "the bootstrap itself (every test runs in the environment it makes)",
    "--slurm-": "options to add to a SLURM command (tests/test_slurm.py uses them)",
}


def shell_commands(path: Path) -> list[str]:
    """Commands of the ```bash blocks, continuation lines joined, comments removed. A block that works outside the
    clone (it names /path/to/corpus-weights) is one item: a script, run as a whole in a temporary home."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        if "/path/to/corpus-weights" in block:
            commands.append("SCRIPT:" + block)
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def documented_commands():
    return [(doc, cmd) for doc in DOCS for cmd in shell_commands(REPO / doc)]


def test_the_docs_have_commands():
    cmds = [c for _, c in documented_commands()]
    assert any(c.startswith("make report") for c in cmds) and any("snakemake" in c for c in cmds)


@pytest.mark.parametrize("doc, command", documented_commands())
@pytest.mark.workflow
def test_documented_command_works(doc, command, tmp_path):
    skip = next((why for key, why in SKIP.items() if key in command), None)
    if command.startswith("export "):
        skip = "shell state for the SLURM example"
    if skip:
        pytest.skip(skip)
    if command.startswith("SCRIPT:"):
        return run_outside_script(command[len("SCRIPT:"):], tmp_path)
    argv = shlex.split(command)
    if argv[1:3] == ["-m", "corpus_weights.model.export"]:
        return run_export(argv, tmp_path)
    if argv[0] == "make":
        proc = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return
    assert argv[0].endswith("snakemake"), f"{doc}: a command the test does not know how to run: {command}"
    workdir = make_workdir(tmp_path / "w", base_config="config/config.yaml")
    (workdir / "my.yaml").write_text("train:\n  tokens: 100000\n")  # the README's "your settings" file
    if "my_model.yaml" in command:  # the README's "Analyse your own model": its config block and the model it names
        write_checkpoint_example(doc, workdir)
    args = argv[1:]
    if "-n" not in args and "--dry-run" not in args:
        args = ["-n", *args]
    proc = snakemake(workdir, *args, configfile=None, timeout=300)
    assert proc.returncode == 0, f"{doc}: `{command}` failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"


def write_checkpoint_example(doc: str, workdir: Path) -> None:
    """my_model.yaml as the README's yaml block writes it, and at its model.path a small Hugging Face folder (an
    export of a model of this workflow) with a tokenizer of the model's size: the dry run plans the checkpoint run
    exactly as written."""
    import torch
    import yaml

    from corpus_weights.corpus.tokenizing import text_blocks, train_tokenizer
    from corpus_weights.model.export import export_hf
    from corpus_weights.model.gpt import GPT, GPTConfig
    from corpus_weights.model.weights import save_model_safetensors

    block = next(b for b in re.findall(r"```yaml\n(.*?)```", (REPO / doc).read_text(), flags=re.S)
                 if "# my_model.yaml" in b)
    (workdir / "my_model.yaml").write_text(block)
    cfg = yaml.safe_load(block)
    tok, info = train_tokenizer(text_blocks(REPO / "tests/data/tiny_corpus.txt"), "word", 300)
    torch.manual_seed(0)
    model_file = workdir / "own.safetensors"
    # d = 96 as the default run's, so that the default analysis.K fits (K < d is checked for a checkpoint too)
    save_model_safetensors(GPT(GPTConfig(vocab_size=info["vocab_size"], n_layer=1, d_model=96, n_head=4, context=8)),
                           model_file)
    folder = export_hf(model_file, workdir / cfg["model"]["path"])
    tok.save(str(folder / "tokenizer.json"))


def run_export(argv: list[str], workdir: Path) -> None:
    """The export command as written, on a small model saved where the command expects the default run's."""
    import json
    import sys

    import torch

    from corpus_weights.model.gpt import GPT, GPTConfig
    from corpus_weights.model.weights import save_model_safetensors

    model_file, folder = workdir / argv[3], workdir / argv[4]
    model_file.parent.mkdir(parents=True)
    torch.manual_seed(0)
    save_model_safetensors(GPT(GPTConfig(vocab_size=40, n_layer=1, d_model=16, n_head=2, context=8)), model_file)
    tokenizer = workdir / argv[argv.index("--tokenizer") + 1]
    tokenizer.parent.mkdir(parents=True)
    tokenizer.write_text("{}")
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((folder / "config.json").read_text())["n_layer"] == 1
    assert (folder / "model.safetensors").stat().st_size > 0 and (folder / "tokenizer.json").is_file()


# Appended to the config the README's own-directory block writes, so that its run, as written otherwise, finishes
# in well under a minute: a 1-layer model, a few thousand tokens, few null draws.
SMALL_RUN = """
model: {n_layer: 1, d_model: 16, n_head: 2, context: 8}
train: {tokens: 2048, batch_size: 16, eval_every: 4, checkpoint_every: 4, eval_tokens: 128, snapshots: [0.0, 1.0],
        compile: false}
analysis: {K: [4], top_n: 60, permutations: 50, map_null_draws: 100, basis_null_draws: 5, random_draws: 2,
           attention_fpr_models: 20, attention_functional_draws: 50, trajectory_draws: 5, freq_bins: 3}
tokenizer: {vocab_size: 300}
"""


def run_outside_script(script: str, home: Path) -> None:
    """The README's "own text in a directory of its own" block, run by bash from that directory with HOME in a
    temporary folder and the clone for /path/to/corpus-weights — every command as written (the run for real, then
    unlock, Snakemake's report, the results page); the text it mentions is put in place first, and a small model is
    appended to the config it writes."""
    named = re.findall(r"holds (\S+\.txt)", script)
    folder = re.search(r"mkdir -p (\S+)", script).group(1).replace("~", str(home))
    Path(folder).mkdir(parents=True)
    for name in named:
        (Path(folder) / name).write_text((REPO / "tests/data/tiny_corpus.txt").read_text(), encoding="utf-8")
    config = re.search(r"> (\S+\.yaml)", script).group(1)
    small = home / "small.yaml"
    small.write_text(SMALL_RUN)
    script = (script.replace("/path/to/corpus-weights", str(REPO))
              .replace(f"> {config}", f"> {config} && cat {small} >> {config}", 1)
              .replace("--cores 8", "--cores 2"))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=home, capture_output=True, text=True,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert proc.returncode == 0, f"the script failed:\n{script}\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
    out = Path(folder)
    assert (out / "results/report.html").is_file() and (out / "results/snakemake-report.zip").stat().st_size > 0
    page = next(out.glob("*.md")).read_text()
    assert page.startswith("# Experiment 'default'") and "## Verdicts" in page


def test_the_readmes_attention_settings_for_gpt2_are_the_benchmarks():
    """The README's reduced attention block for a GPT-2-sized model is what `make bench-checkpoint` measured."""
    import sys

    import yaml

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_checkpoint

    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)]
    block = next(b for b in blocks if isinstance(b, dict) and set(b) == {"analysis"})
    assert block["analysis"] == bench_checkpoint.ANALYSIS
