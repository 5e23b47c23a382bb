"""Entry point of rule intervention: loss-curve measures and the aligned share over training for one run."""
from pathlib import Path

import numpy as np
import pandas as pd

from corpus_weights.measure.intervention import analysed_val_loss, run_measures, share_over_training
from corpus_weights.corpus.tokenizing import special_token_ids
from corpus_weights.core.workflow_io import load_weights_npz, read_json, start_log, write_json

log = start_log(snakemake.log[0])
emb, cov = np.load(snakemake.input.embeddings), np.load(snakemake.input.covariance)
corpus = dict(E_in=emb["E_in"], E_out=emb["E_out"], pi=emb["pi"], eigvecs=cov["eigvecs"],
              special=special_token_ids(pd.read_parquet(snakemake.input.vocab)))
loaded = {Path(p).stem: load_weights_npz(p) for p in snakemake.input.snapshots}
snapshots = {name: w for name, (w, _) in loaded.items()}
# the random-init run's analysed model is its snapshot_100 too (the best one under early stopping)
random_final = analysed_val_loss(pd.read_parquet(snakemake.input.random_log), read_json(snakemake.input.random_meta).get("step"))
measures = run_measures(pd.read_parquet(snakemake.input.log), snapshots["snapshot_100"], np.load(snakemake.input.val),
                        read_json(snakemake.input.ladder), random_final, loaded["snapshot_100"][1].get("step"))
measures["aligned_share_by_snapshot"] = share_over_training(
    snapshots, snapshots["snapshot_000"], corpus, int(snakemake.params.K), dict(snakemake.params.align))
write_json({**snakemake.params.identity, "K": int(snakemake.params.K), "measures": measures}, snakemake.output.json)
log.info("%s: %s", snakemake.wildcards.run, {k: v for k, v in measures.items() if k != "curve"})
