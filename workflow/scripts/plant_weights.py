"""Entry point of rule plant_weights: a planted model (corpus_weights.measure.planted) written where extract_weights writes a
trained model's weights, with its base run's step 0 as its snapshot_000 (the ΔW reference)."""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from corpus_weights.measure.alignment import top_tokens
from corpus_weights.measure.planted import plant
from corpus_weights.corpus.tokenizing import special_token_ids
from corpus_weights.core.workflow_io import load_weights_npz, start_log, save_weights_npz

log = start_log(snakemake.log[0])
p = snakemake.params.plant
inputs = snakemake.input
base, base_meta = load_weights_npz(inputs.base)
corpus, top = {}, None
if "embeddings" in inputs.keys():
    emb = np.load(inputs.embeddings)
    corpus.update(E_in=emb["E_in"], E_out=emb["E_out"], pi=emb["pi"])
if "covariance" in inputs.keys():
    cov = np.load(inputs.covariance)
    corpus.update(mu=cov["mu"], eigvecs=cov["eigvecs"])
if "bigrams" in inputs.keys():
    corpus["counts"] = sp.load_npz(inputs.bigrams)
if "vocab" in inputs.keys():
    top = top_tokens(corpus["pi"], int(p["top_n"]), special_token_ids(pd.read_parquet(inputs.vocab)))
if "shuffled_embedding" in inputs.keys():
    corpus["E_shuffled"] = np.load(inputs.shuffled_embedding)
weights = plant(p["recipe"], base, corpus, int(base_meta["n_head"]), int(p["K"]), top, [int(p["draw"]), int(p["seed"])])
shape = {k: base_meta[k] for k in ("n_layer", "n_head", "d_model", "vocab_size", "context")}
provenance = dict(source="file", recipe=p["recipe"], base=p["base"], draw=p["draw"], seed=p["seed"])
save_weights_npz(weights, {**shape, "step": None, **provenance, "built_from": str(inputs.base)}, snakemake.output.weights)
init, init_meta = load_weights_npz(inputs.base_init)
save_weights_npz(init, {**init_meta, **provenance, "built_from": str(inputs.base_init),
                        "note": "the base run's step 0, the planted model's ΔW reference"}, snakemake.output.init)
changed = sorted(k for k in weights if not np.allclose(weights[k], base[k]))
log.info("%s (draw %s) on %s: %d of %d tensors changed: %s", p["recipe"], p["draw"], p["base"], len(changed),
         len(weights), ", ".join(changed))
