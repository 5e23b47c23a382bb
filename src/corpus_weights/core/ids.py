"""One vocabulary for what crosses modules: the names of bases, pooled matrices, targets, roles, spectra and weight
keys, written by producers and read by consumers through these constants only (a leaf module: imports nothing).

A consumer that needs one of these and does not find it raises (`require`), naming the id and where it looked:
a missing value never becomes None, and never a verdict.
"""
from __future__ import annotations


class Basis:
    """Bases of the projection table (column `basis` of projection/K{K}.parquet)."""
    CORPUS_ALIGNED = "corpus_aligned"   # the corpus basis mapped into model coordinates through the vocabulary
    CORPUS_NULL = "corpus_null"         # its basis null (corpus rows permuted within frequency strata)
    RANDOM = "random"                   # Haar-random K-frames
    WE_PCA = "we_pca"                   # W_E's own (π-weighted, centred) PCA
    OWN_PCA = "own_pca"                 # the weights' own PCA (upper bound)
    NOTE_LINEAR = "note_linear"         # the note's protocol: Σ_E eigenvectors + mean, unaligned, R²
    NOTE_UNALIGNED = "note_unaligned"   # Σ_E eigenvectors used in model coordinates as if they were the same


class Pooled:
    """Pooled rows of the projection table (column `matrix`)."""
    NONEMBED = "pooled_nonembed"        # every non-embedding matrix's residual-side vectors
    ALL = "pooled_all"                  # the same with the embeddings (the note's pooling)


class Target:
    W = "W"                             # the weights
    DW = "dW"                           # W − W_init (the same run's step-0 snapshot)


class Role:
    """Roles of analysed models (registry in workflow/rules/common.smk)."""
    MAIN = "main"
    STEP0 = "step0"
    SHUFFLED = "shuffled"


class Spectrum:
    """Corpus spectra (rows of corpus_stats/spectra.parquet, column `name`), written by the corpus_stats script."""
    SYMMETRIC = "C + C^T (symmetric raw bigram counts)"
    SYMMETRIC_ABS = "C + C^T, |eigenvalues| (top-k)"
    SYMMETRIC_SIGNED = "C + C^T, signed eigenvalues (exact)"
    PPMI = "PPMI (top-d singular values)"
    SIGMA_E = "Sigma_E (corpus covariance)"


WE_COVARIANCE = "W_E^T diag(pi) W_E (centred)"  # the trained model's embedding covariance (weight_spectra.parquet)

# spectra key in metrics.json -> the spectrum it is read from
CORPUS_SPECTRA = {"symmetric": Spectrum.SYMMETRIC, "symmetric_abs": Spectrum.SYMMETRIC_ABS,
                  "symmetric_signed": Spectrum.SYMMETRIC_SIGNED, "ppmi": Spectrum.PPMI, "sigma_e": Spectrum.SIGMA_E}

MATRICES = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")


def weight_key(layer: int, matrix: str) -> str:
    """Key of a per-layer weight in the weights dict: weight_key(0, "W_Q") == "L0.W_Q"."""
    return f"L{int(layer)}.{matrix}"


class MissingValue(KeyError):
    """A value a verdict or a table needs is absent: never silently None."""

    def __str__(self):
        return str(self.args[0]) if self.args else "missing value"


def require(value, what: str, where: str):
    """`value` unless it is None (or NaN): then raise MissingValue naming what was missing and where."""
    if value is None or (isinstance(value, float) and value != value):
        raise MissingValue(f"{what} is missing from {where}")
    return value
