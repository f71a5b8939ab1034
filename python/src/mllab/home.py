"""Where mllab keeps its state: `~/.mllab/` (override with MLLAB_HOME).

Layout::

    $MLLAB_HOME/progress.json        per-lab progress (started, last run, last check)
    $MLLAB_HOME/labs/NN-slug/run/    the outputs of the last successful `mllab run N`
    $MLLAB_HOME/mlflow/              the local backend's MLflow store (sqlite + artifacts)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def home() -> Path:
    root = Path(os.environ.get("MLLAB_HOME") or Path.home() / ".mllab").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


class Progress:
    """The learner's progress, one JSON file. Every update is an atomic rewrite."""

    def __init__(self, root: Path | None = None) -> None:
        self.path = (root or home()) / "progress.json"

    def load(self) -> dict[str, dict[str, Any]]:
        data = read_json(self.path, {})
        return data if isinstance(data, dict) else {}

    def update(self, lab: int, **fields: Any) -> None:
        data = self.load()
        entry = data.setdefault(f"{lab:02d}", {})
        entry.update(fields)
        write_json_atomic(self.path, data)

    def forget(self, lab: int | None = None) -> None:
        if lab is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        data = self.load()
        data.pop(f"{lab:02d}", None)
        write_json_atomic(self.path, data)
