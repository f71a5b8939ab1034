"""The CLI's state under MLLAB_HOME: damaged files, the run lock, locked progress updates, an unusable
MLLAB_HOME, and `mllab reset` (all labs) asking first. Real files and real processes throughout."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mllab_cmd
from conftest import run_mllab as run


def warnings_about(path: Path, stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:") and str(path) in line]


# --- damaged progress.json / result.json ------------------------------------------------------------------

BAD_PROGRESS = {
    "truncated": b'{"03": {"last_check": {"passed": fal',
    "empty": b"",
    "not utf-8": b"\xff\xfe{",
    "a list": b"[1, 2, 3]\n",
    "entry not an object": b'{"03": "passed"}\n',
    "passed not a bool": b'{"03": {"last_check": {"passed": "yes", "checks": []}}}\n',
    "checks not objects": b'{"03": {"last_check": {"passed": false, "checks": ["x"]}}}\n',
    "last_run not an object": b'{"03": {"last_run": 12}}\n',
}


@pytest.mark.parametrize("kind", sorted(BAD_PROGRESS))
def test_damaged_progress_is_moved_aside_with_one_warning(kind: str, home: Path) -> None:
    home.mkdir(parents=True)
    bad = home / "progress.json"
    bad.write_bytes(BAD_PROGRESS[kind])
    out = run("list", "--json")
    assert out.returncode == 0, out.stderr
    assert all(lab["status"] == "new" for lab in json.loads(out.stdout))
    warned = warnings_about(bad, out.stderr)
    assert len(warned) == 1, out.stderr
    assert str(home / "progress.json.corrupt") in warned[0] and "Traceback" not in out.stderr
    assert not bad.exists()
    assert (home / "progress.json.corrupt").read_bytes() == BAD_PROGRESS[kind], "the bad file is kept as it was"
    again = run("list")
    assert again.returncode == 0 and "warning" not in again.stderr


def test_a_directory_in_place_of_progress_json_is_moved_aside(home: Path) -> None:
    (home / "progress.json" / "x").mkdir(parents=True)
    out = run("start", "2")
    assert out.returncode == 0, out.stderr
    assert len(warnings_about(home / "progress.json", out.stderr)) == 1 and "a directory" in out.stderr
    assert (home / "progress.json.corrupt" / "x").is_dir()
    assert "started_at" in json.loads((home / "progress.json").read_text())["02"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("list",), 0),
        (("progress",), 0),
        (("progress", "--json"), 0),
        (("hint", "3"), 0),
        (("start", "2"), 0),
        (("check", "3", "--json"), 1),  # 1: not run yet, as on a fresh home
        (("reset", "3"), 0),
    ],
)
def test_every_command_carries_on_after_a_truncated_progress(args: tuple[str, ...], code: int, home: Path) -> None:
    home.mkdir(parents=True)
    (home / "progress.json").write_text('{"02": {"started_at": "2026-01-0')
    out = run(*args)
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    assert len(warnings_about(home / "progress.json", out.stderr)) == 1, out.stderr
    assert (home / "progress.json.corrupt").is_file()
    # The command did its usual work on a fresh progress file.
    progress = json.loads(run("progress", "--json").stdout)
    if args[0] == "start":
        assert "started_at" in progress["02"] and (home / "labs" / "02-training-job").is_dir()
    if args[0] == "check":
        assert progress["03"]["last_check"]["passed"] is False
        assert json.loads(out.stdout)["checks"][0]["name"] == "lab has been run"


def test_an_earlier_corrupt_file_is_never_overwritten(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "progress.json.corrupt").write_text("first")
    (home / "progress.json.corrupt.1").write_text("second")
    (home / "progress.json").write_text("third{")
    out = run("progress", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == {}
    assert (home / "progress.json.corrupt").read_text() == "first"
    assert (home / "progress.json.corrupt.1").read_text() == "second"
    assert (home / "progress.json.corrupt.2").read_text() == "third{"
    assert str(home / "progress.json.corrupt.2") in out.stderr


@pytest.mark.parametrize(
    "content",
    ['{"meta": {"backend": "local", "wall_s": 1.0}, "resu', '{"meta": [], "result": {}}', '{"meta": {}}', "null"],
)
def test_damaged_result_json_counts_as_not_run(content: str, home: Path) -> None:
    rundir = home / "labs" / "03-tracking-registry" / "run"
    rundir.mkdir(parents=True)
    (rundir / "result.json").write_text(content)
    out = run("check", "3", "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["checks"][0]["name"] == "lab has been run" and "mllab run 3" in report["checks"][0]["hint"]
    assert len(warnings_about(rundir / "result.json", out.stderr)) == 1, out.stderr
    assert (rundir / "result.json.corrupt").read_text() == content
    assert not (rundir / "result.json").exists()
    # reset N reads result.json too (which backend did it run on?): a damaged one does not stop it.
    (rundir / "result.json").write_text(content)
    out = run("reset", "3")
    assert out.returncode == 0, out.stderr
    assert len(warnings_about(rundir / "result.json", out.stderr)) == 1 and "Traceback" not in out.stderr
    assert not (home / "labs" / "03-tracking-registry").exists()


# --- the run lock ---------------------------------------------------------------------------------------

HOLDER = """
import sys, time
from mllab.labs import get_lab
from mllab.runner import lab_lock
with lab_lock(get_lab(sys.argv[1]), "mllab run " + sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lab_lock(lab: str) -> subprocess.Popen[str]:
    """A stand-in for a running `mllab run N`: another process holding the lab's lock."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, lab], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_naming_the_running_process(home: Path, tmp_path: Path) -> None:
    # With the k8s backend and no kubeconfig, a run that gets past the lock fails at once (exit 3):
    # no lab is really run here.
    no_cluster = {"KUBECONFIG": str(tmp_path / "no-kubeconfig"), "KUBERNETES_SERVICE_HOST": ""}
    holder = hold_lab_lock("2")
    try:
        lock = home / "locks" / "02-training-job.lock"
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # a real flock, held by the other process
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        out = run("run", "2", "--backend", "k8s", env=no_cluster)
        assert out.returncode == 6, out.stderr
        assert f"lab 2 is already running: PID {holder.pid}" in out.stderr
        assert "started 20" in out.stderr and f"kill {holder.pid}" in out.stderr and "Traceback" not in out.stderr
        # reset N waits for the run too, and deletes nothing meanwhile.
        (home / "labs" / "02-training-job" / "run").mkdir(parents=True)
        out = run("reset", "2")
        assert out.returncode == 6 and f"PID {holder.pid}" in out.stderr
        assert (home / "labs" / "02-training-job" / "run").is_dir()
        # Other labs are not locked.
        assert run("run", "3", "--backend", "k8s", env=no_cluster).returncode == 3
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no cleanup, its PID stays written in the lock file
        holder.wait(timeout=30)
    assert str(holder.pid) in lock.read_text(), "the stale record is still there..."
    out = run("run", "2", "--backend", "k8s", env=no_cluster)
    assert out.returncode == 3, out.stderr  # ...and does not block: past the lock, refused by the backend
    assert "already running" not in out.stderr


def test_reset_all_is_refused_while_a_lab_runs(home: Path) -> None:
    (home / "labs" / "05-distributed-training").mkdir(parents=True)
    holder = hold_lab_lock("5")
    try:
        out = run("reset", "--yes")
        assert out.returncode == 6 and f"PID {holder.pid}" in out.stderr
        assert (home / "labs" / "05-distributed-training").is_dir()
    finally:
        holder.kill()
        holder.wait(timeout=30)


PROGRESS_LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def test_progress_updates_wait_for_the_progress_lock(home: Path) -> None:
    (home / "locks").mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", PROGRESS_LOCK_HOLDER, str(home / "locks" / "progress.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    try:
        check = subprocess.Popen(
            mllab_cmd("check", "3", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(3)
        assert check.poll() is None, "the update must wait while another process holds the progress lock"
        assert not (home / "progress.json").exists()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        _, stderr = check.communicate(timeout=60)
        assert check.returncode == 1, stderr
        assert json.loads((home / "progress.json").read_text())["03"]["last_check"]["passed"] is False
    finally:
        holder.kill()
        holder.wait(timeout=30)


UPDATER = """
import sys
from mllab.home import Progress
lab = int(sys.argv[1])
for i in range(1, 31):
    Progress().update(lab, count=i)
"""


def test_concurrent_progress_updates_lose_nothing(home: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", UPDATER, str(lab)]) for lab in (11, 12, 13, 14)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    data = json.loads((home / "progress.json").read_text())
    assert {k: v["count"] for k, v in data.items()} == {"11": 30, "12": 30, "13": 30, "14": 30}
    assert sorted(p.name for p in home.iterdir()) == ["locks", "progress.json"], "no temp files left behind"


# --- an unusable MLLAB_HOME ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "under a file"])
@pytest.mark.parametrize("args", [("list",), ("progress",), ("start", "2"), ("check", "3"), ("reset", "--yes")])
def test_unusable_home_is_a_clear_error(where: str, args: tuple[str, ...], tmp_path: Path) -> None:
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    path = afile if where == "a file" else afile / "mllab"
    out = run(*args, env={"MLLAB_HOME": str(path)})
    assert out.returncode == 7, out.stderr
    assert "Traceback" not in out.stderr
    assert f"MLLAB_HOME {path}" in out.stderr and "fix:" in out.stderr and "writable directory" in out.stderr
    assert afile.read_text() == "x"


# --- mllab reset (all labs) ------------------------------------------------------------------------------


def some_state(home: Path) -> list[Path]:
    paths = [home / "labs" / "02-training-job" / "run", home / "mlflow" / "artifacts"]
    for p in paths:
        p.mkdir(parents=True)
    (home / "progress.json").write_text('{"02": {"started_at": "2026-01-01T00:00:00+00:00"}}\n')
    return [home / "labs", home / "mlflow", home / "progress.json"]


def test_reset_all_without_a_tty_or_yes_refuses_and_deletes_nothing(home: Path) -> None:
    targets = some_state(home)
    out = run("reset", stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out.stderr
    assert "--yes" in out.stderr and "nothing was deleted" in out.stderr
    assert all(str(p) in out.stderr for p in targets), "it says what it would delete"
    assert all(p.exists() for p in targets)
    assert (home / "labs" / "02-training-job" / "run").is_dir()


def test_reset_all_with_yes_deletes_everything(home: Path) -> None:
    targets = some_state(home)
    out = run("reset", "--yes")
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in targets)
    assert all(str(p) in out.stdout.replace("\n", "") for p in targets)
    assert json.loads(run("progress", "--json").stdout) == {}


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False), ("\n", False)])
def test_reset_all_on_a_terminal_asks(answer: str, deleted: bool, home: Path) -> None:
    targets = some_state(home)
    leader, follower = os.openpty()
    try:
        os.write(leader, answer.encode())
        out = run("reset", stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert out.returncode == (0 if deleted else 1), out.stderr
    assert "Delete all of this? [y/N]" in out.stdout
    assert all(str(p) in out.stdout.replace("\n", "") for p in targets)
    assert all(p.exists() != deleted for p in targets)


def test_reset_all_with_nothing_to_delete_just_says_so(home: Path) -> None:
    out = run("reset")
    assert out.returncode == 0 and "Nothing to reset" in out.stdout


# --- the helpers themselves -----------------------------------------------------------------------------


def test_atomic_write_fsyncs_and_a_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mllab import state

    target = tmp_path / "state.json"
    state.write_json_atomic(target, {"a": 1})
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        state.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))
    )
    state.write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert len(synced) == 2 and synced[0].endswith(".tmp") and synced[1] == str(tmp_path)
    with pytest.raises(TypeError):
        state.write_json_atomic(target, {("not", "a", "key"): 3})
    assert json.loads(target.read_text()) == {"a": 2}, "a failed write leaves the previous file whole"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "and no temp file behind"
