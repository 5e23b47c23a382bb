"""Entry point of rule corpus_stats: bigram counts, PPMI-SVD corpus embeddings, covariance and spectra.
Each stage logs one `stage <name>:` line (benchmarks/bench_scale.py reads the times between them)."""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from corpus_weights.corpus import corpus_stats as cs
from corpus_weights.core.ids import Spectrum
from corpus_weights.core.input_checks import format_problems, width_problems
from corpus_weights.core.spectra import spectrum_row
from corpus_weights.core.workflow_io import read_json, start_log

log = start_log(snakemake.log[0])
log.info("stage start: corpus statistics")
vocab_size = int(read_json(snakemake.input.meta)["vocab_size"])
problems = width_problems(vocab_size, int(snakemake.params.dim))
if problems:
    raise SystemExit(format_problems(problems, "the corpus is too small for this configuration"))
# the device is checked before any counting (cuda without a GPU stops here)
solver = cs.decomposition_options(snakemake.params.solver, snakemake.params.device, int(snakemake.threads))
log.info("decompositions: %s on %s", solver["solver"], solver["device"])
ids = np.load(snakemake.input.train, mmap_mode="r")  # read chunk by chunk, never copied whole
counts = cs.bigram_counts(ids, vocab_size)
pi = cs.unigram_distribution(ids, vocab_size)
log.info("stage bigram counts: V=%d, %d nonzero", vocab_size, counts.nnz)
sp.save_npz(snakemake.output.bigrams, counts, compressed=False)  # zlib on 50 M non-zeros costs more than counting
log.info("stage saved counts: %s", snakemake.output.bigrams)

ppmi = cs.ppmi(counts, alpha=float(snakemake.params.alpha))
log.info("stage ppmi: %d nonzero", ppmi.nnz)
E_in, E_out, singular_values = cs.ppmi_embeddings(ppmi, int(snakemake.params.dim), power=float(snakemake.params.power),
                                                  seed=int(snakemake.params.seed), **solver)
del ppmi
np.savez(snakemake.output.embeddings, E_in=E_in, E_out=E_out, singular_values=singular_values, pi=pi)
log.info("stage ppmi svd: d=%d, top singular value %.4g", len(singular_values), singular_values[0])

sigma, mu = cs.corpus_covariance(E_in, pi)
eigvals, eigvecs = cs.eigh_desc(sigma)
np.savez(snakemake.output.covariance, Sigma=sigma, mu=mu, eigvals=eigvals, eigvecs=eigvecs)
log.info("stage covariance: done")

symmetric = cs.symmetric_counts_spectrum_stats(counts, k=int(snakemake.params.spectrum_k), **solver)
log.info("stage C+C^T spectrum: top-%d |eigenvalues|", symmetric.get("truncated_top_k", 0))
rows = [
    dict(spectrum_row(Spectrum.PPMI, singular_values, kind="singular")),
    dict(spectrum_row(Spectrum.SIGMA_E, eigvals, kind="eigen")),
    # PR on the eigenvalues of M^2 (= squared singular values of M = C + C^T), the PSD reading that matches the
    # other rows; the signed trace^2/||M||_F^2 is exact but near 0 because M has an almost empty diagonal.
    {"name": Spectrum.SYMMETRIC, "pr": symmetric.get("pr_sq_top_k"),
     "effective_rank": symmetric.get("effective_rank_top_k"), "n": vocab_size,
     "top1_share": symmetric.get("top1_energy_share")},
    {"name": Spectrum.SYMMETRIC_SIGNED, "pr": symmetric.get("pr_exact"), "effective_rank": None,
     "n": vocab_size, "top1_share": None},
    {"name": Spectrum.SYMMETRIC_ABS, "pr": symmetric.get("pr_abs_top_k"), "effective_rank": None,
     "n": symmetric.get("truncated_top_k"), "top1_share": None},
]
pd.DataFrame(rows).to_parquet(snakemake.output.spectra, index=False)
log.info("spectra: %s", rows)
