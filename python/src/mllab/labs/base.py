"""What every lab shares: the context a lab runs in, and the structured result of a check."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from mllab.labs import LabInfo

if TYPE_CHECKING:
    from mllab.backends.base import Backend


@dataclass
class Check:
    """One verified outcome: passed or not, why, and a hint when it failed."""

    name: str
    passed: bool
    reason: str
    hint: str = ""
    skipped: bool = False  # passed, but the thing could not be exercised here (e.g. no GPU)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_from_env(default: int = 42) -> int:
    raw = os.environ.get("RANDOM_SEED", str(default))
    try:
        return int(raw)
    except ValueError:
        from mllab.errors import UsageError

        raise UsageError(f"RANDOM_SEED={raw!r} is not an integer", "set RANDOM_SEED to an integer, e.g. 42") from None


@dataclass
class LabContext:
    """Everything a lab needs; a lab talks to the backend only through `backend`'s interface."""

    lab: LabInfo
    backend: Backend
    rundir: Path  # where this run writes (a staging dir during `run`, the committed run dir during `check`)
    console: Console = field(default_factory=Console)
    quick: bool = False  # smaller data/epochs (tests, slow laptops)
    seed: int = 42
    # The learner's code this run executes (a snapshot of their workspace, or of the reference with
    # `--solution`), inside the run's folder; None for a lab without exercise files.
    exercise: Path | None = None
    solution: bool = False

    def learner(self, name: str, *required: str) -> Any:
        """The learner's module `name` (their `name.py`), with the functions `required` checked."""
        from mllab.exercise import ExerciseError, load

        if self.exercise is None:
            raise ExerciseError(f"lab {self.lab.number} has no exercise files", "")
        return load(self.exercise, name, required=required)

    def mlflow(self) -> Any:
        """The mlflow module, pointed at the backend's tracking server (started on first use)."""
        uri = self.backend.tracking_uri()
        import mlflow

        mlflow.set_tracking_uri(uri)
        return mlflow

    def experiment(self, suffix: str = "") -> str:
        """The lab's MLflow experiment (the learner's own in a class: mllab.learner)."""
        from mllab.learner import per_learner

        return per_learner(f"mllab-{self.lab.dirname}{suffix}")
