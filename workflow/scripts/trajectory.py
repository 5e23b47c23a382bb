"""Entry point of rule trajectory: every headline statistic of one trained run at each of its snapshots."""
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from corpus_weights.model.snapshot_eval import snapshot_val_loss
from corpus_weights.model.weights import extract_weights, load_model_safetensors, read_safetensors_step
from corpus_weights.corpus.tokenizing import special_token_ids
from corpus_weights.measure.trajectory import CorpusSide, analysed_from_files, run_trajectory
from corpus_weights.core.workflow_io import read_json, start_log

log = start_log(snakemake.log[0])
emb = np.load(snakemake.input.embeddings)
corpus = dict(counts=sp.load_npz(snakemake.input.bigrams), E_in=emb["E_in"], E_out=emb["E_out"], pi=emb["pi"],
              eigvecs=np.load(snakemake.input.covariance)["eigvecs"],
              special=special_token_ids(pd.read_parquet(snakemake.input.vocab)))
side = CorpusSide(corpus, read_json(snakemake.input.ladder), dict(snakemake.params.trajectory))
snapshots = []  # the weights straight from each snapshot's model file (what rule extract_weights would write)
for path in snakemake.input.models:
    model_at, config = load_model_safetensors(path)
    snapshots.append((int(Path(path).stem.split("_")[1]), int(read_safetensors_step(path)),
                      extract_weights(model_at, config)))
train_log = pd.read_parquet(snakemake.input.train_log).dropna(subset=["val_loss"])
val_loss = dict(zip(train_log["step"].astype(int), train_log["val_loss"].astype(float)))
model = dict(snakemake.params.model)
val_ids = np.load(snakemake.input.val)
for (pct, step, _), path in zip(snapshots, snakemake.input.models):  # between evaluations: the trainer's own
    if step not in val_loss:                                        # evaluation, run on the snapshot
        val_loss[step] = snapshot_val_loss(path, val_ids, eval_tokens=int(model["eval_tokens"]),
                                           batch_size=int(model["batch_size"]), dtype=model["dtype"], threads=1)
# snapshots the full analysis measured: their statistics are read, not measured again
analysed = analysed_from_files({k: snakemake.input[k] for k in snakemake.input.keys() if k.startswith("snapshot_")},
                               int(snakemake.params.trajectory["headline_K"]), int(snapshots[0][2]["W_E"].shape[1]))
table = run_trajectory(snapshots, side, val_ids, val_loss, model, analysed)
table.to_parquet(snakemake.output.table, index=False)
log.info("trajectory of %s: %d snapshots, %d rows", snakemake.wildcards.run, table["step"].nunique(), len(table))
