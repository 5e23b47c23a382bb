"""Accuracy guard of the corpus statistics' truncated SVD (PROPACK through scipy) against ARPACK, the solver it
replaced, on the default corpus (built-in Shakespeare, default tokenizer and d_model): the top-d singular values agree
to 1e-3 relative and the leading subspaces coincide (principal angles)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy.sparse.linalg import svds

from corpus_weights.corpus.text import prepare_corpus
from corpus_weights.core.linalg import principal_angles_deg
from corpus_weights.corpus.corpus_stats import bigram_counts, ppmi, ppmi_embeddings, symmetric_counts_spectrum_stats
from corpus_weights.corpus.tokenizing import encode, split_train_val, train_tokenizer
from workflow_helpers import REPO


@pytest.fixture(scope="module")
def default_counts():
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    text, _ = prepare_corpus(cfg["corpus"]["files"] or None)
    tok_cfg = cfg["tokenizer"]
    tokenizer, info = train_tokenizer(text, tok_cfg["kind"], tok_cfg["vocab_size"], tok_cfg["lowercase"])
    train, _ = split_train_val(encode(tokenizer, text), cfg["corpus"]["val_fraction"])
    return bigram_counts(train, info["vocab_size"]), cfg


@pytest.fixture(scope="module")
def ppmi_reference(default_counts):
    """The default corpus's PPMI matrix and ARPACK's machine-precision top-d reference (U, s), computed once."""
    C, cfg = default_counts
    P = ppmi(C, alpha=cfg["analysis"]["ppmi_alpha"])
    U_ref, s_ref = arpack(P, cfg["model"]["d_model"])
    return P, U_ref, s_ref


def arpack(A, k, vectors=True):
    out = svds(A, k=k, v0=np.random.default_rng(0).standard_normal(min(A.shape)), solver="arpack",
               random_state=0, return_singular_vectors=vectors)
    if not vectors:
        return np.sort(out)[::-1]
    U, s, Vt = out
    order = np.argsort(s)[::-1]
    return U[:, order], s[order]




def test_ppmi_embeddings_match_arpack_on_the_default_corpus(default_counts, ppmi_reference):
    _, cfg = default_counts
    d = cfg["model"]["d_model"]
    P, U_ref, s_ref = ppmi_reference
    E_in, E_out, s = ppmi_embeddings(P, d, power=0.0, seed=cfg["analysis"]["seed"])
    assert np.max(np.abs(s - s_ref) / s_ref) < 1e-3
    # the leading subspaces coincide (only near-degenerate pairs at the very end could rotate within themselves)
    angles = principal_angles_deg(E_in, U_ref)
    assert angles.max() < 1.0, angles[-5:]
    # and so, vector by vector (up to the sign convention), except inside a near-degenerate pair
    gaps = np.minimum(np.abs(np.diff(s_ref, prepend=np.inf)), np.abs(np.diff(s_ref, append=-np.inf))) / s_ref
    separated = gaps > 1e-3
    cos = np.abs(np.sum(E_in * U_ref, axis=0))
    assert np.all(cos[separated] > 0.999), cos[separated].min()


def test_arpack_path_with_its_tolerance_matches_full_precision(default_counts, ppmi_reference, monkeypatch):
    """Large vocabularies go through ARPACK at ARPACK_SVD_TOL (not machine precision): on the default corpus the
    values and the subspace equal those of a tol = 0 run."""
    import corpus_weights.corpus.corpus_stats as cs

    _, cfg = default_counts
    d = cfg["model"]["d_model"]
    P, U_ref, s_ref = ppmi_reference
    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", 0)
    U, s, _ = cs.top_singular(P, d, seed=0)
    assert np.max(np.abs(s - s_ref) / s_ref) < 1e-6
    assert principal_angles_deg(U, U_ref).max() < 0.01


def test_symmetric_spectrum_matches_arpack_on_the_default_corpus(default_counts):
    C, _ = default_counts
    stats = symmetric_counts_spectrum_stats(C)
    M = (C + C.T).tocsr()
    s_ref = arpack(M, stats["truncated_top_k"], vectors=False)
    assert np.allclose(stats["top_singular_values"], s_ref[:10], rtol=1e-3)
    pr_ref = s_ref.sum() ** 2 / (s_ref**2).sum()
    assert stats["pr_abs_top_k"] == pytest.approx(pr_ref, rel=1e-3)
    # the eigsh run at EIGSH_TOL against a machine-precision one: the same values to far below the guard
    from scipy.sparse.linalg import eigsh

    exact = np.sort(np.abs(eigsh(M, k=stats["truncated_top_k"], which="LM", return_eigenvectors=False,
                                 v0=np.random.default_rng(0).standard_normal(M.shape[0]))))[::-1]
    assert np.allclose(stats["top_singular_values"], exact[:10], rtol=1e-9)
    assert stats["pr_abs_top_k"] == pytest.approx(exact.sum() ** 2 / (exact**2).sum(), rel=1e-9)


def test_the_well_posed_guard_passes_the_solvers_and_fails_a_loose_one(default_counts, ppmi_reference):
    """core.linalg.svd_accuracy (residuals per triplet, captured energy, angles only where a gap separates the
    directions) on the default corpus's PPMI matrix: the pipeline's solver passes it against ARPACK at machine
    precision; ARPACK at tol = 0.3 fails it."""
    from corpus_weights.core.linalg import svd_accuracy
    from corpus_weights.corpus.corpus_stats import top_singular

    _, cfg = default_counts
    d = cfg["model"]["d_model"]
    P, U_ref, s_ref = ppmi_reference
    U, s, Vt = top_singular(P, d, seed=0)
    ok = svd_accuracy(P, U, s, Vt, s_ref, U_ref)
    assert ok["passed"] and ok["gapped_directions"] >= d // 2, ok
    loose = svds(P, k=d, v0=np.random.default_rng(0).standard_normal(min(P.shape)), solver="arpack", random_state=0,
                 tol=0.3)
    order = np.argsort(loose[1])[::-1]
    bad = svd_accuracy(P, loose[0][:, order], loose[1][order], loose[2][order], s_ref, U_ref)
    assert not bad["passed"] and bad["residual"] > 1e-4, bad
