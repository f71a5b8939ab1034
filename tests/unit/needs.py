"""A missing tool or an unreachable upstream (Go, promtool, the Go module proxy, a Python
extra): a developer's machine may lack one, and the test skips with how to get it. CI must
not lack any: with CI=true (how CI runs .ci/run) the same condition fails the test, so a
broken install step cannot pass as a green run with skips (issue 16). The lab package's tests
(python/tests/conftest.py) load this file too."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """Skip for `reason`, or fail under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: a missing tool or upstream fails instead of skipping]", pytrace=False)
    pytest.skip(reason)


def imported(name: str, reason: str) -> ModuleType:
    """pytest.importorskip that fails under CI=true; usable at a test module's top level (the
    whole module skips, or, in CI, fails to collect, which fails the run)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if in_ci():
            pytest.fail(f"{reason} ({exc}) [CI=true: a missing module fails instead of skipping]", pytrace=False)
        pytest.skip(f"{reason} ({exc})", allow_module_level=True)
