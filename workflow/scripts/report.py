"""Entry point of rule report: results/report.html (self-contained) and results/metrics.json."""
from pathlib import Path

from corpus_weights.report import build_report
from corpus_weights.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
inputs = {key: snakemake.input[key] for key in ["manifest", "tokens_meta", "spectra"]}
inputs["train_logs"] = list(snakemake.input.train_logs)
inputs["train_summaries"] = list(snakemake.input.train_summaries)
inputs["intervention"] = list(snakemake.input.intervention)
html_text, metrics, files = build_report(inputs, dict(snakemake.params))
for path in snakemake.output.figures:
    Path(path).write_bytes(files["figures"][Path(path).stem])
for path in snakemake.output.tables:
    files["tables"][Path(path).stem].to_csv(path, index=False)
write_json(metrics, snakemake.output.metrics)
Path(snakemake.output.html).write_text(html_text, encoding="utf-8")
log.info("report written: %d bytes of HTML", len(html_text))
