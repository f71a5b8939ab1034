"""Safe state files under MLLAB_HOME: atomic JSON writes, file locks, and reads that survive damage.

- `write_json_atomic`: temp file in the same directory, flush + fsync, `os.replace`, fsync the directory:
  a reader (or a crash) sees the old file or the new one, never half of it.
- `file_lock`: an exclusive `fcntl.flock` on a lock file. The kernel drops it when the holder exits, so a
  crashed process never blocks the next one (unlike a PID file). Optionally records who holds it (PID,
  start time, command) so that a refused caller can name the holder.
- `read_json_state`: a truncated or wrongly shaped file is moved aside as `<name>.corrupt` (`.corrupt.1`,
  ... if that exists), one warning goes to stderr, and the caller carries on as if the file were absent.

Standard library only: `mllab list` and `mllab --help` import this at start-up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mllab.errors import StateUnwritable

# Errors that mean "this location cannot be written", as opposed to a bug.
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC, errno.EDQUOT}

_warned: set[str] = set()  # files already reported in this process: one warning each
_held: dict[str, list[int]] = {}  # lock path -> [fd, depth]: re-entrant within this process


class LockBusy(Exception):
    """`file_lock(..., blocking=False)` found the lock held by another process (`holder`: what it recorded)."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path = path
        self.holder = holder


def _unwritable(path: Path, exc: OSError) -> StateUnwritable:
    return StateUnwritable(
        f"cannot write {path}: {exc.strerror or exc}",
        f"make {path.parent} writable (or free space on its disk), or point MLLAB_HOME at a writable directory",
    )


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (best effort where directories cannot be fsynced)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically and durably."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=2, sort_keys=True, default=str)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        if exc.errno in _UNWRITABLE:
            raise _unwritable(path, exc) from None
        raise
    fsync_dir(path.parent)


def read_holder(path: Path, attempts: int = 10) -> dict[str, Any]:
    """What the holder of lock `path` recorded; {} if nothing readable (it may be writing it right now)."""
    for _ in range(attempts):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(Path(path).read_text())
            if isinstance(data, dict) and "pid" in data:
                return data
        time.sleep(0.02)
    return {}


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True, holder: dict[str, Any] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed). Re-entrant within one process.

    With `blocking=False`, raise `LockBusy` at once if another process holds it. `holder` (e.g. PID,
    start time, command) is written into the lock file while it is held, for `read_holder`.
    """
    path = Path(path)
    key = str(path.absolute())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: opening must not wipe what the current holder recorded.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno in _UNWRITABLE:
            raise _unwritable(path, exc) from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockBusy(path, read_holder(path)) from None
        if holder is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        _held[key] = [fd, 1]
        try:
            yield
        finally:
            del _held[key]
            if holder is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # no stale owner left behind (the lock itself is what counts)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _quarantine(path: Path, seen: os.stat_result) -> Path | None:
    """Move `path` aside to the first free `<name>.corrupt[.N]`, if it is still the file we read.

    Returns the new path; None if `path` was replaced meanwhile (the caller reads it again). Raises
    OSError if it cannot be moved.
    """
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return None
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
        return None
    for n in range(1000):
        target = path.with_name(f"{path.name}.corrupt" + (f".{n}" if n else ""))
        try:
            os.link(path, target)  # fails if target exists: an earlier .corrupt is never overwritten
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if target.exists():  # no hard links on this file system: check, then rename
                continue
            os.rename(path, target)
            break
        os.unlink(path)
        break
    else:
        raise OSError(errno.EEXIST, f"too many {path.name}.corrupt files")
    fsync_dir(path.parent)
    return target


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_json_state(
    path: Path,
    problem: Callable[[Any], str | None] | None = None,
    *,
    lock: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> Any:
    """Read JSON state from `path`; None if it is absent.

    A file that does not parse, or for which `problem(data)` returns a description, is moved aside as
    `<name>.corrupt` (under `lock()` if given: the lock its writers hold), a warning naming it and what was
    wrong is printed once, and None is returned as if it were absent.
    """
    path = Path(path)
    for _ in range(5):
        try:
            with open(path, "rb") as fh:
                seen = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            try:
                seen = os.stat(path)
            except FileNotFoundError:
                return None
            what = "a directory, not a file"
        except PermissionError as exc:
            raise StateUnwritable(
                f"cannot read {path}: {exc.strerror}", "make it readable, or point MLLAB_HOME elsewhere"
            ) from None
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                what = "empty file" if not raw.strip() else f"not valid JSON (truncated?): {exc}"
            else:
                what = problem(data) if problem else None
                if what is None:
                    return data
        with lock() if lock else contextlib.nullcontext():
            try:
                moved = _quarantine(path, seen)
            except OSError as exc:
                _warn_once(path, f"{path} is unusable ({what}); could not move it aside ({exc}); ignoring it")
                return None
        if moved is not None:
            _warn_once(path, f"{path} is unusable ({what}); moved it to {moved} and carried on without it")
            return None
    return None


def _warn_once(path: Path, message: str) -> None:
    key = str(path.absolute())
    if key not in _warned:
        _warned.add(key)
        warn(message)
