"""Entry point of rule metrics: results/<corpus>/<experiment>/metrics.json from the per-model summaries
(docs/metrics.md)."""
from corpus_weights.report.gates import gate_status
from corpus_weights.report.metrics import collect_metrics, load_inputs
from corpus_weights.core.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
inputs = {key: snakemake.input[key] for key in ["manifest", "tokens_meta", "spectra"]}
for key in ["train_logs", "train_summaries", "intervention", "trajectories"]:
    inputs[key] = list(snakemake.input[key])
metrics = collect_metrics(load_inputs(inputs, dict(snakemake.params)), dict(snakemake.params))
write_json(metrics, snakemake.output.metrics)
log.info("metrics written: %d verdicts, gates %s", len(metrics["verdicts"]),
         {name: gate_status(gate) for name, gate in metrics["gates"].items()})
