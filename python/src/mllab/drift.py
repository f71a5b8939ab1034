"""Drift statistics per feature: Population Stability Index (PSI) and Kolmogorov-Smirnov.

PSI bins each feature on the reference's quantiles (right-closed bins, open at both ends, so a
constant reference feature still detects a move) and sums (a - e) * ln(a / e) over the bins, with
empty bins floored at `eps` and renormalised. Rules of thumb: < 0.1 stable, 0.1-0.2 moderate,
> 0.2 drift (the monitoring role's ModelFeatureDrift threshold).
"""

from __future__ import annotations

import numpy as np

PSI_DRIFT = 0.2


def bin_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        raise ValueError("the reference sample is empty")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))


def proportions(values: np.ndarray, edges: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left")  # bin i: (e[i-1], e[i]]
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    p = np.clip(counts / max(1, counts.sum()), eps, None)
    return p / p.sum()


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    if np.asarray(current).size == 0:
        raise ValueError("the current sample is empty")
    edges = bin_edges(reference, bins)
    e, a = proportions(reference, edges, eps), proportions(current, edges, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_per_feature(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> np.ndarray:
    ref, cur = np.asarray(reference), np.asarray(current)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise ValueError(f"need 2-D samples with the same number of features, got {ref.shape} and {cur.shape}")
    return np.array([psi(ref[:, j], cur[:, j], bins) for j in range(ref.shape[1])])


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(np.asarray(reference, np.float64)), np.sort(np.asarray(current, np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("KS needs two non-empty samples")
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_per_feature(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and p-value per feature (scipy's exact/asymptotic p-values)."""
    from scipy.stats import ks_2samp

    stats, pvals = [], []
    for j in range(reference.shape[1]):
        res = ks_2samp(reference[:, j], current[:, j])
        stats.append(res.statistic)
        pvals.append(res.pvalue)
    return np.array(stats), np.array(pvals)
