"""A quiet, useful console for corpus-weights runs (a Snakemake logger plugin: ``--logger corpus-weights``, set in
profiles/default/config.yaml).

A run prints the job table once, then one line per finished job — time, jobs done of all, the job and how long it
took, elapsed time and, once a model has been trained, an estimate of the time left — beside the trainer's own
progress lines (step, loss, tokens/s, ETA; printed by the jobs themselves). Warnings and errors are printed as
Snakemake prints them (a failing job with its log). Snakemake's banner, its per-job input/output listings (each job's
inputs include ~20 library files) and its scheduler chatter are left out; everything is still in
.snakemake/log/. A dry run (``-n``) prints exactly what Snakemake's own console would. Ctrl-C ends with one line
saying how to resume (the interrupted jobs' error reports that follow it are left to .snakemake/log/).
"""
from __future__ import annotations

import logging
import sys
import time
from collections import Counter, defaultdict

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

# Scheduler chatter: plain messages left out of a run's console (they stay in .snakemake/log/)
CHATTER = ("Building DAG of jobs", "Using shell:", "Provided cores:", "Rules claiming more threads",
           "Conda environments: ignored", "Select jobs to execute", "Execute ", "Assuming unrestricted shared",
           "Using workflow specific profile", "Config file ", "Singularity containers: ignored", "Job stats:",
           "Provided resources:", "host:", "Using profile")
RESUME_HINT = ("interrupted: rerun the same command to resume — finished jobs are kept and training continues from "
               "its last saved state (after a hard kill, `snakemake --unlock` first)")


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Job bookkeeping for the one-line progress: which job finished, how long jobs of each rule take, and an
    estimate of the time left (per rule: remaining jobs × mean duration so far, over the parallelism measured so
    far; shown once a training job has finished, since training dominates a run)."""

    def __init__(self, now=time.monotonic):
        self.now, self.t0 = now, now()
        self.started: dict[int, tuple[str, str, float]] = {}
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.planned: Counter = Counter()
        self.finished: Counter = Counter()
        self.last: tuple[str, str, float] | None = None

    def plan(self, stats: dict) -> None:
        for rule, n in (stats or {}).items():
            if rule != "total":
                self.planned[rule] = int(n)

    def start(self, jobid: int, rule: str, wildcards: dict | None) -> None:
        label = ".".join(str(v) for v in (wildcards or {}).values())
        self.started[jobid] = (rule, label, self.now())

    def finish(self, jobid: int) -> None:
        if jobid not in self.started:
            return
        rule, label, t = self.started.pop(jobid)
        took = self.now() - t
        self.durations[rule].append(took)
        self.finished[rule] += 1
        self.last = (rule, label, took)

    def eta(self) -> float | None:
        if not self.durations.get("train"):
            return None
        elapsed = self.now() - self.t0
        busy = sum(sum(d) for d in self.durations.values())
        parallel = max(1.0, busy / elapsed) if elapsed > 0 else 1.0
        other = [d for rule, ds in self.durations.items() if rule != "train" for d in ds]
        other_mean = sum(other) / len(other) if other else 0.0
        left = 0.0
        for rule, n in self.planned.items():
            remaining = max(0, n - self.finished[rule])
            ds = self.durations.get(rule)
            left += remaining * (sum(ds) / len(ds) if ds else other_mean)
        return left / parallel

    def line(self, done: int, total: int) -> str:
        what = f" · {' '.join(x for x in self.last[:2] if x)} in {clock(self.last[2])}" if self.last else ""
        eta = self.eta()
        left = f" · about {clock(eta)} left" if eta is not None and done < total else ""
        pct = 100 * done // max(total, 1)
        return (f"[{time.strftime('%H:%M:%S')}] {done}/{total} jobs ({pct} %){what} · elapsed "
                f"{clock(self.now() - self.t0)}{left}")


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        from snakemake.logging import DefaultFilter, DefaultFormatter

        s = self.common_settings
        self.stream = sys.stdout if s.stdout else sys.stderr
        self.dryrun = bool(s.dryrun)
        self.quiet = {str(q).lower().split(".")[-1] for q in (s.quiet or [])}
        self.default_filter = DefaultFilter(s.quiet, s.debug_dag, s.verbose, s.dryrun, s.printshellcmds)
        self.setFormatter(DefaultFormatter(s.quiet, s.show_failed_logs))
        self.progress = Progress()
        self.interrupted = False

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False

    def write(self, text: str) -> None:
        if text:
            self.stream.write(text + "\n")
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.dryrun or "all" in self.quiet and record.levelno < logging.ERROR:
                if self.dryrun and self.default_filter.filter(record):
                    text = self.format(record)
                    self.write("" if text in (None, "None") else text)
                return
            self.emit_run(record)
        except (KeyboardInterrupt, SystemExit):
            pass
        except Exception:  # a console line must never stop a run
            self.handleError(record)

    def emit_run(self, record: logging.LogRecord) -> None:
        if self.interrupted:
            # after Ctrl-C the interrupted jobs' errors, their logs and "WorkflowError" only look like a crash: the
            # resume hint stays the last line (all of it is in .snakemake/log/)
            return
        event = getattr(record, "event", None)
        p = self.progress
        if event == LogEvent.JOB_INFO:
            p.start(int(record.jobid), str(record.rule_name), getattr(record, "wildcards", None))
        elif event == LogEvent.JOB_FINISHED:
            p.finish(int(record.job_id))
        elif event == LogEvent.PROGRESS:
            if "progress" not in self.quiet:
                self.write(p.line(int(record.done), int(record.total)))
        elif event == LogEvent.RUN_INFO:
            p.plan(getattr(record, "stats", None))
            self.write(self.format(record))
        elif event in (LogEvent.JOB_ERROR, LogEvent.GROUP_ERROR, LogEvent.ERROR) or record.levelno >= logging.WARNING:
            self.write(self.format(record))
            if not self.interrupted and "KeyboardInterrupt" in str(getattr(record, "exception", "")):
                self.interrupted = True
                self.write(RESUME_HINT)
        elif event in (LogEvent.WORKFLOW_STARTED, LogEvent.SHELLCMD, LogEvent.RESOURCES_INFO, LogEvent.DEBUG_DAG,
                       LogEvent.RULEGRAPH, LogEvent.GROUP_INFO, LogEvent.JOB_STARTED):
            return
        else:
            text = record.getMessage() if record.msg is not None else ""
            if not text or text == "None" or text.startswith(CHATTER) or text.startswith("["):
                return
            if text.startswith("Terminating processes on user request"):
                self.interrupted = True
                self.write(text)
                self.write(RESUME_HINT)
                return
            self.write(text)
