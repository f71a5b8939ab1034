"""Lab 2's job logs its epochs to MLflow off the training thread: nothing is lost at the end of a run,
and a SIGKILLed job's retry leaves MLflow with every epoch exactly once, as an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def _records(n: int) -> list[dict[str, float]]:
    return [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_accuracy": 0.5 + e / 100} for e in range(1, n + 1)
    ]


def _history(client, run_id: str, key: str = "val_accuracy") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _wait_for(client, run_id: str, steps: list[int]) -> None:
    deadline = time.monotonic() + 30
    while [s for s, _ in _history(client, run_id)] != steps:
        assert time.monotonic() < deadline, f"MLflow has {_history(client, run_id)}, want steps {steps}"
        time.sleep(0.05)


def test_logger_batches_and_close_sends_everything(mlflow_server: str) -> None:
    import mlflow
    from mllab.training import EpochLogger

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("test-epoch-logger")
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        logger = EpochLogger(mlflow, send_every_s=3600)
        recs = _records(4)
        logger(recs[0])  # the first epoch goes at once
        _wait_for(client, run.info.run_id, [1])
        for rec in recs[1:]:  # the others wait for send_every_s, or close()
            logger(rec)
        time.sleep(0.3)
        assert _history(client, run.info.run_id) == [(1, 0.51)]
        logger.close()
    assert _history(client, run.info.run_id) == [(r["epoch"], r["val_accuracy"]) for r in recs]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("killed_send_every_s", "sent_before_kill"),
    [(3600, [1]), (0, [1, 2, 3])],
    ids=["checkpointed-epoch-lost-in-buffer", "rerun-epoch-already-in-mlflow"],
)
def test_resumed_logger_backfills_the_checkpoint_and_logs_no_epoch_twice(
    mlflow_server: str, killed_send_every_s: float, sent_before_kill: list[int]
) -> None:
    import mlflow
    from mllab.training import EpochLogger

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("test-epoch-logger")
    client = mlflow.MlflowClient()
    recs = _records(6)
    with mlflow.start_run() as run:
        killed = EpochLogger(mlflow, send_every_s=killed_send_every_s)
        for rec in recs[:3]:  # then the kill: what is still buffered is lost
            killed(rec)
        _wait_for(client, run.info.run_id, sent_before_kill)
        retry = EpochLogger(mlflow, send_every_s=0)
        retry.backfill(recs[:2])  # the retry resumes from the epoch-2 checkpoint and re-runs epoch 3
        for rec in recs[2:]:
            retry(rec)
        retry.close()
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert _history(client, run.info.run_id) == [(r["epoch"], r["val_accuracy"]) for r in recs]


def test_logger_without_mlflow_only_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from mllab.training import EpochLogger

    logger = EpochLogger(stream=sys.stdout)
    logger(_records(1)[0])
    logger.backfill(_records(1))
    logger.close()
    assert json.loads(capsys.readouterr().out)["epoch"] == 1


def test_killed_job_retry_has_every_epoch_in_mlflow_once(mlflow_server: str, tmp_path: Path) -> None:
    import mlflow

    cmd = [
        sys.executable,
        "-m",
        "mllab.training",
        "--epochs",
        "6",
        "--checkpoint-every",
        "2",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--out",
        str(tmp_path / "result.json"),
        "--experiment",
        "test-training-job",
        "--crash-at-epoch",
        "5",
    ]
    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_server, MLLAB_JOB_ATTEMPT="1")
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == -9
    env["MLLAB_JOB_ATTEMPT"] = "2"
    retry = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert "resuming from ckpt-epoch0004.pt" in retry.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    mlflow.set_tracking_uri(mlflow_server)
    logged = mlflow.MlflowClient().get_metric_history(result["run_id"], "val_accuracy")
    assert sorted((m.step, m.value) for m in logged) == [(r["epoch"], r["val_accuracy"]) for r in result["history"]]
