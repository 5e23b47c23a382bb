"""Entry point of rule corpus_ladder: the training-free rungs of the loss ladder (unigram, interpolated bigram)."""
import numpy as np

from corpus_weights.measure.loss_ladder import corpus_ladder
from corpus_weights.core.workflow_io import read_json, start_log, write_json

log = start_log(snakemake.log[0])
ladder = corpus_ladder(np.load(snakemake.input.train), np.load(snakemake.input.val),
                       int(read_json(snakemake.input.meta)["vocab_size"]))
write_json(ladder, snakemake.output.ladder)
log.info("ladder: %s", ladder)
