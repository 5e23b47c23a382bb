"""Planted answers for the leaf linear algebra every measurement uses (corpus_weights.core.linalg)."""
import numpy as np
import pytest

from corpus_weights.core.linalg import (
    cosine, double_centre, fix_signs, haar_frame, haar_orthogonal, orthonormal_columns, pearson, row_centre,
)


def test_row_centre_by_hand():
    S = np.array([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    assert np.array_equal(row_centre(S), [[-2.0, -1.0, 3.0], [-1.0, -1.0, 2.0]])
    assert row_centre(np.array([[1, 2]], dtype=np.int8)).dtype == np.float64


def test_double_centre_removes_planted_row_and_column_effects_exactly():
    core = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])  # already zero row and column means
    rows, cols = np.array([[5.0], [-2.0]]), np.array([[0.5, 3.0, -7.0]])
    assert np.allclose(double_centre(core + rows + cols + 11.0), core, atol=1e-12)
    # by hand: rows means 3, 6; column means 2.5, 4.5, 6.5; grand mean 4.5
    S = np.array([[1.0, 3.0, 5.0], [4.0, 6.0, 8.0]])
    assert np.allclose(double_centre(S), np.zeros((2, 3)))
    S2 = np.array([[1.0, 0.0], [0.0, 0.0]])  # row means .5, 0; col means .5, 0; grand .25
    assert np.allclose(double_centre(S2), [[0.25, -0.25], [-0.25, 0.25]])


def test_cosine_by_hand():
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    B = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert np.isclose(cosine(A, B), 1 / (np.sqrt(2) * np.sqrt(2)))
    assert np.isclose(cosine(A, -2 * A), -1.0)
    assert cosine(np.array([1, 0], dtype=np.int64), np.array([0, 3], dtype=np.int64)) == 0.0


def test_pearson_unweighted_and_weighted_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert np.isclose(pearson(x, 2 * x + 1), 1.0)
    assert np.isclose(pearson(x, -x), -1.0)
    y = np.array([1.0, 3.0, 2.0, 4.0])
    # by hand: centred x (-1.5, -.5, .5, 1.5), y (-1.5, .5, -.5, 1.5): cov 4/4, var 5/4 each -> 0.8
    assert np.isclose(pearson(x, y), 0.8)
    # weights: the third point has weight 0, so r is that of the other three; weights need not sum to 1
    w = np.array([2.0, 2.0, 0.0, 2.0])
    assert np.isclose(pearson(x, y, w), np.corrcoef(x[[0, 1, 3]], y[[0, 1, 3]])[0, 1])
    # unequal weights by hand: points (0,0) w=1, (1,0) w=1, (1,1) w=2 -> means .75, .5
    xs, ys, ws = np.array([0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 1.0, 2.0])
    cov = (0.75 * 0.5 * 1 + (-0.25) * 0.5 * 1 + (-0.25) * (-0.5) * 2) / 4
    vx = (0.75 ** 2 + 0.25 ** 2 + 2 * 0.25 ** 2) / 4
    vy = (0.25 + 0.25 + 2 * 0.25) / 4
    assert np.isclose(pearson(xs, ys, ws), cov / np.sqrt(vx * vy))
    assert np.isclose(pearson(x.reshape(2, 2), y.reshape(2, 2)), 0.8)  # arrays are flattened


def test_haar_frame_orthonormal_with_positive_triangular_factor():
    rng = np.random.default_rng(0)
    Q = haar_frame(7, 3, rng)
    assert Q.shape == (7, 3) and np.allclose(Q.T @ Q, np.eye(3))
    # the sign convention: Q is the QR factor of the Gaussian draw with R's diagonal made positive
    G = np.random.default_rng(0).standard_normal((7, 3))
    R = Q.T @ G
    assert np.allclose(np.tril(R, -1), 0, atol=1e-12) and (np.diag(R) > 0).all()
    O = haar_orthogonal(5, np.random.default_rng(1))
    assert O.shape == (5, 5) and np.allclose(O @ O.T, np.eye(5))
    # Haar: the mean of the (0, 0) entry is 0 and its second moment 1/d (a fixed sign convention would bias it)
    draws = np.array([haar_orthogonal(4, np.random.default_rng(s))[0, 0] for s in range(2000)])
    assert abs(draws.mean()) < 4 * 0.5 / np.sqrt(2000) and abs((draws ** 2).mean() - 0.25) < 0.03


def test_orthonormal_columns_nested_and_float64():
    M = np.array([[1, 1], [0, 1], [0, 0]], dtype=np.float32)
    Q = orthonormal_columns(M)
    assert Q.dtype == np.float64 and np.allclose(Q.T @ Q, np.eye(2))
    assert np.allclose(np.abs(Q[:, 0]), [1, 0, 0])  # the first column spans M's first column
    assert np.allclose(np.abs(Q[:, 1]), [0, 1, 0])


@pytest.mark.parametrize("U, expected", [
    (np.array([[1.0, -3.0], [-2.0, 1.0]]), np.array([[-1.0, 3.0], [2.0, -1.0]])),
    (np.array([[0.0, 2.0], [0.0, -1.0]]), np.array([[0.0, 2.0], [0.0, -1.0]])),  # a zero column stays as it is
])
def test_fix_signs_by_hand(U, expected):
    out = fix_signs(U)
    assert np.array_equal(out, expected)


def test_svd_guard_is_well_posed_on_a_flat_tail_and_fails_a_wrong_triplet():
    """A planted spectrum whose k-th value is degenerate with the (k+1)-th: a rotation inside the degenerate pair is an
    exact SVD too (residuals ~1e-15) although its rank-k subspace is 45° from the reference's — the guard passes it,
    checking angles only for the leading 4 directions a gap separates. A triplet off by 5 % fails."""
    from corpus_weights.core.linalg import principal_angles_deg, svd_accuracy

    rng = np.random.default_rng(0)
    m, n, k = 40, 30, 5
    sigma = np.array([10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 1.0] + [0.5] * (n - 7))
    U0 = np.linalg.qr(rng.standard_normal((m, n)))[0]
    V0 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = U0 @ np.diag(sigma) @ V0.T
    U, s, Vt = U0[:, :k].copy(), sigma[:k].copy(), V0[:, :k].T.copy()
    c = np.sqrt(0.5)
    U[:, 4], Vt[4] = c * (U0[:, 4] + U0[:, 5]), c * (V0[:, 4] + V0[:, 5])
    assert principal_angles_deg(U, U0[:, :k]).max() > 44  # the old whole-subspace test would fail it
    ok = svd_accuracy(A, U, s, Vt, sigma[:k], U0[:, :k], tol=1e-10)
    assert ok["passed"] and ok["residual"] < 1e-12 and ok["gapped_directions"] == 4, ok
    bad_U = U.copy()
    bad_U[:, 1] = np.linalg.qr(np.column_stack([U[:, 1] + 0.05 * U0[:, 9], U[:, 0]]))[0][:, 0]
    bad = svd_accuracy(A, bad_U, s, Vt, sigma[:k], U0[:, :k], tol=1e-6)
    assert not bad["passed"] and bad["residual"] > 1e-3, bad
    worse_s = s.copy()
    worse_s[2] *= 1.01
    assert not svd_accuracy(A, U, worse_s, Vt, sigma[:k], tol=1e-6)["passed"]
