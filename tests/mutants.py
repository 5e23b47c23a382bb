"""Deliberate single bugs, each put into the code by hand and checked against the tests that must catch it.

    python tests/mutants.py [NAME ...]      # all, or the named ones; prints caught / NOT CAUGHT per mutant

Each mutant replaces one exact snippet in one file, runs the listed tests, and restores the file (git is not
needed). Everything happens in a scratch copy of the repository (results/, .git and .venv left out; PYTHONPATH points
at the copy's src/), so the working tree is never edited: a workflow running from it meanwhile neither imports a
mutant nor sees a library file's mtime change (which would make Snakemake rerun its jobs). The list is the one of
the tests issue (20 bugs the old suite missed 14 of), bugs in the new estimators, and (issue 24) bugs in the
trainer's schedule, data order, evaluation split, snapshots and initialisation, in word/line counting, the
train/validation split and the bigram's λ, and in the rules' wiring. It is a check to run after big changes, not
part of `make test` (a few minutes).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = "src/corpus_weights/"
TRAINING_SEM = "tests/test_training_semantics.py"
CORPUS_SEM = "tests/test_corpus_semantics.py"
DAG = "tests/test_dag_wiring.py"
METRICS = "tests/test_metrics_assembly.py"
SKIP = {".git", ".venv", "results", ".snakemake", "mutants", "resources/corpus", "benchmarks/out", "logs"}

MUTANTS = {
    "unaligned basis in the pipeline": (LIB + "measure/analysis.py", '"corpus_aligned": basis[:, :K],',
                                        '"corpus_aligned": eigvecs[:, :K],', "tests/test_invariance.py"),
    "resume drops pending losses": (LIB + "model/training.py",
                                    'self.monitor = LossMonitor(meta.get("interval_losses", []) if meta else [], self.lr)',
                                    "self.monitor = LossMonitor([], self.lr)", "tests/test_training.py"),
    "fingerprint never checked": (LIB + "model/training.py", 'if ptr.get("fingerprint") != fingerprint:', "if False:",
                                  "tests/test_training.py"),
    "batch ignores the step": (LIB + "model/training.py", "rng = np.random.default_rng([seed, step])",
                               "rng = np.random.default_rng([seed, 0])", "tests/test_training.py"),
    "second seed trained with seed 0": ("workflow/rules/common.smk", 'params["seed"] = RUNS[wildcards.run]["seed"]',
                                        'params["seed"] = TRAIN["seeds"][0]',
                                        DAG + " tests/test_workflow.py::test_science_on_the_tiny_run"),
    "within-bin permutation is a fixed reversal": (LIB + "core/nulls.py", "shuffled = np.lexsort((rng.random(n), bins))",
                                                   "shuffled = np.lexsort((-np.arange(n), bins))",
                                                   "tests/test_nulls.py"),
    "rotation-null p reversed": (LIB + "core/nulls.py", "(np.abs(nl - mu) >= abs(obs - mu) - tol).sum()",
                                 "(np.abs(nl - mu) <= abs(obs - mu) + tol).sum()", "tests/test_nulls.py"),
    "normalised score = share/own": (LIB + "measure/projection.py", "normalised=(m - base) / (own - base) if own - base != 0",
                                     "normalised=m / own if own - base != 0", "tests/test_projection.py"),
    "dW ignores W_init": (LIB + "measure/projection.py", "W = W - np.asarray(W_init[name], dtype=np.float64)", "W = W",
                          "tests/test_projection.py"),
    "random basis not orthonormal": (LIB + "core/linalg.py", "Qm, R = np.linalg.qr(rng.standard_normal((d, K)))\n    return Qm",
                                     "Qm, R = rng.standard_normal((d, K)), np.eye(K)\n    return Qm",
                                     "tests/test_projection.py"),
    "own PCA with K+1 directions": (LIB + "measure/projection.py", "own = float(lam[:K].sum() / lam.sum())",
                                    "own = float(lam[:K + 1].sum() / lam.sum())", "tests/test_projection.py"),
    "qk factors ignore the LN weight": (LIB + "measure/attention.py", "    if ln_w is not None:\n        W_Q = W_Q * ln_w",
                                        "    if False:\n        W_Q = W_Q * ln_w", "tests/test_attention.py"),
    "top_n <= V check removed": ("workflow/rules/common.smk",
                                 'problems.append(("analysis.top_n", "must not exceed tokenizer.vocab_size"))', "pass",
                                 "tests/test_config_errors.py"),
    "strata by occupancy only": (LIB + "core/nulls.py", "np.unique(occupancy * (n_bins + 1) + width,",
                                 "np.unique(occupancy * (n_bins + 1) + 0 * width,", "tests/test_nulls.py"),
    "BH step-down instead of step-up": (LIB + "core/nulls.py", "k = int(np.nonzero(below)[0].max())",
                                        "k = int(np.argmin(below)) - 1 if not below.all() else len(p) - 1",
                                        "tests/test_estimators.py"),
    "weighted centring keeps the column effect": (LIB + "measure/controls.py", "return S - r[:, None] - c[None, :] + w @ r",
                                                  "return S - r[:, None]", "tests/test_estimators.py"),
    "attention row-centred only": (LIB + "measure/attention.py", "    F = (Xc @ W_Q.T)", "    F = (X @ W_Q.T)",
                                   "tests/test_attention.py"),
    "shuffled-control gate inverted": (LIB + "report/gates.py", 'row["ok"] = bool(abs(z) < t["max_null_abs_z"])\n',
                                       'row["ok"] = bool(abs(z) >= t["max_null_abs_z"])\n', "tests/test_gates.py"),
    "one-token forward skips the MLP": (LIB + "measure/loss_ladder.py",
                                        'x = x + gelu(h2 @ f(f"L{i}.W_in").T + b(f"L{i}.b_in"), activation) @ '
                                        'f(f"L{i}.W_out").T + b(f"L{i}.b_out")', "x = x",
                                        "tests/test_loss_ladder.py"),
    "map null keeps the pairing": (LIB + "measure/alignment.py", "Wp[top] = W[top[p]]", "Wp[top] = W[top]",
                                   "tests/test_estimators.py"),
    "ridge lambda never chosen": (LIB + "measure/alignment.py",
                                  "return float(self.grid[int(np.argmin(self.cv_errors(Y)))] * self.scale)",
                                  "return float(self.grid[0] * self.scale)", "tests/test_estimators.py"),
    "basis null from the real embedding": (LIB + "measure/alignment.py", "Ep = E[binned_permutation(bins, rng)]", "Ep = E",
                                           "tests/test_estimators.py"),

    # ---- issue 24: training semantics (tests/test_training_semantics.py)
    "lr schedule in tokens": (LIB + "model/training.py", "    lr = lr_at(it, total_steps, cfg)",
                              "    lr = lr_at(it * batch_size * context, total_steps, cfg)", TRAINING_SEM),
    "cosine without its floor": (LIB + "model/training.py", "mn = cfg.lr * cfg.min_lr_frac", "mn = 0.0", TRAINING_SEM),
    "warm-up starts at lr 0": (LIB + "model/training.py", "return cfg.lr * (step + 1) / warm", "return cfg.lr * step / warm",
                               TRAINING_SEM),
    "cosine spans the warm-up too": (LIB + "model/training.py", "span = max(1, total_steps - warm)",
                                     "span = max(1, total_steps)", TRAINING_SEM),
    "data order seeded by seed + step": (LIB + "model/training.py", "rng = np.random.default_rng([seed, step])",
                                         "rng = np.random.default_rng(seed + step)", TRAINING_SEM),
    "batches ignore the seed": (LIB + "model/training.py", "sample_offsets(cfg.seed, it, len(data), batch_size, context)",
                                "sample_offsets(0, it, len(data), batch_size, context)", TRAINING_SEM),
    "resume skips a step": (LIB + "model/training.py", 'self.start_step = int(meta["step"]) if meta else 0',
                            'self.start_step = int(meta["step"]) + 1 if meta else 0', TRAINING_SEM),
    "val loss on the training split": (LIB + "model/training.py",
                                       "vl, tl = self.evaluate(self.val_data, self.val_win), self.monitor.take_mean()",
                                       "vl, tl = self.evaluate(self.train_data, self.trn_win), self.monitor.take_mean()",
                                       TRAINING_SEM),
    "val windows laid over the train length": (LIB + "model/training.py",
                                               "self.val_win = eval_windows(len(self.val_data), cfg.eval_tokens, self.C)",
                                               "self.val_win = eval_windows(len(self.train_data), cfg.eval_tokens, self.C)",
                                               TRAINING_SEM),
    "eval mean of batch means": (LIB + "model/training.py", "total += loss.item() * len(x)\n        n += len(x)",
                                 "total += loss.item()\n        n += 1", TRAINING_SEM),
    "train loss rows accumulate over the run": (LIB + "model/training.py", "self.interval.clear()\n        return mean",
                                                "return mean", TRAINING_SEM),
    "snapshot one step late": (LIB + "model/training.py",
                               "checkpointer.snapshot(self.model, step, self.snap_steps.get(step, []))",
                               "checkpointer.snapshot(self.model, step, self.snap_steps.get(step - 1, []))",
                               TRAINING_SEM),
    "snapshot step truncated": (LIB + "model/training.py", "steps.setdefault(round(frac * total_steps), [])",
                                "steps.setdefault(int(frac * total_steps), [])", TRAINING_SEM),
    "init ignores the seed": (LIB + "model/training.py", "torch.manual_seed(train_cfg.seed)", "torch.manual_seed(0)",
                              TRAINING_SEM),
    "residual projections at the plain std": (LIB + "model/gpt.py", "res_std = std / math.sqrt(2 * self.config.n_layer)",
                                              "res_std = std", TRAINING_SEM),
    "MLP output projection not scaled": (LIB + "model/gpt.py",
                                         'elif name.endswith("attn.o.weight") or name.endswith("mlp.fc_out.weight"):',
                                         'elif name.endswith("attn.o.weight"):', TRAINING_SEM),
    "uniform init of the same std": (LIB + "model/gpt.py", "nn.init.normal_(p, 0.0, std)",
                                     "nn.init.uniform_(p, -std * 3 ** 0.5, std * 3 ** 0.5)", TRAINING_SEM),
    # ---- issue 24: corpus, split, λ (tests/test_corpus_semantics.py)
    "file words split on single spaces": (LIB + "corpus/text.py", '"n_words": len(text.split()),',
                                          '"n_words": len(text.split(" ")),', CORPUS_SEM),
    "count block cut before its line feed": (LIB + "corpus/text.py", "end = len(text) if end < 0 else end + 1",
                                             "end = len(text) if end < 0 else end", CORPUS_SEM),
    "words and lines swapped": (LIB + "corpus/text.py", "n_words, n_lines = count_words_and_lines(text)",
                                "n_lines, n_words = count_words_and_lines(text)", CORPUS_SEM),
    "files joined without their last line feed": (LIB + "corpus/text.py",
                                                  'parts.append(text if text.endswith("\\n") else text + "\\n")',
                                                  "parts.append(text)", CORPUS_SEM),
    "streamed split: validation at the head": (LIB + "corpus/tokenizing.py", "cut = n - int(round(n * val_fraction))",
                                               "cut = int(round(n * val_fraction))", CORPUS_SEM),
    "split returns (val, train)": (LIB + "corpus/tokenizing.py", "return ids[:cut].copy(), ids[cut:].copy()",
                                   "return ids[cut:].copy(), ids[:cut].copy()", CORPUS_SEM),
    "lambda chosen on validation": (LIB + "measure/loss_ladder.py", "_bigram_ce(counts_fit, p_fit, dev, lam) for lam in grid}",
                                    "_bigram_ce(counts_fit, p_fit, val_ids, lam) for lam in grid}", CORPUS_SEM),
    "bigram counts not refitted": (LIB + "measure/loss_ladder.py",
                                   "ce = _bigram_ce(_pair_counts(train_ids, vocab_size), "
                                   "unigram_probs(train_ids, vocab_size), val_ids, lam)",
                                   "ce = _bigram_ce(counts_fit, p_fit, val_ids, lam)", CORPUS_SEM),
    "lambda held-out part from the head": (LIB + "measure/loss_ladder.py",
                                           "cut = int(round(train_ids.size * (1 - dev_fraction)))",
                                           "cut = int(round(train_ids.size * dev_fraction))", CORPUS_SEM),
    "lambda maximises the held-out CE": (LIB + "measure/loss_ladder.py", "lam = min(dev_ce, key=dev_ce.get)",
                                         "lam = max(dev_ce, key=dev_ce.get)", CORPUS_SEM),
    # ---- issue 24: the rules' wiring (tests/test_dag_wiring.py)
    "shuffled run reads train.npy": ("workflow/rules/common.smk",
                                     'result_path("shuffled_tokens" if RUNS[wildcards.run]["data"] == "shuffled"',
                                     'result_path("shuffled_tokens" if RUNS[wildcards.run]["init"] == "shuffled"',
                                     DAG),
    "dW init is the snapshot itself": ("workflow/rules/analysis.smk",
                                       'init=result_path("weights", snap="snapshot_000"),',
                                       'init=result_path("weights"),', DAG),
    "dW init of the first main seed": ("workflow/rules/analysis.smk",
                                       'init=result_path("weights", snap="snapshot_000"),',
                                       'init=result_path("weights", run=f"orig-s{TRAIN[\'seeds\'][0]}", '
                                       'snap="snapshot_000"),',
                                       DAG),
    "step 0 of the last main seed": ("workflow/rules/common.smk", 'run=trained_mains[0], snap="snapshot_000"',
                                     'run=trained_mains[-1], snap="snapshot_000"', DAG),
    "mains analyse the half-way snapshot": ("workflow/rules/common.smk", 'run=run, snap="snapshot_100", role="main"',
                                            'run=run, snap="snapshot_050", role="main"', DAG),
    "fit_projections K from the config": ("workflow/scripts/fit_projections.py", "K = int(snakemake.wildcards.K)",
                                          'K = int(snakemake.config["analysis"]["headline_K"])', DAG),
    "loss ladder on training tokens": ("workflow/rules/analysis.smk",  # (rule measure's inputs)
                                       'result_path("embeddings"),\n        ladder=result_path("ladder"),\n'
                                       '        val=result_path("val_tokens"),\n        vocab=result_path("vocab"),\n'
                                       '        code=script_code("measure")',
                                       'result_path("embeddings"),\n        ladder=result_path("ladder"),\n'
                                       '        val=result_path("train_tokens"),\n        vocab=result_path("vocab"),\n'
                                       '        code=script_code("measure")',
                                       DAG),
    "corpus ladder evaluated on train": ("workflow/rules/corpus.smk",
                                         '        val=result_path("val_tokens"),\n        meta=',
                                         '        val=result_path("train_tokens"),\n        meta=', DAG),
    # issue 24: metrics.json as wiring (tests/test_metrics_assembly.py, collect_metrics / run_card / load_inputs)
    "gates read the headline model's alignment": (LIB + "report/metrics.py", 'alignment=results[lab]["alignment"]',
                                                  'alignment=results[main_label]["alignment"]', METRICS),
    "training table names a run by its step-0 model": (
        LIB + "report/metrics.py", 'model_of = {m["run"]: label for label, m in models.items() if m["role"] != Role.STEP0}',
        'model_of = {m["run"]: label for label, m in models.items()}', METRICS),
    "note protocol of the first model listed": (LIB + "report/metrics.py",
                                                'metrics["note_protocol"] = models[main_label]["note_protocol"]',
                                                'metrics["note_protocol"] = next(iter(models.values()))["note_protocol"]',
                                                METRICS),
    "W_E spectrum of the first model listed": (LIB + "report/metrics.py",
                                               'spectra_metrics(data["spectra"], data["main_res"]["weight_spectra"])',
                                               'spectra_metrics(data["spectra"], next(iter(results.values()))'
                                               '["weight_spectra"])', METRICS),
    "intervention gate against the bigram CE": (LIB + "report/metrics.py",
                                                'models[main_label]["corrected"]["ladder"]["unigram_ce"])',
                                                'models[main_label]["corrected"]["ladder"]["bigram_ce"])', METRICS),
    "trajectory jobs timed as analysis": (LIB + "report/metrics.py",
                                          'ANALYSIS_RULES = ("align", "measure", "attention", "fit_projections")',
                                          'ANALYSIS_RULES = ("align", "measure", "attention", "fit_projections", '
                                          '"trajectory")', METRICS),
    "headline model = the first listed": (LIB + "report/metrics.py",
                                          'main_label = next(mdl["label"] for mdl in params["models"] if mdl["role"] == '
                                          'Role.MAIN)', 'main_label = params["models"][0]["label"]', METRICS),
    "training summaries paired with another run's log": (
        LIB + "report/metrics.py", 'zip(params["runs"], inputs["train_logs"], inputs["train_summaries"])',
        'zip(params["runs"], inputs["train_logs"], reversed(inputs["train_summaries"]))', METRICS),
    "token count from the corpus manifest": (LIB + "report/metrics.py", '"n_tokens": meta.get("n_tokens")',
                                             '"n_tokens": manifest.get("n_tokens")', METRICS),
    # issue 24: which null and which statistic each verdict reads (tests/test_verdicts.py, cards as reviewed)
    "basis card's null from the last seed": (LIB + "report/verdicts.py",
                                             'null = (f"{fmt(tests[0][\'null_mean\'])} ± {fmt(tests[0][\'null_sd\'])}',
                                             'null = (f"{fmt(tests[-1][\'null_mean\'])} ± {fmt(tests[0][\'null_sd\'])}',
                                             "tests/test_verdicts.py"),
    "intervention helps when the CI's lower end is below 0": (LIB + "report/verdicts.py",
                                                              "helps = ci is not None and ci[1] < 0",
                                                              "helps = ci is not None and ci[0] < 0",
                                                              "tests/test_verdicts.py"),
    "note cosines inside the null at |z| = 3": (LIB + "report/verdicts.py",
                                                 'return sd > 0 and all(abs(c - mu) / sd < T["inside_null_z"] for c in cos)',
                                                 'return sd > 0 and all(abs(c - mu) / sd <= T["inside_null_z"] for c in '
                                                 'cos)', "tests/test_verdicts.py"),
    # issue 24: the trainer's record of a run (tests/test_training_semantics.py)
    "summary tokens from the planned steps": (LIB + "model/training.py",
                                              '"tokens": run.steps_run() * run.tokens_per_step',
                                              '"tokens": run.total_steps * run.tokens_per_step', TRAINING_SEM),
    "snapshot at the stop step replaced by the best model": (LIB + "model/training.py",
                                                             "if s > stop_step or pct == 100:",
                                                             "if s >= stop_step or pct == 100:", TRAINING_SEM),
    "speed the mean of the intervals": (LIB + "model/training.py",
                                        'tps = statistics.median(valid) if valid else float("nan")',
                                        'tps = statistics.mean(valid) if valid else float("nan")', TRAINING_SEM),
    "resume fingerprint blind to the seed": (LIB + "model/training.py",
                                             'for k in ("threads", "checkpoint_every", "device", "dtype", "compile"):',
                                             'for k in ("threads", "checkpoint_every", "device", "dtype", "compile", '
                                             '"seed"):', TRAINING_SEM),
    # issue 24, second pass: what the trainer computes in and keeps
    "gradient clipping only above a norm of 1": (LIB + "model/training.py", "if cfg.grad_clip and cfg.grad_clip > 0:",
                                                 "if cfg.grad_clip and cfg.grad_clip > 1:", TRAINING_SEM),
    "training steps under bf16 autocast": (LIB + "model/training.py",
                                           "autocast = autocast_ctx(self.rt.device, self.rt.dtype)",
                                           "autocast = autocast_ctx(self.rt.device, torch.bfloat16)", TRAINING_SEM),
    "a truncated resume state crashes the run": (LIB + "model/training.py",
                                                 "except (OSError, ValueError, json.JSONDecodeError, SafetensorError):",
                                                 "except (OSError, ValueError, json.JSONDecodeError):", TRAINING_SEM),
    "state saved at the last step too": (LIB + "model/training.py",
                                         "step % cfg.checkpoint_every == 0 and step < total",
                                         "step % cfg.checkpoint_every == 0 and step <= total", TRAINING_SEM),
    "speed intervals count one step too many": (LIB + "model/training.py",
                                                "            t_int, steps_int = time.perf_counter(), 0\n        self.monitor.flush()",
                                                "            t_int, steps_int = time.perf_counter(), 1\n        self.monitor.flush()",
                                                TRAINING_SEM),
    "fingerprint blind to the resolved dtype": (LIB + "model/training.py",
                                                "self.fingerprint = _fingerprint(model_cfg, cfg, self.rt.resolved(), self.paths)",
                                                "self.fingerprint = _fingerprint(model_cfg, cfg, {}, self.paths)", TRAINING_SEM),
}


def scratch_copy() -> Path:
    """The repository without results, git and the virtualenv, in a temporary folder."""
    dest = Path(tempfile.mkdtemp(prefix="cw-mutants-")) / "repo"

    def ignore(folder, names):
        rel = Path(folder).relative_to(ROOT)
        return {n for n in names if n in ("__pycache__", ".pytest_cache") or (rel / n).as_posix() in SKIP}

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def pytest(root: Path, tests: str, *extra: str) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *extra, *tests.split()]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env).returncode


def run(name: str, root: Path = ROOT) -> bool:
    path, old, new, tests = MUTANTS[name]
    file = root / path
    original = file.read_text()
    assert original.count(old) == 1, f"{name}: snippet not found exactly once in {path}"
    try:
        file.write_text(original.replace(old, new))
        return pytest(root, tests) != 0
    finally:
        file.write_text(original)


if __name__ == "__main__":
    names = sys.argv[1:] or list(MUTANTS)
    copy = scratch_copy()
    caught, t_all = 0, time.perf_counter()
    try:
        # A failure counts only if the same tests pass on the unmutated copy (their fast part: not slow, not slurm).
        baseline = {tests: pytest(copy, tests, "-m", "not slow and not slurm") in (0, 5)
                    for tests in sorted({MUTANTS[n][3] for n in names})}
        for tests, ok in baseline.items():
            if not ok:
                print(f"BASELINE FAILS  {tests}: the unmutated code fails these tests", flush=True)
        for name in names:
            if not baseline[MUTANTS[name][3]]:
                print(f"NOT CHECKED  {name}  (its tests fail without the bug)", flush=True)
                continue
            t0 = time.perf_counter()
            ok = run(name, copy)
            caught += ok
            print(f"{'caught    ' if ok else 'NOT CAUGHT'}  {name}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    print(f"{caught} of {len(names)} caught ({time.perf_counter() - t_all:.0f} s, baseline included)")
