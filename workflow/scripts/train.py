"""Entry point of rule train: one model per (data, seed); resumes from results/<corpus>/<experiment>/.train_state
after a kill."""
import sys

import torch

from corpus_weights.core.input_checks import format_problems, split_problems
from corpus_weights.model.gpt import GPTConfig
from corpus_weights.model.training import TrainConfig, train_model
from corpus_weights.core.workflow_io import read_json, start_log, usable_threads

log = start_log(snakemake.log[0])
meta = read_json(snakemake.input.meta)
vocab_size = int(meta["vocab_size"])
problems = split_problems(int(meta["n_train"]), int(meta["n_val"]), int(snakemake.params.model["context"]),
                          float(snakemake.params.val_fraction))
if problems:
    raise SystemExit(format_problems(problems, "the corpus is too small for this configuration"))
model_cfg = GPTConfig(vocab_size=vocab_size, **snakemake.params.model)
train_cfg = TrainConfig(**snakemake.params.train, threads=usable_threads(snakemake.threads))
log.info("model %s, training %s, torch %s", model_cfg, train_cfg, torch.__version__)


def progress(message: str) -> None:
    """Training progress goes to the job log and to the console (Snakemake shows the job's original stderr)."""
    log.info(message)
    print(f"[{snakemake.wildcards.run}] {message}", file=sys.__stderr__, flush=True)


try:
    summary = train_model(model_cfg, train_cfg, snakemake.input.train, snakemake.input.val,
                          out_dir=str(snakemake.output.final).rsplit("/", 1)[0], state_dir=snakemake.params.state_dir,
                          log=progress)
except KeyboardInterrupt:
    # Ctrl-C: one line, not a torch traceback; the saved state makes the rerun resume (exit status as for SIGINT)
    progress("interrupted; the last saved state is kept and a rerun resumes from it")
    sys.exit(130)
log.info("done: %s", summary)
