"""Entry point of rule import_checkpoint: a model trained elsewhere -> the weight contract (snapshot_100), and its
step-0 control, this workflow's initialisation of the same architecture (snapshot_000); corpus_weights.model.checkpoints."""
from corpus_weights.core.workflow_io import read_json, save_weights_npz, start_log
from corpus_weights.model.checkpoints import (check_vocabulary, read_checkpoint, reinitialised_weights,
                                              trim_vocabulary)

log = start_log(snakemake.log[0])
p = snakemake.params.checkpoint
weights, spec = read_checkpoint(p["path"], p["format"])
tokens_meta = read_json(snakemake.input.meta)
V = check_vocabulary(spec, int(tokens_meta["vocab_size"]), p["trim_vocab"], p["tokenizer_source"])
if V < spec["vocab_size"]:
    weights = trim_vocabulary(weights, V)
    log.warning("embedding rows %d..%d dropped (model.trim_vocab: the tokenizer has %d tokens)", V,
                spec["vocab_size"] - 1, V)
if abs(spec["ln_eps"] - 1e-5) > 1e-12:
    log.warning("LayerNorm epsilon %g: the analysis's forward passes use 1e-5", spec["ln_eps"])
arch = dict(n_layer=spec["n_layer"], n_head=spec["n_head"], d_model=spec["d_model"], vocab_size=V,
            context=spec["context"], activation=spec["activation"], ln_eps=spec["ln_eps"])
save_weights_npz(weights, dict(arch, step=None, source=str(p["path"]), format=p["format"], biases=spec["biases"],
                               tied=spec["tied"], checkpoint_vocab_size=spec["vocab_size"]),
                 snakemake.output.weights)
init = reinitialised_weights(dict(spec, vocab_size=V), p["seed"])
save_weights_npz(init, dict(arch, step=0, source=f"re-initialisation of the checkpoint's architecture (seed {p['seed']})",
                            biases=False, tied=True), snakemake.output.init)
log.info("checkpoint %s (%s): %d matrices, %d layers, d = %d, V = %d, activation %s, biases %s; step 0 re-initialised "
         "with seed %d", p["path"], p["format"], len(weights), spec["n_layer"], spec["d_model"], V,
         spec["activation"], spec["biases"], p["seed"])
