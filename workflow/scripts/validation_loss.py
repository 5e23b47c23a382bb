"""Entry point of rule validation_loss: the validation loss of weights that did not come from training here (a
numpy forward pass over the trainer's evaluation windows; corpus_weights.measure.loss_ladder.validation_loss)."""
import numpy as np

from corpus_weights.measure.loss_ladder import validation_loss
from corpus_weights.core.workflow_io import load_weights_npz, start_log, write_json

log = start_log(snakemake.log[0])
weights, meta = load_weights_npz(snakemake.input.weights)
out = validation_loss(weights, np.load(snakemake.input.val), int(meta["n_head"]), int(meta["context"]),
                      int(snakemake.params.eval_tokens), activation=meta.get("activation", "gelu"))
write_json(out, snakemake.output.json)
log.info("validation loss %.4f over %d windows of %d tokens", out["val_loss"], out["windows"], out["context"])
