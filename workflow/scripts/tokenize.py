"""Entry point of rule tokenize: train the tokenizer, encode, split train/val, write the vocabulary table."""
from pathlib import Path

import numpy as np

from corpus_weights.tokenizing import encode, split_train_val, train_tokenizer, vocab_table
from corpus_weights.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
cfg = snakemake.params.tokenizer
text = Path(snakemake.input.text).read_text(encoding="utf-8")
tokenizer, info = train_tokenizer(text, cfg.get("kind", "word"), int(cfg.get("vocab_size", 15007)),
                                  bool(cfg.get("lowercase", False)))
ids = encode(tokenizer, text)
train, val = split_train_val(ids, float(snakemake.params.val_fraction))
np.save(snakemake.output.train, train.astype(np.int32))
np.save(snakemake.output.val, val.astype(np.int32))
vocab_table(tokenizer, train).to_parquet(snakemake.output.vocab, index=False)
tokenizer.save(snakemake.output.tokenizer)
meta = dict(info, n_tokens=int(ids.size), n_train=int(train.size), n_val=int(val.size))
write_json(meta, snakemake.output.meta)
if info.get("shrunk"):
    log.warning("vocabulary shrunk from %d to %d: the corpus has fewer distinct tokens",
                info["requested_vocab_size"], info["vocab_size"])
log.info("tokens: %s", meta)
