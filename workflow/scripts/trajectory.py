"""Entry point of rule trajectory: every headline statistic of one trained run at each of its snapshots."""
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from corpus_weights.tokenizing import special_token_ids
from corpus_weights.trajectory import CorpusSide, run_trajectory
from corpus_weights.workflow_io import load_weights_npz, read_json, start_log

log = start_log(snakemake.log[0])
emb = np.load(snakemake.input.embeddings)
corpus = dict(counts=sp.load_npz(snakemake.input.bigrams), E_in=emb["E_in"], E_out=emb["E_out"], pi=emb["pi"],
              eigvecs=np.load(snakemake.input.covariance)["eigvecs"], special=special_token_ids(pd.read_parquet(snakemake.input.vocab)))
side = CorpusSide(corpus, read_json(snakemake.input.ladder), dict(snakemake.params.trajectory))
snapshots = []
for path in snakemake.input.snapshots:
    weights, meta = load_weights_npz(path)
    snapshots.append((int(Path(path).stem.split("_")[1]), int(meta["step"]), weights))
train_log = pd.read_parquet(snakemake.input.train_log).dropna(subset=["val_loss"])
logged = dict(zip(train_log["step"].astype(int), train_log["val_loss"].astype(float)))
table = run_trajectory(snapshots, side, np.load(snakemake.input.val), logged, dict(snakemake.params.model))
table.to_parquet(snakemake.output.table, index=False)
log.info("trajectory of %s: %d snapshots, %d rows", snakemake.wildcards.run, table["step"].nunique(), len(table))
