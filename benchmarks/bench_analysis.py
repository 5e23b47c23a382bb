"""Single-threaded cost of each analysis job's library call on the default run's artifacts (run `make report` first).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_analysis.py [repeats]

Prints the median wall time of align_model, measure_model, attention_model and projection_table (one K) over the
repeats, plus the import time of the analysis side (no torch). Run on a quiet machine.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

t0 = time.perf_counter()
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from corpus_weights.measure.analysis import align_model, attention_model, measure_model, projection_table  # noqa: E402
from corpus_weights.core.workflow_io import load_weights_npz, read_json  # noqa: E402

IMPORT_S = time.perf_counter() - t0
ROOT = Path(__file__).resolve().parents[1]


def main(repeats: int = 3) -> None:
    run = ROOT / "results/shakespeare/default"  # the default run's artifacts (make report)
    stats, tokens = run / "corpus_stats", run / "tokens"
    emb, cov = np.load(stats / "embeddings.npz"), np.load(stats / "covariance.npz")
    corpus = dict(counts=sp.load_npz(stats / "bigram_counts.npz"), E_in=emb["E_in"], E_out=emb["E_out"],
                  pi=emb["pi"], eigvecs=cov["eigvecs"], special=[0])
    w, meta = load_weights_npz(run / "weights/orig-s0/snapshot_100.npz")
    w0, _ = load_weights_npz(run / "weights/orig-s0/snapshot_000.npz")
    cfg = dict(top_n=2000, freq_bins=20, permutations=200, map_null_draws=100, basis_null_draws=50, headline_K=12,
               seed=0)
    ladder, val = read_json(stats / "ladder.json"), np.load(tokens / "val.npy")
    arrays, _ = align_model(w, corpus, cfg)
    jobs = {
        "align": lambda: align_model(w, corpus, cfg),
        "measure": lambda: measure_model(w, corpus, ladder, val, 5.9, cfg),
        "attention": lambda: attention_model(w, corpus, int(meta["n_head"]), cfg),
        "fit_projections (K=12)": lambda: projection_table(w, w0, arrays["basis"], arrays["null_bases"],
                                                           cov["eigvecs"], cov["mu"], emb["pi"], 12, 20, 0),
    }
    print(f"import of the analysis side: {IMPORT_S:.2f} s")
    for name, job in jobs.items():
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            job()
            times.append(time.perf_counter() - t)
        print(f"{name:24s} median {statistics.median(times):.2f} s  (runs: {', '.join(f'{x:.2f}' for x in times)})")
    print(json.dumps({"d_model": int(meta["d_model"]), "n_layer": int(meta["n_layer"]), "repeats": repeats}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
