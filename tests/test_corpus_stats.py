"""Corpus statistics against planted answers computed by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from corpus_weights.corpus_stats import (
    bigram_counts,
    corpus_covariance,
    eigh_desc,
    ppmi,
    ppmi_embeddings,
    symmetric_counts_spectrum_stats,
    transition_matrix,
    unigram_distribution,
)

# "a b a b c" with a=0, b=1, c=2: bigrams ab, ba, ab, bc
IDS = np.array([0, 1, 0, 1, 2])
C_EXPECTED = np.array([[0, 2, 0], [1, 0, 1], [0, 0, 0]], dtype=float)


def test_bigram_counts_planted():
    C = bigram_counts(IDS, 3)
    assert sp.isspmatrix_csr(C) or isinstance(C, sp.csr_array)
    assert C.dtype == np.float64 and C.shape == (3, 3)
    assert np.array_equal(C.toarray(), C_EXPECTED)
    assert bigram_counts(IDS, 4).shape == (4, 4)
    with pytest.raises(ValueError):
        bigram_counts(IDS, 2)


def test_unigram_and_transition_planted():
    assert np.allclose(unigram_distribution(IDS, 4), [2 / 5, 2 / 5, 1 / 5, 0])
    T = transition_matrix(bigram_counts(IDS, 3)).toarray()
    assert np.allclose(T, [[0, 1, 0], [0.5, 0, 0.5], [0, 0, 0]])  # row c has no successor: stays 0


def test_ppmi_planted_by_hand():
    C = sp.csr_matrix(np.array([[0.0, 2.0], [1.0, 1.0]]))
    # N = 4, rowsums (2, 2), colsums (1, 3)
    P1 = ppmi(C, alpha=1.0).toarray()
    # PMI(0,1) = log(2/4 / (2/4 * 3/4)) = log(4/3); PMI(1,0) = log(1/4 / (2/4*1/4)) = log 2;
    # PMI(1,1) = log(1/4 / (2/4 * 3/4)) = log(2/3) < 0 -> 0
    assert np.allclose(P1, [[0, np.log(4 / 3)], [np.log(2), 0]])
    P = ppmi(C, alpha=0.75).toarray()
    pc1 = 3**0.75 / (1 + 3**0.75)
    pc0 = 1 / (1 + 3**0.75)
    # PMI_a(a,b) = log(C[a,b] / (rowsum_a * P_alpha(b)))
    assert np.isclose(P[0, 1], np.log(2 / (2 * pc1)))
    assert np.isclose(P[1, 0], np.log(1 / (2 * pc0)))
    assert np.isclose(P[1, 1], max(0.0, np.log(1 / (2 * pc1))))
    assert P[0, 0] == 0


def _random_sparse(V=60, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    M = sp.random(V, V, density=density, random_state=rng, format="csr")
    M.data = np.ceil(M.data * 10)
    return M


def test_ppmi_embeddings_reconstruct_and_deterministic():
    P = ppmi(_random_sparse())
    Ein, Eout, s = ppmi_embeddings(P, 8, power=0.5, seed=3)
    assert Ein.shape == Eout.shape == (60, 8) and np.all(np.diff(s) <= 1e-12)
    s_dense = np.linalg.svd(P.toarray(), compute_uv=False)
    assert np.allclose(s, s_dense[:8])
    # E_in E_out^T = U S V^T (power 0.5 on both sides)
    U, sd, Vt = np.linalg.svd(P.toarray())
    assert np.allclose(Ein @ Eout.T, (U[:, :8] * sd[:8]) @ Vt[:8], atol=1e-8)
    # sign convention: largest-|.| entry of each left singular vector positive
    U0, _, _ = ppmi_embeddings(P, 8, power=0.0, seed=3)
    idx = np.argmax(np.abs(U0), axis=0)
    assert np.all(U0[idx, np.arange(8)] > 0)
    Ein2, Eout2, s2 = ppmi_embeddings(P, 8, power=0.5, seed=3)
    assert np.array_equal(Ein, Ein2) and np.array_equal(s, s2)
    Ein1, _, _ = ppmi_embeddings(P, 8, power=1.0, seed=3)
    assert np.allclose(Ein1, U0 * s)


def test_ppmi_embeddings_dim_too_large_pads():
    P = ppmi(_random_sparse(V=10, density=0.5))
    Ein, Eout, s = ppmi_embeddings(P, 16)
    assert Ein.shape == (10, 16) and s.shape == (16,)
    assert np.allclose(s[:10], np.linalg.svd(P.toarray(), compute_uv=False)) and np.all(s[10:] == 0)
    assert np.allclose(Ein @ Eout.T, P.toarray())


def test_corpus_covariance_planted():
    E = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    pi = np.array([0.25, 0.25, 0.5])
    Sigma, mu = corpus_covariance(E, pi)
    assert np.allclose(mu, [0.0, 1.0])
    # centred rows: (1,-1), (-1,-1), (0,1); weighted: xx = .25+.25 = .5, yy = .25+.25+.5 = 1,
    # xy = .25*(-1) + .25*(1) + 0 = 0
    assert np.allclose(Sigma, [[0.5, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError):
        corpus_covariance(E, np.array([1.0, 1.0, 1.0]))


def test_eigh_desc_order_and_sign():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6))
    S = A @ A.T
    w, Q = eigh_desc(S)
    assert np.all(np.diff(w) <= 0)
    assert np.allclose(Q @ np.diag(w) @ Q.T, S)
    idx = np.argmax(np.abs(Q), axis=0)
    assert np.all(Q[idx, np.arange(6)] > 0)
    w2, Q2 = eigh_desc(S)
    assert np.array_equal(Q, Q2)


def test_symmetric_counts_pr_exact_matches_dense():
    C = _random_sparse(V=40, density=0.2, seed=5)
    C.setdiag(np.arange(40) % 3)  # some self-transitions so the trace is nonzero
    stats = symmetric_counts_spectrum_stats(C)
    lam = np.linalg.eigvalsh((C + C.T).toarray())
    assert np.isclose(stats["pr_exact"], lam.sum() ** 2 / (lam**2).sum())
    # k = min(256, V - 2) = 38 of 40 singular values (= |eigenvalues|)
    assert stats["truncated_top_k"] == 38
    s = np.sort(np.abs(lam))[::-1][:38]
    p = s / s.sum()
    assert np.isclose(stats["effective_rank_top_k"], np.exp(-(p * np.log(p)).sum()))
    assert 0.99 < stats["top_k_energy_share"] <= 1.0 + 1e-12


def test_bigram_counts_in_chunks_from_a_memory_map(tmp_path, monkeypatch):
    """Chunk boundaries lose no pair, a memory-mapped stream gives the same table, and a vocabulary too large for
    32-bit pair keys (V**2 > 2**32) still counts exactly."""
    import corpus_weights.corpus_stats as cs

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 40, size=5_001)
    expected = np.zeros((40, 40))
    np.add.at(expected, (ids[:-1], ids[1:]), 1)
    monkeypatch.setattr(cs, "PAIR_CHUNK", 7)  # many chunks, pairs straddling every boundary
    np.save(tmp_path / "ids.npy", ids.astype(np.int32))
    mapped = np.load(tmp_path / "ids.npy", mmap_mode="r")
    assert np.array_equal(bigram_counts(mapped, 40).toarray(), expected)
    assert np.allclose(unigram_distribution(mapped, 40), np.bincount(ids, minlength=40) / ids.size)
    big = 70_000  # 70_000**2 > 2**32: uint64 keys
    C = bigram_counts(np.array([69_999, 0, 69_999, 0, 5]), big)
    assert C.shape == (big, big) and C[69_999, 0] == 2 and C[0, 69_999] == 1 and C[0, 5] == 1 and C.nnz == 3


def test_threaded_sparse_product_equals_the_plain_one(monkeypatch):
    import corpus_weights.corpus_stats as cs

    A = sp.random(3_000, 2_000, density=0.2, format="csr", random_state=1)
    X = np.random.default_rng(2).standard_normal((2_000, 7))
    monkeypatch.setattr(cs, "THREADED_NNZ", 0)  # split even this small product
    assert np.allclose(cs.sparse_matmul(A, X, threads=3), A @ X)
    # and the singular values through the threaded operator equal those through the matrix itself
    monkeypatch.setattr(cs, "available_cores", lambda: 2)
    s_threaded = cs.top_singular(A, 5, vectors=False)
    monkeypatch.setattr(cs, "THREADED_NNZ", 10**12)
    assert np.allclose(s_threaded, cs.top_singular(A, 5, vectors=False), rtol=1e-10)


def test_both_solvers_give_the_same_top_singular_values(monkeypatch):
    """PROPACK (small matrices) and ARPACK (large ones) agree; the switch is only a matter of speed and memory."""
    import corpus_weights.corpus_stats as cs

    rng = np.random.default_rng(3)
    A = sp.csr_matrix(rng.standard_normal((300, 8)) @ np.diag(np.linspace(10, 1, 8)) @ rng.standard_normal((8, 200))
                      + 0.01 * rng.standard_normal((300, 200)))
    U1, s1, Vt1 = cs.top_singular(A, 6)
    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", 0)
    U2, s2, Vt2 = cs.top_singular(A, 6)
    assert np.allclose(s1, s2, rtol=1e-10)
    assert np.allclose(np.abs(np.sum(U1 * U2, axis=0)), 1.0, atol=1e-8)
    assert np.allclose(s1, np.linalg.svd(A.toarray(), compute_uv=False)[:6], rtol=1e-10)
