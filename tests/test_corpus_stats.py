"""Corpus statistics against planted answers computed by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from corpus_weights.corpus.corpus_stats import (
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
    import corpus_weights.corpus.corpus_stats as cs

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
    import corpus_weights.corpus.corpus_stats as cs

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
    import corpus_weights.corpus.corpus_stats as cs

    rng = np.random.default_rng(3)
    A = sp.csr_matrix(rng.standard_normal((300, 8)) @ np.diag(np.linspace(10, 1, 8)) @ rng.standard_normal((8, 200))
                      + 0.01 * rng.standard_normal((300, 200)))
    U1, s1, Vt1 = cs.top_singular(A, 6)
    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", 0)
    U2, s2, Vt2 = cs.top_singular(A, 6)
    assert np.allclose(s1, s2, rtol=1e-10)
    assert np.allclose(np.abs(np.sum(U1 * U2, axis=0)), 1.0, atol=1e-8)
    assert np.allclose(s1, np.linalg.svd(A.toarray(), compute_uv=False)[:6], rtol=1e-10)


# ----------------------------------------------------------------------------- spectrum of C + C^T, every key

def _dense_spectrum_stats(C, k):
    M = (C + C.T).toarray()
    lam = np.linalg.eigvalsh(M)
    s = np.sort(np.abs(lam))[::-1][:k]
    fro2 = (M * M).sum()
    p = s / s.sum()
    return dict(trace=np.trace(M), frobenius_sq=fro2, pr_exact=np.trace(M) ** 2 / fro2,
                effective_rank_top_k=np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()),
                pr_abs_top_k=s.sum() ** 2 / (s ** 2).sum(), pr_sq_top_k=fro2 ** 2 / (s ** 4).sum(),
                top_k_energy_share=(s ** 2).sum() / fro2, top1_energy_share=s[0] ** 2 / fro2,
                top_singular_values=s[:10])


@pytest.mark.parametrize("k, expected_k", [(None, 38), (5, 5), (100, 38)])
def test_symmetric_counts_spectrum_every_key_against_dense(k, expected_k):
    C = _random_sparse(V=40, density=0.2, seed=5)
    C.setdiag(np.arange(40) % 3)
    stats = symmetric_counts_spectrum_stats(C, k=k)
    assert stats["matrix"] == "C + C^T" and stats["n"] == 40 and stats["truncated_top_k"] == expected_k
    for key, value in _dense_spectrum_stats(C, expected_k).items():
        assert np.allclose(stats[key], value, rtol=1e-9), key
    assert len(stats["top_singular_values"]) == min(10, expected_k)
    assert np.all(np.diff(stats["top_singular_values"]) <= 0)  # descending


def test_symmetric_counts_spectrum_is_scale_free_tiny_and_deterministic():
    """Counts scaled by 1e-3 (Frobenius norm below 1) give the same scale-free statistics; a 3-token vocabulary
    still has one |eigenvalue| (k = V - 2 = 1); two calls agree to the last bit (seeded Lanczos)."""
    C = _random_sparse(V=40, density=0.2, seed=6)
    a, b = symmetric_counts_spectrum_stats(C), symmetric_counts_spectrum_stats(C * 1e-3)
    assert b["frobenius_sq"] < 1
    for key in ("pr_exact", "effective_rank_top_k", "pr_abs_top_k", "pr_sq_top_k", "top_k_energy_share",
                "top1_energy_share"):
        assert np.isclose(a[key], b[key], rtol=1e-9), key
    assert a == symmetric_counts_spectrum_stats(C)
    tiny = symmetric_counts_spectrum_stats(sp.csr_matrix(np.array([[0, 2.0, 0], [0, 0, 1], [0, 0, 0]])))
    assert tiny["truncated_top_k"] == 1 and np.isclose(tiny["top_singular_values"][0], np.sqrt(5))
    assert np.isclose(tiny["pr_abs_top_k"], 1.0) and np.isclose(tiny["top1_energy_share"], 5 / 10)


def test_symmetric_counts_spectrum_of_no_counts_and_wrong_shape():
    out = symmetric_counts_spectrum_stats(sp.csr_matrix((5, 5)))
    assert out["truncated_top_k"] == 0 and np.isnan(out["effective_rank_top_k"]) and np.isnan(out["pr_exact"])
    assert out["trace"] == 0 and out["frobenius_sq"] == 0 and "pr_abs_top_k" not in out
    with pytest.raises(ValueError, match=r"C must be square, got \(3, 4\)"):
        symmetric_counts_spectrum_stats(sp.csr_matrix((3, 4)))


# ----------------------------------------------------------------------------- solvers: paths, order, seeds

def _planted_sparse(n=120, m=90, seed=0):
    """A sparse matrix with known, well-separated singular values: a scaled partial permutation."""
    rng = np.random.default_rng(seed)
    values = np.linspace(20.0, 1.0, m)
    rows = rng.permutation(n)[:m]
    cols = rng.permutation(m)
    return sp.csr_matrix((values, (rows, cols)), shape=(n, m)), values


@pytest.mark.parametrize("propack_max", [10**9, 0])  # PROPACK, then ARPACK
def test_top_singular_planted_descending_and_bit_reproducible(monkeypatch, propack_max):
    import corpus_weights.corpus.corpus_stats as cs

    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", propack_max)
    A, values = _planted_sparse()
    U, s, Vt = cs.top_singular(A, 4, seed=3)
    assert s.shape == (4,) and np.allclose(s, values[:4], rtol=1e-10)
    assert np.allclose(np.abs(U.T @ (A @ Vt.T)), np.diag(values[:4]), atol=1e-8)
    U2, s2, Vt2 = cs.top_singular(A, 4, seed=3)
    assert np.array_equal(U, U2) and np.array_equal(s, s2) and np.array_equal(Vt, Vt2)
    only = cs.top_singular(A, 4, seed=3, vectors=False)
    assert only.shape == (4,) and np.allclose(only, values[:4], rtol=1e-10) and np.all(np.diff(only) < 0)


def test_top_singular_solver_switch_at_the_limit_and_fallback_warning(monkeypatch, caplog):
    import corpus_weights.corpus.corpus_stats as cs

    A, values = _planted_sparse()
    used = []
    real_svds = cs.svds

    def spy(*args, **kwargs):
        used.append(kwargs["solver"])
        return real_svds(*args, **kwargs)

    monkeypatch.setattr(cs, "svds", spy)
    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", 120)  # = max(A.shape): still PROPACK
    cs.top_singular(A, 3)
    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", 119)
    cs.top_singular(A, 3)
    assert used == ["propack", "arpack"]

    def failing(*args, **kwargs):
        if kwargs["solver"] == "propack":
            raise np.linalg.LinAlgError("planted failure")
        return real_svds(*args, **kwargs)

    monkeypatch.setattr(cs, "svds", failing)
    monkeypatch.setattr(cs, "PROPACK_MAX_DIM", 10**9)
    with caplog.at_level("WARNING", logger="corpus_weights.corpus.corpus_stats"):
        s = cs.top_singular(A, 3, vectors=False)
    assert np.allclose(s, values[:3])
    assert [r.getMessage() for r in caplog.records] == ["PROPACK did not converge (planted failure); using ARPACK"]


def test_top_abs_eigenvalues_planted_signed_spectrum_and_reproducible(monkeypatch):
    """Block-diagonal [[0, a], [a, 0]] blocks have eigenvalues +-a: the |eigenvalues| come back descending, each
    twice, the same to the last bit on a second call, and through the threaded operator as well."""
    import corpus_weights.corpus.corpus_stats as cs

    a = np.array([9.0, 7.0, 5.0, 3.0, 2.0, 1.0])
    M = sp.block_diag([sp.csr_matrix([[0, x], [x, 0]]) for x in a], format="csr")
    w = cs.top_abs_eigenvalues(M, 4, seed=1)
    assert np.allclose(w, [9, 9, 7, 7], rtol=1e-10)
    assert np.array_equal(w, cs.top_abs_eigenvalues(M, 4, seed=1))
    monkeypatch.setattr(cs, "THREADED_NNZ", 0)
    monkeypatch.setattr(cs, "available_cores", lambda: 2)
    assert np.allclose(cs.top_abs_eigenvalues(M, 4, seed=1), [9, 9, 7, 7], rtol=1e-10)


def test_threaded_operator_products_match_the_matrix(monkeypatch):
    import corpus_weights.corpus.corpus_stats as cs

    A = sp.random(50, 30, density=0.3, format="csr", random_state=4)
    x, X = np.arange(30.0), np.arange(60.0).reshape(30, 2)
    y, Y = np.arange(50.0), np.arange(100.0).reshape(50, 2)
    monkeypatch.setattr(cs, "available_cores", lambda: 1)
    assert cs._operator(A) is A  # one core: the matrix itself
    monkeypatch.setattr(cs, "available_cores", lambda: 2)
    assert cs._operator(A) is A  # below the threshold: the matrix itself
    monkeypatch.setattr(cs, "THREADED_NNZ", 0)
    op = cs._operator(A)
    assert op is not A and op.shape == (50, 30)
    assert np.allclose(op.matvec(x), A @ x) and op.matvec(x).shape == (50,)
    assert np.allclose(op.rmatvec(y), A.T @ y) and op.rmatvec(y).shape == (30,)
    assert np.allclose(op.matmat(X), A @ X) and np.allclose(op.rmatmat(Y), A.T @ Y)
    S = (A[:30] + A[:30].T).tocsr()
    sym = cs._operator(S, symmetric=True)
    assert np.allclose(sym.rmatvec(x), S @ x)


def test_sparse_matmul_thread_counts_and_dtype(monkeypatch):
    import corpus_weights.corpus.corpus_stats as cs

    A = sp.random(40, 20, density=0.4, format="csr", random_state=5)
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    monkeypatch.setattr(cs, "THREADED_NNZ", 0)
    for threads in (1, 2, 5, 40):
        out = cs.sparse_matmul(A, X, threads=threads)
        assert np.allclose(out, A @ X) and out.dtype == np.float64
    monkeypatch.setattr(cs, "available_cores", lambda: 3)
    assert np.allclose(cs.sparse_matmul(A, X), A @ X)
    monkeypatch.setattr(cs, "THREADED_NNZ", A.nnz)  # exactly at the threshold: threaded
    calls = []
    monkeypatch.setattr(cs, "ThreadPoolExecutor", lambda n: calls.append(n) or __import__(
        "concurrent.futures").futures.ThreadPoolExecutor(n))
    cs.sparse_matmul(A, X, threads=2)
    assert calls == [2]


# ----------------------------------------------------------------------------- edges and error messages

def test_ppmi_embeddings_paths_at_the_rank_bound(monkeypatch, caplog):
    import corpus_weights.corpus.corpus_stats as cs

    P = ppmi(_random_sparse(V=12, density=0.6, seed=2))
    kmax = 12
    s_dense = np.linalg.svd(P.toarray(), compute_uv=False)
    for dim in (kmax - 2, kmax - 1, kmax):  # svds, dense (svds unreliable at kmax - 1), dense
        E_in, E_out, s = ppmi_embeddings(P, dim)
        assert E_in.shape == (12, dim) and np.allclose(s, s_dense[:dim])
        assert np.allclose(E_in @ E_out.T, (lambda U, S, Vt: (U[:, :dim] * S[:dim]) @ Vt[:dim])(
            *np.linalg.svd(P.toarray())), atol=1e-8)
    with caplog.at_level("WARNING", logger="corpus_weights.corpus.corpus_stats"):
        ppmi_embeddings(P, kmax + 1)
    assert "ppmi_embeddings: dim=13 > rank bound 12; padding with zero components" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="corpus_weights.corpus.corpus_stats"):
        ppmi_embeddings(P, kmax)
    assert "padding" not in caplog.text
    with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
        ppmi_embeddings(P, 0)
    assert ppmi_embeddings(P, 1)[0].shape == (12, 1)
    monkeypatch.setattr(cs, "DENSE_SVD_MAX", 11)  # 12 > the dense limit: dim = kmax - 1 goes to svds
    assert np.allclose(ppmi_embeddings(P, kmax - 1)[2], s_dense[:kmax - 1], rtol=1e-8)
    with pytest.raises(ValueError, match=r"dim=12 >= min\(P.shape\)=12: truncated SVD impossible"):
        ppmi_embeddings(P, kmax)
    monkeypatch.setattr(cs, "DENSE_SVD_MAX", 12)  # exactly at the limit: dense is allowed
    assert ppmi_embeddings(P, kmax)[0].shape == (12, 12)


def test_ppmi_embeddings_singular_values_clipped_and_seed_default():
    P = sp.csr_matrix(np.diag([3.0, 2.0, 1.0, 0.0]))
    E_in, _, s = ppmi_embeddings(P, 4)  # dense path: the zero singular value stays exactly 0, never negative
    assert np.all(s >= 0) and s[-1] == 0
    Q = ppmi(_random_sparse(V=40, density=0.2, seed=9))
    assert np.array_equal(ppmi_embeddings(Q, 3)[0], ppmi_embeddings(Q, 3, seed=0)[0])


def test_bigram_counts_edges_and_index_types():
    assert bigram_counts(np.array([2]), 3).nnz == 0 and bigram_counts(np.array([2]), 3).shape == (3, 3)
    one = bigram_counts(np.array([2, 0]), 3)  # a single pair
    assert one.toarray()[2, 0] == 1 and one.nnz == 1 and one.dtype == np.float64
    C = bigram_counts(np.array([0, 1, 0, 1], dtype=np.int16), 3)
    assert C.indices.dtype == np.int32 and C.indptr.dtype == np.int32 and C.data.dtype == np.float64
    assert np.array_equal(C.toarray(), [[0, 2, 0], [1, 0, 0], [0, 0, 0]])
    assert bigram_counts([0, 1, 0], 2).toarray()[0, 1] == 1  # a list is accepted
    V = 65_536  # V**2 = 2**32 exactly: one more than uint32 holds, so uint64 keys
    C = bigram_counts(np.array([V - 1, V - 1, 3]), V)
    assert C[V - 1, V - 1] == 1 and C[V - 1, 3] == 1 and C.nnz == 2


def test_id_and_count_errors_are_worded():
    with pytest.raises(ValueError, match=r"ids out of range \[0, 3\): min 0, max 3"):
        bigram_counts(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"ids out of range \[0, 3\): min -1, max 1"):
        unigram_distribution(np.array([-1, 1]), 3)
    assert unigram_distribution(np.array([2, 2]), 3)[2] == 1.0  # max = V - 1 is in range
    with pytest.raises(ValueError, match="ids must be integers, got float64"):
        bigram_counts(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match=r"ids must be 1-D, got shape \(1, 2\)"):
        bigram_counts(np.array([[0, 1]]), 3)
    with pytest.raises(ValueError, match="cannot compute a unigram distribution from zero tokens"):
        unigram_distribution(np.array([], dtype=np.int64), 3)
    assert unigram_distribution(np.array([1]), 2).tolist() == [0.0, 1.0]  # one token is enough
    with pytest.raises(ValueError, match="counts must be non-negative"):
        ppmi(sp.csr_matrix(np.array([[1.0, -1.0], [0.0, 1.0]])))
    assert ppmi(sp.csr_matrix(np.array([[0.5, 0.0], [0.0, 0.5]]))).nnz == 2  # fractional counts are counts
    with pytest.raises(ValueError, match=r"E \(3, 2\) and pi \(2,\) disagree"):
        corpus_covariance(np.zeros((3, 2)), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"E \(3,\) and pi \(3,\) disagree"):
        corpus_covariance(np.zeros(3), np.full(3, 1 / 3))
    with pytest.raises(ValueError, match=r"pi must be a probability vector \(sum 1.1"):
        corpus_covariance(np.zeros((2, 2)), np.array([0.6, 0.5]))
    with pytest.raises(ValueError, match="probability vector"):
        corpus_covariance(np.zeros((2, 2)), np.array([1.5, -0.5]))
    Sigma, _ = corpus_covariance(np.eye(2), np.array([1.0, 0.0]))  # a zero probability is allowed
    assert np.allclose(Sigma, 0)
    with pytest.raises(ValueError, match="probability vector"):
        corpus_covariance(np.eye(2), np.array([0.5, 0.5 + 1e-4]))


def test_ppmi_rows_of_a_rectangular_count_matrix_and_transition_of_fractional_rows():
    C = sp.csr_matrix(np.array([[0.0, 2.0, 1.0], [1.0, 0.0, 0.0]]))  # 2 x 3: rows and columns differ
    P = ppmi(C, alpha=1.0).toarray()
    # N = 4; row sums (3, 1); column sums (1, 2, 1): PMI(0,1) = log(2/4 / (3/4 * 2/4)) = log(4/3),
    # PMI(0,2) = log(1/4 / (3/4 * 1/4)) = log(4/3), PMI(1,0) = log(1/4 / (1/4 * 1/4)) = log 4
    assert np.allclose(P, [[0, np.log(4 / 3), np.log(4 / 3)], [np.log(4), 0, 0]])
    T = transition_matrix(sp.csr_matrix(np.array([[0.25, 0.25], [0.0, 0.0]]))).toarray()
    assert np.allclose(T, [[0.5, 0.5], [0, 0]])  # a row summing to 0.5 (< 1) is still normalised
    Cz = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 1.0]]))
    assert ppmi(Cz, alpha=1.0)[1, 1] == 0.0 and ppmi(Cz, alpha=1.0).nnz == 2  # PMI(1,1) = log(2/3) < 0 dropped


def test_spectrum_default_k_is_256_and_values_below_one_are_kept():
    import corpus_weights.corpus.corpus_stats as cs

    C = _random_sparse(V=300, density=0.03, seed=8)
    assert symmetric_counts_spectrum_stats(C)["truncated_top_k"] == 256
    A, values = _planted_sparse()
    A = A * 0.01  # every singular value below 1
    assert np.allclose(cs.top_singular(A, 3, vectors=False), 0.01 * values[:3], rtol=1e-10)


def test_ppmi_of_one_pair_and_of_empty_trailing_columns():
    one = ppmi(sp.csr_matrix(([3.0], ([0], [1])), shape=(2, 2)))
    assert one.nnz == 0 and one.shape == (2, 2)  # PMI of the only pair is log 1 = 0
    C = sp.csr_matrix(np.array([[0.0, 2.0, 0.0], [1.0, 1.0, 0.0]]))  # the last column has no counts
    assert ppmi(C).shape == (2, 3)


def test_messages_are_exact(caplog):
    with pytest.raises(ValueError, match=r"^counts must be non-negative$"):
        ppmi(sp.csr_matrix(np.array([[1.0, -1.0], [0.0, 1.0]])))
    with pytest.raises(ValueError, match=r"^cannot compute a unigram distribution from zero tokens$"):
        unigram_distribution(np.array([], dtype=np.int64), 3)
    with caplog.at_level("WARNING", logger="corpus_weights.corpus.corpus_stats"):
        ppmi_embeddings(ppmi(_random_sparse(V=8, density=0.9, seed=1)), 9)
    assert [r.getMessage() for r in caplog.records] == [
        "ppmi_embeddings: dim=9 > rank bound 8; padding with zero components"]


def test_ppmi_default_smoothing_is_three_quarters():
    C = _random_sparse(V=20, density=0.3, seed=3)
    assert (ppmi(C) != ppmi(C, alpha=0.75)).nnz == 0 and (ppmi(C) != ppmi(C, alpha=1.0)).nnz > 0


def test_one_component_is_sign_fixed_too():
    U0, _, _ = ppmi_embeddings(ppmi(_random_sparse(V=30, density=0.3, seed=4)), 1, power=0.0)
    assert U0[np.argmax(np.abs(U0[:, 0])), 0] > 0
    flipped = -U0
    from corpus_weights.corpus.corpus_stats import _fix_signs
    _fix_signs(flipped)
    assert np.array_equal(flipped, U0)
