"""The console logger (snakemake_logger_plugin_corpus_weights): what it prints for each Snakemake log event, with
planted records and a planted clock; the dry run printed as Snakemake prints it."""
from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake_interface_logger_plugins.common import LogEvent

from snakemake_logger_plugin_corpus_weights import RESUME_HINT, LogHandler, Progress, clock


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def settings(**kw):
    base = dict(printshellcmds=False, nocolor=True, quiet=None, debug_dag=False, verbose=False,
                show_failed_logs=True, stdout=True, dryrun=False)
    base.update(kw)
    return SimpleNamespace(**base)


def record(msg=None, level=logging.INFO, **extra):
    r = logging.LogRecord("snakemake", level, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def handler(capsys_stream, **kw):
    h = LogHandler(settings(**kw), None)
    h.stream = capsys_stream
    return h


def test_clock_and_eta_by_hand():
    assert (clock(5), clock(65), clock(3725)) == ("0:05", "1:05", "1:02:05")
    t = Clock()
    p = Progress(now=t)
    p.plan({"train": 3, "align": 4, "total": 7})
    p.start(1, "train", {"run": "orig-s0"})
    t.t = 100.0
    p.finish(1)
    assert p.last == ("train", "orig-s0", 100.0)
    p.start(2, "align", {"run": "orig-s0", "snap": "snapshot_100"})
    t.t = 110.0
    p.finish(2)
    # left: 2 train x 100 s + 3 align x 10 s = 230 s of work; busy 110 s over 110 s elapsed -> parallelism 1
    assert p.eta() == pytest.approx(230.0)
    assert "2/7 jobs (28 %) · align orig-s0.snapshot_100 in 0:10 · elapsed 1:50 · about 3:50 left" in p.line(2, 7)
    q = Progress(now=Clock())
    assert q.eta() is None  # no model trained yet: no estimate


def test_a_run_prints_the_table_one_line_per_job_and_errors():
    out = io.StringIO()
    h = handler(out)
    h.emit(record("Building DAG of jobs..."))
    h.emit(record("Select jobs to execute..."))
    h.emit(record(None, event=LogEvent.WORKFLOW_STARTED))
    h.emit(record("Job stats:\njob  count\ntrain 1\ntotal 1", event=LogEvent.RUN_INFO, stats={"train": 1, "total": 1}))
    h.emit(record(" Rule: train, Jobid: 7", event=LogEvent.JOB_INFO, jobid=7, rule_name="train",
                  wildcards={"run": "orig-s0"}, input=["x"] * 20))
    h.emit(record(None, event=LogEvent.JOB_FINISHED, job_id=7))
    h.emit(record(None, event=LogEvent.PROGRESS, done=1, total=1))
    h.emit(record("vocabulary shrunk to 258", level=logging.WARNING))
    lines = out.getvalue().splitlines()
    assert lines[0] == "Job stats:" and "Building DAG" not in out.getvalue() and "x, x" not in out.getvalue()
    assert "1/1 jobs (100 %) · train orig-s0 in" in lines[4]
    assert lines[-1] == "vocabulary shrunk to 258"
    assert len(lines) == 6


def test_interrupt_ends_with_how_to_resume():
    out = io.StringIO()
    h = handler(out)
    h.emit(record("Terminating processes on user request, this might take some time."))
    h.emit(record("Error in rule train:\n    jobid: 5", level=logging.ERROR, event=LogEvent.JOB_ERROR))
    h.emit(record("WorkflowError:\nAt least one job did not complete successfully.", level=logging.ERROR))
    assert out.getvalue().splitlines()[-1] == RESUME_HINT
    assert "Error in rule" not in out.getvalue() and "WorkflowError" not in out.getvalue()


def test_a_dry_run_is_printed_as_snakemake_prints_it():
    out = io.StringIO()
    h = handler(out, dryrun=True)
    h.emit(record("Building DAG of jobs..."))
    h.emit(record("Job stats:\ntotal 3", event=LogEvent.RUN_INFO, stats={"total": 3}))
    assert out.getvalue().splitlines() == ["Building DAG of jobs...", "Job stats:", "total 3"]


def test_a_jobs_warnings_reach_the_console_and_its_log(tmp_path):
    """start_log sends the library's logging to the rule's log file; warnings also go to the job's original stderr
    (the console), prefixed with the log's name. Run in a subprocess: start_log replaces sys.stderr."""
    import subprocess
    import sys

    log = tmp_path / "logs" / "tokenize.log"
    code = ("from corpus_weights.core.workflow_io import start_log\n"
            f"log = start_log({str(log)!r})\n"
            "log.info('counted 12 words')\n"
            "log.warning('vocabulary shrunk from 300 to 258')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.splitlines() == ["[tokenize] WARNING vocabulary shrunk from 300 to 258"]
    text = log.read_text()
    assert "INFO counted 12 words" in text and "WARNING vocabulary shrunk from 300 to 258" in text


@pytest.mark.slow
def test_ctrl_c_during_training_ends_in_one_line_and_keeps_the_state(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while a model trains: no torch traceback, the trainer's one
    line, the console's resume hint, and the trainer's saved state left for the rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from workflow_helpers import SNAKEMAKE, make_workdir

    workdir = make_workdir(tmp_path / "run", {"train": {"tokens": 3_000_000, "seeds": [0]}, "controls": {"shuffled": False}})
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "1", "results/report.html", "--configfile", "config/test.yaml"],
                            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            # a terminal's Ctrl-C reaches a process whose SIGINT is at its default, whatever an earlier
                            # test left in this process (an ignored SIGINT would be inherited)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, deadline = [], time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("[orig-s0] [train] step ") and "tokens" in line or time.monotonic() > deadline:
            break
    assert time.monotonic() <= deadline, "\n".join(lines[-30:])
    time.sleep(2)  # past a checkpoint (every 20 steps of 256 tokens)
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    console = "\n".join(lines) + "\n" + rest
    assert proc.returncode != 0, console[-3000:]  # (seen once exiting 0 with 3 runs sharing 2 cores: diagnose from this)
    assert "Traceback" not in console and "KeyboardInterrupt" not in console, console[-4000:]
    assert "[orig-s0] interrupted; the last saved state is kept and a rerun resumes from it" in console
    lines = console.rstrip().splitlines()
    assert RESUME_HINT in lines, console[-2000:]
    # after the hint only the interrupted jobs' own one-liners (they may reach the terminal after Snakemake's)
    after = lines[lines.index(RESUME_HINT) + 1:]
    assert all(line.endswith("interrupted; the last saved state is kept and a rerun resumes from it") for line in after), after
    assert "Error in rule" not in console and "WorkflowError" not in console
    state = list((workdir / "results").glob("tiny/*/.train_state/orig-s0/*"))
    assert state, sorted(str(p) for p in (workdir / "results").rglob("*"))[:50]
