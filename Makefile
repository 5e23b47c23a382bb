# Two entry points: `make report` (the default run) and `make test`. Both bootstrap .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 8

.PHONY: report intervention reference note compare test test-unit test-slurm bench bench-checkpoint bench-analysis bench-scale sweep mutants mutation calibrate clean-results

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) results/report.html

# The intervention experiment (corpus-initialised models) at the default scale: 6 more models, ~20 min on 2 cores.
intervention: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) results/report.html --configfile config/intervention.yaml

# A study: its config run to the report, then the page generated from its metrics.json (with the wall time) committed
# under docs/, and the metrics.json itself under docs/results/ (make compare reads it on a fresh clone).
# $(call study,CONFIG,EXPERIMENT,TITLE variable,PAGE)
define study
	start=$$(date +%s); $(BIN)/snakemake --cores $(CORES) results/report.html --configfile $(1) && \
	  end=$$(date +%s) && $(BIN)/python -m corpus_weights.report.results_page \
	  --experiment results/shakespeare/$(2)/metrics.json --title "$($(3))" \
	  --wall-time "$$(( (end - start) / 60 )) min $$(( (end - start) % 60 )) s for make $(2) on this machine ($$(nproc) cores)" \
	  > $(4).tmp && mv $(4).tmp $(4) && \
	  mkdir -p docs/results && cp results/shakespeare/$(2)/metrics.json docs/results/$(2).metrics.json
endef

# The reference study (config/reference.yaml): the default architecture trained until its validation loss stops
# improving (at most 3 M tokens), two seeds, the shuffled control and every intervention variant (9 models, about an
# hour and a half on 2 cores); regenerates docs/reference-results.md.
REFERENCE_TITLE := Reference study: trained to its best validation loss
reference: $(STAMP)
	$(call study,config/reference.yaml,reference,REFERENCE_TITLE,docs/reference-results.md)

# The note's scale (config/note.yaml: 8 layers, d = 256, context 128, ≈ 10.2 M parameters), two seeds and the
# controls, about an hour on 2 CPU cores with bf16; regenerates docs/note-scale-results.md.
NOTE_TITLE := The note's scale: 8 layers, d = 256, context 128
note: $(STAMP)
	$(call study,config/note.yaml,note,NOTE_TITLE,docs/note-scale-results.md)

# Every experiment side by side: each one's metrics.json from results/ when it has run here, else the copy committed
# in docs/results/ by `make reference` / `make note` (a fresh clone compares its default run with the committed
# studies). Writes results/compare.html; `make compare COMPARE_OUT=docs/compare.md` records the committed page.
EXPERIMENTS := default reference note intervention
COMPARE_OUT ?= results/compare.html
compare: $(STAMP)
	$(BIN)/python -m corpus_weights.report.compare $(foreach e,$(EXPERIMENTS),$(firstword $(wildcard \
	  results/shakespeare/$(e)/metrics.json docs/results/$(e).metrics.json))) -o $(COMPARE_OUT)

# Unit tests with planted answers + end-to-end Snakemake runs on the tiny config (~5-8 min on 2 idle cores).
test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m "not slurm" tests

# The unit part alone: every test that neither plans nor runs the workflow (no Snakemake; the selection a developer
# reruns while editing the library, and what a mutation run's tests are drawn from).
test-unit: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m "not slow and not slurm and not workflow" tests

# The workflow through profiles/slurm on a real single-node SLURM cluster the test starts itself (root + apt).
test-slurm: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m slurm tests

# A GPT-2-small-shaped checkpoint (random, built from a config; a word-level tokenizer over a synthetic 10 M-token
# corpus) analysed end to end: every rule's seconds and peak memory (benchmarks/bench_checkpoint.py; long on 2 cores).
bench-checkpoint: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python benchmarks/bench_checkpoint.py --out results/benchmarks/checkpoint.md

# The training benchmark at the note's shape (trainer step vs a plain PyTorch baseline, tokens/s, MFU; ~2 min).
# Writes results/benchmarks/training.md; `make bench BENCH_OUT=benchmarks/RESULTS.md` records it in the tracked file.
BENCH_OUT ?= results/benchmarks/training.md
bench: $(STAMP)
	mkdir -p $(dir $(BENCH_OUT))
	$(BIN)/python benchmarks/bench_training.py --out $(BENCH_OUT)

# Single-threaded cost of each analysis job on the default run's artifacts (after `make report`).
bench-analysis: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python benchmarks/bench_analysis.py

# Tokenization + corpus statistics on synthetic corpora up to V = 50k, 100 M tokens (~15 min; benchmarks/RESULTS.md).
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --baseline

# The default-scale sweep (tokens/s, validation loss, learned fraction per candidate; benchmarks/scale_sweep.md).
sweep: $(STAMP)
	$(BIN)/snakemake --cores 2 results/shakespeare/default/tokens/meta.json
	$(BIN)/python benchmarks/scale_sweep.py speed
	$(BIN)/python benchmarks/scale_sweep.py train d128-c64-b32@600000 d96-c64-b32@750000 d96-c32-b64@750000 \
		d128-c32-b64-lr5@600000 d64-c32-b64@900000

# Verdict calibration: planted models (true and false by construction) and 20 noise models through the workflow's own
# rules on the tiny config; writes docs/calibration.md (~7-14 min on 2 cores).
calibrate: $(STAMP)
	$(BIN)/python benchmarks/calibrate.py

clean-results:
	rm -rf results .snakemake

# mutmut over the core modules with the fast unit tests ([tool.mutmut] in pyproject.toml; about 30 min on 2 cores);
# the score and the surviving mutants judged equivalent are recorded in docs/testing.md. (The SVD accuracy guard,
# ~10 s a run, is left to make test.)
mutation: $(STAMP)
	$(BIN)/python -m pip install -q mutmut==3.8.1
	# one BLAS thread: mutmut forks its children from a parent whose tests started BLAS/torch thread pools, and
	# forked children then hung (idle until their timeouts) from loss_ladder's mutants on; with one thread they don't
	PATH=$(abspath $(BIN)):$$PATH OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(BIN)/mutmut run --max-children 2 $(MUTANTS) || true
	$(BIN)/python tests/mutation_score.py

# Deliberate single bugs checked against the tests that must catch them (tests/mutants.py; a few minutes).
mutants: $(STAMP)
	$(BIN)/python tests/mutants.py
