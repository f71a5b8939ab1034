"""Section 2: lab 2's training loop (checkpoints every N epochs, metrics to a real MLflow
server) against a bare PyTorch loop on the same model, data, seed and one thread; and the
cost of a crash: time to resume and the work lost."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Figure, Row, Section

EPOCHS = 6
OVERHEAD_TARGET = 0.05


def bare_epochs(epochs: int) -> list[float]:
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
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
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
        times.append(time.perf_counter() - start)
    return times[1:]  # like the lab loop's figures: the first epoch pays the warm-up


def lab_epochs(epochs: int, tracking_uri: str, ckpt: Path) -> list[float]:
    import mlflow
    from mllab.training import TrainConfig, train

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mllab-bench-training")
    stamps = [time.perf_counter()]

    def on_epoch(rec: dict) -> None:
        mlflow.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=int(rec["epoch"]))
        stamps.append(time.perf_counter())

    with mlflow.start_run(run_name="bench"):
        train(TrainConfig(epochs=epochs, checkpoint_every=2), checkpoint_dir=ckpt, on_epoch=on_epoch)
    # stamps[1] closes epoch 1, which pays data loading, model set-up and warm-up: it is left out,
    # as in the bare loop.
    return [b - a for a, b in itertools.pairwise(stamps[1:])]


def resume_cost(tracking_uri: str, workdir: Path, crash_epoch: int = 5, every: int = 2) -> Row:
    """Kill the job mid-epoch, restart it, and time the restart until its first finished epoch."""
    ckpt, out = workdir / "ckpt", workdir / "result.json"
    base = [
        sys.executable,
        "-m",
        "mllab.training",
        "--epochs",
        str(crash_epoch + 1),
        "--checkpoint-every",
        str(every),
        "--checkpoint-dir",
        str(ckpt),
        "--out",
        str(out),
        "--crash-at-epoch",
        str(crash_epoch),
    ]
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, MLLAB_JOB_ATTEMPT="1")
    first = subprocess.run(base, env=env, capture_output=True, text=True)
    if first.returncode >= 0:
        return Row("resume after a kill", {}, note=f"NOT MEASURED: the job was not killed (rc {first.returncode})")
    env["MLLAB_JOB_ATTEMPT"] = "2"
    start = time.perf_counter()
    proc = subprocess.Popen(base, env=env, stdout=subprocess.PIPE, text=True)
    first_epoch_s = None
    for line in proc.stdout:
        if line.startswith("{") and first_epoch_s is None:
            first_epoch_s = time.perf_counter() - start
    proc.wait()
    result = json.loads(out.read_text())
    lost = crash_epoch - 0.5 - result["resumed_from_epoch"]
    return Row(
        "resume after a kill",
        {"per epoch": Figure([first_epoch_s], "s")},
        note=f"killed mid-epoch {crash_epoch}, resumed from the epoch-{result['resumed_from_epoch']} checkpoint: "
        f"{lost:.1f} epochs of work lost (checkpoint interval {every}); time = restart to first finished epoch",
    )


def training(rounds: int = 3) -> Section:
    from mllab.backends.local import LocalBackend

    section = Section(
        "Training: lab 2's loop vs a bare PyTorch loop (1 thread, digits CNN)",
        ["per epoch"],
        target=f"lab loop overhead at most {OVERHEAD_TARGET:.0%} of wall time per epoch; "
        "work lost after a kill at most one checkpoint interval",
        reproduce="make bench BENCH=training",
        chart="per epoch",
    )
    with tempfile.TemporaryDirectory(prefix="mllab-bench-train-") as tmp, LocalBackend(Path(tmp) / "home") as backend:
        uri = backend.tracking_uri()
        bare, lab = [], []
        for r in range(rounds):  # interleaved, so drift in machine load hits both alike
            bare += bare_epochs(EPOCHS)
            lab += lab_epochs(EPOCHS, uri, Path(tmp) / f"ckpt-{r}")
        b, lb = Figure(bare, "s"), Figure(lab, "s")
        section.rows.append(Row("bare PyTorch loop", {"per epoch": b}))
        section.rows.append(Row("lab 2 loop (checkpoint every 2 epochs, MLflow metrics)", {"per epoch": lb}))
        section.rows.append(resume_cost(uri, Path(tmp)))
    overhead = lb.median / b.median - 1
    section.verdict = (
        f"overhead {overhead:+.1%} of wall time per epoch (target <= {OVERHEAD_TARGET:.0%}: "
        f"{'met' if overhead <= OVERHEAD_TARGET else 'MISSED'})"
    )
    return section
