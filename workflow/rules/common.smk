# Config validation, target builders, wildcard constraints and small helpers shared by the rule files.
import glob
import importlib.util
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# The library the scripts actually import (the editable install points at src/corpus_weights).
_spec = importlib.util.find_spec("corpus_weights")
if _spec is None:
    raise WorkflowError("the library 'corpus_weights' is not importable: run `pip install --no-deps -e .` (or `make`)")
LIBRARY_DIR = os.path.dirname(_spec.origin)
CORPUS = config["corpus"]["name"]
MODEL = config["model"]
TRAIN = config["train"]
CONTROLS = config.get("controls", {})
ANALYSIS = config["analysis"]


def config_error(key, message):
    """Stop before any job runs, naming the offending config key."""
    raise WorkflowError(f"config error in '{key}': {message}")


def check_config():
    d = MODEL["d_model"]
    if d % MODEL["n_head"] != 0:
        config_error("model.n_head", f"d_model={d} must be divisible by n_head={MODEL['n_head']}")
    for k in ANALYSIS["K"]:
        if k >= d:
            config_error("analysis.K", f"K={k} must be smaller than model.d_model={d}")
    if ANALYSIS["headline_K"] not in ANALYSIS["K"]:
        config_error("analysis.headline_K", f"{ANALYSIS['headline_K']} must be one of analysis.K={ANALYSIS['K']}")
    if ANALYSIS["top_n"] > config["tokenizer"]["vocab_size"]:
        config_error("analysis.top_n", "must not exceed tokenizer.vocab_size")
    for pattern in config["corpus"]["files"]:
        matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not matches:
            config_error("corpus.files", f"the glob '{pattern}' matches no file (working directory {os.getcwd()})")
        for path in matches:
            if os.path.getsize(path) == 0:
                config_error("corpus.files", f"the file '{path}' is empty")


check_config()

SNAPSHOT_PCTS = sorted({0, 100} | {round(100 * f) for f in TRAIN.get("snapshots", [0.0, 0.5, 1.0])})
MAIN_RUNS = [f"orig-s{s}" for s in TRAIN["seeds"]]
HEAD_RUN = MAIN_RUNS[0]


def control_runs():
    """Control models trained through the same rules: a second seed and a token-shuffled corpus."""
    runs = {}
    seed = CONTROLS.get("seed", 1)
    if seed is not None and f"orig-s{seed}" not in MAIN_RUNS:
        runs["second_seed"] = f"orig-s{seed}"
    if CONTROLS.get("shuffled", True):
        runs["shuffled"] = f"shuffled-s{TRAIN['seeds'][0]}"
    return runs


CONTROL_RUNS = control_runs()
ALL_RUNS = MAIN_RUNS + list(CONTROL_RUNS.values())


def analysed_models():
    """(label, run, snapshot) of every model the analysis measures; 'main' first."""
    models = [(f"main-s{run.split('-s')[1]}", run, "snapshot_100") for run in MAIN_RUNS]
    models.append(("step0", HEAD_RUN, "snapshot_000"))
    for label, run in CONTROL_RUNS.items():
        models.append((label, run, "snapshot_100"))
    return models


ANALYSED = analysed_models()


wildcard_constraints:
    corpus="[A-Za-z0-9_]+",
    run="(orig|shuffled)-s[0-9]+",
    snap="snapshot_[0-9]{3}",
    K="[0-9]+",


def lib(*modules):
    """Library source files a rule depends on (Snakemake only tracks the script file itself)."""
    return [os.path.join(LIBRARY_DIR, f"{m}.py") for m in modules]


def corpus_inputs(wildcards):
    files = []
    for pattern in config["corpus"]["files"]:
        files.extend(sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)))
    return files


def train_tokens(wildcards):
    name = "train_shuffled.npy" if wildcards.run.startswith("shuffled") else "train.npy"
    return f"results/tokens/{CORPUS}/{name}"


def run_seed(run):
    return int(run.split("-s")[1])


def token_budget(run):
    if run in MAIN_RUNS:
        return TRAIN["tokens"]
    return CONTROLS.get("tokens") or TRAIN["tokens"]


def train_params(wildcards):
    keys = ["batch_size", "lr", "min_lr_frac", "warmup_frac", "weight_decay", "grad_clip", "eval_every",
            "eval_tokens", "checkpoint_every", "device", "compile", "dtype"]
    params = {k: TRAIN[k] for k in keys if k in TRAIN}
    params["tokens"] = token_budget(wildcards.run)
    params["seed"] = run_seed(wildcards.run)
    params["snapshot_fracs"] = [p / 100 for p in SNAPSHOT_PCTS]
    return params


def analysis_params():
    return {k: v for k, v in ANALYSIS.items() if k != "K"}


def projection_files():
    return [f"results/analysis/{run}/{snap}/projection/K{k}.parquet"
            for _, run, snap in ANALYSED for k in ANALYSIS["K"]]


def report_inputs(wildcards):
    per_model = ["alignment.json", "attention.parquet", "attention.json", "note_protocol.json",
                 "weight_spectra.parquet"]
    return {
        "manifest": f"resources/corpus/{CORPUS}.manifest.json",
        "tokens_meta": f"results/tokens/{CORPUS}/meta.json",
        "spectra": f"results/corpus_stats/{CORPUS}/spectra.parquet",
        "train_logs": [f"results/train/{run}/log.parquet" for run in ALL_RUNS],
        "train_summaries": [f"results/train/{run}/summary.json" for run in ALL_RUNS],
        "projections": projection_files(),
        "per_model": [f"results/analysis/{run}/{snap}/{name}" for _, run, snap in ANALYSED for name in per_model],
        "code": lib("report", "analysis", "note_values") + [os.path.join(LIBRARY_DIR, "templates", "report.html")],
    }
