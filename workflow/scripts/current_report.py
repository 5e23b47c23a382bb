"""Entry point of rule current_report: results/report.html and results/metrics.json are the configured experiment's
(results/<corpus>/<experiment>/report.html and metrics.json)."""
from corpus_weights.core.workflow_io import publish_report, start_log

log = start_log(snakemake.log[0])
publish_report(snakemake.input.html, snakemake.input.metrics, snakemake.output.html, snakemake.output.metrics)
log.info("published the report of corpus %s, experiment %s", snakemake.params.corpus, snakemake.params.experiment)
