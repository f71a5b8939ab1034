"""PSI and KS against scipy, and their edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from mllab.drift import bin_edges, ks_per_feature, ks_statistic, proportions, psi, psi_per_feature
from scipy.stats import entropy, ks_2samp


def test_psi_equals_symmetric_kl_from_scipy() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 2000), rng.normal(0.7, 1.3, 1500)
    edges = bin_edges(ref, 10)
    e, a = proportions(ref, edges), proportions(cur, edges)
    # PSI = sum((a - e) ln(a / e)) = KL(a || e) + KL(e || a)
    assert psi(ref, cur) == pytest.approx(entropy(a, e) + entropy(e, a), rel=1e-12)
    assert psi(ref, cur) > 0.2


def test_psi_of_the_same_distribution_is_small() -> None:
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=5000), rng.normal(size=5000)) < 0.02


def test_psi_sees_a_constant_reference_feature_move() -> None:
    ref = np.zeros(500)
    assert psi(ref, np.zeros(100)) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, np.full(100, 4.0)) > 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_statistic_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 17, 400).astype(float)  # ties, like pixel values
    b = np.clip(rng.integers(0, 17, 300) + seed, 0, 16).astype(float)
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_per_feature_shapes_and_errors() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))
    cur[:, 2] += 3
    psis = psi_per_feature(ref, cur)
    stats, pvals = ks_per_feature(ref, cur)
    assert psis.shape == stats.shape == pvals.shape == (4,)
    assert int(np.argmax(psis)) == int(np.argmax(stats)) == 2
    assert pvals[2] < 1e-6 < pvals[0]
    with pytest.raises(ValueError, match="same number of features"):
        psi_per_feature(ref, cur[:, :3])
    with pytest.raises(ValueError, match="empty"):
        psi(ref[:, 0], np.array([]))
    with pytest.raises(ValueError, match="non-empty"):
        ks_statistic(np.array([]), ref[:, 0])
