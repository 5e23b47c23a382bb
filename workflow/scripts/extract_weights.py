"""Entry point of rule extract_weights: a safetensors snapshot -> named matrices (documented orientation)."""
from corpus_weights.model.weights import extract_weights, load_model_safetensors, read_safetensors_step
from corpus_weights.core.workflow_io import save_weights_npz, start_log

log = start_log(snakemake.log[0])
model, cfg = load_model_safetensors(snakemake.input.model)
weights = extract_weights(model, cfg)
meta = dict(n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model, vocab_size=cfg.vocab_size,
            context=cfg.context, step=read_safetensors_step(snakemake.input.model), source=str(snakemake.input.model))
save_weights_npz(weights, meta, snakemake.output.weights)
log.info("extracted %d matrices", len(weights))
