"""Drift statistics per feature: Population Stability Index (PSI) and Kolmogorov-Smirnov.

PSI is lab 7's exercise: its code is the learner's `drift.py` (at $MLLAB_EXERCISE, in the model
server and the lab's jobs), else lab 7's reference solution
(`mllab/exercises/07-monitoring-drift/solution/drift.py`): the reference's quantile bins, open at
both ends, shares floored at `eps`, sum of (a - e) * ln(a / e). Rules of thumb: < 0.1 stable,
0.1-0.2 moderate, > 0.2 drift (the monitoring role's ModelFeatureDrift threshold).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

PSI_DRIFT = 0.2

_loaded: dict[tuple[str, int], ModuleType] = {}


def psi_code() -> ModuleType:
    """The module whose psi() this process uses: the learner's drift.py (lab 7's exercise, at
    $MLLAB_EXERCISE), else lab 7's reference solution. Loaded once per file (the model server calls
    psi 64 times per request)."""
    from mllab.exercise import EXERCISE_ENV, from_env

    folder = os.environ.get(EXERCISE_ENV, "")
    path = Path(folder) / "drift.py" if folder else None
    key = (str(path), path.stat().st_mtime_ns if path is not None and path.is_file() else 0)
    if key not in _loaded:
        module = from_env("drift", required=("psi",), default_lab=7)
        assert module is not None
        _loaded[key] = module
    return _loaded[key]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4, code: Any = None) -> float:
    """PSI of `current` against `reference` (1-D) with `code`'s psi() (default: `psi_code()`)."""
    from mllab.exercise import call

    return float(call(code or psi_code(), "psi", reference, current, bins=bins, eps=eps))


def psi_per_feature(reference: np.ndarray, current: np.ndarray, bins: int = 10, code: Any = None) -> np.ndarray:
    ref, cur = np.asarray(reference), np.asarray(current)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise ValueError(f"need 2-D samples with the same number of features, got {ref.shape} and {cur.shape}")
    code = code or psi_code()
    return np.array([psi(ref[:, j], cur[:, j], bins, code=code) for j in range(ref.shape[1])])


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
