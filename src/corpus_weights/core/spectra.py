"""Scalar summaries of spectra: participation ratio, effective rank, the note's depth heuristic.

Why this module exists: the same two dimensionality measures are applied to
corpus matrices and to every weight matrix, so they are defined once here
(numpy only, no imports from the rest of the package).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["participation_ratio", "effective_rank", "depth_heuristic", "spectrum_row"]


def participation_ratio(eigenvalues, clip_negative: bool = True) -> float:
    """PR = (sum lambda)^2 / sum lambda^2; ranges from 1 (one direction) to n (flat spectrum).

    Meant for spectra of PSD matrices (covariances, Gram matrices). With
    ``clip_negative=True`` (default) negative eigenvalues are clipped to 0,
    which removes the tiny negatives that round-off produces in PSD spectra;
    for genuinely indefinite matrices pass ``clip_negative=False`` to use the
    signed values (then PR = trace^2 / ||M||_F^2). Returns nan for an all-zero
    spectrum.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if clip_negative:
        lam = np.clip(lam, 0.0, None)
    s2 = float(np.sum(lam**2))
    if s2 == 0.0:
        return float("nan")
    return float(np.sum(lam)) ** 2 / s2


def effective_rank(singular_values) -> float:
    """Effective rank exp(H(p)) with p = sigma / sum sigma (Roy & Vetterli 2007).

    Equals k for k equal nonzero values, 1 for a single nonzero value.
    Negative inputs are clipped to 0; nan for an all-zero input.
    """
    s = np.clip(np.asarray(singular_values, dtype=np.float64).ravel(), 0.0, None)
    total = float(s.sum())
    if total == 0.0:
        return float("nan")
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def depth_heuristic(pr: float) -> int:
    """The note's L_opt = ceil(PR / 3), reported next to the real depth L."""
    return int(math.ceil(float(pr) / 3.0))


def spectrum_row(name: str, values, kind: str = "eigen") -> dict:
    """One row of a spectra table: ``{name, pr, effective_rank, n, top1_share}``.

    ``kind="eigen"``: ``values`` are eigenvalues lambda of a PSD matrix;
    PR and effective rank are taken on lambda, top1_share = lambda_1 / sum lambda.
    ``kind="singular"``: ``values`` are singular values sigma of a matrix W;
    PR is taken on sigma^2 (the eigenvalues of W^T W, so both kinds agree for
    the same matrix), effective rank on sigma, top1_share = sigma_1^2 / sum sigma^2.
    Values are sorted descending (after clipping negatives to 0) first.
    """
    if kind not in ("eigen", "singular"):
        raise ValueError(f"kind must be 'eigen' or 'singular', got {kind!r}")
    v = np.sort(np.clip(np.asarray(values, dtype=np.float64).ravel(), 0.0, None))[::-1]
    energy = v if kind == "eigen" else v**2
    total = float(energy.sum())
    return {
        "name": name,
        "pr": participation_ratio(energy),
        "effective_rank": effective_rank(v),
        "n": int(v.size),
        "top1_share": float(energy[0] / total) if v.size and total > 0 else float("nan"),
    }
