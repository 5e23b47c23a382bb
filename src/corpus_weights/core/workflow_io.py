"""Small I/O helpers shared by the workflow's entry-point scripts (logging, JSON, atomic writes)."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np


def start_log(log_path: str | os.PathLike, name: str = "corpus_weights") -> logging.Logger:
    """Route stderr and the library's logging to the rule's log file (a script's first act). Warnings and errors also
    go to the console (the job's original stderr), prefixed with the log's name, e.g. ``[tokenize] WARNING vocabulary
    shrunk …``: a user should not have to open a log to learn that the configuration was adjusted."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "w", buffering=1)
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        force=True)
    console = logging.StreamHandler(sys.__stderr__)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter(f"[{Path(log_path).stem}] %(levelname)s %(message)s"))
    logging.getLogger().addHandler(console)
    return logging.getLogger(name)


def _to_builtin(obj):
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(obj, path: str | os.PathLike) -> None:
    """Write JSON atomically (temporary file + rename) with numpy values converted; NaN/inf become null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_to_builtin(obj), indent=2, sort_keys=False))
    os.replace(tmp, path)


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def usable_threads(requested: int) -> int:
    """Never oversubscribe: Snakemake may grant more threads than this machine has cores."""
    return max(1, min(int(requested), available_cores()))


def save_weights_npz(weights: dict, meta: dict, path) -> None:
    """Named weight matrices -> ``x.npz`` (float32, no pickle) and their metadata -> ``x.json``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})
    os.replace(tmp, path)
    write_json(meta, path.with_suffix(".json"))


def load_weights_npz(path) -> tuple[dict, dict]:
    """(weights, meta) from a file written by :func:`save_weights_npz`; torch is never imported."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        w = {k: z[k] for k in z.files}
    jpath = path.with_suffix(".json")
    meta = read_json(jpath) if jpath.exists() else {}
    return w, meta


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically (a reader never sees half a file; a crash leaves the old one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def publish_report(html_path, metrics_path, html_dest, metrics_dest) -> None:
    """Copy one experiment's report page and metrics to the top of the results tree (results/report.html is always the
    configured experiment's report; every experiment of every corpus keeps its own under
    results/<corpus>/<experiment>/). The page embeds its figures; only its links to the CSV tables are relative, so they are pointed into the
    experiment's folder (its path relative to the copy's: <corpus>/<experiment>)."""
    folder = Path(os.path.relpath(Path(html_path).parent, Path(html_dest).parent)).as_posix()
    html = Path(html_path).read_text(encoding="utf-8")
    html = html.replace('href="report_files/', f'href="{folder}/report_files/')
    write_text(html, html_dest)
    write_text(Path(metrics_path).read_text(encoding="utf-8"), metrics_dest)
