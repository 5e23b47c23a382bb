"""Entry point of rule shuffle_tokens: the token-shuffled control corpus (unigrams kept, bigrams destroyed)."""
import numpy as np

from corpus_weights.corpus.tokenizing import shuffle_tokens
from corpus_weights.core.workflow_io import start_log

log = start_log(snakemake.log[0])
train = np.load(snakemake.input.train)
np.save(snakemake.output.shuffled, shuffle_tokens(train, int(snakemake.params.seed)).astype(np.int32))
log.info("shuffled %d tokens with seed %d", train.size, snakemake.params.seed)
