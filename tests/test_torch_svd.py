"""The corpus decompositions on torch tensors (issue 25's GPU path, config key analysis.svd_solver: torch), tested on
CPU torch: planted spectra, agreement with scipy's solvers on a real PPMI matrix under the accuracy guard, a solver
stopped early that the guard refuses, the device rules, and the rule corpus_stats run with it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from corpus_weights.core.ids import Spectrum
from corpus_weights.core.linalg import svd_accuracy
from corpus_weights.corpus import corpus_stats as cs
from corpus_weights.corpus.torch_svd import resolve_svd_device, solver_device, top_singular_torch, to_torch_csr

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning",
                                        "ignore:Sparse invariant checks:UserWarning")


def planted(n_rows: int, n_cols: int, s: np.ndarray, seed: int = 0):
    """A sparse matrix with singular values ``s`` at scattered (row, column) pairs: its singular vectors are the
    unit vectors of those rows and columns."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(n_rows)[: len(s)]
    cols = rng.permutation(n_cols)[: len(s)]
    return sp.csr_matrix((s, (rows, cols)), shape=(n_rows, n_cols)), rows, cols


@pytest.fixture(scope="module")
def corpus_matrices():
    """Counts and PPMI of a 200 k-token Markov stream over 1,200 words (Zipf unigrams, a few successors each)."""
    rng = np.random.default_rng(7)
    V = 1200
    p = 1.0 / np.arange(1, V + 1)
    p /= p.sum()
    successors = rng.choice(V, size=(V, 6), p=p)
    ids = np.empty(200_000, dtype=np.int64)
    ids[0] = 0
    picks = rng.integers(0, 6, size=len(ids))
    jumps = rng.random(len(ids)) < 0.3
    fresh = rng.choice(V, size=len(ids), p=p)
    for t in range(1, len(ids)):
        ids[t] = fresh[t] if jumps[t] else successors[ids[t - 1], picks[t]]
    C = cs.bigram_counts(ids, V)
    return C, cs.ppmi(C)


def test_a_planted_spectrum_is_found_with_its_vectors():
    s = np.geomspace(50.0, 0.5, 40)
    A, rows, cols = planted(700, 500, s)
    U, got, Vt = top_singular_torch(A, 12)
    assert np.allclose(got, s[:12], rtol=1e-12, atol=0)
    for j in range(12):  # the j-th triplet sits at (rows[j], cols[j]) only
        assert abs(abs(U[rows[j], j]) - 1) < 1e-9 and abs(abs(Vt[j, cols[j]]) - 1) < 1e-9
    assert np.allclose(U.T @ U, np.eye(12), atol=1e-10) and np.allclose(Vt @ Vt.T, np.eye(12), atol=1e-10)


def test_a_wide_matrix_is_solved_on_its_short_side_and_returned_the_right_way_round():
    s = np.linspace(9.0, 1.0, 30)
    A, rows, cols = planted(300, 900, s, seed=1)
    U, got, Vt = top_singular_torch(A, 8)
    assert U.shape == (300, 8) and Vt.shape == (8, 900)
    assert np.allclose(got, s[:8], rtol=1e-12)
    assert np.allclose(A @ Vt.T, U * got, atol=1e-9)
    assert np.allclose(top_singular_torch(A, 8, vectors=False), s[:8], rtol=1e-12)


def test_it_agrees_with_scipy_on_a_ppmi_matrix_under_the_accuracy_guard(corpus_matrices):
    _, P = corpus_matrices
    U0, s0, Vt0 = cs.top_singular(P, 32)
    U, s, Vt = cs.top_singular(P, 32, solver="torch", device="cpu")
    assert np.max(np.abs(s - s0)) / s0[0] < 1e-10
    guard = svd_accuracy(P, U, s, Vt, s0, U0)
    assert guard["passed"] and guard["residual"] < 1e-8 and guard["gapped_directions"] > 0, guard


def test_the_symmetric_spectrum_and_the_embeddings_agree_with_scipy(corpus_matrices):
    C, P = corpus_matrices
    M = (C + C.T).tocsr()
    ref = cs.top_abs_eigenvalues(M, 24)
    got = cs.top_abs_eigenvalues(M, 24, solver="torch")
    assert np.max(np.abs(got - ref)) / ref[0] < 1e-10
    stats = cs.symmetric_counts_spectrum_stats(C, k=24, solver="torch")
    assert stats["pr_abs_top_k"] == pytest.approx(cs.symmetric_counts_spectrum_stats(C, k=24)["pr_abs_top_k"],
                                                  rel=1e-9)
    E0, F0, s0 = cs.ppmi_embeddings(P, 16)
    E, F, s = cs.ppmi_embeddings(P, 16, solver="torch")
    assert np.allclose(s, s0, rtol=1e-10)
    gaps = (s0[:-1] - s0[1:]) / s0[:-1]
    sep = [j for j in range(16) if (j == 0 or gaps[j - 1] > 1e-2) and (j == 15 or gaps[j] > 1e-2)]
    assert sep  # directions separated from both neighbours are determined: equal after the sign convention
    assert np.allclose(E[:, sep], E0[:, sep], atol=1e-6) and np.allclose(F[:, sep], F0[:, sep], atol=1e-6)


def test_a_solver_stopped_early_fails_the_guard_and_an_unconverged_run_is_refused(corpus_matrices):
    _, P = corpus_matrices
    U0, s0, _ = cs.top_singular(P, 32)
    U, s, Vt = top_singular_torch(P, 32, tol=0.3, depth=1)  # stops after its first cycle
    guard = svd_accuracy(P, U, s, Vt, s0, U0)
    assert not guard["passed"] and guard["residual"] > 1e-6, guard
    with pytest.raises(RuntimeError, match=r"did not converge in 1 cycles \(worst residual .* σ₁, tol 1e-09\)"):
        top_singular_torch(P, 32, depth=1, max_cycles=1)


def test_the_seed_fixes_the_result_and_another_seed_the_same_values(corpus_matrices):
    _, P = corpus_matrices
    a = top_singular_torch(P, 10, seed=3)
    b = top_singular_torch(P, 10, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = top_singular_torch(P, 10, seed=4)
    assert np.allclose(c[1], a[1], rtol=1e-10)
    assert not np.array_equal(c[0], a[0])  # another start block: the same answer by another path, not bit for bit


def test_a_matrix_too_small_for_a_krylov_space_is_solved_densely_and_bad_k_refused():
    s = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    A, _, _ = planted(12, 10, s)
    assert np.allclose(top_singular_torch(A, 4, vectors=False), s[:4])
    with pytest.raises(ValueError, match=r"k must be in \[1, min\(A.shape\) = 10\], got 11"):
        top_singular_torch(A, 11)


def test_the_csr_copy_multiplies_like_scipy():
    A = sp.random(60, 40, density=0.1, format="csr", random_state=0)
    X = np.random.default_rng(0).standard_normal((40, 3))
    assert np.allclose((to_torch_csr(A) @ torch.from_numpy(X)).numpy(), A @ X, atol=1e-13)


def test_device_and_solver_values_are_checked_naming_their_keys(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_svd_device("auto") == "cpu" and resolve_svd_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="analysis.svd_device is 'cuda' but torch sees no CUDA device"):
        resolve_svd_device("cuda")
    with pytest.raises(ValueError, match=r"analysis.svd_device: expected one of \('auto', 'cpu', 'cuda'\), got 'gpu'"):
        resolve_svd_device("gpu")
    # what a rule's job passes to the decompositions: scipy always on the CPU, torch on the checked device
    assert cs.decomposition_options("scipy", "cuda") == {"solver": "scipy", "device": "cpu"}
    with pytest.raises(RuntimeError, match="analysis.svd_device is 'cuda'"):
        cs.decomposition_options("torch", "cuda")
    with pytest.raises(ValueError, match="analysis.svd_solver: expected one of"):
        cs.decomposition_options("arpack", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_svd_device("auto") == "cuda"
    assert cs.decomposition_options("torch", "auto") == {"solver": "torch", "device": "cuda"}
    with pytest.raises(ValueError, match=r"analysis.svd_solver: expected one of \('scipy', 'torch'\), got 'arpack'"):
        cs.top_singular(sp.eye(5, format="csr"), 2, solver="arpack")


def test_threads_of_cpu_torch_follow_the_rule(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.get_num_threads()
    try:
        assert solver_device("auto", threads=1) == "cpu" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_rule_corpus_stats_with_the_torch_solver_writes_what_scipy_writes(tmp_path):
    """Through the workflow: the tiny corpus's statistics with analysis.svd_solver torch (CPU torch here) equal the
    scipy run's (both with analysis.spectrum_k = 24, which reaches the C + Cᵀ decomposition); the plan asks for a
    GPU only where the solver would use one; cuda on this machine stops the job naming the key."""
    from workflow_helpers import make_workdir, snakemake, write_config

    T = "results/tiny/default/corpus_stats"
    out = {}
    for solver in ("scipy", "torch"):
        analysis = {"svd_solver": solver, "svd_device": "cpu", "spectrum_k": 24}
        wd = make_workdir(tmp_path / solver, {"analysis": analysis})
        proc = snakemake(wd, "--cores", "2", f"{T}/spectra.parquet")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[solver] = wd
        log = (wd / "results/tiny/default/logs/corpus_stats.log").read_text()
        # both decompositions (the PPMI SVD at d and C + Cᵀ's top |λ|) ran on the configured solver
        assert log.count("torch SVD: k=") == (2 if solver == "torch" else 0), log
        assert f"decompositions: {solver} on cpu" in log
    a, b = (np.load(out[s] / f"{T}/embeddings.npz") for s in ("scipy", "torch"))
    assert np.allclose(a["singular_values"], b["singular_values"], rtol=1e-9)
    sa, sb = (pd.read_parquet(out[s] / f"{T}/spectra.parquet") for s in ("scipy", "torch"))
    for s in (sa, sb):  # analysis.spectrum_k reached the C + Cᵀ decomposition
        assert int(s.set_index("name").loc[Spectrum.SYMMETRIC_ABS, "n"]) == 24, s
    assert np.allclose(sa[["pr", "effective_rank"]].astype(float).fillna(-1),
                       sb[["pr", "effective_rank"]].astype(float).fillna(-1), rtol=1e-8)

    wd = out["torch"]
    for device, gpus in (("cpu", "0"), ("auto", "1"), ("cuda", "1")):
        write_config(wd, {"analysis": {"svd_solver": "torch", "svd_device": device}})
        proc = snakemake(wd, "-n", "-p", "--forcerun", "corpus_stats", f"{T}/spectra.parquet")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        block = proc.stdout.split("rule corpus_stats:")[1].split("\n\n")[0]
        assert f"gpu={gpus}" in block.replace(" ", ""), block
    if not torch.cuda.is_available():
        write_config(wd, {"analysis": {"svd_solver": "torch", "svd_device": "cuda"}})
        proc = snakemake(wd, "--cores", "1", "--forcerun", "corpus_stats", f"{T}/spectra.parquet")
        assert proc.returncode != 0
        log = (wd / "results/tiny/default/logs/corpus_stats.log").read_text()
        assert "analysis.svd_device is 'cuda' but torch sees no CUDA device" in log + proc.stderr
        assert "stage bigram counts" not in log  # refused before any counting
