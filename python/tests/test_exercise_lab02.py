"""Lab 2's exercise (checkpoint.py: what a checkpoint holds, how it is restored, written atomically),
the three cases on the local backend with real training jobs and a real MLflow server. The
reference-solution case is test_labs.py's newcomer path (through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, failing, run_case

pytestmark = pytest.mark.usefixtures("lab_tracking")


@pytest.mark.timeout(900)
def test_starter_fails_naming_the_optimizer_the_rngs_and_the_atomic_write(home: Path, workspace: Path) -> None:
    checks = run_case(2, "starter", workspace)
    assert_fails_naming(checks, "optimizer", "momentum")
    assert_fails_naming(checks, "rng", "shuffler")
    assert_fails_naming(checks, "atomic", "os.replace")
    assert "resumed run ends with bitwise identical weights" in failing(checks)


@pytest.mark.timeout(900)
def test_checkpoint_without_rng_states_fails_with_the_rng_hint(home: Path, workspace: Path) -> None:
    checks = run_case(2, "wrong", workspace)
    bad = failing(checks)
    assert "every RNG state is restored" in bad and "the batch shuffler" in bad["every RNG state is restored"]
    assert "resumed run ends with bitwise identical weights" in bad
    assert "the optimizer's state is restored" not in bad  # this wrong solution does save the optimizer
    assert "a crash while saving leaves the previous checkpoint whole" not in bad
