# Config validation, target builders, wildcard constraints and small helpers shared by the rule files.
import ast
import glob
import importlib.util
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The library the scripts actually import (the editable install points at src/corpus_weights).
_spec = importlib.util.find_spec("corpus_weights")
if _spec is None:
    raise WorkflowError("the library 'corpus_weights' is not importable: run `pip install --no-deps -e .` (or `make`)")


def validate_config():
    """Every schema problem in one short message (key, problem, expected; "did you mean" for misspelt keys), before
    any job; then Snakemake's validate fills the schema's defaults."""
    import yaml
    from corpus_weights.core.config_check import format_problems, schema_problems

    schema_path = os.path.join(str(workflow.current_basedir), "..", "schemas", "config.schema.yaml")
    with open(schema_path) as f:
        problems = schema_problems(config, yaml.safe_load(f))
    if problems:
        raise WorkflowError(format_problems(problems))
    validate(config, schema="../schemas/config.schema.yaml")


validate_config()
LIBRARY_DIR = os.path.dirname(_spec.origin)
CORPUS = config["corpus"]["name"]
EXPERIMENT = config["experiment"]
# Every result path is under results/<corpus>/<experiment>/ (so neither corpora nor experiments overwrite each other);
# the prepared text, which depends on the corpus alone, is shared by the corpus's experiments under resources/corpus/.
RESULTS = f"results/{CORPUS}/{EXPERIMENT}"
CORPUS_TEXT = f"resources/corpus/{CORPUS}.txt"
CORPUS_MANIFEST = f"resources/corpus/{CORPUS}.manifest.json"


def res(rel):
    """results/<corpus>/<experiment>/<rel>: where every result of this run lives. Rules name their results through
    result_path (below); res itself is used for the one log and one benchmark file of each rule."""
    return f"{RESULTS}/{rel}"


# Every result file, named once: rules and helpers refer to a result by its name here, never by typing its path
# again. Wildcards stay wildcards unless a value is given: result_path("weights") is
# results/<corpus>/<experiment>/weights/{run}/{snap}.npz, result_path("weights", snap="snapshot_000") the step-0 file
# of the job's {run}, result_path("weights", run="orig-s0", snap="snapshot_100") one file.
PATHS = {
    "train_tokens": "tokens/train.npy",
    "val_tokens": "tokens/val.npy",
    "shuffled_tokens": "tokens/train_shuffled.npy",
    "vocab": "tokens/vocab.parquet",
    "tokenizer": "tokens/tokenizer.json",
    "tokens_meta": "tokens/meta.json",
    "bigrams": "corpus_stats/bigram_counts.npz",
    "embeddings": "corpus_stats/embeddings.npz",
    "covariance": "corpus_stats/covariance.npz",
    "spectra": "corpus_stats/spectra.parquet",
    "ladder": "corpus_stats/ladder.json",
    "init_embedding": "init/{variant}.npy",
    "final_model": "train/{run}/final.safetensors",
    "model": "train/{run}/{snap}.safetensors",
    "train_log": "train/{run}/log.parquet",
    "train_summary": "train/{run}/summary.json",
    "train_state": ".train_state/{run}",
    "weights": "weights/{run}/{snap}.npz",
    "weights_meta": "weights/{run}/{snap}.json",
    "alignment": "analysis/{run}/{snap}/alignment.npz",
    "alignment_summary": "analysis/{run}/{snap}/alignment.json",
    "summary": "analysis/{run}/{snap}/summary.json",
    "attention": "analysis/{run}/{snap}/attention.parquet",
    "attention_summary": "analysis/{run}/{snap}/attention.json",
    "weight_spectra": "analysis/{run}/{snap}/weight_spectra.parquet",
    "validation": "analysis/{run}/{snap}/validation.json",
    "projection": "analysis/{run}/{snap}/projection/K{K}.parquet",
    "trajectory": "analysis/{run}/trajectory.parquet",
    "intervention": "intervention/{run}.json",
    "metrics": "metrics.json",
    "report": "report.html",
    "report_file": "report_files/{name}",
}


class _KeepWildcards(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def result_path(key, **values):
    """res() of the result named `key` in PATHS, with `values` filled into its wildcards (the others stay)."""
    return res(PATHS[key].format_map(_KeepWildcards(values)))


MODEL = config["model"]
TRAIN = config["train"]
CONTROLS = config["controls"]
ANALYSIS = config["analysis"]


def checkpoint_setup():
    """model.source: checkpoint — a model trained elsewhere (model.path, model.format; docs in config/README.md).
    Read before any job: its architecture (which replaces model.n_layer/d_model/n_head/context), its own tokenizer
    (which replaces tokenizer training; its size is tokenizer.vocab_size) and the match between the two. Every
    problem is one WorkflowError naming the key or file. Returns None for a model trained here."""
    if MODEL["source"] != "checkpoint":
        for key in ("path", "format", "tokenizer", "trim_vocab"):
            if MODEL[key] not in (None, False):
                raise WorkflowError(f"config error: in 'model.{key}': only used with model.source: checkpoint "
                                    f"(model.source is {MODEL['source']!r})")
        return None
    from corpus_weights.corpus.tokenizing import load_tokenizer
    from corpus_weights.model.checkpoints import (CheckpointError, check_vocabulary, checkpoint_files, read_spec,
                                                  tokenizer_files)

    path, fmt = MODEL["path"], MODEL["format"]
    problems = []
    if not path:
        problems.append(("model.path", "required with model.source: checkpoint (a Hugging Face folder, a nanoGPT "
                                       "ckpt.pt or a .safetensors model of this workflow)"))
    if not fmt:
        problems.append(("model.format", "required with model.source: checkpoint (hf | nanogpt | corpus-weights)"))
    if CALIBRATION:
        problems.append(("calibration", "planted models are built on trained runs; not with model.source: checkpoint"))
    if set(INIT_VARIANTS) - {"random"}:
        problems.append(("experiments.init", "the intervention experiment trains models; with model.source: "
                                             "checkpoint only [random] applies"))
    if problems:
        raise WorkflowError("config error(s):\n" + "\n".join(f"  in '{k}': {m}" for k, m in problems))
    try:
        spec = read_spec(path, fmt)
        tok_files = tokenizer_files(path, fmt, MODEL["tokenizer"])
        try:
            _, info = load_tokenizer(tok_files)
        except Exception as err:  # tokenizers' own parse errors: say which file
            raise CheckpointError(f"tokenizer {', '.join(tok_files.values())}: cannot be read "
                                  f"({str(err).splitlines()[0][:200]})") from err
        V = check_vocabulary(spec, info["vocab_size"], MODEL["trim_vocab"], info["source"])
        files = checkpoint_files(path, fmt)
    except CheckpointError as err:
        raise WorkflowError(f"model.path {path} (format {fmt}): {err}") from None
    MODEL.update({k: spec[k] for k in ("n_layer", "d_model", "n_head", "context")})
    config["tokenizer"]["vocab_size"] = V
    CONTROLS["shuffled"] = False  # a model trained elsewhere has no token-shuffled twin (gate G2: not applicable)
    return dict(path=str(path), format=fmt, files=files, tokenizer=tok_files, tokenizer_source=info["source"],
                vocab_size=V, checkpoint_vocab_size=int(spec["vocab_size"]), activation=spec["activation"],
                ln_eps=spec["ln_eps"], tied=spec["tied"], seed=TRAIN["seeds"][0])


def derived_defaults():
    """Defaults that follow other keys, filled only where the user left the key unset."""
    d = MODEL["d_model"]
    if ANALYSIS.get("top_n") is None:
        ANALYSIS["top_n"] = min(2000, config["tokenizer"]["vocab_size"])
    if ANALYSIS.get("attention_window_tokens") is None:
        ANALYSIS["attention_window_tokens"] = min(MODEL["context"], 128)
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
    if ANALYSIS["attention_window_tokens"] > MODEL["context"]:
        problems.append(("analysis.attention_window_tokens", f"{ANALYSIS['attention_window_tokens']} must not exceed "
                                                             f"model.context={MODEL['context']}"))
    if ANALYSIS["top_n"] > config["tokenizer"]["vocab_size"]:
        problems.append(("analysis.top_n", "must not exceed tokenizer.vocab_size"))
    for pattern in config["corpus"]["files"]:
        matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not matches:
            problems.append(("corpus.files", f"the glob '{pattern}' matches no file (working directory {os.getcwd()})"))
        for file in matches:
            if os.path.getsize(file) == 0:
                problems.append(("corpus.files", f"the file '{file}' is empty"))
    if not CHECKPOINT:  # (a checkpoint is not trained here)
        problems += budget_problems(TRAIN["tokens"], TRAIN["batch_size"], MODEL["context"])
    meta_path = result_path("tokens_meta")
    meta = None
    if os.path.exists(meta_path):  # a later run: the corpus's size is known, check it before any job
        import json

        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):  # unreadable (e.g. being written): the jobs check it themselves
            meta = None
    if isinstance(meta, dict) and {"n_train", "n_val", "vocab_size"} <= set(meta):
        problems += corpus_problems(meta["n_train"], meta["n_val"], meta["vocab_size"], MODEL["context"],
                                    MODEL["d_model"], ANALYSIS["top_n"], config["corpus"]["val_fraction"])
    if problems:
        raise WorkflowError("config error(s):\n" + "\n".join(f"  in '{key}': {msg}" for key, msg in problems))


from corpus_weights.core.input_checks import budget_problems, corpus_problems

# `calibration` (absent or recipe null = off) makes the analysed main models planted ones (docs/calibration.md)
CALIBRATION = config["calibration"] if "calibration" in config and config["calibration"]["recipe"] else None
INIT_VARIANTS = list(config["experiments"]["init"])
CHECKPOINT = checkpoint_setup()
derived_defaults()
check_config()


def warn_default_run_elsewhere():
    """Run from a directory of one's own with neither corpus.files nor a corpus name set (no --configfile, most
    likely): the default Shakespeare experiment would be planned there. Say so before any job."""
    if os.path.realpath(os.getcwd()) == os.path.realpath(str(workflow.basedir)):
        return
    if CORPUS == "shakespeare" and not config["corpus"]["files"]:
        from snakemake.logging import logger

        logger.warning(f"No corpus of your own is configured: this plans the default Shakespeare run in "
                       f"{os.getcwd()}/results/. For your text, add --configfile my.yaml with "
                       f"corpus: {{name: mytext, files: [mytext.txt]}} (config/README.md).")


warn_default_run_elsewhere()

SNAPSHOT_PCTS = sorted({0, 100} | {round(100 * f) for f in TRAIN["snapshots"]})


def run_registry():
    """Every model as data: {run: {data, seed, tokens, init, source}}. source "train": trained here (rule train, then
    extract_weights); all trained runs share the main budget and schedule, so main-vs-control and seed-vs-seed
    differences are never a difference in training. source "file": the weights file is written by another rule
    instead of training (plant_weights: a planted model of the verdict calibration, built from the corpus statistics
    and its base run, with recipe, base and draw); everything downstream of the weights file treats both alike.
    source "checkpoint" (model.source: checkpoint): the one run "checkpoint", a model trained elsewhere, read by rule
    import_checkpoint, which also writes its step-0 control (a re-initialisation with the first train seed)."""
    if CHECKPOINT:
        return {"checkpoint": dict(data="orig", seed=CHECKPOINT["seed"], tokens=None, init="random",
                                   source="checkpoint", path=CHECKPOINT["path"], format=CHECKPOINT["format"])}
    runs = {f"orig-s{seed}": dict(data="orig", seed=seed, tokens=TRAIN["tokens"], init="random", source="train")
            for seed in TRAIN["seeds"]}
    if CONTROLS["shuffled"]:
        seed = TRAIN["seeds"][0]
        runs[f"shuffled-s{seed}"] = dict(data="shuffled", seed=seed, tokens=TRAIN["tokens"], init="random",
                                         source="train")
    for variant in INIT_VARIANTS:  # the intervention experiment: same data, seeds, budget; another initial W_E
        if variant != "random":
            for seed in TRAIN["seeds"]:
                runs[f"{variant}-s{seed}"] = dict(data="orig", seed=seed, tokens=TRAIN["tokens"], init=variant,
                                                  source="train")
    if CALIBRATION:  # one planted model per main seed, built on that seed's trained main run
        for seed in TRAIN["seeds"]:
            base = f"orig-s{seed}"
            runs[planted_run(CALIBRATION["recipe"], CALIBRATION["seed"], seed)] = dict(
                data="orig", seed=seed, tokens=runs[base]["tokens"], init="random", source="file",
                recipe=CALIBRATION["recipe"], base=base, draw=CALIBRATION["seed"])
    return runs


def planted_run(recipe, draw, seed):
    """Run name of a planted model: recipe, the draw of its random parts, the seed of its base run."""
    return f"planted_{recipe}_d{draw}-s{seed}"


def runs_from(source):
    return [run for run, info in RUNS.items() if info["source"] == source]


def random_init_run(seed):
    """The registry's trained run on the original data, random initialisation, this seed (the intervention's
    reference; the calibration's base run)."""
    return next(run for run, info in RUNS.items() if info["source"] == "train" and info["data"] == "orig"
                and info["init"] == "random" and info["seed"] == seed)


def intervention_runs():
    """The runs compared by the intervention experiment (every init variant x every main seed); empty when only
    the random initialisation is configured."""
    if set(INIT_VARIANTS) <= {"random"}:
        return []
    return [run for run, info in RUNS.items()
            if info["source"] == "train" and info["data"] == "orig" and info["init"] in INIT_VARIANTS]


def analysed_registry():
    """Every analysed model snapshot as data: label, run, snapshot, role (main | step0 | shuffled); mains first.
    Under `calibration` the main models (main-s<seed>) are the planted runs; step 0 and the shuffled control stay the
    trained ones, so the gates and verdicts are computed on the planted models through the ordinary metrics rule.
    A checkpoint run: the checkpoint ("checkpoint", main) and its re-initialisation (step0); no shuffled control."""
    if CHECKPOINT:
        return [dict(label="checkpoint", run="checkpoint", snap="snapshot_100", role="main"),
                dict(label="step0", run="checkpoint", snap="snapshot_000", role="step0")]
    trained_mains = [run for run, info in RUNS.items()
                     if info["source"] == "train" and info["data"] == "orig" and info["init"] == "random"]
    mains = runs_from("file") if CALIBRATION else trained_mains
    entries = [dict(label=f"main-s{RUNS[run]['seed']}", run=run, snap="snapshot_100", role="main") for run in mains]
    entries.append(dict(label="step0", run=trained_mains[0], snap="snapshot_000", role="step0"))
    entries += [dict(label="shuffled", run=run, snap="snapshot_100", role="shuffled")
                for run, info in RUNS.items() if info["data"] == "shuffled"]
    return entries


# The architecture keys of `model` (what GPTConfig takes besides vocab_size); the other keys say where a model comes from
MODEL_ARCH = {k: MODEL[k] for k in ("n_layer", "d_model", "n_head", "context")}
RUNS = run_registry()
TRAINED = runs_from("train")
FROM_FILE = runs_from("file")
CHECKPOINT_RUNS = runs_from("checkpoint")
INTERVENTION = intervention_runs()
ANALYSED = analysed_registry()


def trajectory_runs():
    """[{run, label}] of every trained main model and control: their statistics at every snapshot (rule
    trajectory); step 0 is the first point of each main model's trajectory."""
    return [dict(run=e["run"], label=e["label"]) for e in ANALYSED
            if e["role"] != "step0" and RUNS[e["run"]]["source"] == "train"]


TRAJECTORY = trajectory_runs()


def trajectory_analysed(wildcards):
    """The files of this run's snapshots that the full analysis measures (its final snapshot; step 0 for the first
    main seed): the trajectory reads their statistics instead of measuring them again."""
    files = {}
    for e in ANALYSED:
        if e["run"] == wildcards.run:
            m = model_files(e)
            files.update({f"{e['snap']}_{key}": m[key] for key in
                          ("summary", "alignment", "attention_summary", "weight_spectra")})
            files[f"{e['snap']}_projection"] = result_path("projection", run=e["run"], snap=e["snap"],
                                                           K=ANALYSIS["headline_K"])
    return files

wildcard_constraints:  # (corpus and experiment are not wildcards: res() writes them into every result path)
    run="|".join(RUNS),
    snap="snapshot_[0-9]{3}",
    K="[0-9]+",


def _module_file(dotted):
    """The source file of a library module given by its dotted name inside the package ("" is the package
    itself, "x.y" is corpus_weights/x/y.py or corpus_weights/x/y/__init__.py); None if there is no such module."""
    base = os.path.join(LIBRARY_DIR, *dotted.split(".")) if dotted else LIBRARY_DIR
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _imported(package_parts, node):
    """Library modules (dotted names inside the package) that one import statement loads, or None if it loads
    nothing of the library. `package_parts` is the importing module's package (None for a script)."""
    top = os.path.basename(LIBRARY_DIR)
    if isinstance(node, ast.Import):
        return [alias.name.split(".", 1)[1] if "." in alias.name else "" for alias in node.names
                if alias.name.split(".")[0] == top]
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != top:
            return None
        target = parts[1:]
    elif package_parts is None or node.level - 1 > len(package_parts):
        return None
    else:
        package = package_parts[: len(package_parts) - (node.level - 1)]
        target = package + (node.module.split(".") if node.module else [])
    found = [".".join(target)]
    # `from pkg import name` loads pkg.name too when name is a submodule
    found += [".".join(target + [a.name]) for a in node.names if _module_file(".".join(target + [a.name]))]
    return found


def _imports_of(path, package_parts=None):
    """Library modules one file imports (absolute `corpus_weights...` imports, and relative ones inside the
    library), with every package on their way (importing a.b runs a/__init__.py), read with `ast`."""
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for dotted in _imported(package_parts, node) or []:
                parts = dotted.split(".") if dotted else []
                found.update(".".join(parts[:i]) for i in range(len(parts) + 1))
    return {m for m in found if _module_file(m)}


def _data_files(path):
    """Package data a library module reads: string constants that name a file of the package other than Python
    source (e.g. report/page.py's "templates/report.html"), relative to the package or to the module's folder."""
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not node.value.endswith(".py"):
            for folder in (LIBRARY_DIR, os.path.dirname(path)):
                candidate = os.path.normpath(os.path.join(folder, node.value))
                if node.value and os.path.isfile(candidate) and candidate.startswith(LIBRARY_DIR + os.sep):
                    found.add(candidate)
    return found


def script_code(name):
    """Code inputs of the rule that runs workflow/scripts/<name>.py: every library file the script imports,
    transitively (read from the sources with `ast`, never named by hand), and the package data those modules read.
    Snakemake tracks only the script itself; with these declared, editing any of them reruns exactly its users."""
    script = os.path.join(workflow.basedir, "workflow", "scripts", f"{name}.py")
    todo, seen = sorted(_imports_of(script)), set()
    while todo:
        dotted = todo.pop()
        if dotted not in seen:
            seen.add(dotted)
            path = _module_file(dotted)
            package = dotted.split(".") if dotted else []
            if not path.endswith("__init__.py"):
                package = package[:-1]
            todo.extend(_imports_of(path, package) - seen)
    files = {_module_file(m) for m in seen}
    for path in list(files):
        files |= _data_files(path)
    return sorted(files)


def corpus_inputs(wildcards):
    files = []
    for pattern in config["corpus"]["files"]:
        files.extend(sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)))
    return files


def own_tokenizer_files():
    """A checkpoint run's tokenizer files (rule tokenize reads them instead of training one); [] otherwise."""
    return sorted(CHECKPOINT["tokenizer"].values()) if CHECKPOINT else []


def train_tokens(wildcards):
    return result_path("shuffled_tokens" if RUNS[wildcards.run]["data"] == "shuffled" else "train_tokens")


def train_params(wildcards):
    keys = ["batch_size", "lr", "min_lr_frac", "warmup_frac", "weight_decay", "grad_clip", "eval_every",
            "eval_tokens", "checkpoint_every", "device", "compile", "dtype", "patience", "min_delta"]
    params = {k: TRAIN[k] for k in keys}
    params["tokens"] = RUNS[wildcards.run]["tokens"]
    params["seed"] = RUNS[wildcards.run]["seed"]
    params["snapshot_fracs"] = [p / 100 for p in SNAPSHOT_PCTS]
    init = RUNS[wildcards.run]["init"]
    params["init_embedding"] = None if init == "random" else result_path("init_embedding", variant=init)
    if RUNS[wildcards.run]["data"] != "orig":
        # Early stopping is for models of the real text. The token-shuffled control's validation loss cannot go
        # below the unigram's, so its "best" step comes within a few hundred thousand tokens; stopped there it would
        # be a far less trained model than the mains it controls for. It trains to the full budget instead.
        params["patience"] = None
    return params


def train_inputs(wildcards):
    """The token files, and the initial embedding for a corpus-initialised run."""
    inputs = {"train": train_tokens(wildcards)}
    init = RUNS[wildcards.run]["init"]
    if init != "random":
        inputs["init"] = result_path("init_embedding", variant=init)
    return inputs


def svd_gpus():
    """GPUs asked for by the rules that run the corpus decompositions: one when analysis.svd_solver is torch and
    analysis.svd_device is not cpu ('auto' on a node without CUDA falls back to CPU torch), else none."""
    return int(ANALYSIS["svd_solver"] == "torch" and ANALYSIS["svd_device"] != "cpu")


def measure_params():
    """Only the analysis keys each rule uses (editing another key does not rerun it)."""
    return {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "permutations", "headline_K", "seed"]}


def attention_params():
    params = {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "permutations", "seed", "attention_fpr_models",
                                       "attention_windows", "attention_functional_draws"]}
    if ANALYSIS["attention_window_tokens"] < MODEL["context"]:  # (the whole context: the params stay what they were)
        params["attention_window_tokens"] = ANALYSIS["attention_window_tokens"]
    if ANALYSIS["attention_functional_fpr_models"] is not None:  # (unset: all; the params stay what they were)
        params["attention_functional_fpr_models"] = ANALYSIS["attention_functional_fpr_models"]
    return params


def align_params():
    return {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "map_null_draws", "basis_null_draws", "splits", "seed"]}


def checkpoint_params():
    """What rule import_checkpoint needs to know besides the files: format, seed of the re-initialisation, the
    vocabulary the tokenizer fixed and whether rows past it may be dropped."""
    return {k: CHECKPOINT[k] for k in ("path", "format", "seed", "vocab_size", "tokenizer_source")} | {
        "trim_vocab": MODEL["trim_vocab"]}


def trajectory_params():
    return {k: ANALYSIS[k] for k in ["top_n", "freq_bins", "headline_K", "trajectory_draws", "seed"]}


def projection_params():
    return {k: ANALYSIS[k] for k in ["random_draws", "min_effect", "seed"]}


def projection_files():
    return [result_path("projection", run=e["run"], snap=e["snap"], K=k) for e in ANALYSED for k in ANALYSIS["K"]]


def model_files(entry):
    one = dict(run=entry["run"], snap=entry["snap"])
    return dict(summary=result_path("summary", **one), alignment=result_path("alignment_summary", **one),
                attention=result_path("attention", **one), attention_summary=result_path("attention_summary", **one),
                weight_spectra=result_path("weight_spectra", **one),
                projections=[result_path("projection", **one, K=k) for k in ANALYSIS["K"]])


def model_summaries(wildcards):
    """What metrics.json is assembled from: the corpus side, every run's log and summary, every analysed model's
    per-model files (declared inputs only; nothing is found by globbing)."""
    return {
        "intervention": [result_path("intervention", run=run) for run in INTERVENTION],
        "manifest": CORPUS_MANIFEST,
        "tokens_meta": result_path("tokens_meta"),
        "spectra": result_path("spectra"),
        "train_logs": [result_path("train_log", run=run) for run in TRAINED],
        "train_summaries": [result_path("train_summary", run=run) for run in TRAINED],
        "projections": projection_files(),
        "per_model": [f for e in ANALYSED for k, v in model_files(e).items() if k != "projections" for f in [v]],
        "trajectories": [result_path("trajectory", run=t["run"]) for t in TRAJECTORY],
    }


def metrics_inputs(wildcards):
    return {**model_summaries(wildcards), "code": script_code("metrics")}


def report_inputs(wildcards):
    """The figures and tables read the same per-model files; the numbers come from metrics.json."""
    return {**model_summaries(wildcards), "metrics": result_path("metrics"),
            "code": script_code("report")}


def benchmark_jobs():
    """{rule, job, path} of every job whose run time the report lists: this corpus's and this experiment's jobs only
    (prepare_corpus's, whose text the corpus's experiments share, is found where it ran: under the experiment that
    prepared the text first)."""
    jobs = [(rule, None) for rule in ("prepare_corpus", "tokenize", "corpus_stats", "corpus_ladder")]
    if "shuffled" in {info["data"] for info in RUNS.values()}:
        jobs.append(("shuffle_tokens", None))
    jobs += [("train", run) for run in TRAINED]
    snaps = sorted({(e["run"], e["snap"]) for e in ANALYSED})
    extracted = sorted({(run, snap) for run, snap in snaps if RUNS[run]["source"] == "train"}
                       | {(RUNS[run]["base"], snap) for run in FROM_FILE for snap in ("snapshot_000", "snapshot_100")})
    jobs += [("extract_weights", f"{run}.{snap}") for run, snap in extracted]
    jobs += [("plant_weights", run) for run in FROM_FILE]
    jobs += [("import_checkpoint", run) for run in CHECKPOINT_RUNS]
    jobs += [("validation_loss", f"{run}.{snap}") for run, snap in snaps if RUNS[run]["source"] != "train"]
    jobs += [(rule, f"{run}.{snap}") for rule in ("align", "measure", "attention") for run, snap in snaps]
    jobs += [("fit_projections", f"{run}.{snap}.K{k}") for run, snap in snaps for k in ANALYSIS["K"]]
    jobs += [("init_embedding", v) for v in INIT_VARIANTS if v != "random"]
    jobs += [("intervention", run) for run in INTERVENTION]
    jobs += [("trajectory", t["run"]) for t in TRAJECTORY]
    return [dict(rule=rule, job=job or CORPUS,
                 path=res(f"benchmarks/{rule}.tsv") if job is None else res(f"benchmarks/{rule}/{job}.tsv"))
            for rule, job in jobs]


def analysed_identity(run, snap):
    """The registry's facts about one analysed snapshot (label, role, seed, token budget) for its summary."""
    entry = next((e for e in ANALYSED if e["run"] == run and e["snap"] == snap), None)
    info = RUNS[run]
    identity = dict(label=entry["label"] if entry else f"{run}.{snap}", role=entry["role"] if entry else "other",
                    run=run, snapshot=snap, seed=info["seed"], tokens=info["tokens"], data=info["data"],
                    init=info["init"])
    if info["source"] == "file":  # (a trained run's identity stays what it was before runs could come from files)
        identity.update({k: info[k] for k in ("source", "recipe", "base", "draw")})
    elif info["source"] == "checkpoint":
        identity.update(source="checkpoint", path=info["path"], format=info["format"],
                        weights="re-initialisation (this workflow's init, seed %d)" % info["seed"]
                        if snap == "snapshot_000" else "the checkpoint")
    return identity


def trained_identity(run):
    """The intervention rule's facts about one trained run (data, seed, tokens, init, run)."""
    return {k: RUNS[run][k] for k in ("data", "seed", "tokens", "init")} | {"run": run}


def measure_run_inputs(wildcards):
    """Where a model's validation loss comes from: a trained run's log (the trainer's evaluation at that step), or,
    for weights from a file, rule validation_loss (the same evaluation windows, by a numpy forward pass)."""
    if RUNS[wildcards.run]["source"] == "train":
        return {"train_log": result_path("train_log", run=wildcards.run)}
    return {"validation": result_path("validation", run=wildcards.run, snap=wildcards.snap)}


# What each planted recipe reads besides its base run's weights (so the DAG plans only that).
PLANT_RECIPE_INPUTS = {
    "corpus_span": {"embeddings": result_path("embeddings"), "covariance": result_path("covariance")},
    "routing_qk": {"bigrams": result_path("bigrams"), "embeddings": result_path("embeddings"),
                   "vocab": result_path("vocab")},
    "l0_aligned": {"bigrams": result_path("bigrams"), "embeddings": result_path("embeddings")},
    "random": {},
    "random_qk": {},
    "shuffled_embedding": {"shuffled_embedding": result_path("init_embedding", variant="shuffled_corpus")},
}


def plant_inputs(wildcards):
    """The base run's final weights and its step 0 (the planted model's ΔW reference), and the recipe's corpus
    statistics."""
    info = RUNS[wildcards.run]
    return {"base": result_path("weights", run=info["base"], snap="snapshot_100"),
            "base_init": result_path("weights", run=info["base"], snap="snapshot_000"),
            **PLANT_RECIPE_INPUTS[info["recipe"]]}


def plant_params(wildcards):
    info = RUNS[wildcards.run]
    return dict(recipe=info["recipe"], draw=info["draw"], seed=info["seed"], base=info["base"],
                K=ANALYSIS["headline_K"], top_n=ANALYSIS["top_n"])


def registry_pattern(runs):
    """A wildcard constraint matching exactly these run names (none at all when the list is empty)."""
    return "|".join(runs) if runs else "(?!)"


def config_hash():
    """Short hash of the resolved config, shown on the report's run card."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
