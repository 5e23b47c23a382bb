"""The pipeline reads float32 weights (npz files) and float32 corpus embeddings may come from elsewhere: every
estimator computes in float64, so a float32 input gives the answer of the same values in float64, to float64
precision. (Mutation testing found that dropping the float64 conversion went unnoticed by tests that only fed
float64.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from corpus_weights.core import linalg, nulls, spectra
from corpus_weights.measure import alignment, projection
from corpus_weights.corpus.corpus_stats import corpus_covariance, eigh_desc, ppmi, ppmi_embeddings
from corpus_weights.measure.residual_space import forward_logits, layernorm
from test_residual_space import small_model


def f32_exact(rng, *shape):
    """float64 values that float32 holds exactly, so both calls see the same numbers."""
    return rng.standard_normal(shape).astype(np.float32).astype(np.float64)


def ex(x):
    """The float32-exact version of derived float64 values."""
    return np.asarray(x).astype(np.float32).astype(np.float64)


def assert_same(a, b, path="result"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, rtol=1e-9, check_dtype=False)
    elif isinstance(a, (np.ndarray, float, np.floating)) and np.asarray(a).dtype.kind == "f":
        assert np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True), (path, np.max(np.abs(np.subtract(a, b))))
    else:
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, path


def both(fn, *arrays, **kwargs):
    """fn on the float64 arrays and on their float32 copies."""
    return fn(*arrays, **kwargs), fn(*[x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype == np.float64
                                       else x for x in arrays], **kwargs)


rng = np.random.default_rng(0)
COUNTS = np.floor(8 * np.abs(rng.standard_normal((20, 20))) ** 2)  # integer counts: exact in float32
PPMI = ex(ppmi(sp.csr_matrix(COUNTS)).toarray())
MODEL = {k: ex(v) for k, v in small_model(np.random.default_rng(1), V=40, d=16, L=1, ctx=8).items()}
INIT = {k: ex(v) for k, v in small_model(np.random.default_rng(2), V=40, d=16, L=1, ctx=8).items()}
BASIS = ex(np.linalg.qr(np.random.default_rng(3).standard_normal((16, 4)))[0])
OTHER_BASES = ex(np.stack([np.linalg.qr(np.random.default_rng(4 + i).standard_normal((16, 4)))[0] for i in range(5)]))
FACTORS = f32_exact(rng, 2, 12, 3), f32_exact(rng, 2, 12, 3)
N, d, K = 60, 8, 3
E, W, S = f32_exact(rng, N, d), f32_exact(rng, N, d), f32_exact(rng, 12, 12)
pi = np.abs(f32_exact(rng, N)) + 0.1
pi /= pi.sum()
fit, test = np.arange(0, N, 2), np.arange(1, N, 2)
bins = np.repeat(np.arange(4), 3)

CASES = {
    "row_centre": lambda: both(linalg.row_centre, S),
    "double_centre": lambda: both(linalg.double_centre, S),
    "cosine": lambda: both(linalg.cosine, E, W),
    "pearson": lambda: both(linalg.pearson, E[:, 0], W[:, 0], weights=pi),
    "orthonormal_columns": lambda: both(linalg.orthonormal_columns, E),
    "procrustes_heldout": lambda: both(alignment.procrustes_heldout, E, W, fit, test),
    "debiased_linear_cka": lambda: both(alignment.debiased_linear_cka, E, W),
    "plugin_linear_cka": lambda: both(alignment.plugin_linear_cka, E, W),
    "corpus_basis": lambda: both(alignment.corpus_basis, f32_exact(rng, d, d), ex(np.linalg.qr(S[:d, :d])[0])),
    "fit_ridge_map": lambda: both(lambda e, w: alignment.fit_ridge_map(e, w, fit, test), E, W),
    "vocabulary_alignment": lambda: both(lambda e, w, p: alignment.vocabulary_alignment(
        e, w, p, top_n=N, n_bins=3, n_draws=5, seed=1, basis_draws=2, eigvecs=eigh_desc(corpus_covariance(E, pi)[0])[1])[1],
        E, W, pi),
    "vocabulary_alignment_splits": lambda: both(lambda e, w, p: alignment.vocabulary_alignment(
        e, w, p, top_n=N, n_bins=3, n_draws=0, seed=1, eigvecs=eigh_desc(corpus_covariance(E, pi)[0])[1],
        n_splits=3), E, W, pi),
    "planted_power": lambda: both(lambda *ws: projection.planted_power(dict(zip(MODEL, ws)), BASIS, OTHER_BASES[:3],
                                                                       np.stack([BASIS, *OTHER_BASES[3:]]), 0.05),
                                  *MODEL.values()),
    "planted_share_increase": lambda: both(lambda *ws: projection.planted_share_increase(dict(zip(MODEL, ws)), BASIS,
                                                                                          0.05), *MODEL.values()),
    "projection_share": lambda: both(projection.projection_share, W, ex(np.linalg.qr(E[:d])[0][:, :K])),
    "r2": lambda: both(projection.r2, W, E),
    "pca_basis": lambda: both(projection.pca_basis, W, K, weights=pi),
    "participation_ratio": lambda: both(spectra.participation_ratio, np.abs(E[:, 0])),
    "effective_rank": lambda: both(spectra.effective_rank, np.abs(E[:, 0])),
    "spectrum_row": lambda: both(lambda v: spectra.spectrum_row("x", v), np.abs(E[:, 0])),
    "permutation_test": lambda: both(lambda a, b: {k: v for k, v in nulls.permutation_test(a, b, bins, 20, 3).items()
                                                   if k != "null"}, S, ex(S.T + S)),
    "random_rotation_cosine_null": lambda: both(lambda a, b: nulls.random_rotation_cosine_null(a, b, 20, 4),
                                                S[:d, :d], ex(S[:d, :d] + S[:d, :d].T)),
    "corpus_covariance": lambda: both(lambda e: corpus_covariance(e, pi), E),
    "eigh_desc": lambda: both(eigh_desc, ex(S @ S.T)),
    "pearson_weights": lambda: both(linalg.pearson, E[:, 0], W[:, 0], ex(pi)),
    "pca_basis_weights": lambda: both(projection.pca_basis, W, K, ex(pi)),
    "ppmi": lambda: both(lambda c: ppmi(sp.csr_matrix(c)).toarray(), COUNTS),
    "ppmi_embeddings": lambda: both(lambda p: ppmi_embeddings(sp.csr_matrix(p), 4, seed=0), PPMI),
    "layernorm": lambda: both(layernorm, E),
    "forward_logits": lambda: both(lambda *ws: forward_logits(dict(zip(MODEL, ws)), np.arange(8) % 40, 4),
                                   *MODEL.values()),
    "shares_table": lambda: both(lambda *ws: projection.shares_table(dict(zip(MODEL, ws)), {"b": BASIS}, 2),
                                 *MODEL.values()),
    "shares_table_dW": lambda: both(lambda *ws: projection.shares_table(
        dict(zip(MODEL, ws[:len(MODEL)])), {"b": BASIS}, 2, target="dW", W_init=dict(zip(MODEL, ws[len(MODEL):]))),
        *MODEL.values(), *INIT.values()),
    "permutation_test_factors": lambda: both(lambda f, g: {k: v for k, v in nulls.permutation_test_factors(
        f, g, S, bins, n_draws=20, seed=3).items() if k != "null"}, FACTORS[0], FACTORS[1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_input_gives_the_float64_answer(name):
    a, b = CASES[name]()
    assert_same(a, b, name)
