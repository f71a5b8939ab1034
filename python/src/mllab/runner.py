"""Run and check labs: staging directories, atomic results, progress, and cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from mllab import exercise
from mllab.backends import get_backend
from mllab.errors import LabBusy, UsageError
from mllab.home import Progress, home, lock_dir, now
from mllab.labs import LABS, LabInfo
from mllab.labs.base import Check, LabContext, seed_from_env
from mllab.state import LockBusy, file_lock, fsync_dir, read_json_state, write_json_atomic


def lab_dir(lab: LabInfo) -> Path:
    return home() / "labs" / lab.dirname


def run_dir(lab: LabInfo) -> Path:
    return lab_dir(lab) / "run"


def lock_path(lab: LabInfo) -> Path:
    """The lab's lock file: outside the lab's directory, so `reset` never deletes a held lock."""
    return lock_dir() / f"{lab.dirname}.lock"


@contextlib.contextmanager
def lab_lock(lab: LabInfo, command: str) -> Iterator[None]:
    """Hold lab `lab`'s lock for `command`, or raise `LabBusy` naming the process that holds it.

    An flock, not a PID file: the kernel releases it when the holder exits, so a crashed run never
    blocks the next one.
    """
    holder = {"pid": os.getpid(), "started_at": now(), "command": command}
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(lock_path(lab), blocking=False, holder=holder))
        except LockBusy as exc:
            h = exc.holder
            state = "already running" if str(h.get("command", "mllab run")).startswith("mllab run") else "busy"
            who = (
                f"PID {h.get('pid')} (`{h.get('command', '?')}`), started {h.get('started_at', 'at an unknown time')}"
                if h
                else "another process (it has not recorded its PID yet)"
            )
            raise LabBusy(
                f"lab {lab.number} is {state}: {who}",
                f"wait for it to finish, or stop it (kill {h.get('pid', '<PID>')}); lock file: {exc.path}",
            ) from None
        yield


def start_lab(lab: LabInfo, reset_files: bool = False) -> exercise.StartReport:
    """The lab's state folder, and its starter files in the learner's workspace (never over their
    edits; `reset_files` puts the starter back)."""
    lab_dir(lab).mkdir(parents=True, exist_ok=True)
    report = exercise.start_files(lab, reset=reset_files)
    Progress().update(lab.number, started_at=now())
    return report


def run_lab(
    lab: LabInfo,
    backend_name: str = "local",
    quick: bool = False,
    console: Console | None = None,
    solution: bool = False,
) -> dict:
    """Run lab `lab` with the learner's code (their workspace; the reference with `solution`) in a
    staging dir; only a complete run replaces the previous one.

    Refused (`LabBusy`) while another process runs (or resets) the same lab.
    """
    console = console or Console()
    command = f"mllab run {lab.number}" + (f" --backend {backend_name}" if backend_name != "local" else "")
    with lab_lock(lab, command + (" --solution" if solution else "")):
        return _run_locked(lab, backend_name, quick, console, solution)


def _run_locked(lab: LabInfo, backend_name: str, quick: bool, console: Console, solution: bool) -> dict:
    backend = get_backend(backend_name)  # fails fast (k8s: not available yet) before anything is written
    module = lab.load()
    src = exercise.source(lab, solution)  # not started: a clear error before anything is written
    staging = lab_dir(lab) / "run.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files: dict[str, str] = {}
    code = None
    if src is not None:
        code = staging / "exercise"
        files = exercise.snapshot(lab, src, code)
        console.print(f"running {'the reference solution' if solution else 'your code'} from {src}")
    backend.bind(lab.number, console, exercise=code)
    ctx = LabContext(
        lab=lab,
        backend=backend,
        rundir=staging,
        console=console,
        quick=quick,
        seed=seed_from_env(),
        exercise=code,
        solution=solution,
    )
    started = time.monotonic()
    try:
        with backend:
            result: dict[str, Any] = module.run(ctx)
    except BaseException as exc:
        # Keep the failed attempt's logs for diagnosis, clearly apart from the last good run.
        failed = lab_dir(lab) / "run.failed"
        shutil.rmtree(failed, ignore_errors=True)
        if any(staging.iterdir()):
            staging.rename(failed)
        else:
            staging.rmdir()
        if isinstance(exc, Exception):  # not Ctrl-C: `check` says the last run failed, and why
            Progress().update(lab.number, last_run_error={"at": now(), "error": str(exc), "solution": solution})
        raise
    wall = round(time.monotonic() - started, 1)
    meta = {
        "lab": lab.number,
        "backend": backend_name,
        "quick": quick,
        "seed": ctx.seed,
        "finished_at": now(),
        "wall_s": wall,
        "solution": solution,
        "files": files,
    }
    write_json_atomic(staging / "result.json", {"meta": meta, "result": result})
    final = run_dir(lab)
    old = lab_dir(lab) / "run.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    fsync_dir(lab_dir(lab))
    shutil.rmtree(old, ignore_errors=True)
    Progress().update(
        lab.number,
        last_run={"at": meta["finished_at"], "wall_s": wall, "backend": backend_name, "solution": solution},
        last_run_error=None,
    )
    return {"meta": meta, "result": result}


def recorded_backend(lab: LabInfo) -> str | None:
    rec = load_result(lab)
    return rec["meta"].get("backend") if rec else None


def _result_problem(data: Any) -> str | None:
    """What is wrong with the shape of a result.json (None: usable)."""
    if not isinstance(data, dict):
        return f"expected an object, found {type(data).__name__}"
    meta = data.get("meta")
    if not isinstance(meta, dict):
        return "no 'meta' object"
    if not isinstance(data.get("result"), dict):
        return "no 'result' object"
    if not isinstance(meta.get("backend", "local"), str) or not isinstance(meta.get("quick", False), bool):
        return "'meta' has a non-string backend or a non-boolean quick"
    if not isinstance(meta.get("seed", 42), int):
        return "'meta' has a non-integer seed"
    return None


def load_result(lab: LabInfo) -> dict | None:
    """The last completed run's result.json; None if absent or damaged (then moved aside, with a warning)."""
    return read_json_state(run_dir(lab) / "result.json", _result_problem)


def check_lab(lab: LabInfo, backend_name: str | None = None, console: Console | None = None) -> list[Check]:
    """Check the last run; by default on the backend it ran on."""
    console = console or Console()
    recorded = load_result(lab)
    error = Progress().load().get(f"{lab.number:02d}", {}).get("last_run_error")
    if recorded is None:
        checks = [
            Check(
                "lab has been run",
                False,
                f"your last `mllab run {lab.number}` failed: {error['error']}"
                if error
                else f"no completed run of lab {lab.number} under {run_dir(lab)}",
                f"fix what the error names, then `mllab run {lab.number}`"
                if error
                else f"run it first: mllab run {lab.number}",
            )
        ]
    else:
        backend = get_backend(backend_name or recorded["meta"].get("backend", "local"))
        graded = run_dir(lab) / "exercise"
        # A check that starts a server or a job runs the same learner code the run did.
        backend.bind(lab.number, console, exercise=graded if graded.is_dir() else None)
        module = lab.load()
        ctx = LabContext(
            lab=lab,
            backend=backend,
            rundir=run_dir(lab),
            console=console,
            quick=recorded["meta"].get("quick", False),
            seed=recorded["meta"].get("seed", 42),
            exercise=graded if graded.is_dir() else None,
            solution=bool(recorded["meta"].get("solution", False)),
        )
        with backend:
            checks = module.check(ctx, recorded["result"])
        if error:  # a newer run failed: this grade is of older code
            checks.insert(
                0,
                Check(
                    "your latest run completed",
                    False,
                    f"`mllab run {lab.number}` failed at {error['at']}: {error['error']}; the checks below grade "
                    f"the last run that completed ({recorded['meta'].get('finished_at', '?')})",
                    f"fix what the error names, then `mllab run {lab.number}` again",
                ),
            )
    passed = all(c.passed for c in checks)
    graded = "reference" if recorded and recorded["meta"].get("solution") else "yours"
    Progress().update(
        lab.number,
        last_check={"at": now(), "passed": passed, "graded": graded, "checks": [c.to_dict() for c in checks]},
    )
    return checks


def reset_targets(lab: LabInfo | None) -> list[Path]:
    """What `reset(lab)` would delete (that exists now)."""
    if lab is not None:
        paths = [lab_dir(lab)]
    else:
        root = home()
        paths = [root / "labs", root / "mlflow", root / "progress.json"]
    return [p for p in paths if p.exists()]


def reset(lab: LabInfo | None) -> list[Path]:
    """Forget progress and outputs (one lab, or everything including the local MLflow store).

    Holds the lab's lock (every lab's, for everything): `LabBusy` while one of them is running.
    """
    removed: list[Path] = []
    with contextlib.ExitStack() as stack:
        for each in LABS if lab is None else (lab,):
            stack.enter_context(lab_lock(each, "mllab reset" + (f" {lab.number}" if lab else "")))
        if lab is None:
            root = home()
            for child in ("labs", "mlflow"):
                path = root / child
                if path.exists():
                    shutil.rmtree(path)
                    removed.append(path)
            if (root / "progress.json").exists():
                removed.append(root / "progress.json")
            Progress().forget()
            return removed
        path = lab_dir(lab)
        if path.exists():
            shutil.rmtree(path)
            removed.append(path)
        Progress().forget(lab.number)
    return removed


def parse_lab(value: str) -> LabInfo:
    from mllab.labs import get_lab

    if not value:
        raise UsageError("no lab given", "pass a lab number, e.g. `mllab run 2`")
    return get_lab(value)
