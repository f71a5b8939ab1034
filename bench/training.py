"""Section 2: lab 2's training loop (mllab.training.train with the job's own EpochLogger: metrics
to a real MLflow server, batched, from a thread; a checkpoint every 2 epochs) against a bare PyTorch loop
on the same model, data, seed and one thread; and the cost of a crash: time to resume and the
work lost, from the real job (`python -m mllab.training`) SIGKILLed mid-epoch and restarted."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Figure, Row, Section, fmt

EPOCHS = 12  # the job's default: checkpoints after epochs 2, 4, ..., 12
EVERY = 2
ROUNDS = 9
CRASH_EPOCHS = (4, 5, 4, 5)  # mid-epoch 4: the newest checkpoint is 2 epochs old; mid-epoch 5: 1
OVERHEAD_TARGET = 0.05


def notes(call_ms: Figure, call_cpu_ms: Figure, epoch_s: float, per_epoch: str) -> str:
    """The design notes, with the figures they rest on measured in this run (`log_batch_cost`, the rows)."""
    flush = call_ms.median / 1000 / (EVERY * epoch_s)
    return f"""
What changed: the job (`python/src/mllab/training.py`) logged each epoch with a blocking
`mlflow.log_metrics`, one HTTP round trip to the tracking server per epoch (one `log_batch` to this
run's server: {call_ms}, measured beside the runs above) against an epoch of {fmt(epoch_s)} s (the bare
loop's median). Its `EpochLogger` now only buffers an epoch's metrics on the training thread; one
background thread sends them with `MlflowClient.log_batch`, at most one request a second (the first
epoch at once), and `close()` sends the rest before the run ends. A SIGKILL can therefore lose up to a
second of buffered metrics: the checkpoint holds the full history, and the retry, resuming, first logs
the checkpoint's epochs MLflow lacks and skips re-run epochs it already has, so every epoch is in
MLflow exactly once (the "work lost" row checks MLflow's history against the job's after each kill;
lab 2's check and `python/tests/test_training.py` check it too).

Why not one request per epoch off the thread, MLflow's own async logging, or a flush before each
checkpoint: one `log_batch` costs {call_cpu_ms} of the client's CPU (measured as above; cProfile put
it in requests and in MLflow's request-header providers), plus the server's CPU on the same 2 cores,
so one request per epoch, even off the training thread, still costs {per_epoch} per epoch (the
"one request per epoch" row); MLflow's async queue (`log_metrics(synchronous=False)`) polls with a
1 s timeout, so `end_run()` and `flush_async_logging()` can stall up to 1 s at the end of every run
(MLflow's source, not measured here); and waiting for the metrics before each checkpoint would put
one round trip on the training thread every {EVERY} epochs: {flush:.1%} of their time from the two
figures above.

Per-epoch figures are the wall (or CPU) time of epochs 2 to 12 of one run divided by 11
(checkpoints included: 6 of those 11 epochs write one), one value per run, runs interleaved in
rotating order; overheads are paired by round. CPU per epoch counts every thread of the bench
process (the MLflow server's own CPU is not in it); on a loaded machine it is the steadier figure.
"""


def log_batch_cost(tracking_uri: str, calls: int = 60) -> tuple[Figure, Figure]:
    """Wall and client CPU time of one `MlflowClient.log_batch` of an epoch's metrics, to the bench's server."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri)
    run_id = client.create_run(mlflow.get_experiment_by_name("mllab-bench-training").experiment_id).info.run_id
    wall, cpu = [], []
    for step in range(calls + 5):
        metrics = [Metric(k, 0.5, int(time.time() * 1000), step) for k in ("train_loss", "val_loss", "val_accuracy")]
        (w0, c0) = _stamp()
        client.log_batch(run_id, metrics=metrics)
        (w1, c1) = _stamp()
        if step >= 5:  # the first calls open the connection
            wall.append((w1 - w0) * 1000)
            cpu.append((c1 - c0) * 1000)
    client.set_terminated(run_id)
    return Figure(wall, "ms"), Figure(cpu, "ms")


def _stamp() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()  # wall; CPU of every thread of this process


class _EpochClock:
    """A `progress` for train(): stamps the loop's start and the end of every epoch, checkpoint included."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, float]] = []

    def add_task(self, *args: object, **kwargs: object) -> int:
        self.stamps.append(_stamp())
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        self.stamps.append(_stamp())


def per_epoch(stamps: list[tuple[float, float]]) -> tuple[float, float]:
    """(wall, CPU) per epoch over epochs 2..N: epoch 1 pays the warm-up, in both loops."""
    n = len(stamps) - 2
    return (stamps[-1][0] - stamps[1][0]) / n, (stamps[-1][1] - stamps[1][1]) / n


def bare_run(epochs: int) -> tuple[float, float]:
    """The same model, data, optimiser, shuffling and evaluation, nothing else."""
    import torch
    import torch.nn.functional as F
    from mllab.model import DigitsCNN
    from mllab.training import TrainConfig, dataset

    cfg = TrainConfig(epochs=epochs)
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    X_tr, y_tr, X_te, y_te = dataset(cfg)
    Xt, yt, Xv, yv = (torch.from_numpy(a) for a in (X_tr, y_tr, X_te, y_te))
    model = DigitsCNN(width=cfg.width)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(cfg.seed)
    stamps = [_stamp()]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            opt.zero_grad()
            F.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            float((model(Xv).argmax(1) == yv).float().mean())
        stamps.append(_stamp())
    return per_epoch(stamps)


def lab_run(epochs: int, ckpt: Path, mode: str = "lab") -> tuple[tuple[float, float], float]:
    """Lab 2's loop wired as the job's main() wires it: ((wall, CPU) per epoch, end-of-run tail).

    The tail is what the run pays once after its last epoch: the logger's close (sending what it
    still buffers) and `mlflow.end_run()`. For comparison, mode "per-epoch" sends every epoch at
    once (still from the thread), "sync" is the previous design: one blocking `mlflow.log_metrics`
    per epoch on the training thread.
    """
    import mlflow
    from mllab.training import EpochLogger, TrainConfig, train

    clock = _EpochClock()
    cfg = TrainConfig(epochs=epochs, checkpoint_every=EVERY)
    with mlflow.start_run(run_name=f"bench-{mode}"):
        if mode == "sync":

            def on_epoch(rec: dict) -> None:
                mlflow.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=int(rec["epoch"]))

            train(cfg, checkpoint_dir=ckpt, on_epoch=on_epoch, progress=clock)
        else:
            # the job's logger, wired as in main(), without its stdout lines
            logger = EpochLogger(mlflow, send_every_s=0) if mode == "per-epoch" else EpochLogger(mlflow)
            try:
                train(cfg, checkpoint_dir=ckpt, on_epoch=logger, on_resume=logger.backfill, progress=clock)
            finally:
                logger.close()
    return per_epoch(clock.stamps), time.perf_counter() - clock.stamps[-1][0]


def resume_once(tracking_uri: str, workdir: Path, crash_epoch: int) -> dict:
    """Kill the real job mid-epoch, restart it as the retry, time the restart; check MLflow's history."""
    import mlflow

    ckpt, out = workdir / "ckpt", workdir / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "mllab.training",
        "--epochs",
        str(crash_epoch + 1),
        "--checkpoint-every",
        str(EVERY),
        "--checkpoint-dir",
        str(ckpt),
        "--out",
        str(out),
        "--crash-at-epoch",
        str(crash_epoch),
        "--experiment",
        "mllab-bench-resume",
        "--run-name",
        workdir.name,
    ]
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, MLLAB_JOB_ATTEMPT="1")
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if first.returncode != -9:
        raise RuntimeError(f"the job was not killed (rc {first.returncode}): {first.stderr[-500:]}")
    done = max(json.loads(line)["epoch"] for line in first.stdout.splitlines() if line.startswith("{"))
    env["MLLAB_JOB_ATTEMPT"] = "2"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    resumed_s = first_epoch_s = None
    for line in proc.stdout:
        if line.startswith("resuming from") and resumed_s is None:
            resumed_s = time.perf_counter() - start
        elif line.startswith("{") and first_epoch_s is None:
            first_epoch_s = time.perf_counter() - start
    if proc.wait() != 0 or resumed_s is None or first_epoch_s is None:
        raise RuntimeError(f"the retry failed or did not resume (rc {proc.returncode})")
    result = json.loads(out.read_text())
    mlflow.set_tracking_uri(tracking_uri)
    logged = {m.step: m.value for m in mlflow.MlflowClient().get_metric_history(result["run_id"], "val_accuracy")}
    return {
        "resumed_s": resumed_s,
        "first_epoch_s": first_epoch_s,
        "lost": done + 0.5 - result["resumed_from_epoch"],  # killed halfway through epoch done + 1
        "history_complete": logged == {r["epoch"]: r["val_accuracy"] for r in result["history"]},
    }


def training(rounds: int = ROUNDS) -> Section:
    import mlflow
    from mllab.backends.local import LocalBackend

    section = Section(
        "Training: lab 2's loop vs a bare PyTorch loop (1 thread, digits CNN)",
        ["per epoch", "CPU per epoch", "after a kill"],
        target=f"lab loop overhead at most {OVERHEAD_TARGET:.0%} of wall time per epoch; "
        "work lost after a kill at most one checkpoint interval",
        reproduce="make bench BENCH=training",
        chart="per epoch",
    )
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "lab": [], "per-epoch": [], "sync": []}
    tails: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mllab-bench-train-") as tmp, LocalBackend(Path(tmp) / "home") as backend:
        uri = backend.tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("mllab-bench-training")
        kinds = list(runs)
        for r in range(rounds):  # interleaved, the order rotated each round: drift in load hits all alike
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                if kind == "bare":
                    runs[kind].append(bare_run(EPOCHS))
                else:
                    per, tail = lab_run(EPOCHS, Path(tmp) / f"ck-{kind}-{r}", mode=kind)
                    runs[kind].append(per)
                    if kind == "lab":
                        tails.append(tail)
        resumes = [resume_once(uri, Path(tmp) / f"resume-{i}", e) for i, e in enumerate(CRASH_EPOCHS)]
        call_ms, call_cpu_ms = log_batch_cost(uri)

    def figures(kind: str) -> dict[str, Figure]:
        return {
            "per epoch": Figure([w for w, _ in runs[kind]], "s"),
            "CPU per epoch": Figure([c for _, c in runs[kind]], "s"),
        }

    def overhead(kind: str, i: int) -> list[float]:  # paired by round: run / bare run of the same round - 1
        return [x[i] / b[i] - 1 for x, b in zip(runs[kind], runs["bare"], strict=True)]

    complete = sum(r["history_complete"] for r in resumes)
    lost = Figure([r["lost"] for r in resumes], "epochs")
    section.rows += [
        Row("bare PyTorch loop", figures("bare")),
        Row(
            f"lab 2 loop (EpochLogger, checkpoint every {EVERY})",
            figures("lab"),
            note=f"metrics sent from a thread, at most 1 request/s; overhead: wall {_pct(overhead('lab', 0))}, "
            f"CPU {_pct(overhead('lab', 1))}; once per run, after "
            f"the last epoch (logger close, end_run): {fmt(statistics.median(tails))} s "
            f"({fmt(min(tails))}-{fmt(max(tails))})",
        ),
        Row(
            "lab 2 loop, one request per epoch",
            figures("per-epoch"),
            note=f"EpochLogger(send_every_s=0), still off the training thread; overhead: wall "
            f"{_pct(overhead('per-epoch', 0))}, CPU {_pct(overhead('per-epoch', 1))}",
        ),
        Row(
            "lab 2 loop, synchronous log_metrics (before)",
            figures("sync"),
            note=f"the previous design: one blocking mlflow.log_metrics per epoch; overhead: wall "
            f"{_pct(overhead('sync', 0))}, CPU {_pct(overhead('sync', 1))}",
        ),
        Row(
            "resume after a kill: restart to checkpoint loaded",
            {"after a kill": Figure([r["resumed_s"] for r in resumes], "s")},
            note="a new process: Python, torch and mlflow imports, MLflow run re-attached, data, checkpoint",
        ),
        Row(
            "resume after a kill: restart to first finished epoch",
            {"after a kill": Figure([r["first_epoch_s"] for r in resumes], "s")},
        ),
        Row(
            "work lost to the kill",
            {"after a kill": lost},
            note=f"the real job SIGKILLed mid-epoch {' / '.join(map(str, CRASH_EPOCHS))}, checkpoint interval "
            f"{EVERY}; MLflow val_accuracy history equal to the job's after the resume in {complete}/{len(resumes)}",
        ),
    ]
    wall = overhead("lab", 0)
    med, worst = statistics.median(wall), max(lost.values)
    section.verdict = (
        f"overhead {med:+.1%} of wall time per epoch, min-max {min(wall):+.1%} to {max(wall):+.1%} over "
        f"{rounds} paired rounds (target <= {OVERHEAD_TARGET:.0%}: {'met' if med <= OVERHEAD_TARGET else 'MISSED'}); "
        f"the previous synchronous logging, same invocation: {statistics.median(overhead('sync', 0)):+.1%}. "
        f"Work lost after a kill at most {fmt(worst)} epochs "
        f"(target <= {EVERY}: {'met' if worst <= EVERY else 'MISSED'})"
    )
    section.notes = notes(
        call_ms, call_cpu_ms, statistics.median(w for w, _ in runs["bare"]), _pct(overhead("per-epoch", 0))
    )
    return section


def _pct(values: list[float]) -> str:
    return f"{statistics.median(values):+.1%} ({min(values):+.1%} to {max(values):+.1%}, n={len(values)})"
