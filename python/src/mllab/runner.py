"""Run and check labs: staging directories, atomic results, progress, and cleanup."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mllab.backends import get_backend
from mllab.errors import UsageError
from mllab.home import Progress, home, now, read_json, write_json_atomic
from mllab.labs import LabInfo
from mllab.labs.base import Check, LabContext, seed_from_env


def lab_dir(lab: LabInfo) -> Path:
    return home() / "labs" / lab.dirname


def run_dir(lab: LabInfo) -> Path:
    return lab_dir(lab) / "run"


def start_lab(lab: LabInfo) -> Path:
    lab_dir(lab).mkdir(parents=True, exist_ok=True)
    Progress().update(lab.number, started_at=now())
    return lab_dir(lab)


def run_lab(lab: LabInfo, backend_name: str = "local", quick: bool = False, console: Console | None = None) -> dict:
    """Run lab `lab` in a staging dir; only a complete run replaces the previous one."""
    console = console or Console()
    backend = get_backend(backend_name)  # fails fast (k8s: not available yet) before anything is written
    module = lab.load()
    staging = lab_dir(lab) / "run.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    backend.bind(lab.number, console)
    ctx = LabContext(lab=lab, backend=backend, rundir=staging, console=console, quick=quick, seed=seed_from_env())
    started = time.monotonic()
    try:
        with backend:
            result: dict[str, Any] = module.run(ctx)
    except BaseException:
        # Keep the failed attempt's logs for diagnosis, clearly apart from the last good run.
        failed = lab_dir(lab) / "run.failed"
        shutil.rmtree(failed, ignore_errors=True)
        if any(staging.iterdir()):
            staging.rename(failed)
        else:
            staging.rmdir()
        raise
    wall = round(time.monotonic() - started, 1)
    meta = {
        "lab": lab.number,
        "backend": backend_name,
        "quick": quick,
        "seed": ctx.seed,
        "finished_at": now(),
        "wall_s": wall,
    }
    write_json_atomic(staging / "result.json", {"meta": meta, "result": result})
    final = run_dir(lab)
    old = lab_dir(lab) / "run.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    Progress().update(lab.number, last_run={"at": meta["finished_at"], "wall_s": wall, "backend": backend_name})
    return {"meta": meta, "result": result}


def recorded_backend(lab: LabInfo) -> str | None:
    rec = load_result(lab)
    return rec["meta"].get("backend") if rec else None


def load_result(lab: LabInfo) -> dict | None:
    return read_json(run_dir(lab) / "result.json")


def check_lab(lab: LabInfo, backend_name: str | None = None, console: Console | None = None) -> list[Check]:
    """Check the last run; by default on the backend it ran on."""
    console = console or Console()
    recorded = load_result(lab)
    if recorded is None:
        checks = [
            Check(
                "lab has been run",
                False,
                f"no completed run of lab {lab.number} under {run_dir(lab)}",
                f"run it first: mllab run {lab.number}",
            )
        ]
    else:
        backend = get_backend(backend_name or recorded["meta"].get("backend", "local"))
        backend.bind(lab.number, console)
        module = lab.load()
        ctx = LabContext(
            lab=lab,
            backend=backend,
            rundir=run_dir(lab),
            console=console,
            quick=recorded["meta"].get("quick", False),
            seed=recorded["meta"].get("seed", 42),
        )
        with backend:
            checks = module.check(ctx, recorded["result"])
    passed = all(c.passed for c in checks)
    Progress().update(lab.number, last_check={"at": now(), "passed": passed, "checks": [c.to_dict() for c in checks]})
    return checks


def reset(lab: LabInfo | None) -> list[Path]:
    """Forget progress and outputs (one lab, or everything including the local MLflow store)."""
    removed: list[Path] = []
    if lab is None:
        root = home()
        for child in ("labs", "mlflow"):
            path = root / child
            if path.exists():
                shutil.rmtree(path)
                removed.append(path)
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
