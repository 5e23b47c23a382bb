"""Entry point of rule measure: loss ladder, positive controls, note protocol, weight spectra of one snapshot."""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from corpus_weights.measure.analysis import measure_model
from corpus_weights.corpus.tokenizing import special_token_ids
from corpus_weights.core.workflow_io import load_weights_npz, read_json, start_log, write_json

log = start_log(snakemake.log[0])
weights, meta = load_weights_npz(snakemake.input.weights)
emb = np.load(snakemake.input.embeddings)
corpus = dict(counts=sp.load_npz(snakemake.input.bigrams), E_in=emb["E_in"], E_out=emb["E_out"], pi=emb["pi"],
              special=special_token_ids(pd.read_parquet(snakemake.input.vocab)))
validation = None
if "validation" in snakemake.input.keys():  # weights from a file: rule validation_loss evaluated them
    validation = read_json(snakemake.input.validation)
    val_loss = float(validation["val_loss"])
else:  # a trained run: the trainer's evaluation at this snapshot's step
    train_log = pd.read_parquet(snakemake.input.train_log)
    at_step = train_log[train_log["step"] == meta.get("step", -1)]["val_loss"].dropna()
    val_loss = float(at_step.iloc[-1]) if len(at_step) else None
out = measure_model(weights, corpus, read_json(snakemake.input.ladder), np.load(snakemake.input.val), val_loss,
                    {**snakemake.params.measure, "activation": meta.get("activation", "gelu")})
out["weight_spectra"].to_parquet(snakemake.output.weight_spectra, index=False)
summary = {**snakemake.params.identity, "step": meta.get("step"),
           **{k: out[k] for k in ("ladder", "controls", "note_protocol")}}
if validation is not None:
    summary["validation"] = validation
write_json(summary, snakemake.output.summary)
log.info("ladder %s; bigram control %s", out["ladder"], out["controls"]["bigram"])
