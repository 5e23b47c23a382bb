"""Entry point of rule attention: every head against the null over attention (token space and on validation text),
the step-0 reference and the calibration (false-positive rate, planted head); the label-permutation test beside."""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from corpus_weights.measure.analysis import attention_model
from corpus_weights.corpus.tokenizing import special_token_ids
from corpus_weights.core.workflow_io import load_weights_npz, start_log, write_json

log = start_log(snakemake.log[0])
weights, meta = load_weights_npz(snakemake.input.weights)
step0, _ = load_weights_npz(snakemake.input.step0)
corpus = dict(counts=sp.load_npz(snakemake.input.bigrams), pi=np.load(snakemake.input.embeddings)["pi"],
              special=special_token_ids(pd.read_parquet(snakemake.input.vocab)))
params = {**snakemake.params.attention, "activation": meta.get("activation", "gelu")}  # a checkpoint's GELU
table, summary = attention_model(weights, corpus, int(meta["n_head"]), params, step0=step0,
                                 val_ids=np.load(snakemake.input.val))
table.to_parquet(snakemake.output.table, index=False)
write_json(summary, snakemake.output.json)
log.info("attention: %s", summary)
