"""Shared fixtures: an isolated MLLAB_HOME per test, and one real MLflow server for the lab tests.
`missing` and `imported`: a missing tool or extra skips here and fails under CI=true (the unit tier's
tests/unit/needs.py, loaded from its file)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _needs():
    path = Path(__file__).resolve().parents[2] / "tests" / "unit" / "needs.py"
    spec = importlib.util.spec_from_file_location("mllab_test_needs", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_NEEDS = _needs()
missing = _NEEDS.missing
imported = _NEEDS.imported


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MLLAB_HOME and the learner's workspace (MLLAB_WORKSPACE) in this test's temp dir."""
    monkeypatch.setenv("MLLAB_HOME", str(tmp_path / "mllab-home"))
    monkeypatch.setenv("MLLAB_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "mllab-home"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` process (sqlite + artifact dir), started by the local backend."""
    from mllab.backends.local import LocalBackend

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    backend = LocalBackend(root=tmp_path_factory.mktemp("mlflow-session"))
    uri = backend.tracking_uri()
    try:
        yield uri
    finally:
        backend.close()
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def mllab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mllab", *args]


def run_mllab(
    *args: str, env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`mllab ARGS` as a learner types it, in this environment plus `env`; never raises."""
    return subprocess.run(
        mllab_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=stdin,
        check=False,
    )


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose full command line contains `text` (read from /proc: never truncated)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and int(cmdline.parent.name) != os.getpid():
            found.append(f"{cmdline.parent.name}: {args[:200]}")
    return found


@pytest.fixture
def workspace(home: Path) -> Path:
    """The learner's workspace (MLLAB_WORKSPACE, set by `home`), where `mllab start N` puts the starter files."""
    return home.parent / "workspace"


@pytest.fixture
def lab_tracking(home: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Labs run in `home` against the session's MLflow server (after `home`, which unsets the URI)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return mlflow_server
