"""Child processes that never outlive mllab.

Every child starts in its own session (process group), is registered here, and is killed as a
group (SIGTERM, then SIGKILL) when its owner finishes, fails, or the user presses Ctrl-C; an
atexit hook is the last line of defence. No orphan processes, no stale ports.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

_LIVE: set[subprocess.Popen[bytes]] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's pick), for a server this process starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def spawn(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in a new process group, stdout+stderr to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    _LIVE.add(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """Stop the whole process group of `proc`; return its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # The leader may be gone while its children (torchrun workers, uvicorn workers) linger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _LIVE.discard(proc)
    return proc.returncode


def stop_all() -> None:
    for proc in list(_LIVE):
        stop(proc, grace=2.0)


def group_alive(pgid: int) -> bool:
    """Is any live (non-zombie) process left in process group `pgid`?"""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to a signal probe (counts zombies too)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def wait_for(predicate, timeout: float, interval: float = 0.2, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll `predicate` until it is true, `timeout` passes, or `proc` dies. A predicate that raises
    OSError (a connection refused, a reset) counts as not true yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(interval)
    return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether GET `url` answers 2xx within `timeout` (refused, unreachable, an HTTP error: False)."""
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, interval: float = 0.3) -> bool:
    """Poll GET `url` until it answers 2xx (True), or `timeout` passes or `proc` exits (False): a
    server's readiness, e.g. wait_http(base + "/v2/health/ready", 120, proc)."""
    return wait_for(lambda: http_ok(url), timeout, interval=interval, proc=proc)


atexit.register(stop_all)
