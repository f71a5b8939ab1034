"""Every lab's run + check on the local backend, on CPU, with real MLflow, KServe and torchrun processes.

Lab 2 goes through the CLI exactly as the README tells a newcomer (its own MLflow server); the
others share one MLflow server (MLFLOW_TRACKING_URI, as inside JupyterLab on the cluster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import mllab_cmd, processes_mentioning


@pytest.mark.timeout(900)
def test_newcomer_path_run_and_check_lab_2(home: Path) -> None:
    """The README's path through the CLI, with its own MLflow server: `mllab start 2`, the learner's
    checkpoint.py completed (here: the reference solution copied over the starter), `mllab run 2`
    (their code, in both jobs), `mllab check 2`. Lab 2's "solution passes" case (the starter and a
    wrong solution: test_exercise_lab02.py)."""
    import shutil

    from mllab import exercise
    from mllab.labs import get_lab

    env = {**os.environ, "MLLAB_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = subprocess.run(mllab_cmd("start", "2"), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert start.returncode == 0, start.stderr
    mine = Path(env["MLLAB_WORKSPACE"]) / "02-training-job"
    shutil.copyfile(exercise.solution_dir(get_lab(2)) / "checkpoint.py", mine / "checkpoint.py")
    run = subprocess.run(
        mllab_cmd("run", "2", "--quick"), env=env, capture_output=True, text=True, timeout=850, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"running your code from {mine}" in run.stdout.replace("\n", "")
    assert "identical" in run.stdout and "different" not in run.stdout
    assert not processes_mentioning(str(home)), "processes left behind after `mllab run 2`"
    check = subprocess.run(
        mllab_cmd("check", "2", "--json"), env=env, capture_output=True, text=True, timeout=300, check=False
    )
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["passed"], json.dumps(report, indent=2)
    assert len(report["checks"]) >= 10
    assert not processes_mentioning(str(home))
    out = home / "labs" / "02-training-job" / "run"
    assert (out / "uninterrupted" / "learning_curve.png").stat().st_size > 1000
    assert (out / "exercise" / "checkpoint.py").read_bytes() == (mine / "checkpoint.py").read_bytes()
    # The crashed job's retry resumed from the newest checkpoint its first attempt wrote (epoch 2 of
    # --quick's 8, killed in epoch 3), and kept every checkpoint after it.
    result = json.loads((out / "result.json").read_text())
    assert result["meta"]["solution"] is False and result["meta"]["files"]["checkpoint.py"]
    crashed = result["result"]["runs"]["crash-and-resume"]
    assert crashed["resumed_from_epoch"] == 2 and crashed["job_exit_codes"] == [-9, 0]
    assert sorted(p.name for p in (out / "crash-and-resume" / "checkpoints").glob("ckpt-*.pt")) == [
        f"ckpt-epoch{e:04d}.pt" for e in (2, 4, 6, 8)
    ]


@pytest.mark.timeout(300)
def test_ctrl_c_stops_every_child_and_keeps_no_partial_run(home: Path) -> None:
    env = {**os.environ, "MLLAB_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        mllab_cmd("run", "2", "--quick", "--solution"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as in a terminal: a test runner started in the background inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and not any("mllab.training" in p for p in processes_mentioning(str(home))):
        time.sleep(0.5)  # wait until the MLflow server and the first training job are running
    assert processes_mentioning(str(home)), "the lab never started its processes"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    time.sleep(0.5)
    assert not processes_mentioning(str(home)), "orphans after Ctrl-C"
    assert not (home / "labs" / "02-training-job" / "run").exists()


@pytest.mark.timeout(900)
# The reference run of each lab is its exercise's "solution" case (test_exercise_labNN.py); lab 1's
# stays here for the GPU-or-skipped rule below.
@pytest.mark.parametrize("number", [1])
def test_lab_run_and_check(number: int, home: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mllab.labs import get_lab
    from mllab.runner import check_lab, run_lab
    from rich.console import Console

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    lab = get_lab(number)
    console = Console(width=120, force_terminal=False)
    out = run_lab(lab, quick=True, console=console, solution=True)
    assert out["meta"]["wall_s"] > 0 and out["meta"]["solution"]
    checks = check_lab(lab, console=console)
    failed = [c for c in checks if not c.passed]
    assert not failed, "\n".join(f"{c.name}: {c.reason}" for c in failed)
    assert len(checks) >= 2
    if number == 1:
        import torch

        skipped = [c for c in checks if c.skipped]
        assert bool(skipped) == (not torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.timeout(600)
def test_lab_1_measures_a_real_gpu_speedup(home: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine: lab 1's GPU path runs only where a GPU exists")
    from mllab.labs import get_lab
    from mllab.runner import check_lab, run_lab

    out = run_lab(get_lab(1), solution=True)
    assert out["result"]["gpu"] and out["result"]["speedup_matmul"] > 1
    assert all(c.passed and not c.skipped for c in check_lab(get_lab(1)))
