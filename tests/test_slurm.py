"""The workflow under SLURM: `snakemake --profile profiles/slurm` against a real single-node cluster.

A module fixture starts munged + slurmctld + slurmd on this machine (tests/slurm/start_cluster.sh, no
systemd) and stops exactly those daemons afterwards (tests/slurm/stop_cluster.sh). The cluster has no
accounting database, so the runs add `--slurm-status-command squeue` (the profile keeps the plugin's
default, sacct, for real clusters) and a short first status check. Its node declares one fake GPU so
that rule `train` (`--gpus=1`) can be scheduled; the job then trains on CPU.

Skipped (with the reason) only when not root or when SLURM is missing and apt-get is unavailable;
with CI=true those cases fail instead, as does any failure to start the cluster.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from workflow_helpers import make_workdir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
NEEDED = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel"]
RUN_TIMEOUT = 1800  # 30 SLURM jobs of ~15 s each (mostly Python start-up); 15 min on a busy 2-core machine
FAIL_TIMEOUT = 300
# Extra options for this test cluster only (no slurmdbd): see profiles/slurm/config.yaml.
TEST_CLUSTER_ARGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "3",  # cluster MinJobAge (3600) >= 3 x this
    "--slurm-keep-successful-logs",
    # the node has nproc CPUs; rules asking for more threads (train: 8) would be unschedulable
    "--max-threads", str(os.cpu_count() or 1),
]


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} -- CI=true, so the SLURM test must run (see .ci/run)")
    pytest.skip(reason)


def _ensure_slurm_installed() -> None:
    if os.geteuid() != 0:
        _unavailable("SLURM test needs root (it starts munged/slurmctld/slurmd itself)")
    missing = [b for b in NEEDED if shutil.which(b) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        _unavailable(f"SLURM not installed ({', '.join(missing)} missing) and no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:  # stale package lists on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    missing = [b for b in NEEDED if shutil.which(b) is None]
    assert proc.returncode == 0 and not missing, f"installing slurm-wlm munge failed: {proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Start a fresh single-node cluster; yields the environment for SLURM clients."""
    _ensure_slurm_installed()
    # not under pytest's 0700 tmp dir: munged (user munge) must reach its socket there
    state = Path(subprocess.check_output(["mktemp", "-d", "/tmp/slurm-test.XXXXXX"], text=True).strip())
    env = dict(os.environ, MIN_JOB_AGE="3600", START_TIMEOUT="90")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPTS / "start_cluster.sh"), str(state)],
                          capture_output=True, text=True, env=env, timeout=180)
    started = time.monotonic() - t0
    if proc.returncode != 0:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), str(state), "--rm"], timeout=120)
        pytest.fail(f"SLURM cluster did not start:\n{proc.stdout}\n{proc.stderr[-6000:]}")
    print(f"SLURM cluster started in {started:.1f}s ({state})")
    client_env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    client_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + client_env.get("PATH", "")
    try:
        yield {"state": state, "env": client_env}
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), str(state), "--rm"], timeout=120)


def run_snakemake(workdir: Path, args: list[str], env: dict, timeout: int) -> tuple[int, str, float]:
    """Run snakemake in its own process group; on timeout stop it and cancel its SLURM jobs."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    if timed_out:
        # snakemake waits for running SLURM jobs on SIGTERM: cancel them, then insist.
        os.killpg(proc.pid, signal.SIGTERM)
        subprocess.run(["scancel", "--user", "root"], env=env, timeout=30)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"snakemake did not finish within {timeout}s:\n{out[-6000:]}")
    return proc.returncode, out, time.monotonic() - t0


def slurm_jobs(env: dict) -> list[dict[str, str]]:
    """All jobs slurmctld still knows (finished ones stay for MinJobAge), as key=value dicts."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], env=env, capture_output=True, text=True,
                         timeout=30).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\S+?)=(\S*)", line))
        if "JobId" in fields:
            jobs.append(fields)
    return jobs


def structure(obj):
    """Shape of a JSON document: keys and value kinds, not values."""
    if isinstance(obj, dict):
        return {k: structure(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return ["list", structure(obj[0]) if obj else None]
    if isinstance(obj, bool) or obj is None:
        return type(obj).__name__
    if isinstance(obj, (int, float)):
        return "number"
    return type(obj).__name__


class _Headings(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[str] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        if tag in {"h1", "h2", "h3"}:
            self._in = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag in {"h1", "h2", "h3"}:
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.headings[-1] += data


def headings(html: str) -> list[str]:
    parser = _Headings()
    parser.feed(html)
    return [h.strip() for h in parser.headings]


def executed_rules(log: str) -> tuple[list[str], list[str]]:
    """(rules run as jobs, localrules) from snakemake's log, one entry per job."""
    remote = re.findall(r"^rule (\w+):$", log, flags=re.M)
    local = re.findall(r"^localrule (\w+):$", log, flags=re.M)
    return remote, local


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("slurm_run"))
    # targets first: --configfile takes several values and would swallow them
    args = ["results/report.html", "results/metrics.json", "--profile", "profiles/slurm",
            "--configfile", "config/test.yaml", *TEST_CLUSTER_ARGS]
    rc, log, seconds = run_snakemake(workdir, args, slurm_cluster["env"], RUN_TIMEOUT)
    print(f"tiny run under SLURM: {seconds:.0f}s")
    assert rc == 0, log[-8000:]
    return {"workdir": workdir, "log": log, "jobs": slurm_jobs(slurm_cluster["env"]),
            "state": slurm_cluster["state"]}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same tiny config run locally, as the reference for the outputs' structure."""
    workdir = make_workdir(tmp_path_factory.mktemp("local_run"))
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    rc, log, _ = run_snakemake(workdir, ["results/report.html", "results/metrics.json", "--cores", "2",
                                         "--configfile", "config/test.yaml"], env, RUN_TIMEOUT)
    assert rc == 0, log[-8000:]
    return workdir


def complete_log(workdir: Path, console: str) -> str:
    """Snakemake's complete log of the run (.snakemake/log/, named on the console's last lines): the console itself is
    the project's quiet logger plugin, which leaves out the per-job `rule X:` records."""
    names = re.findall(r"Complete log\(s\): (\S+)", console)
    assert names, f"no 'Complete log(s):' line on the console:\n{console[-3000:]}"
    return "\n".join(Path(n).read_text() for n in names[-1].split(","))


def test_every_rule_ran_as_a_slurm_job(slurm_run):
    workdir = slurm_run["workdir"]
    log = complete_log(workdir, slurm_run["log"])
    remote, local = executed_rules(log)
    assert "train" in remote and "report" in remote, log[-4000:]
    # current_report only copies the corpus's report to results/report.html: a localrule, not worth a cluster job
    assert set(local) <= {"all", "current_report"}, f"unexpected localrules: {local}"
    # one sbatch submission per non-local job, and each was allocated on the node by slurmctld
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len(remote), (remote, submitted)
    ctld_log = (slurm_run["state"] / "log" / "slurmctld.log").read_text()
    started = set(re.findall(r"(?:sched: Allocate|backfill: _start_job: Started) JobId=(\d+) ", ctld_log))
    completed = set(re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS 0", ctld_log))
    assert set(submitted) <= started & completed, set(submitted) - (started & completed)
    # slurmctld's job history: every job of this run COMPLETED, tagged with its rule
    by_id = {j["JobId"]: j for j in slurm_run["jobs"]}
    for jobid in submitted:
        assert jobid in by_id, f"SLURM job {jobid} unknown to slurmctld"
        assert by_id[jobid]["JobState"] == "COMPLETED", by_id[jobid]
    slurm_rules = sorted(re.match(r"rule_(.+?)(?:_wildcards_.*)?$", by_id[j]["Comment"]).group(1)
                         for j in submitted)
    assert slurm_rules == sorted(remote)
    # and a per-job SLURM log for every rule
    for rule in set(remote):
        logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob("*.log"))
        assert logs, f"no SLURM log for rule {rule}"
        assert any(f"rule {rule}:" in p.read_text() for p in logs), rule


def test_only_train_requests_a_gpu(slurm_run):
    log = slurm_run["log"]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    by_id = {j["JobId"]: j for j in slurm_run["jobs"]}
    gpu_rules, cpu_rules = set(), set()
    for jobid in submitted:
        job = by_id[jobid]
        rule = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)
        requested = job.get("TresPerJob", "") + job.get("TresPerNode", "")
        (gpu_rules if "gpu" in requested else cpu_rules).add(rule)
    assert gpu_rules == {"train"}, (gpu_rules, cpu_rules)
    assert "train" not in cpu_rules


def test_outputs_match_a_local_run(slurm_run, local_run):
    workdir = slurm_run["workdir"]
    for path in ["results/report.html", "results/metrics.json"]:
        assert (workdir / path).stat().st_size > 0, path
    cluster_metrics = json.loads((workdir / "results/metrics.json").read_text())
    local_metrics = json.loads((local_run / "results/metrics.json").read_text())
    assert structure(cluster_metrics) == structure(local_metrics)
    cluster_html = (workdir / "results/report.html").read_text()
    local_html = (local_run / "results/report.html").read_text()
    assert headings(cluster_html) == headings(local_html)
    assert headings(cluster_html), "report has no headings"


def test_failing_rule_fails_the_run_naming_the_rule(slurm_cluster, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("slurm_fail"))
    # invalid UTF-8: only rule prepare_corpus (a SLURM job) notices, at run time
    (workdir / "tests" / "data" / "bad_corpus.txt").write_bytes(b"valid start \xff\xfe\xfd broken\n" * 20)
    cfg_path = workdir / "config" / "test.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["corpus"]["files"] = ["tests/data/bad_corpus.txt"]
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    args = ["results/report.html", "--profile", "profiles/slurm", "--configfile", "config/test.yaml",
            *TEST_CLUSTER_ARGS]
    rc, log, seconds = run_snakemake(workdir, args, slurm_cluster["env"], FAIL_TIMEOUT)
    assert rc != 0, log[-4000:]
    assert seconds < FAIL_TIMEOUT
    assert re.search(r"has been submitted with SLURM jobid \d+", log), log[-4000:]
    assert "Error in rule prepare_corpus" in log, log[-4000:]
    assert not (workdir / "results" / "report.html").exists()


# Keys the cluster profile owns: the workflow profile (profiles/default/, loaded automatically and
# applied over --profile one top-level key at a time) would silently replace them.
CLUSTER_OWNED_KEYS = {"executor", "jobs", "cores", "resources", "default-resources", "set-resources",
                      "set-threads", "max-threads", "latency-wait", "retries"}


def test_default_profile_leaves_cluster_keys_to_the_cluster_profile():
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text()) or {}
    cluster = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    clashing = {k for k in default if k in CLUSTER_OWNED_KEYS or k.startswith("slurm-")}
    assert not clashing, f"profiles/default/config.yaml must not set {sorted(clashing)}"
    assert cluster["executor"] == "slurm"
    assert cluster["set-resources"]["train"]["gpu"] == 1
    assert all("gpu" not in res for rule, res in cluster["set-resources"].items() if rule != "train")
    assert "gpu" not in cluster["default-resources"]
