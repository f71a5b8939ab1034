"""Lab 8's exercise (gate.py: should_deploy, the pipeline's quality gate, run in the lab's process),
the three cases on the local backend: real training steps, a real MLflow registry and model server."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

pytestmark = pytest.mark.usefixtures("lab_tracking")


@pytest.mark.timeout(900)
def test_starter_fails_naming_the_threshold_and_the_champion(home: Path, workspace: Path) -> None:
    checks = run_case(8, "starter", workspace)
    bad = failing(checks)
    assert_fails_naming(checks, "deploys every candidate", "todo")
    assert "the gate refuses a candidate below the threshold" in bad
    assert_fails_naming(checks, "champion['accuracy']")
    assert "the overfit candidate is stopped at the gate" in bad
    assert "the weaker candidate is stopped at the gate (the champion is better)" in bad
    assert "the production model is the good candidate" in bad  # a later candidate replaced it


@pytest.mark.timeout(900)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    assert_passes(run_case(8, "solution", workspace))


@pytest.mark.timeout(900)
def test_gate_on_the_training_accuracy_fails_naming_it(home: Path, workspace: Path) -> None:
    checks = run_case(8, "wrong", workspace)
    bad = failing(checks)
    judged = bad["the gate judges the evaluate step's accuracy, not the training accuracy"]
    assert "train_accuracy" in judged and "candidate['evaluate']['accuracy']" in judged
    assert "the overfit candidate is stopped at the gate" in bad
    assert "the production model is the good candidate" in bad  # the overfit model went to production
    assert "the gate keeps a better champion in production" not in bad  # this gate does compare with it
