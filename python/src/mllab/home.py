"""Where mllab keeps its state: `~/.mllab/` (override with MLLAB_HOME).

Layout::

    $MLLAB_HOME/progress.json        per-lab progress (started, last run, last check)
    $MLLAB_HOME/labs/NN-slug/run/    the outputs of the last successful `mllab run N`
    $MLLAB_HOME/mlflow/              the local backend's MLflow store (sqlite + artifacts)
    $MLLAB_HOME/locks/               flock files: progress.lock (updates), NN-slug.lock (a running lab)

Every state file is written atomically and read defensively (see `mllab.state`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mllab.errors import HomeUnusable
from mllab.state import file_lock, fsync_dir, read_json_state, write_json_atomic

__all__ = ["Progress", "home", "lock_dir", "now", "read_json", "write_json_atomic"]

_FIX = "set MLLAB_HOME to a writable directory (or unset it to use ~/.mllab)"


def home() -> Path:
    """The state directory, created if needed; `HomeUnusable` (path and fix) if it cannot be used."""
    root = Path(os.environ.get("MLLAB_HOME") or Path.home() / ".mllab").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file (or a link to one) there: reported just below
    except NotADirectoryError:
        raise HomeUnusable(
            f"MLLAB_HOME {root} cannot be created: a part of that path is a file, not a directory", _FIX
        ) from None
    except OSError as exc:
        raise HomeUnusable(f"MLLAB_HOME {root} cannot be created: {exc.strerror or exc}", _FIX) from None
    if not root.is_dir():
        raise HomeUnusable(
            f"MLLAB_HOME {root} is a file, not a directory",
            f"move that file away, or {_FIX}",
        )
    if not os.access(root, os.W_OK | os.X_OK):
        raise HomeUnusable(
            f"MLLAB_HOME {root} is not writable by this user",
            f"`chmod u+rwx {root}` (or fix its owner), or {_FIX}",
        )
    return root


def lock_dir() -> Path:
    return home() / "locks"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's content; `default` if it is absent, or damaged (then moved aside, with a warning)."""
    data = read_json_state(path)
    return default if data is None else data


def _progress_problem(data: Any) -> str | None:
    """What is wrong with the shape of progress.json (None: usable). Checks what the CLI reads."""
    if not isinstance(data, dict):
        return f"expected an object of labs, found {type(data).__name__}"
    for key, entry in data.items():
        if not isinstance(entry, dict):
            return f"lab {key!r}: expected an object, found {type(entry).__name__}"
        if "started_at" in entry and not isinstance(entry["started_at"], str):
            return f"lab {key!r}: started_at is not a string"
        if "last_run" in entry and not isinstance(entry["last_run"], dict):
            return f"lab {key!r}: last_run is not an object"
        chk = entry.get("last_check")
        if chk is None:
            continue
        if not isinstance(chk, dict) or not isinstance(chk.get("passed"), bool):
            return f"lab {key!r}: last_check is not an object with a true/false 'passed'"
        checks = chk.get("checks", [])
        if not isinstance(checks, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("passed"), bool) for c in checks
        ):
            return f"lab {key!r}: last_check.checks is not a list of {{name, passed}} objects"
    return None


class Progress:
    """The learner's progress, one JSON file. Updates are read-modify-write under a file lock, each an
    atomic rewrite; reads need no lock (a reader sees the old file or the new one)."""

    def __init__(self, root: Path | None = None) -> None:
        root = root or home()
        self.path = root / "progress.json"
        self.lock_path = root / "locks" / "progress.lock"

    def locked(self) -> Any:
        return file_lock(self.lock_path)

    def load(self) -> dict[str, dict[str, Any]]:
        data = read_json_state(self.path, _progress_problem, lock=self.locked)
        return data if isinstance(data, dict) else {}

    def update(self, lab: int, **fields: Any) -> None:
        with self.locked():
            data = self.load()
            entry = data.setdefault(f"{lab:02d}", {})
            entry.update(fields)
            write_json_atomic(self.path, data)

    def forget(self, lab: int | None = None) -> None:
        with self.locked():
            if lab is None:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                else:
                    fsync_dir(self.path.parent)
                return
            data = self.load()
            if data.pop(f"{lab:02d}", None) is not None or self.path.exists():
                write_json_atomic(self.path, data)
