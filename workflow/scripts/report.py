"""Entry point of rule report: results/<corpus>/<experiment>/report.html (self-contained), its figures and full
tables, from metrics.json and the per-model files."""
from pathlib import Path

from corpus_weights.report.page import build_report
from corpus_weights.core.workflow_io import read_json, start_log

log = start_log(snakemake.log[0])
inputs = {key: snakemake.input[key] for key in ["manifest", "tokens_meta", "spectra"]}
for key in ["train_logs", "train_summaries", "intervention"]:
    inputs[key] = list(snakemake.input[key])
html_text, _, files = build_report(inputs, dict(snakemake.params), metrics=read_json(snakemake.input.metrics))
for path in snakemake.output.figures:
    Path(path).write_bytes(files["figures"][Path(path).stem])
for path in snakemake.output.tables:
    files["tables"][Path(path).stem].to_csv(path, index=False)
Path(snakemake.output.html).write_text(html_text, encoding="utf-8")
log.info("report written: %d bytes of HTML", len(html_text))
