"""The console logger (snakemake_logger_plugin_corpus_weights): what it prints for each Snakemake log event, with
planted records and a planted clock; the dry run printed as Snakemake prints it."""
from __future__ import annotations

import io
import logging
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
    assert out.getvalue().splitlines()[-1] == RESUME_HINT


def test_a_dry_run_is_printed_as_snakemake_prints_it():
    out = io.StringIO()
    h = handler(out, dryrun=True)
    h.emit(record("Building DAG of jobs..."))
    h.emit(record("Job stats:\ntotal 3", event=LogEvent.RUN_INFO, stats={"total": 3}))
    assert out.getvalue().splitlines() == ["Building DAG of jobs...", "Job stats:", "total 3"]
