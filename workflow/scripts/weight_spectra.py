"""Entry point of rule weight_spectra: participation ratio and effective rank of the trained weights."""
import numpy as np

from corpus_weights.analysis import weight_spectra
from corpus_weights.weights import load_weights_npz
from corpus_weights.workflow_io import start_log

log = start_log(snakemake.log[0])
weights, _ = load_weights_npz(snakemake.input.weights)
table = weight_spectra(weights, np.load(snakemake.input.embeddings)["pi"])
table.to_parquet(snakemake.output.table, index=False)
log.info("%d spectra", len(table))
