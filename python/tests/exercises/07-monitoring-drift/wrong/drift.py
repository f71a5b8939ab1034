"""A plausible wrong lab 7 solution: PSI without the eps floor. ln(0) on the empty bins gave nan,
so np.nansum drops the nan terms; but a bin the reference never filled (e = 0) that the current
sample does fill still gives (a - 0) * ln(a / 0) = inf."""

import numpy as np


def bin_edges(reference, bins=10):
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        raise ValueError("the reference sample is empty")
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))


def bin_counts(values, edges):
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def psi(reference, current, bins=10, eps=1e-4):
    if np.asarray(current).size == 0:
        raise ValueError("the current sample is empty")
    edges = bin_edges(reference, bins)
    e = bin_counts(reference, edges)
    a = bin_counts(current, edges)
    e, a = e / e.sum(), a / a.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nansum((a - e) * np.log(a / e)))
