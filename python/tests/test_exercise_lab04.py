"""Lab 4's exercise (tuning.py: the search space, the objective and its direction), the three cases on
the local backend: a real Optuna study, trials in worker processes, a real MLflow server."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

pytestmark = pytest.mark.usefixtures("lab_tracking")


@pytest.mark.timeout(600)
def test_starter_fails_naming_the_log_scale_and_the_training_data(home: Path, workspace: Path) -> None:
    checks = run_case(4, "starter", workspace)
    bad = failing(checks)
    assert "the learning rate is searched on a log scale" in bad
    assert_fails_naming(checks, "log scale", "log=True")
    assert "objective() returns the validation accuracy" in bad
    assert_fails_naming(checks, "training data", "data.X_val")
    assert "DIRECTION makes the search prefer the better model" not in bad  # the starter's direction is right


@pytest.mark.timeout(600)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    assert_passes(run_case(4, "solution", workspace))


@pytest.mark.timeout(600)
def test_minimizing_the_accuracy_fails_with_the_direction_hint(home: Path, workspace: Path) -> None:
    checks = run_case(4, "wrong", workspace)
    bad = failing(checks)
    assert "DIRECTION makes the search prefer the better model" in bad
    assert_fails_naming(checks, "wrong direction", "maximize")
    assert "'minimize'" in bad["DIRECTION makes the search prefer the better model"]
    # the rest of this wrong solution is right: log scale, validation accuracy
    assert "the learning rate is searched on a log scale" not in bad
    assert "objective() returns the validation accuracy" not in bad
