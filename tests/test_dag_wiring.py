"""The rules' wiring on the tiny config, read from the planned DAG (issue 24): which files each job reads, for every
run and analysed snapshot. A dry plan through Snakemake's API (no job runs, a few seconds): every job's named inputs,
outputs, wildcards and params. One script is then run on planted inputs at its planned paths: fit_projections, whose
K is a wildcard and whose ΔW subtracts its `init` input.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_helpers import make_workdir

T = "results/tiny/default"

# Builds the DAG of results/report.html as `snakemake -n` would (the pinned Snakemake's API) and writes every job's
# rule, wildcards, named inputs/outputs and params, and the resolved config, as JSON. Arguments: workdir, output file,
# then the --configfile list (relative to workdir; default config/test.yaml).
DUMP = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

workdir, out = Path(sys.argv[1]), Path(sys.argv[2])
configfiles = [workdir / c for c in (sys.argv[3:] or ["config/test.yaml"])]
named = lambda nl: {k: (v if isinstance(v, str) else list(v)) for k, v in nl.items()}
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=configfiles),
                          snakefile=workdir / "Snakefile", workdir=workdir)
    wf_api.dag(dag_settings=DAGSettings(targets={"results/report.html"}))
    wf = wf_api._workflow
    wf._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    wf._build_dag()
    jobs = [dict(rule=j.rule.name, wildcards=dict(j.wildcards.items()), input=named(j.input), output=named(j.output),
                 log=list(j.log), params=dict(j.params.items())) for j in wf.dag.jobs]
    out.write_text(json.dumps(dict(jobs=jobs, config=wf.config), default=str))
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("dag"))
    out = workdir / "plan.json"
    proc = subprocess.run([sys.executable, "-c", DUMP, str(workdir), str(out)], cwd=workdir, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    data = json.loads(out.read_text())
    data["workdir"] = workdir
    return data


def jobs(plan, rule):
    return [j for j in plan["jobs"] if j["rule"] == rule]


def by_run(plan, rule):
    out = {}
    for j in jobs(plan, rule):
        out.setdefault(j["wildcards"]["run"], []).append(j)
    return out


ANALYSED = {("orig-s0", "snapshot_100"): "main-s0", ("orig-s1", "snapshot_100"): "main-s1",
            ("orig-s0", "snapshot_000"): "step0", ("shuffled-s0", "snapshot_100"): "shuffled"}


@pytest.mark.workflow
def test_train_jobs_read_their_own_token_files_and_seeds(plan):
    train = {r: js[0] for r, js in by_run(plan, "train").items()}
    assert set(train) == {"orig-s0", "orig-s1", "shuffled-s0"}
    assert train["shuffled-s0"]["input"]["train"] == f"{T}/tokens/train_shuffled.npy"
    for run in ("orig-s0", "orig-s1"):
        assert train[run]["input"]["train"] == f"{T}/tokens/train.npy", run
    for run, job in train.items():
        assert job["input"]["val"] == f"{T}/tokens/val.npy", run  # validation is never shuffled
        p = job["params"]["train"]
        assert p["seed"] == {"orig-s0": 0, "orig-s1": 1, "shuffled-s0": 0}[run], run
        assert p["tokens"] == 12000 and p["lr"] == 0.01 and p["batch_size"] == 16, run  # one budget and schedule
        assert sorted(p["snapshot_fracs"]) == [0.0, 0.5, 1.0] and p["init_embedding"] is None, run
        assert job["params"]["state_dir"] == f"{T}/.train_state/{run}"
        assert job["output"]["snapshots"] == [f"{T}/train/{run}/snapshot_{pct}.safetensors"
                                              for pct in ("000", "050", "100")]


@pytest.mark.workflow
def test_corpus_side_reads_the_training_split(plan):
    (shuffle,) = jobs(plan, "shuffle_tokens")
    assert shuffle["input"]["train"] == f"{T}/tokens/train.npy" and shuffle["params"]["seed"] == 0
    assert shuffle["output"]["shuffled"] == f"{T}/tokens/train_shuffled.npy"
    (stats,) = jobs(plan, "corpus_stats")
    assert stats["input"]["train"] == f"{T}/tokens/train.npy"
    (ladder,) = jobs(plan, "corpus_ladder")
    assert (ladder["input"]["train"], ladder["input"]["val"]) == (f"{T}/tokens/train.npy", f"{T}/tokens/val.npy")
    (tok,) = jobs(plan, "tokenize")
    assert tok["params"]["val_fraction"] == 0.1 and tok["input"]["text"] == "resources/corpus/tiny.txt"


@pytest.mark.workflow
def test_analysed_snapshots_map_to_their_runs(plan):
    """Mains analyse snapshot_100 of their own run, step 0 the snapshot_000 of the first main seed, the shuffled
    control its own snapshot_100; every analysis job reads the weights of exactly its (run, snapshot)."""
    for rule in ("align", "measure", "attention"):
        planned = {(j["wildcards"]["run"], j["wildcards"]["snap"]): j for j in jobs(plan, rule)}
        assert set(planned) == set(ANALYSED), rule
        for (run, snap), job in planned.items():
            assert job["input"]["weights"] == f"{T}/weights/{run}/{snap}.npz", (rule, run, snap)
    for job in jobs(plan, "measure"):
        run, snap = job["wildcards"]["run"], job["wildcards"]["snap"]
        ident = job["params"]["identity"]
        assert (ident["label"], ident["run"], ident["snapshot"]) == (ANALYSED[(run, snap)], run, snap)
        assert ident["seed"] == (1 if run == "orig-s1" else 0)
        assert job["input"]["train_log"] == f"{T}/train/{run}/log.parquet"
        assert job["input"]["val"] == f"{T}/tokens/val.npy"  # the loss ladder is on validation tokens
    for job in jobs(plan, "attention"):  # where attention reads a step-0 reference or tokens: its own run, validation
        run = job["wildcards"]["run"]
        if "step0" in job["input"]:
            assert job["input"]["step0"] == f"{T}/weights/{run}/snapshot_000.npz"
        if "val" in job["input"]:
            assert job["input"]["val"] == f"{T}/tokens/val.npy"
    extract = {(j["wildcards"]["run"], j["wildcards"]["snap"]): j for j in jobs(plan, "extract_weights")}
    for (run, snap), job in extract.items():
        assert job["input"]["model"] == f"{T}/train/{run}/{snap}.safetensors"
    assert set(ANALYSED) <= set(extract)


@pytest.mark.workflow
def test_fit_projections_one_job_per_K_and_dW_from_the_same_runs_step0(plan):
    planned = {(j["wildcards"]["run"], j["wildcards"]["snap"], j["wildcards"]["K"]): j
               for j in jobs(plan, "fit_projections")}
    assert set(planned) == {(run, snap, K) for run, snap in ANALYSED for K in ("4", "8")}
    for (run, snap, K), job in planned.items():
        assert job["input"]["weights"] == f"{T}/weights/{run}/{snap}.npz"
        assert job["input"]["init"] == f"{T}/weights/{run}/snapshot_000.npz"  # ΔW = W − this run's own init
        assert job["input"]["alignment"] == f"{T}/analysis/{run}/{snap}/alignment.npz"
        assert job["output"]["table"] == f"{T}/analysis/{run}/{snap}/projection/K{K}.parquet"


# ----------------------------------------------------------------------------- the script, on planted inputs

RUN_SCRIPT = r"""
import json, os, runpy, sys
from types import SimpleNamespace

spec = json.load(open(sys.argv[1]))
for job in spec["jobs"]:
    for path in job["output"].values():  # as Snakemake does before a job starts
        os.makedirs(os.path.dirname(path), exist_ok=True)
    stub = SimpleNamespace(input=SimpleNamespace(**job["input"]), output=SimpleNamespace(**job["output"]),
                           params=SimpleNamespace(**job["params"]), wildcards=SimpleNamespace(**job["wildcards"]),
                           log=job["log"], threads=1, config=spec["config"])
    runpy.run_path(spec["script"], init_globals={"snakemake": stub}, run_name="__main__")
"""


def contract_weights(rng, V, d, ctx, L, scale=0.02):
    w = {"W_E": rng.standard_normal((V, d)), "W_pos": rng.standard_normal((ctx, d)), "ln_final.w": np.ones(d)}
    for i in range(L):
        w |= {f"L{i}.ln1.w": np.ones(d), f"L{i}.ln2.w": np.ones(d), f"L{i}.W_in": rng.standard_normal((4 * d, d)),
              f"L{i}.W_out": rng.standard_normal((d, 4 * d))}
        w |= {f"L{i}.{m}": rng.standard_normal((d, d)) for m in ("W_Q", "W_K", "W_V", "W_O")}
    return {k: v if k.endswith(".w") else v * scale for k, v in w.items()}


@pytest.mark.workflow
def test_fit_projections_script_honours_K_and_subtracts_its_init(plan, tmp_path):
    """The planned K=4 and K=8 jobs of main-s0, run on planted files at their planned paths: W − init lies in the
    span of the first 8 corpus-basis directions, so the pooled ΔW share is exactly 1 at K = 8 and clearly below 1 at
    K = 4; every row carries the job's own K."""
    from corpus_weights.core.workflow_io import save_weights_npz

    cfg = plan["config"]
    d, L, ctx, V = cfg["model"]["d_model"], cfg["model"]["n_layer"], cfg["model"]["context"], 40
    rng = np.random.default_rng(0)
    selected = [j for j in jobs(plan, "fit_projections")
                if (j["wildcards"]["run"], j["wildcards"]["snap"]) == ("orig-s0", "snapshot_100")]
    assert sorted(j["wildcards"]["K"] for j in selected) == ["4", "8"]
    files = selected[0]["input"]
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    B8 = basis[:, :8]
    init = contract_weights(rng, V, d, ctx, L)
    weights = {}
    for k, v in init.items():
        if v.ndim == 1:
            weights[k] = v.copy()
        elif k.endswith(("W_O", "W_out")):  # writing matrices: residual vectors are columns
            weights[k] = v + B8 @ rng.standard_normal((8, v.shape[1])) * 0.05
        else:                               # reading matrices and embeddings: rows
            weights[k] = v + rng.standard_normal((v.shape[0], 8)) @ B8.T * 0.05
    save_weights_npz(weights, {"step": 46}, tmp_path / files["weights"])
    save_weights_npz(init, {"step": 0}, tmp_path / files["init"])
    (tmp_path / files["alignment"]).parent.mkdir(parents=True, exist_ok=True)
    nulls = np.stack([np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(4)])
    splits = np.stack([basis] + [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(2)])
    np.savez(tmp_path / files["alignment"], basis=basis, null_bases=nulls, split_bases=splits)
    (tmp_path / files["covariance"]).parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp_path / files["covariance"], eigvecs=np.linalg.qr(rng.standard_normal((d, d)))[0], mu=np.zeros(d),
             eigvals=np.ones(d), Sigma=np.eye(d))
    np.savez(tmp_path / files["embeddings"], pi=np.full(V, 1 / V), E_in=rng.standard_normal((V, d)),
             E_out=rng.standard_normal((V, d)), singular_values=np.ones(d))
    spec = dict(jobs=selected, config=cfg, script=str(plan["workdir"] / "workflow/scripts/fit_projections.py"))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-c", RUN_SCRIPT, "spec.json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    logs = "".join((tmp_path / j["log"][0]).read_text() for j in selected if (tmp_path / j["log"][0]).exists())
    assert proc.returncode == 0, proc.stderr[-4000:] + logs[-4000:]
    for job in selected:
        K = int(job["wildcards"]["K"])
        table = pd.read_parquet(tmp_path / job["output"]["table"])
        assert set(table["K"]) == {K}, K
        row = table[(table.basis == "corpus_aligned") & (table.target == "dW") & (table.matrix == "pooled_nonembed")]
        share = float(row["share"].iloc[0])
        if K == 8:
            assert share == pytest.approx(1.0, abs=1e-9)
        else:
            assert 0.2 < share < 0.9, share


def test_every_result_path_is_typed_once():
    """Rules and helpers name a result through result_path("name") (common.smk's PATHS), never by typing its path:
    the only res() calls left in the rules are each rule's own log and benchmark file, and no template is listed
    twice under two names."""
    import re

    rules = sorted((Path(__file__).resolve().parents[1] / "workflow" / "rules").glob("*.smk"))
    typed = []
    for smk in rules:
        for number, line in enumerate(smk.read_text().splitlines(), 1):
            for arg in re.findall(r"(?<![\w.])res\((f?\"[^\"]*\")", line):
                if not re.match(r"f?\"(logs|benchmarks)/", arg):
                    typed.append(f"{smk.name}:{number}: res({arg})")
    assert typed == [], "result paths typed outside PATHS (use result_path):\n" + "\n".join(typed)
    common = (Path(__file__).resolve().parents[1] / "workflow" / "rules" / "common.smk").read_text()
    table = common[common.index("PATHS = {"):common.index("\n}\n", common.index("PATHS = {"))]
    templates = re.findall(r'^    "\w+": "([^"]+)",$', table, flags=re.M)
    assert len(templates) > 20 and len(templates) == len(set(templates)), templates
