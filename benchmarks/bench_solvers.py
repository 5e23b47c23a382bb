"""The corpus statistics' two truncated decompositions, by size, rank and solver, with the accuracy guard's figures.

    python benchmarks/bench_solvers.py --tokens 10000000 --ranks 64,256          # one size, two ranks
    python benchmarks/bench_solvers.py --tokens 100000000 --ranks 64 --budget 900
    python benchmarks/bench_solvers.py --solvers arpack,torch:cuda   # the GPU path (analysis.svd_solver: torch)

Token ids come straight from the scale benchmark's synthetic Zipf-Markov stream (benchmarks/synthetic_corpus.py,
V = 50,000 by default; no text, no tokenizer), counted and PPMI-transformed by the library's own functions, so the
matrices are the ones rule corpus_stats decomposes at that size. For each rank k and solver: wall seconds, the peak
resident memory of the process so far, and the guard's figures — the largest triplet residual ‖Av − σu‖, ‖Aᵀu − σv‖
over σ₁ and the captured energy Σσ² against the best solve of the same k (core.linalg.svd_accuracy, residual tolerance
1e-6). A solve that runs past --budget seconds is stopped and reported as such. Results: one JSON line per solve in
benchmarks/out/solvers.jsonl and a markdown table on stdout.

Run it on an otherwise idle machine (the products use both cores).
"""
from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import synthetic_corpus  # noqa: E402

from corpus_weights.core.linalg import svd_accuracy  # noqa: E402
from corpus_weights.corpus import corpus_stats as cs  # noqa: E402


class OverBudget(Exception):
    pass


def _alarm(signum, frame):
    raise OverBudget


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def token_ids(vocab: int, tokens: int, seed: int = 0) -> np.ndarray:
    return np.concatenate([c.astype(np.int32) for c in synthetic_corpus.token_chunks(vocab, tokens, seed)])


def solve(name: str, A: sp.csr_matrix, k: int, seed: int = 0):
    """(U, s, Vt) of the k largest singular triplets by one solver."""
    op = cs._operator(A)
    v0 = np.random.default_rng(seed).standard_normal(min(A.shape))
    if name == "arpack":  # what top_singular uses beyond PROPACK_MAX_DIM (tolerance as there)
        return svds(op, k=k, v0=v0, solver="arpack", random_state=seed, tol=cs.ARPACK_SVD_TOL)
    if name == "propack":  # what top_singular uses up to PROPACK_MAX_DIM
        return svds(op, k=k, solver="propack", random_state=seed, maxiter=min(min(A.shape), 4 * k + 64))
    if name.startswith("torch"):  # analysis.svd_solver: torch — "torch" (CPU torch) or "torch:cuda"
        from corpus_weights.corpus.torch_svd import top_singular_torch
        return top_singular_torch(A, k, seed=seed, device=name.partition(":")[2] or "cpu")
    if name == "eigsh":  # symmetric Lanczos on M itself (C + Cᵀ): |eigenvalues| = singular values, values only
        s = cs.top_abs_eigenvalues(A, k, seed=seed)
        return None, s, None
    raise ValueError(f"unknown solver {name!r}")


def run(tokens: int, vocab: int, ranks: list[int], solvers: list[str], budget: int, out: Path) -> list[dict]:
    rows = []
    t0 = time.perf_counter()
    ids = token_ids(vocab, tokens)
    counts = cs.bigram_counts(ids, vocab)
    del ids
    P = cs.ppmi(counts)
    M = (counts + counts.T).tocsr().astype(np.float64)
    prep = time.perf_counter() - t0
    print(f"tokens {tokens:,}: counts nnz {counts.nnz:,}, PPMI nnz {P.nnz:,}, C+Cᵀ nnz {M.nnz:,} "
          f"({prep:.1f} s, peak {peak_rss_gb():.2f} GB)", flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    for k in ranks:
        solved = {}
        for name in solvers:
            A = M if name == "eigsh" else P
            row = dict(tokens=tokens, V=vocab, nnz=int(A.nnz), matrix="C + Cᵀ" if name == "eigsh" else "PPMI",
                       k=k, solver=name)
            signal.alarm(budget)
            t = time.perf_counter()
            try:
                U, s, Vt = solve(name, A, k)
                row["seconds"] = time.perf_counter() - t
                order = np.argsort(s)[::-1]
                solved[name] = (U[:, order] if U is not None else None, s[order],
                                Vt[order] if Vt is not None else None)
            except (OverBudget, SystemError) as err:  # the alarm may fire inside PROPACK's Fortran (SystemError)
                if not isinstance(err, OverBudget) and not isinstance(err.__context__ or err.__cause__, OverBudget):
                    raise
                row["seconds"] = None
                row["stopped_after_s"] = budget
            finally:
                signal.alarm(0)
            row["peak_rss_gb"] = peak_rss_gb()
            rows.append(row)
            print(json.dumps(row), flush=True)
        # the guard's figures against the solve of this k with the smallest residual
        svd_solved = {n: v for n, v in solved.items() if v[0] is not None}
        figures = {n: svd_accuracy(P, U, s, Vt, s) for n, (U, s, Vt) in svd_solved.items()}
        if figures:
            best = min(figures, key=lambda n: figures[n]["residual"])
            for row in rows:
                if row["k"] == k and row["solver"] in svd_solved:
                    U, s, Vt = svd_solved[row["solver"]]
                    g = svd_accuracy(P, U, s, Vt, svd_solved[best][1])
                    row.update(residual=g["residual"], energy_vs_best=g["energy"], guard_passed=g["passed"],
                               reference=best)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| tokens | matrix (nnz) | k | solver | seconds | peak RSS | residual / σ₁ | energy vs best | guard |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sec = f"{r['seconds']:.1f} s" if r.get("seconds") is not None else f"> {r['stopped_after_s']} s (stopped)"
        res = f"{r['residual']:.1e}" if "residual" in r else "—"
        en = f"{r['energy_vs_best']:.1e}" if "energy_vs_best" in r else "—"
        guard = {True: "passes", False: "fails"}.get(r.get("guard_passed"), "—")
        lines.append(f"| {r['tokens']:,} | {r['matrix']} ({r['nnz']:,}) | {r['k']} | {r['solver']} | {sec} | "
                     f"{r['peak_rss_gb']:.2f} GB | {res} | {en} | {guard} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[10_000_000])
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--ranks", default="64,256")
    ap.add_argument("--solvers", default="arpack,propack,eigsh",
                    help="comma-separated: arpack, propack, eigsh (C + Cᵀ), torch (CPU torch), torch:cuda")
    ap.add_argument("--budget", type=int, default=900, help="seconds a solve may take before it is stopped")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "solvers.jsonl")
    args = ap.parse_args()
    rows = []
    for tokens in args.tokens:
        rows += run(tokens, args.vocab, [int(k) for k in args.ranks.split(",")], args.solvers.split(","),
                    args.budget, args.out)
    print(table(rows))


if __name__ == "__main__":
    main()
