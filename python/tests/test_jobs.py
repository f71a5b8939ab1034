"""Jobs on the local backend: seeds, retries, deadline, no orphans (crash + resume: lab 2's tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mllab.backends import JobSpec
from mllab.backends.local import LocalBackend
from mllab.procs import group_alive

pytestmark = pytest.mark.timeout(600)


def job(tmp: Path, name: str, *extra: str, backoff: int = 1, deadline: float | None = 300) -> JobSpec:
    d = tmp / name
    return JobSpec(
        name=name,
        module="mllab.training",
        workdir=d,
        backoff_limit=backoff,
        active_deadline_seconds=deadline,
        args=[
            "--epochs",
            "4",
            "--checkpoint-every",
            "1",
            "--checkpoint-dir",
            str(d / "ck"),
            "--out",
            str(d / "result.json"),
            *extra,
        ],
    )


def test_other_seed_gives_other_weights(tmp_path: Path) -> None:
    backend = LocalBackend(root=tmp_path)
    backend.run_job(job(tmp_path, "s1", "--seed", "1", "--epochs", "1"))
    backend.run_job(job(tmp_path, "s2", "--seed", "2", "--epochs", "1"))
    h = [json.loads((tmp_path / n / "result.json").read_text())["weights_sha256"] for n in ("s1", "s2")]
    assert h[0] != h[1]


def test_backoff_limit_bounds_the_retries(tmp_path: Path) -> None:
    res = LocalBackend(root=tmp_path).run_job(job(tmp_path, "bad", "--epochs", "0", backoff=2))
    assert res.status == "Failed" and res.attempts == 3 and res.exit_codes == [2, 2, 2]
    assert "epochs must be >= 1" in res.log.read_text()


def test_deadline_kills_the_job_and_its_processes(tmp_path: Path) -> None:
    import time

    spec = job(tmp_path, "slow", "--epochs", "500", backoff=3, deadline=3)
    start = time.monotonic()
    res = LocalBackend(root=tmp_path).run_job(spec)
    assert res.status == "DeadlineExceeded" and res.attempts == 1
    assert time.monotonic() - start < 20


def test_jobspec_validation() -> None:
    with pytest.raises(ValueError, match="backoff_limit"):
        JobSpec(name="x", module="m", backoff_limit=-1)
    with pytest.raises(ValueError, match="active_deadline_seconds"):
        JobSpec(name="x", module="m", active_deadline_seconds=0)


def test_stop_kills_the_whole_group(tmp_path: Path) -> None:
    import sys

    from mllab import procs

    p = procs.spawn(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)",
        ],
        tmp_path / "log",
    )
    time_ok = procs.wait_for(lambda: False, timeout=0.5)
    assert not time_ok and group_alive(p.pid)
    procs.stop(p, grace=1)
    assert not group_alive(p.pid)
