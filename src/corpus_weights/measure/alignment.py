"""Corpus space -> model space through the vocabulary: ridge map, Procrustes, CKA, each beside its null.

The corpus embedding E (V x d_c) and the model's W_E (V x d) share only their row labels (tokens), so the only
legitimate bridge between the two coordinate systems is a map fitted on tokens. Conventions:
- tokens: the `top_n` most frequent, special tokens (unknown/padding) excluded;
- fit/test halves stratified by frequency: tokens sorted by frequency, each consecutive pair split at random;
- rows are weighted uniformly inside the top-n set (a π-weighted fit over Zipf weights has an effective sample
  size of a few dozen tokens and overfits d regressors; the top-n restriction already keeps tokens with reliable
  statistics);
- both sides centred with the fit half's means; the map is ridge regression with λ chosen by 5-fold
  cross-validation on the fit half; held-out R² = 1 − ‖Ŵ − W‖² / ‖W − mean(W)‖² on the test half;
- the null of every score refits after permuting the pairing of corpus rows and model rows within frequency strata
  (token identity destroyed, frequency–norm relation kept; the model's rows are permuted, so the design's SVDs are
  computed once);
- split-to-split spread: the map, its held-out scores and the corpus basis are refitted on `n_splits` fit/test splits
  (split 0 is the headline split, seeded by `seed` itself; split s > 0 by `split_seed(seed, s)`); the nulls are
  computed on split 0 only.
Rotating the model (W -> W Q) maps A -> A Q and leaves every score unchanged.
"""
from __future__ import annotations

import numpy as np

from ..corpus.corpus_stats import corpus_covariance, eigh_desc
from ..core.linalg import orthonormal_columns
from ..core.nulls import binned_permutation, empirical_p, log_frequency_bins

RIDGE_GRID = tuple(10.0 ** np.arange(-4, 2.5, 0.5))  # λ relative to tr(XᵀX)/d


def top_tokens(pi: np.ndarray, top_n: int, exclude=()) -> np.ndarray:
    """Indices of the top_n most frequent tokens (excluding `exclude`), most frequent first (stable on ties)."""
    order = np.argsort(-np.asarray(pi), kind="stable")
    if len(exclude):
        order = order[~np.isin(order, np.asarray(exclude))]
    return order[:top_n]


def stratified_halves(tokens_by_freq: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split tokens (sorted by frequency) into fit/test halves: each consecutive pair is split at random."""
    rng = np.random.default_rng(seed)
    n = tokens_by_freq.size - tokens_by_freq.size % 2
    pairs = tokens_by_freq[:n].reshape(-1, 2)
    flip = rng.random(pairs.shape[0]) < 0.5
    first = np.where(flip, pairs[:, 1], pairs[:, 0])
    second = np.where(flip, pairs[:, 0], pairs[:, 1])
    return np.sort(first), np.sort(second)


def split_seed(seed: int, split: int):
    """Seed of fit/test split number `split` (also seeds its CV folds). Split 0 is seeded by `seed` itself, so the
    headline split is the one used before splits were added; split s > 0 draws from the stream [seed, 3, s], apart
    from the map null's [seed, 1] and the basis null's [seed, 2]."""
    return seed if split == 0 else [seed, 3, split]


class RidgeFits:
    """Ridge maps from one design (centred corpus rows of the fit half) to many targets, with λ chosen by k-fold
    cross-validation: the SVDs of the design and of every fold are computed once, so refitting for another target
    (a permuted null draw) costs only matrix products."""

    def __init__(self, E: np.ndarray, fit_idx: np.ndarray, test_idx: np.ndarray, folds: int = 5, seed: int = 0,
                 grid=RIDGE_GRID):
        E = np.asarray(E, dtype=np.float64)
        self.fit_idx, self.test_idx, self.grid = fit_idx, test_idx, np.asarray(grid)
        self.mu_E = E[fit_idx].mean(0)
        X = E[fit_idx] - self.mu_E
        self.X_test = E[test_idx] - self.mu_E
        self.scale = float((X * X).sum() / X.shape[1])
        self.U, self.s, self.Vt = np.linalg.svd(X, full_matrices=False)
        fold_of = np.random.default_rng(seed).permutation(len(fit_idx)) % max(folds, 1)
        self.folds = []  # folds=0: λ will always be given (no cross-validation needed)
        for f in range(folds):
            tr, te = fold_of != f, fold_of == f
            mx = X[tr].mean(0)
            U, sv, Vt = np.linalg.svd(X[tr] - mx, full_matrices=False)
            self.folds.append((tr, te, U, sv, (X[te] - mx) @ Vt.T))

    def choose_lambda(self, Y: np.ndarray) -> float:
        """λ minimising the cross-validated squared error for targets Y (rows = fit tokens)."""
        return float(self.grid[int(np.argmin(self.cv_errors(Y)))] * self.scale)

    def cv_errors(self, Y: np.ndarray) -> np.ndarray:
        """Cross-validated squared error summed over the folds, one per λ of the grid (λ = grid × scale)."""
        # For shrinkage weights s_g = sv / (sv² + λ_g), the held-out error ‖Xte diag(s_g) UtY − Yte‖² expands to
        # s_gᵀ H s_g − 2 s_g·h + ‖Yte‖² with H = (XteᵀXte) ∘ (UtY UtYᵀ) and h = rowsums((XteᵀYte) ∘ UtY): every λ
        # of the grid costs O(rank²) once H and h are known.
        errors = np.zeros(len(self.grid))
        lams = self.grid * self.scale
        for tr, te, U, sv, Xte in self.folds:
            my = Y[tr].mean(0)
            UtY = U.T @ (Y[tr] - my)
            Yte = Y[te] - my
            H = (Xte.T @ Xte) * (UtY @ UtY.T)
            h = ((Xte.T @ Yte) * UtY).sum(axis=1)
            shrink = sv[None, :] / (sv[None, :] ** 2 + lams[:, None])  # (grid, rank)
            errors += np.einsum("gr,rs,gs->g", shrink, H, shrink) - 2 * shrink @ h + (Yte * Yte).sum()
        return errors

    def fit(self, W: np.ndarray, lam: float | None = None) -> dict:
        """Map A to the rows of W (all V rows; the fit/test halves are taken from it). Returns dict(A, lam,
        train_r2, heldout_r2, mu_E, mu_W)."""
        W = np.asarray(W, dtype=np.float64)
        mu_W = W[self.fit_idx].mean(0)
        Y = W[self.fit_idx] - mu_W
        lam = self.choose_lambda(Y) if lam is None else lam
        A = self.Vt.T @ ((self.s / (self.s * self.s + lam))[:, None] * (self.U.T @ Y))
        fitted = (self.U * (self.s * self.s / (self.s * self.s + lam))) @ (self.U.T @ Y)
        Wt = W[self.test_idx]
        res = ((self.X_test @ A + mu_W - Wt) ** 2).sum()
        return dict(A=A, lam=float(lam), mu_E=self.mu_E, mu_W=mu_W,
                    train_r2=float(1 - ((fitted - Y) ** 2).sum() / (Y * Y).sum()),
                    heldout_r2=float(1 - res / ((Wt - Wt.mean(0)) ** 2).sum()))


def fit_ridge_map(E: np.ndarray, W: np.ndarray, fit_idx: np.ndarray, test_idx: np.ndarray, seed: int = 0,
                  lam: float | None = None) -> dict:
    """Ridge map A (d_c x d) from centred corpus rows to centred model rows, fitted on fit_idx (λ by 5-fold CV
    unless given), scored on test_idx. Returns dict(A, lam, train_r2, heldout_r2, mu_E, mu_W)."""
    return RidgeFits(E, fit_idx, test_idx, folds=5 if lam is None else 0, seed=seed).fit(W, lam)


def procrustes_heldout(E: np.ndarray, W: np.ndarray, fit_idx: np.ndarray, test_idx: np.ndarray) -> dict:
    """Orthogonal Procrustes R (d_c x d) fitted on the fit half (both sides centred, unit Frobenius norm) and
    scored on the test half: cos = <Ec R, Wc> with test rows centred and normalised (1 = a rotation explains W;
    R² at the optimal scale is cos² for cos > 0). Returns dict(heldout_cos, train_cos, R)."""
    def prep(X, idx):
        Xc = np.asarray(X, dtype=np.float64)[idx]
        Xc = Xc - Xc.mean(0)
        return Xc / np.linalg.norm(Xc)

    Ef, Wf = prep(E, fit_idx), prep(W, fit_idx)
    U, s, Vt = np.linalg.svd(Ef.T @ Wf, full_matrices=False)
    R = U @ Vt
    Et, Wt = prep(E, test_idx), prep(W, test_idx)
    return dict(heldout_cos=float(((Et @ R) * Wt).sum()), train_cos=float(s.sum()), R=R)


def debiased_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA from the unbiased HSIC estimator (Song et al. 2012): near 0 for independent representations
    even when n is comparable to the widths, unlike the plug-in CKA. Invariant to orthogonal maps and scale."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n = X.shape[0]
    if n < 4:
        raise ValueError("debiased CKA needs at least 4 rows")

    def hsic(K, L):
        K = K.copy()
        L = L.copy()
        np.fill_diagonal(K, 0.0)
        np.fill_diagonal(L, 0.0)
        k1, l1 = K.sum(0), L.sum(0)
        return ((K * L).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2 * (k1 @ l1) / (n - 2)) / (n * (n - 3))

    K, L = X @ X.T, Y @ Y.T
    kl, kk, ll = hsic(K, L), hsic(K, K), hsic(L, L)
    return float(kl / np.sqrt(kk * ll)) if kk > 0 and ll > 0 else float("nan")


def plugin_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Plug-in linear CKA ‖YᵀX‖² / (‖XᵀX‖ ‖YᵀY‖) of centred rows (biased upwards when n is small)."""
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, 0)
    Yc = np.asarray(Y, dtype=np.float64) - np.mean(Y, 0)
    return float(np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


def corpus_basis(A: np.ndarray, eigvecs: np.ndarray) -> np.ndarray:
    """Corpus basis in model coordinates, all K at once: columns of orth(Aᵀ U) (d x min(d, d_c)).

    U: eigenvectors of Σ_E as columns, descending. QR keeps nesting, so [:, :K] is B_K = orth(Aᵀ U_K)."""
    return orthonormal_columns(np.asarray(A, dtype=np.float64).T @ np.asarray(eigvecs, dtype=np.float64))


def _counts(pi: np.ndarray) -> np.ndarray:
    """Training counts recovered from unigram probabilities (π / smallest non-zero π: the rarest counted token occurs
    once), the scale log_frequency_bins expects (it bins log(count + 1))."""
    pi = np.asarray(pi, dtype=np.float64)
    return pi / pi[pi > 0].min()


def vocabulary_alignment(E: np.ndarray, W: np.ndarray, pi: np.ndarray, top_n: int, n_bins: int, n_draws: int,
                         seed: int = 0, exclude=(), E_out: np.ndarray | None = None,
                         eigvecs: np.ndarray | None = None, basis_draws: int = 0,
                         n_splits: int = 1) -> tuple[dict, dict]:
    """Everything about the corpus -> model map for one model. Returns (arrays, summary).

    arrays: A, mu_E, mu_W, fit_idx, test_idx (all of split 0), basis (d x d corpus basis of split 0), null_bases
    (basis_draws x d x d, on split 0), split_bases (n_splits x d x d; split_bases[0] is basis).
    summary: held-out/train R² of the ridge map from E (used by the basis), from E_out and from [E, E_out]; its
    label-permutation null (n_draws refits, CV included, with the corpus/model pairing permuted within log-frequency
    bins); effective sample
    size; Procrustes held-out cosine with its null; debiased and plug-in CKA.
    The basis null (basis_draws > 0) permutes all of E's rows within log-frequency bins, refits the map and the
    eigenvectors of Σ_E, and keeps each draw's full corpus basis (so every K can slice it).
    n_splits: the map and the basis refitted on that many fit/test splits (split 0 = the headline values above);
    summary gains n_splits and, for vocab_map_heldout_r2, procrustes_heldout_cos and ridge_lambda, `<key>_splits`
    (one value per split, split 0 first) and `<key>_split_sd` (sd over splits, ddof = 1)."""
    E = np.asarray(E, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    top = top_tokens(pi, top_n, exclude)
    fit_idx, test_idx = stratified_halves(top, seed)
    ridge = RidgeFits(E, fit_idx, test_idx, seed=seed)
    fit = ridge.fit(W)
    rng = np.random.default_rng([seed, 1])
    top_bins = log_frequency_bins(_counts(pi)[top], n_bins)
    null_r2, null_cos = [], []
    for _ in range(n_draws):  # the pairing of corpus rows and model rows permuted within frequency bins
        p = binned_permutation(top_bins, rng)
        Wp = W.copy()
        Wp[top] = W[top[p]]
        null_r2.append(ridge.fit(Wp)["heldout_r2"])  # λ re-chosen by CV for every draw, as for the real fit
        null_cos.append(procrustes_heldout(E, Wp, fit_idx, test_idx)["heldout_cos"])
    proc = procrustes_heldout(E, W, fit_idx, test_idx)
    summary = dict(
        top_n=int(top.size), n_fit_tokens=int(fit_idx.size), n_heldout_tokens=int(test_idx.size),
        effective_sample_size=int(fit_idx.size), weighting="uniform over the top-n tokens",
        ridge_lambda=fit["lam"], vocab_map_train_r2=fit["train_r2"], vocab_map_heldout_r2=fit["heldout_r2"],
        vocab_map_null=_null_summary(fit["heldout_r2"], null_r2),
        procrustes_heldout_cos=proc["heldout_cos"], procrustes_train_cos=proc["train_cos"],
        procrustes_null=_null_summary(proc["heldout_cos"], null_cos),
        cka_debiased=debiased_linear_cka(E[top], W[top]), cka_plugin=plugin_linear_cka(E[top], W[top]),
        basis_uses="E_in", excluded_tokens=[int(t) for t in exclude],
    )
    if E_out is not None:
        summary["vocab_map_heldout_r2_E_out"] = fit_ridge_map(E_out, W, fit_idx, test_idx, seed=seed)["heldout_r2"]
        both = np.concatenate([E, np.asarray(E_out, dtype=np.float64)], axis=1)
        summary["vocab_map_heldout_r2_E_in_out"] = fit_ridge_map(both, W, fit_idx, test_idx, seed=seed)["heldout_r2"]
    others = [split_fit(E, W, top, split_seed(seed, s), eigvecs) for s in range(1, n_splits)]
    summary.update(split_spread(dict(vocab_map_heldout_r2=fit["heldout_r2"], procrustes_heldout_cos=proc["heldout_cos"],
                                     ridge_lambda=fit["lam"]), others))
    arrays = dict(A=fit["A"], mu_E=fit["mu_E"], mu_W=fit["mu_W"], fit_idx=fit_idx, test_idx=test_idx)
    if eigvecs is not None:
        arrays["basis"] = corpus_basis(fit["A"], eigvecs)
        arrays["null_bases"] = basis_null(E, W, pi, fit_idx, test_idx, fit["lam"], n_bins, basis_draws, seed)
        arrays["split_bases"] = np.stack([arrays["basis"]] + [o["basis"] for o in others])
    return arrays, summary


def split_fit(E: np.ndarray, W: np.ndarray, top: np.ndarray, seed, eigvecs: np.ndarray | None = None) -> dict:
    """The map refitted on another fit/test split of the top tokens (λ re-chosen by CV with folds seeded by `seed`):
    its held-out R², λ, Procrustes held-out cosine and, given Σ_E's eigenvectors, its corpus basis (d x d)."""
    fit_idx, test_idx = stratified_halves(top, seed)
    fit = RidgeFits(E, fit_idx, test_idx, seed=seed).fit(W)
    return dict(vocab_map_heldout_r2=fit["heldout_r2"], ridge_lambda=fit["lam"],
                procrustes_heldout_cos=procrustes_heldout(E, W, fit_idx, test_idx)["heldout_cos"],
                basis=None if eigvecs is None else corpus_basis(fit["A"], eigvecs))


def split_spread(split0: dict, others: list[dict]) -> dict:
    """Per-split values (split 0 first) and their sd over splits (ddof = 1; NaN with one split) of the map's held-out
    R², the Procrustes held-out cosine and the ridge λ."""
    out = dict(n_splits=1 + len(others))
    for key in ("vocab_map_heldout_r2", "procrustes_heldout_cos", "ridge_lambda"):
        values = [float(split0[key])] + [float(o[key]) for o in others]
        out[f"{key}_splits"] = values
        out[f"{key}_split_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return out


def basis_null(E, W, pi, fit_idx, test_idx, lam, n_bins, n_draws, seed) -> np.ndarray:
    """Corpus bases refitted on E with all its rows permuted within log-frequency bins (n_draws x d x d).

    The ridge λ of the real fit is reused (the null is about token identity, not about the choice of λ)."""
    rng = np.random.default_rng([seed, 2])
    bins = log_frequency_bins(_counts(pi), n_bins)
    out = []
    for _ in range(n_draws):
        Ep = E[binned_permutation(bins, rng)]
        A = fit_ridge_map(Ep, W, fit_idx, test_idx, lam=lam)["A"]
        out.append(corpus_basis(A, eigh_desc(corpus_covariance(Ep, pi)[0])[1]))
    d = W.shape[1]
    return np.stack(out) if out else np.zeros((0, d, d))


def _null_summary(observed: float, null) -> dict:
    null = np.asarray(null, dtype=np.float64)
    if null.size == 0:
        return dict(n_draws=0)
    mu, sd = float(null.mean()), float(null.std(ddof=1)) if null.size > 1 else float("nan")
    return dict(n_draws=int(null.size), mean=mu, sd=sd, z=(observed - mu) / sd if sd > 0 else float("nan"),
                p=empirical_p(observed, null), max=float(null.max()))
