"""Lab 7: the drift statistic the model server exports, one gauge per pixel (model_feature_psi).

The model server (`python -m mllab.serving`; on the cluster, the lab's model server pod) calls
psi(reference[:, j], live[:, j]) for each of the 64 pixels after every request: `reference` is
the model's training inputs (reference.npy next to the model), `live` the last 300 inputs it
served. The lab calls it too, offline, on the whole stream. Rule of thumb: below 0.1 stable,
0.1-0.2 moderate, above 0.2 drift (the threshold of drift_alert.yaml).
"""

import numpy as np


def bin_edges(reference, bins=10):
    """Edges that cut the reference into `bins` bins of equal shares (its quantiles). Pixel values
    repeat, so equal edges merge: a constant feature has a single edge."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        raise ValueError("the reference sample is empty")
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))


def bin_counts(values, edges):
    """How many `values` fall in each bin (-inf, e0], (e0, e1], ..., (e_last, +inf): len(edges) + 1
    bins, open at both ends, so that a value outside the reference's range still counts."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def psi(reference, current, bins=10, eps=1e-4):
    """Population stability index of `current` against `reference` (two 1-D samples of one
    feature), over the reference's bins: sum of (a - e) * ln(a / e), with e and a the shares of
    the reference and of the current sample in each bin. 0 for the same distribution."""
    if np.asarray(current).size == 0:
        raise ValueError("the current sample is empty")
    edges = bin_edges(reference, bins)
    e = bin_counts(reference, edges)
    a = bin_counts(current, edges)
    e, a = e / e.sum(), a / a.sum()  # shares: each sums to 1
    # An empty bin would give ln(0) (the reference's last bin, above its maximum, is always empty):
    # floor every share at eps, then renormalise.
    e = np.clip(e, eps, None)
    a = np.clip(a, eps, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))  # every term >= 0: a - e and ln(a / e) share a sign
