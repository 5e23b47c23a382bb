"""Entry point of rule attention: per-head QK vs preceding-token statistic and the positive control, with nulls."""
import numpy as np
import scipy.sparse as sp

from corpus_weights.analysis import attention_analysis
from corpus_weights.weights import load_weights_npz
from corpus_weights.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
params = snakemake.params.analysis
weights, meta = load_weights_npz(snakemake.input.weights)
counts = sp.load_npz(snakemake.input.bigrams)
pi = np.load(snakemake.input.embeddings)["pi"]
table, summary = attention_analysis(weights, int(meta["n_head"]), counts, pi, int(params["top_n"]),
                                    int(params["freq_bins"]), int(params["permutations"]), int(params["seed"]))
table.to_parquet(snakemake.output.table, index=False)
write_json(summary, snakemake.output.json)
log.info("positive control: %s", summary["positive_control"])
