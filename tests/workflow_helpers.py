"""Helpers for tests that run the real Snakemake workflow in a temporary copy of the repository."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def make_workdir(dest: Path, config_overrides: dict | None = None, base_config: str = "config/tiny.yaml") -> Path:
    """Copy what a workflow run needs (not results/) into dest and write dest/config/test.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    for folder in ["workflow", "config", "profiles"]:
        shutil.copytree(REPO / folder, dest / folder, dirs_exist_ok=True)
    (dest / "tests" / "data").mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "tests" / "data", dest / "tests" / "data", dirs_exist_ok=True)
    cfg = yaml.safe_load((REPO / base_config).read_text())
    deep_update(cfg, config_overrides or {})
    (dest / "config" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def deep_update(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def write_config(workdir: Path, cfg_overrides: dict, name: str = "test.yaml") -> None:
    cfg = yaml.safe_load((workdir / "config" / name).read_text())
    deep_update(cfg, cfg_overrides)
    (workdir / "config" / name).write_text(yaml.safe_dump(cfg, sort_keys=False))


def snakemake(workdir: Path, *args: str, timeout: int = 900, configfile: str | list | None = "config/test.yaml",
              env: dict | None = None) -> subprocess.CompletedProcess:
    # --configfile takes several values (a list: merged in that order): keep it last so that it cannot swallow a
    # target (None: add none).
    files = [configfile] if isinstance(configfile, str) else list(configfile or [])
    cmd = [SNAKEMAKE, *args] + (["--configfile", *files] if files else [])
    full_env = dict(os.environ, **(env or {}))
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=full_env)


def planned_rules(workdir: Path, *args: str, configfile: str = "config/test.yaml") -> dict[str, int]:
    """Rules (and job counts) a dry run would execute, parsed from Snakemake's job-stats table."""
    proc = snakemake(workdir, *args, "-n", "--quiet", "rules", configfile=configfile)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return job_counts(proc.stdout + proc.stderr)


def job_counts(text: str) -> dict[str, int]:
    """Rules and job counts from the job-stats table Snakemake prints before it runs (or plans)."""
    counts: dict[str, int] = {}
    in_table = False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and set(parts[0]) <= {"-"}:
                continue
            elif counts:
                break
    return counts


def finished_tiny_run(tmp_path_factory, name: str) -> Path:
    """A copy of one finished run of the tiny config (`snakemake --cores 2 results/report.html`, its console in
    console.txt), made once per test session and copied (modification times and Snakemake's metadata kept, so the
    copy plans nothing) for each test module that needs one: the tests that change it change their own copy."""
    cache = tmp_path_factory.getbasetemp() / "tiny-run-cache"
    if not (cache / "finished").is_file():
        shutil.rmtree(cache, ignore_errors=True)
        make_workdir(cache)
        proc = snakemake(cache, "--cores", "2", "results/report.html")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
        (cache / "console.txt").write_text(proc.stdout + proc.stderr)
        (cache / "finished").write_text("")
    dest = tmp_path_factory.mktemp(name)
    shutil.copytree(cache, dest, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns("finished"))
    return dest
