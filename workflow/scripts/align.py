"""Entry point of rule align: the corpus -> model map with its nulls, and the corpus basis with its basis null, refitted
on `analysis.splits` fit/test splits (their spread is stored beside the split-0 headline values)."""
import numpy as np
import pandas as pd

from corpus_weights.measure.analysis import align_model
from corpus_weights.core.input_checks import format_problems, map_problems
from corpus_weights.corpus.tokenizing import special_token_ids
from corpus_weights.core.workflow_io import load_weights_npz, start_log, write_json

log = start_log(snakemake.log[0])
weights, _ = load_weights_npz(snakemake.input.weights)
emb, cov = np.load(snakemake.input.embeddings), np.load(snakemake.input.covariance)
corpus = dict(E_in=emb["E_in"], E_out=emb["E_out"], pi=emb["pi"], eigvecs=cov["eigvecs"],
              special=special_token_ids(pd.read_parquet(snakemake.input.vocab)))
problems = map_problems(int((emb["pi"] > 0).sum()), int(snakemake.params.align["top_n"]), weights["W_E"].shape[1])
if problems:
    raise SystemExit(format_problems(problems, "the corpus is too small for this configuration"))
arrays, summary = align_model(weights, corpus, snakemake.params.align)
np.savez(snakemake.output.npz, **arrays)
write_json(summary, snakemake.output.json)
log.info("vocabulary map: held-out R2 %.4f, null %s", summary["vocab_map_heldout_r2"], summary["vocab_map_null"])
log.info("over %d splits: held-out R2 sd %.4f, Procrustes cos sd %.4f", summary["n_splits"],
         summary["vocab_map_heldout_r2_split_sd"], summary["procrustes_heldout_cos_split_sd"])
