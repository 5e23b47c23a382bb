"""Deliberate single bugs, each put into the code by hand and checked against the tests that must catch it.

    python tests/mutants.py [NAME ...]      # all, or the named ones; prints caught / NOT CAUGHT per mutant

Each mutant replaces one exact snippet in one file, runs the listed tests, and restores the file (git is not
needed). The list is the one of the tests issue (20 bugs the old suite missed 14 of) plus bugs in the new
estimators. It is a check to run after big changes, not part of `make test` (a few minutes).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = "src/corpus_weights/"

MUTANTS = {
    "unaligned basis in the pipeline": (LIB + "analysis.py", '"corpus_aligned": basis[:, :K],',
                                        '"corpus_aligned": eigvecs[:, :K],', "tests/test_invariance.py"),
    "resume drops pending losses": (LIB + "training.py",
                                    'self.monitor = LossMonitor(meta.get("interval_losses", []) if meta else [], self.lr)',
                                    "self.monitor = LossMonitor([], self.lr)", "tests/test_training.py"),
    "fingerprint never checked": (LIB + "training.py", 'if ptr.get("fingerprint") != fingerprint:', "if False:",
                                  "tests/test_training.py"),
    "batch ignores the step": (LIB + "training.py", "rng = np.random.default_rng([seed, step])",
                               "rng = np.random.default_rng([seed, 0])", "tests/test_training.py"),
    "second seed trained with seed 0": ("workflow/rules/common.smk", 'params["seed"] = RUNS[wildcards.run]["seed"]',
                                        'params["seed"] = TRAIN["seeds"][0]',
                                        "tests/test_workflow.py::test_science_on_the_tiny_run"),
    "within-bin permutation is a fixed reversal": (LIB + "nulls.py", "shuffled = np.lexsort((rng.random(n), bins))",
                                                   "shuffled = np.lexsort((-np.arange(n), bins))",
                                                   "tests/test_nulls.py"),
    "rotation-null p reversed": (LIB + "nulls.py", "(np.abs(nl - mu) >= abs(obs - mu) - tol).sum()",
                                 "(np.abs(nl - mu) <= abs(obs - mu) + tol).sum()", "tests/test_nulls.py"),
    "normalised score = share/own": (LIB + "projection.py", "normalised=(m - base) / (own - base) if own - base != 0",
                                     "normalised=m / own if own - base != 0", "tests/test_projection.py"),
    "dW ignores W_init": (LIB + "projection.py", "W = W - np.asarray(W_init[name], dtype=np.float64)", "W = W",
                          "tests/test_projection.py"),
    "random basis not orthonormal": (LIB + "linalg.py", "Qm, R = np.linalg.qr(rng.standard_normal((d, K)))\n    return Qm",
                                     "Qm, R = rng.standard_normal((d, K)), np.eye(K)\n    return Qm",
                                     "tests/test_projection.py"),
    "own PCA with K+1 directions": (LIB + "projection.py", "own = float(lam[:K].sum() / lam.sum())",
                                    "own = float(lam[:K + 1].sum() / lam.sum())", "tests/test_projection.py"),
    "qk factors ignore the LN weight": (LIB + "attention.py", "    if ln_w is not None:\n        W_Q = W_Q * ln_w",
                                        "    if False:\n        W_Q = W_Q * ln_w", "tests/test_attention.py"),
    "top_n <= V check removed": ("workflow/rules/common.smk",
                                 'problems.append(("analysis.top_n", "must not exceed tokenizer.vocab_size"))', "pass",
                                 "tests/test_config_errors.py"),
    "strata by occupancy only": (LIB + "nulls.py", "np.unique(occupancy * (n_bins + 1) + width,",
                                 "np.unique(occupancy * (n_bins + 1) + 0 * width,", "tests/test_nulls.py"),
    "BH step-down instead of step-up": (LIB + "nulls.py", "k = int(np.nonzero(below)[0].max())",
                                        "k = int(np.argmin(below)) - 1 if not below.all() else len(p) - 1",
                                        "tests/test_estimators.py"),
    "weighted centring keeps the column effect": (LIB + "controls.py", "return S - r[:, None] - c[None, :] + w @ r",
                                                  "return S - r[:, None]", "tests/test_estimators.py"),
    "attention row-centred only": (LIB + "attention.py", "    F = (Xc @ W_Q.T)", "    F = (X @ W_Q.T)",
                                   "tests/test_attention.py"),
    "shuffled-control gate inverted": (LIB + "gates.py", 'row["ok"] = bool(abs(z) < t["max_null_abs_z"])\n',
                                       'row["ok"] = bool(abs(z) >= t["max_null_abs_z"])\n', "tests/test_gates.py"),
    "one-token forward skips the MLP": (LIB + "loss_ladder.py",
                                        'x = x + gelu(h2 @ f(f"L{i}.W_in").T) @ f(f"L{i}.W_out").T', "x = x",
                                        "tests/test_loss_ladder.py"),
    "map null keeps the pairing": (LIB + "alignment.py", "Wp[top] = W[top[p]]", "Wp[top] = W[top]",
                                   "tests/test_estimators.py"),
    "ridge lambda never chosen": (LIB + "alignment.py",
                                  "return float(self.grid[int(np.argmin(self.cv_errors(Y)))] * self.scale)",
                                  "return float(self.grid[0] * self.scale)", "tests/test_estimators.py"),
    "basis null from the real embedding": (LIB + "alignment.py", "Ep = E[binned_permutation(bins, rng)]", "Ep = E",
                                           "tests/test_estimators.py"),
}


def run(name: str) -> bool:
    path, old, new, tests = MUTANTS[name]
    file = ROOT / path
    original = file.read_text()
    assert original.count(old) == 1, f"{name}: snippet not found exactly once in {path}"
    try:
        file.write_text(original.replace(old, new))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
                              cwd=ROOT, capture_output=True, text=True)
        return proc.returncode != 0
    finally:
        file.write_text(original)


if __name__ == "__main__":
    names = sys.argv[1:] or list(MUTANTS)
    caught = 0
    for name in names:
        ok = run(name)
        caught += ok
        print(f"{'caught    ' if ok else 'NOT CAUGHT'}  {name}", flush=True)
    print(f"{caught} of {len(names)} caught")
