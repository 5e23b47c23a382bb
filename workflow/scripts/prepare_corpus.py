"""Entry point of rule prepare_corpus: built-in Shakespeare or the user's files -> one text file + manifest."""
from pathlib import Path

from corpus_weights.corpus.text import prepare_corpus
from corpus_weights.core.workflow_io import start_log, write_json

log = start_log(snakemake.log[0])
text, manifest = prepare_corpus(list(snakemake.params.files))
Path(snakemake.output.text).write_text(text, encoding="utf-8")
write_json(manifest, snakemake.output.manifest)
log.info("corpus: %d chars, %d words from %d file(s)", manifest["n_chars"], manifest["n_words"],
         len(manifest["files"]))
