"""Lab 7's exercise (drift.py: the PSI the model server exports; drift_alert.yaml: the drift alert),
the three cases on the local backend with a real model server, real scrapes and a real MLflow server."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

pytestmark = pytest.mark.usefixtures("lab_tracking")


@pytest.mark.timeout(900)
def test_starter_fails_naming_the_psi_and_the_alert_rule(home: Path, workspace: Path) -> None:
    checks = run_case(7, "starter", workspace)
    bad = failing(checks)
    assert "psi() of a shifted distribution is large and positive" in bad
    assert_fails_naming(checks, "psi() returns 0 for every input", "todo")
    assert "the drift rule reads the server's PSI gauge (model_feature_psi)" in bad
    assert_fails_naming(checks, "fires when psi stays above 0.2", "model_feature_psi")
    assert "cannot tell" in bad["the drift alert waits 5m before firing (for:)"]  # no vacuous pass
    assert "PSI gauge shows the shifted stream" in bad and "drift triggered retraining" in bad


@pytest.mark.timeout(900)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    checks = run_case(7, "solution", workspace)
    assert_passes(checks)
    names = {c.name for c in checks}
    assert {"psi() matches an independent computation", "the drift alert waits 5m before firing (for:)"} <= names
    assert {"retraining job is an MLflow run", "retrained model beats the old one on the new data"} <= names


@pytest.mark.timeout(900)
def test_psi_without_the_floor_and_a_reversed_rule_fail_with_their_hints(home: Path, workspace: Path) -> None:
    checks = run_case(7, "wrong", workspace)
    bad = failing(checks)
    assert "psi() of a sample against itself is 0" not in bad  # np.nansum hides the nan of 0 * ln(0 / 0)
    assert "eps" in bad["psi() stays finite with empty bins (the eps floor)"]
    assert_fails_naming(checks, "empty bins", "np.clip")
    assert "wrong way round" in bad["the drift alert fires when PSI stays above 0.2"]
    assert "wrong way round" in bad["the drift alert stays silent below the threshold"]
    assert "no drift alert on training-like traffic" in bad  # `< 0.2` fires on the calm phase
    assert "the drift rule reads the server's PSI gauge (model_feature_psi)" not in bad
