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
CONTROLS = config["controls"]
ANALYSIS = config["analysis"]


def derived_defaults():
    """Defaults that follow other keys, filled only where the user left the key unset."""
    d = MODEL["d_model"]
    if ANALYSIS.get("top_n") is None:
        ANALYSIS["top_n"] = min(2000, config["tokenizer"]["vocab_size"])
    if ANALYSIS.get("headline_K") is None:
        ANALYSIS["headline_K"] = min((k for k in ANALYSIS["K"] if k < d), key=lambda k: (abs(k - d / 8), k),
                                     default=ANALYSIS["K"][0])


def check_config():
    """Cross-key checks; every problem is collected and reported in one message."""
    problems = []
    d = MODEL["d_model"]
    if d % MODEL["n_head"] != 0:
        problems.append(("model.n_head", f"d_model={d} must be divisible by n_head={MODEL['n_head']}"))
    for k in ANALYSIS["K"]:
        if k >= d:
            problems.append(("analysis.K", f"K={k} must be smaller than model.d_model={d}"))
    if ANALYSIS["headline_K"] not in ANALYSIS["K"]:
        problems.append(("analysis.headline_K", f"{ANALYSIS['headline_K']} must be one of analysis.K={ANALYSIS['K']}"))
    if ANALYSIS["top_n"] > config["tokenizer"]["vocab_size"]:
        problems.append(("analysis.top_n", "must not exceed tokenizer.vocab_size"))
    for pattern in config["corpus"]["files"]:
        matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not matches:
            problems.append(("corpus.files", f"the glob '{pattern}' matches no file (working directory {os.getcwd()})"))
        for path in matches:
            if os.path.getsize(path) == 0:
                problems.append(("corpus.files", f"the file '{path}' is empty"))
    if problems:
        raise WorkflowError("config error(s):\n" + "\n".join(f"  in '{key}': {msg}" for key, msg in problems))


derived_defaults()
check_config()

SNAPSHOT_PCTS = sorted({0, 100} | {round(100 * f) for f in TRAIN["snapshots"]})


def run_registry():
    """Every trained model as data: {run: {data, seed, tokens}}. All runs share the main budget and schedule, so
    main-vs-control and seed-vs-seed differences are never a difference in training."""
    runs = {f"orig-s{seed}": dict(data="orig", seed=seed, tokens=TRAIN["tokens"], init="random")
            for seed in TRAIN["seeds"]}
    if CONTROLS["shuffled"]:
        seed = TRAIN["seeds"][0]
        runs[f"shuffled-s{seed}"] = dict(data="shuffled", seed=seed, tokens=TRAIN["tokens"], init="random")
    for variant in INIT_VARIANTS:  # the intervention experiment: same data, seeds, budget; another initial W_E
        if variant != "random":
            for seed in TRAIN["seeds"]:
                runs[f"{variant}-s{seed}"] = dict(data="orig", seed=seed, tokens=TRAIN["tokens"], init=variant)
    return runs


def intervention_runs():
    """The runs compared by the intervention experiment (every init variant x every main seed); empty when only
    the random initialisation is configured."""
    if set(INIT_VARIANTS) <= {"random"}:
        return []
    return [run for run, info in RUNS.items() if info["data"] == "orig" and info["init"] in INIT_VARIANTS]


def analysed_registry():
    """Every analysed model snapshot as data: label, run, snapshot, role (main | step0 | shuffled); mains first."""
    entries = [dict(label=f"main-s{info['seed']}", run=run, snap="snapshot_100", role="main")
               for run, info in RUNS.items() if info["data"] == "orig" and info["init"] == "random"]
    entries.append(dict(label="step0", run=entries[0]["run"], snap="snapshot_000", role="step0"))
    entries += [dict(label="shuffled", run=run, snap="snapshot_100", role="shuffled")
                for run, info in RUNS.items() if info["data"] == "shuffled"]
    return entries


INIT_VARIANTS = list(config["experiments"]["init"])
RUNS = run_registry()
INTERVENTION = intervention_runs()
ANALYSED = analysed_registry()


wildcard_constraints:
    corpus=CORPUS,  # one corpus per config; its name is in every result path, so corpora never collide
    run="|".join(RUNS),
    snap="snapshot_[0-9]{3}",
    K="[0-9]+",


def _library_imports(module):
    """Modules of the library that `module` imports (relative imports, read from its source)."""
    import ast

    path = os.path.join(LIBRARY_DIR, f"{module}.py")
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def lib(*modules):
    """Library source files a rule depends on: the named modules and everything they import, transitively
    (Snakemake only tracks the script file itself; editing any of these reruns the rule)."""
    todo, seen = list(modules), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_library_imports(m) - seen)
    return [os.path.join(LIBRARY_DIR, f"{m}.py") for m in sorted(seen)]


def corpus_inputs(wildcards):
    files = []
    for pattern in config["corpus"]["files"]:
        files.extend(sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)))
    return files


def train_tokens(wildcards):
    name = "train_shuffled.npy" if RUNS[wildcards.run]["data"] == "shuffled" else "train.npy"
    return f"results/{CORPUS}/tokens/{name}"


def train_params(wildcards):
    keys = ["batch_size", "lr", "min_lr_frac", "warmup_frac", "weight_decay", "grad_clip", "eval_every",
            "eval_tokens", "checkpoint_every", "device", "compile", "dtype"]
    params = {k: TRAIN[k] for k in keys}
    params["tokens"] = RUNS[wildcards.run]["tokens"]
    params["seed"] = RUNS[wildcards.run]["seed"]
    params["snapshot_fracs"] = [p / 100 for p in SNAPSHOT_PCTS]
    init = RUNS[wildcards.run]["init"]
    params["init_embedding"] = None if init == "random" else f"results/{CORPUS}/init/{init}.npy"
    return params


def train_inputs(wildcards):
    """The token files, and the initial embedding for a corpus-initialised run."""
    inputs = {"train": train_tokens(wildcards)}
    init = RUNS[wildcards.run]["init"]
    if init != "random":
        inputs["init"] = f"results/{CORPUS}/init/{init}.npy"
    return inputs


def measure_params():
    """Only the analysis keys each rule uses (editing another key does not rerun it)."""
    return {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "permutations", "headline_K", "seed"]}


def attention_params():
    return {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "permutations", "seed"]}


def align_params():
    return {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "map_null_draws", "basis_null_draws", "seed"]}


def projection_params():
    return {k: ANALYSIS[k] for k in ["random_draws", "seed"]}


def projection_files():
    return [f"results/{CORPUS}/analysis/{e['run']}/{e['snap']}/projection/K{k}.parquet" for e in ANALYSED for k in ANALYSIS["K"]]


def model_files(entry):
    base = f"results/{CORPUS}/analysis/{entry['run']}/{entry['snap']}"
    return dict(summary=f"{base}/summary.json", alignment=f"{base}/alignment.json",
                attention=f"{base}/attention.parquet", attention_summary=f"{base}/attention.json",
                weight_spectra=f"{base}/weight_spectra.parquet",
                projections=[f"{base}/projection/K{k}.parquet" for k in ANALYSIS["K"]])


def model_summaries(wildcards):
    """What metrics.json is assembled from: the corpus side, every run's log and summary, every analysed model's
    per-model files (declared inputs only; nothing is found by globbing)."""
    return {
        "intervention": [f"results/{CORPUS}/intervention/{run}.json" for run in INTERVENTION],
        "manifest": f"resources/corpus/{CORPUS}.manifest.json",
        "tokens_meta": f"results/{CORPUS}/tokens/meta.json",
        "spectra": f"results/{CORPUS}/corpus_stats/spectra.parquet",
        "train_logs": [f"results/{CORPUS}/train/{run}/log.parquet" for run in RUNS],
        "train_summaries": [f"results/{CORPUS}/train/{run}/summary.json" for run in RUNS],
        "projections": projection_files(),
        "per_model": [f for e in ANALYSED for k, v in model_files(e).items() if k != "projections" for f in [v]],
    }


def metrics_inputs(wildcards):
    return {**model_summaries(wildcards), "code": lib("metrics")}


def report_inputs(wildcards):
    """The figures and tables read the same per-model files; the numbers come from metrics.json."""
    return {**model_summaries(wildcards), "metrics": f"results/{CORPUS}/metrics.json",
            "code": lib("report") + [os.path.join(LIBRARY_DIR, "templates", "report.html")]}


def benchmark_jobs():
    """{rule, job, path} of every job whose run time the report lists: this corpus's and this config's jobs only."""
    jobs = [(rule, None) for rule in ("prepare_corpus", "tokenize", "corpus_stats", "corpus_ladder")]
    if "shuffled" in {info["data"] for info in RUNS.values()}:
        jobs.append(("shuffle_tokens", None))
    jobs += [("train", run) for run in RUNS]
    snaps = sorted({(e["run"], e["snap"]) for e in ANALYSED})
    jobs += [("extract_weights", f"{run}.{snap}") for run, snap in snaps]
    jobs += [(rule, f"{run}.{snap}") for rule in ("align", "measure", "attention") for run, snap in snaps]
    jobs += [("fit_projections", f"{run}.{snap}.K{k}") for run, snap in snaps for k in ANALYSIS["K"]]
    jobs += [("init_embedding", v) for v in INIT_VARIANTS if v != "random"]
    jobs += [("intervention", run) for run in INTERVENTION]
    base = f"results/{CORPUS}/benchmarks"
    return [dict(rule=rule, job=job or CORPUS, path=f"{base}/{rule}.tsv" if job is None else f"{base}/{rule}/{job}.tsv")
            for rule, job in jobs]


def analysed_identity(run, snap):
    """The registry's facts about one analysed snapshot (label, role, seed, token budget) for its summary."""
    entry = next((e for e in ANALYSED if e["run"] == run and e["snap"] == snap), None)
    info = RUNS[run]
    return dict(label=entry["label"] if entry else f"{run}.{snap}", role=entry["role"] if entry else "other",
                run=run, snapshot=snap, seed=info["seed"], tokens=info["tokens"], data=info["data"], init=info["init"])


def config_hash():
    """Short hash of the resolved config, shown on the report's run card."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
