"""Lab 2's training job: seeded, checkpointed, resumable; also importable for in-process training.

As a job (what the backend runs, like a Kubernetes Job's container)::

    python -m mllab.training --epochs 12 --checkpoint-every 2 --checkpoint-dir DIR --out DIR/result.json \
        --experiment mllab-02-training-job --run-name uninterrupted

Every `--checkpoint-every` epochs it saves a checkpoint with the learner's `save_checkpoint` (lab
2's exercise, `checkpoint.py` at $MLLAB_EXERCISE; lab 2's reference solution elsewhere): model,
optimizer, epoch and every RNG state (torch, numpy, random, the shuffling generator). Restarted
after a crash, it resumes from the newest checkpoint and ends with bitwise the same weights and
metrics as an uninterrupted run.

Epoch metrics go to MLflow from a background thread, batched to at most one request a second (an
epoch is ~0.08 s; one round trip to the tracking server per epoch cost 12-18% of it). So a SIGKILL
can lose the last second of metrics; the checkpoint holds the full history, and the retry first
logs the epochs up to its checkpoint that MLflow lacks, then only the epochs MLflow has not seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    seed: int = 42
    checkpoint_every: int = 2
    data: str = "original"  # original | shifted | mixed (original + shifted: lab 7's retraining)
    width: int = 16

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.data not in ("original", "shifted", "mixed"):
            raise ValueError(f"data must be original, shifted or mixed, got {self.data!r}")


def dataset(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and validation images for `cfg.data`; the shift is seeded independently of cfg.seed."""
    from mllab.data import load_digits_split, shift, to_images

    s = load_digits_split()
    X_tr, y_tr, X_te, y_te = s.X_train, s.y_train, s.X_test, s.y_test
    if cfg.data == "shifted":
        X_tr, X_te = shift(X_tr, seed=1), shift(X_te, seed=2)
    elif cfg.data == "mixed":
        X_tr = np.concatenate([X_tr, shift(X_tr, seed=1)])
        y_tr = np.concatenate([y_tr, y_tr])
        X_te = shift(X_te, seed=2)  # validate on the new distribution: that is where the model must work now
    return to_images(X_tr), y_tr, to_images(X_te), y_te


def _set_seeds(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def _latest_checkpoint(ckpt_dir: Path | None) -> Path | None:
    if ckpt_dir is None or not ckpt_dir.is_dir():
        return None
    found = sorted(ckpt_dir.glob("ckpt-epoch*.pt"))
    return found[-1] if found else None


def checkpoint_code() -> Any:
    """The module whose save_checkpoint/load_checkpoint the job uses: the learner's checkpoint.py
    (lab 2's exercise, at $MLLAB_EXERCISE), else lab 2's reference solution."""
    from mllab.exercise import from_env

    return from_env("checkpoint", required=("save_checkpoint", "load_checkpoint"), default_lab=2)


class EpochLogger:
    """The job's per-epoch logger: a JSON line on `stream`, and the metrics to the active MLflow run.

    The training loop only buffers the metrics; one background thread sends them, at most one
    request every `send_every_s` (the first epoch at once) and the rest on `close()`, which raises
    if any request failed (a failed request is also raised at the next epoch). `backfill(history)`
    is for a retry resumed from a checkpoint: it logs the checkpoint's epochs that MLflow lacks (the
    killed attempt still had them buffered) and stops the re-run epochs it already has from being
    logged twice (they are bitwise the same).
    """

    def __init__(self, mlflow: Any = None, stream: Any = None, send_every_s: float = 1.0) -> None:
        self._stream = stream
        self.send_every_s = send_every_s
        self._buffer: list[dict[str, float]] = []
        self._futures: list[Future[None]] = []
        self._last_send = float("-inf")
        self._in_mlflow: set[int] = set()  # steps MLflow already has; only the sender thread touches it
        self._pool: ThreadPoolExecutor | None = None
        if mlflow is not None:
            run = mlflow.active_run()
            if run is None:
                raise RuntimeError("EpochLogger needs an active MLflow run (mlflow.start_run)")
            self._run_id = run.info.run_id
            self._client = mlflow.MlflowClient()
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mllab-metrics")

    def __call__(self, rec: dict[str, float]) -> None:
        if self._stream is not None:
            print(json.dumps(rec), file=self._stream, flush=True)
        if self._pool is None:
            return
        self._raise_failed()
        self._buffer.append({**rec, "timestamp": int(time.time() * 1000)})
        if time.monotonic() - self._last_send >= self.send_every_s:
            self._send()

    def backfill(self, history: list[dict[str, float]]) -> None:
        if self._pool is not None and history:
            stamped = [{**rec, "timestamp": int(time.time() * 1000)} for rec in history]
            self._futures.append(self._pool.submit(self._post, stamped, True))

    def close(self) -> None:
        """Send what is still buffered and wait for it; raise if any request failed."""
        if self._pool is None:
            return
        self._send()
        futures, self._futures = self._futures, []
        self._pool.shutdown(wait=True)
        self._pool = None  # closed: later epochs are only printed
        for f in futures:
            f.result()

    def _send(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._futures.append(self._pool.submit(self._post, batch, False))
            self._last_send = time.monotonic()

    def _raise_failed(self) -> None:
        done = [f for f in self._futures if f.done()]
        self._futures = [f for f in self._futures if not f.done()]
        for f in done:
            f.result()

    def _post(self, records: list[dict[str, float]], backfill: bool) -> None:  # on the sender thread
        from mlflow.entities import Metric

        if backfill:  # an epoch is in MLflow if every one of its metrics is
            keys = [k for k in records[0] if k not in ("epoch", "timestamp")]
            steps = [{m.step for m in self._client.get_metric_history(self._run_id, k)} for k in keys]
            self._in_mlflow = set.intersection(*steps)
        metrics = [
            Metric(k, v, rec["timestamp"], int(rec["epoch"]))
            for rec in records
            if int(rec["epoch"]) not in self._in_mlflow
            for k, v in rec.items()
            if k not in ("epoch", "timestamp")
        ]
        if metrics:
            self._client.log_batch(self._run_id, metrics=metrics, synchronous=True)


def train(
    cfg: TrainConfig,
    checkpoint_dir: Path | None = None,
    crash_at_epoch: int | None = None,
    on_epoch: Any = None,
    progress: Any = None,
    on_resume: Callable[[list[dict[str, float]]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) and return the model, history and fingerprints.

    `crash_at_epoch` simulates a node failure: the process SIGKILLs itself halfway through that epoch.
    `on_epoch(record)` is called after every epoch (the job passes an `EpochLogger`);
    `on_resume(history)` once, with the checkpoint's history, when resuming from a checkpoint.
    """
    import torch
    import torch.nn.functional as F

    from mllab.model import DigitsCNN, weights_sha256

    cfg.validate()
    torch.set_num_threads(1)  # bitwise reproducible, and polite on shared machines
    _set_seeds(cfg.seed)
    X_tr, y_tr, X_te, y_te = dataset(cfg)
    Xt, yt = torch.from_numpy(X_tr), torch.from_numpy(y_tr)
    Xv, yv = torch.from_numpy(X_te), torch.from_numpy(y_te)
    model = DigitsCNN(width=cfg.width)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    shuffler = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    start_epoch = 1
    resumed_from = 0
    ckpt = _latest_checkpoint(checkpoint_dir)
    code = checkpoint_code() if checkpoint_dir is not None else None
    if ckpt is not None:
        from mllab.exercise import call

        epoch, history = call(code, "load_checkpoint", ckpt, model=model, optimizer=opt, shuffler=shuffler)
        history = list(history)
        start_epoch = int(epoch) + 1
        resumed_from = int(epoch)
        print(f"resuming from {ckpt.name} (epoch {resumed_from})", file=sys.stderr, flush=True)
        if on_resume:
            on_resume(history)
    n = len(Xt)
    task = progress.add_task("training", total=cfg.epochs, completed=start_epoch - 1) if progress else None
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=shuffler)
        batches = [perm[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        total = 0.0
        for b, idx in enumerate(batches):
            if crash_at_epoch == epoch and b == len(batches) // 2:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)  # the node dies mid-epoch: no cleanup, no last save
            opt.zero_grad()
            loss = F.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(Xv)
            val_loss = float(F.cross_entropy(logits, yv))
            val_acc = float((logits.argmax(1) == yv).float().mean())
        record = {"epoch": epoch, "train_loss": total / n, "val_loss": val_loss, "val_accuracy": val_acc}
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if checkpoint_dir is not None and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs):
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            from mllab.exercise import call

            call(
                code,
                "save_checkpoint",
                checkpoint_dir / f"ckpt-epoch{epoch:04d}.pt",
                epoch=epoch,
                model=model,
                optimizer=opt,
                shuffler=shuffler,
                history=history,
            )
        if progress is not None:
            progress.update(task, advance=1, description=f"epoch {epoch}: val acc {val_acc:.3f}")
    with torch.no_grad():
        preds = model(Xv).argmax(1).numpy()
    return {
        "model": model,
        "history": history,
        "weights_sha256": weights_sha256(model),
        "val_accuracy": history[-1]["val_accuracy"],
        "val_loss": history[-1]["val_loss"],
        "resumed_from_epoch": resumed_from,
        "y_true": y_te,
        "y_pred": preds,
    }


# --- the job entry point ------------------------------------------------------------------------
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mllab.training", description="the digits CNN training job")
    d = TrainConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=int(os.environ.get("RANDOM_SEED", d.seed)))
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--data", choices=["original", "shifted", "mixed"], default=d.data)
    p.add_argument("--checkpoint-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="result JSON; the model directory goes next to it")
    p.add_argument("--experiment", default="", help="MLflow experiment (MLFLOW_TRACKING_URI must be set)")
    p.add_argument("--run-name", default="training-job")
    p.add_argument(
        "--crash-at-epoch",
        type=int,
        default=None,
        help="simulate a node failure in that epoch, on the first attempt only",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        data=args.data,
    )
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    attempt = int(os.environ.get("MLLAB_JOB_ATTEMPT", "1"))
    crash = args.crash_at_epoch if attempt == 1 else None
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    mlflow = None
    if args.experiment:
        import mlflow

        mlflow.set_experiment(args.experiment)
        id_file = args.checkpoint_dir / "mlflow_run_id"
        if id_file.exists():  # a retry: continue the same MLflow run
            mlflow.start_run(run_id=id_file.read_text().strip())
        else:
            run = mlflow.start_run(run_name=args.run_name)
            id_file.write_text(run.info.run_id)
            mlflow.log_params({**asdict(cfg), "crash_at_epoch": args.crash_at_epoch})
        mlflow.set_tag("mllab.attempts", str(attempt))

    logger = EpochLogger(mlflow, sys.stdout)
    started = time.monotonic()
    try:
        out = train(
            cfg, checkpoint_dir=args.checkpoint_dir, crash_at_epoch=crash, on_epoch=logger, on_resume=logger.backfill
        )
    finally:
        logger.close()  # every epoch in MLflow before the run ends, also when training failed
    model_dir = args.out.parent / "model"
    from mllab.model import save_model_dir
    from mllab.plots import confusion_matrix, learning_curve

    save_model_dir(out["model"], model_dir, val_accuracy=out["val_accuracy"], data=cfg.data, seed=cfg.seed)
    curve = learning_curve(out["history"], args.out.parent / "learning_curve.png", title=args.run_name)
    cm = confusion_matrix(out["y_true"], out["y_pred"], args.out.parent / "confusion_matrix.png")
    run_id = None
    if mlflow:
        import mlflow.pytorch
        from mlflow.models import infer_signature

        sample = dataset(cfg)[2][:5]
        signature = infer_signature(sample, out["model"](__import__("torch").from_numpy(sample)).detach().numpy())
        mlflow.log_artifact(str(curve))
        mlflow.log_artifact(str(cm))
        mlflow.pytorch.log_model(
            out["model"],
            name="model",
            signature=signature,
            input_example=sample,
            pip_requirements=["torch==2.15.0", "mllab"],
        )
        mlflow.set_tags(
            {"mllab.weights_sha256": out["weights_sha256"], "mllab.resumed_from_epoch": str(out["resumed_from_epoch"])}
        )
        run_id = mlflow.active_run().info.run_id
        mlflow.end_run()
    result = {
        "config": asdict(cfg),
        "weights_sha256": out["weights_sha256"],
        "val_accuracy": out["val_accuracy"],
        "val_loss": out["val_loss"],
        "history": out["history"],
        "resumed_from_epoch": out["resumed_from_epoch"],
        "attempt": attempt,
        "run_id": run_id,
        "model_dir": str(model_dir),
        "wall_s": round(time.monotonic() - started, 2),
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
