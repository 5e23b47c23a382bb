"""Entry point of rule note_protocol: the note's own measurements, reproduced literally on raw weights."""
import numpy as np
import scipy.sparse as sp

from corpus_weights.analysis import note_protocol_summary
from corpus_weights.weights import load_weights_npz
from corpus_weights.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
params = snakemake.params.analysis
weights, _ = load_weights_npz(snakemake.input.weights)
emb = np.load(snakemake.input.embeddings)
summary = note_protocol_summary(weights, sp.load_npz(snakemake.input.bigrams), emb["E_in"], emb["E_out"], emb["pi"],
                                int(params["headline_K"]), int(params["permutations"]), int(params["seed"]))
write_json(summary, snakemake.output.json)
log.info("note protocol: r2_direct=%.4f r2_random=%.4f", summary["r2_direct"], summary["r2_random"])
