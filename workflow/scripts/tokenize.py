"""Entry point of rule tokenize: train the tokenizer (or load a checkpoint's own), encode, split train/val, write the vocabulary table.
The text is streamed in blocks and the ids written incrementally, so memory stays bounded at any corpus size."""
import os

import numpy as np

from corpus_weights.corpus.tokenizing import (encode_file, load_tokenizer, text_blocks, train_tokenizer, vocab_table,
                                             write_split)
from corpus_weights.core.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
cfg = snakemake.params.tokenizer
if snakemake.params.own_tokenizer:  # a checkpoint run: the model's own tokenizer, never one trained here
    tokenizer, info = load_tokenizer(snakemake.params.own_tokenizer)
    log.info("the model's own tokenizer: %s", info)
else:
    tokenizer, info = train_tokenizer(text_blocks(snakemake.input.text), cfg["kind"], int(cfg["vocab_size"]),
                                      bool(cfg["lowercase"]))
    log.info("tokenizer trained: %s", info)
raw = snakemake.output.train + ".stream.tmp"
try:
    n = encode_file(tokenizer, snakemake.input.text, raw)
    n_train, n_val = write_split(raw, n, float(snakemake.params.val_fraction), snakemake.output.train,
                                 snakemake.output.val)
finally:
    if os.path.exists(raw):
        os.remove(raw)
vocab_table(tokenizer, np.load(snakemake.output.train, mmap_mode="r")).to_parquet(snakemake.output.vocab, index=False)
tokenizer.save(snakemake.output.tokenizer)
meta = dict(info, n_tokens=int(n), n_train=int(n_train), n_val=int(n_val))
write_json(meta, snakemake.output.meta)
if info.get("shrunk"):
    log.warning("vocabulary shrunk from %d to %d: the corpus has fewer distinct tokens",
                info["requested_vocab_size"], info["vocab_size"])
log.info("tokens: %s", meta)
