"""Entry point of rule init_embedding: a corpus-derived initial W_E (see corpus_weights.corpus.initialisation)."""
import numpy as np

from corpus_weights.corpus.corpus_stats import decomposition_options
from corpus_weights.corpus.initialisation import initial_embedding
from corpus_weights.core.workflow_io import read_json, start_log

log = start_log(snakemake.log[0])
p = snakemake.params
solver = decomposition_options(p.solver, p.device, int(snakemake.threads))
E = initial_embedding(snakemake.wildcards.variant, np.load(snakemake.input.train), np.load(snakemake.input.shuffled),
                      int(read_json(snakemake.input.meta)["vocab_size"]), int(p.d), float(p.alpha), float(p.power),
                      int(p.freq_bins), int(p.seed), **solver)
np.save(snakemake.output.embedding, E)
log.info("%s: shape %s, Frobenius norm %.4f", snakemake.wildcards.variant, E.shape, float(np.linalg.norm(E)))
