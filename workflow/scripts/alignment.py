"""Entry point of rule alignment: the corpus -> model map through the vocabulary for one snapshot."""
import numpy as np

from corpus_weights.analysis import vocabulary_alignment
from corpus_weights.weights import load_weights_npz
from corpus_weights.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
params = snakemake.params.analysis
weights, meta = load_weights_npz(snakemake.input.weights)
emb = np.load(snakemake.input.embeddings)
arrays, summary = vocabulary_alignment(weights, emb["E_in"], emb["pi"], int(params["top_n"]), int(params["seed"]))
np.savez(snakemake.output.npz, **arrays)
write_json(summary, snakemake.output.json)
log.info("alignment: %s", summary)
