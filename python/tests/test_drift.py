"""PSI (lab 7's reference solution, through mllab.drift) and KS against scipy, their edge cases,
and lab 7's probe checks of a learner's psi() on plausible wrong versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mllab.drift import ks_per_feature, ks_statistic, psi, psi_code, psi_per_feature
from mllab.exercise import EXERCISE_ENV, ExerciseError, load, solution_dir
from mllab.labs import get_lab
from mllab.labs.lab07_monitoring_drift import independent_psi, probe_psi
from scipy.stats import entropy, ks_2samp

SOLUTION = solution_dir(get_lab(7))


@pytest.fixture(autouse=True)
def _no_exercise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXERCISE_ENV, raising=False)  # mllab.drift: lab 7's reference solution


def test_psi_equals_symmetric_kl_from_scipy() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 2000), rng.normal(0.7, 1.3, 1500)
    ref_code = load(SOLUTION, "drift")
    edges = ref_code.bin_edges(ref, 10)
    e, a = (
        np.clip(c / c.sum(), 1e-4, None) for c in (ref_code.bin_counts(ref, edges), ref_code.bin_counts(cur, edges))
    )
    # PSI = sum((a - e) ln(a / e)) = KL(a || e) + KL(e || a)
    assert psi(ref, cur) == pytest.approx(entropy(a, e) + entropy(e, a), rel=1e-12)
    assert psi(ref, cur) == pytest.approx(independent_psi(ref, cur), rel=1e-12)
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
    with pytest.raises(ExerciseError, match="empty"):  # raised in drift.py, named with its line
        psi(ref[:, 0], np.array([]))
    with pytest.raises(ValueError, match="non-empty"):
        ks_statistic(np.array([]), ref[:, 0])


def test_the_model_server_uses_the_learners_psi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mllab.drift.psi (what the model server calls) is the learner's drift.py at $MLLAB_EXERCISE,
    and lab 7's reference where that folder has no drift.py (another lab's exercise)."""
    (tmp_path / "drift.py").write_text("def psi(reference, current, bins=10, eps=1e-4):\n    return 42.0\n")
    monkeypatch.setenv(EXERCISE_ENV, str(tmp_path))
    assert psi(np.zeros(10), np.ones(10)) == 42.0 and Path(psi_code().__file__) == tmp_path / "drift.py"
    other = tmp_path / "other-lab"
    other.mkdir()
    monkeypatch.setenv(EXERCISE_ENV, str(other))
    assert Path(psi_code().__file__) == SOLUTION / "drift.py"


def variant(tmp_path: Path, old: str, new: str) -> object:
    text = (SOLUTION / "drift.py").read_text()
    assert old in text
    (tmp_path / "drift.py").write_text(text.replace(old, new))
    return load(tmp_path, "drift")


def failing(checks: list) -> dict[str, str]:
    return {c.name: f"{c.reason} | {c.hint}" for c in checks if not c.passed}


def test_probe_passes_the_reference() -> None:
    checks = probe_psi(load(SOLUTION, "drift"))
    assert len(checks) == 5 and not failing(checks)


def test_probe_names_a_swapped_sign(tmp_path: Path) -> None:
    bad = failing(probe_psi(variant(tmp_path, "np.sum((a - e) * np.log(a / e))", "np.sum((e - a) * np.log(a / e))")))
    assert "psi() of a shifted distribution is large and positive" in bad
    assert "sign is swapped" in bad["psi() of a shifted distribution is large and positive"]
    assert "psi() of a sample against itself is 0" not in bad


def test_probe_names_the_missing_floor(tmp_path: Path) -> None:
    code = variant(tmp_path, "    e = np.clip(e, eps, None)\n    a = np.clip(a, eps, None)\n", "")
    bad = failing(probe_psi(code))
    assert "nan" in bad["psi() of a sample against itself is 0"]  # 0 * ln(0 / 0) in the reference's last bin
    assert "np.clip" in bad["psi() stays finite with empty bins (the eps floor)"]


def test_probe_names_the_wrong_logarithm(tmp_path: Path) -> None:
    bad = failing(probe_psi(variant(tmp_path, "np.log(a / e)", "np.log10(a / e)")))
    assert list(bad) == ["psi() matches an independent computation"]
    assert "np.log, not np.log10" in bad["psi() matches an independent computation"]


def test_probe_of_the_starter_says_nothing_is_written() -> None:
    from mllab.exercise import starter_dir

    bad = failing(probe_psi(load(starter_dir(get_lab(7)), "drift")))
    assert len(bad) == 5  # psi(x, x) = 0 too: a psi that always says 0 cannot pass it
    assert all("returns 0 for every input" in why for why in bad.values())
