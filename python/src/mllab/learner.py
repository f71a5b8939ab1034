"""Who the learner is, in a class (MLLAB_LEARNER, set by the classroom role in their notebook and
their mllab.env): their name labels what the k8s backend creates and keeps their MLflow
experiments and registered models apart from the other learners'. Unset: a one-person lab."""

from __future__ import annotations

import os
import re

from mllab.errors import UsageError

ENV = "MLLAB_LEARNER"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def learner() -> str:
    """The learner's name ("" outside a class); a malformed one is a UsageError naming it."""
    name = os.environ.get(ENV, "")
    if name and not _NAME.match(name):
        raise UsageError(
            f"{ENV}={name!r} is not a learner name",
            "use the name your instructor gave you (lowercase letters, digits and '-'), or unset it",
        )
    return name


def per_learner(name: str) -> str:
    """`name` made the learner's own (an MLflow experiment or registered model name)."""
    who = learner()
    return f"{name}-{who}" if who else name
