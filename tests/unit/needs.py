"""A missing tool or an unreachable upstream (Go, promtool, the Go module proxy, a Python
extra): a developer's machine may lack one, and the test skips with how to get it. CI must
not lack any: with CI=true (how CI runs .ci/run) the same condition fails the test, so a
broken install step cannot pass as a green run with skips (issue 16)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """Skip for `reason`, or fail under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: a missing tool or upstream fails instead of skipping]", pytrace=False)
    pytest.skip(reason)
