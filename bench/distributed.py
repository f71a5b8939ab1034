"""Section 3: lab 5's DDP job under torchrun with 1 and 2 processes (one intra-op thread each,
gloo on CPU), in two configurations, and where a 2-process step's time goes:

- the lab's: float64 and the same global batch (128) for both, so that 1 and 2 processes compute
  the same update up to rounding (what lab 5 grades). Strong scaling: 2 processes split the work;
- the users': float32 and a fixed batch per process (64), so 2 processes do twice the work per
  step, as people run DDP to go faster. Weak scaling: the target is for this one."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Figure, Row, Section

TARGET = 1.7
# name -> (dtype, global batch for n processes)
CONFIGS = {
    "lab": ("float64", lambda n: 128),
    "users": ("float32", lambda n: 64 * n),
}
PHASES = ("step", "compute", "all_reduce_wire", "waiting", "outside_steps")


def run(nproc: int, out: Path, epochs: int, dtype: str, global_batch: int, profile: bool = False) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "mllab.ddp_train", "--out-dir", str(out), "--epochs", str(epochs),
            "--global-batch", str(global_batch), "--dtype", dtype]  # fmt: skip
    subprocess.run(argv + (["--profile"] if profile else []), env=env, check=True, capture_output=True, text=True)
    return json.loads((out / "result.json").read_text())


# 16 epochs: about 2 s of training per run. With 4 (0.3-0.5 s) start-up effects in the timed loop
# (first allocations, DDP's first buckets) swung the 1-process figure by 30% between runs.
def distributed(rounds: int = 5, epochs: int = 16, profile_runs: int = 3) -> Section:
    section = Section(
        "Distributed: lab 5's DDP job, torchrun 1 vs 2 processes (1 thread each): the lab's and the users' set-ups",
        ["samples/s", "ms per step"],
        target=f"the users' set-up (float32, 64 rows per process): at least {TARGET}x the 1-process throughput "
        "with 2 processes on 2 cores; the lab's set-up (float64, one global batch of 128) is reported beside it",
        reproduce="make bench BENCH=distributed",
        chart="samples/s",
    )
    rates: dict[tuple[str, int], list[float]] = {(c, n): [] for c in CONFIGS for n in (1, 2)}
    steps: dict[tuple[str, int], list[float]] = {k: [] for k in rates}
    profiles: dict[tuple[str, int], list[dict]] = {k: [] for k in rates}
    with tempfile.TemporaryDirectory(prefix="mllab-bench-ddp-") as tmp:
        for r in range(rounds):  # interleaved, so drift in machine load hits every set-up alike
            for config, (dtype, batch) in CONFIGS.items():
                for n in (1, 2):
                    res = run(n, Path(tmp) / f"{config}-{n}-{r}", epochs, dtype, batch(n))
                    rates[config, n].append(res["samples_per_s"])
                    steps[config, n].append(res["train_s"] / res["steps_per_rank"][0] * 1000)
        # The profile in runs of their own: its comm hook and timers are not in the throughput figures.
        for r in range(profile_runs):
            for config, (dtype, batch) in CONFIGS.items():
                for n in (1, 2):
                    res = run(n, Path(tmp) / f"profile-{config}-{n}-{r}", epochs, dtype, batch(n), profile=True)
                    profiles[config, n] += res["profile_ms_per_step"]  # one per rank
    ratios = {}
    for config, (dtype, batch) in CONFIGS.items():
        for n in (1, 2):
            what = f"{dtype}, {batch(n)} rows per step ({batch(n) // n} per process)"
            section.rows.append(
                Row(
                    f"{config}'s set-up, {n} process{'es' if n > 1 else ''}",
                    {"samples/s": Figure(rates[config, n], "samples/s"), "ms per step": Figure(steps[config, n], "ms")},
                    note=what + "; " + phases(profiles[config, n]),
                )
            )
        ratios[config] = statistics.median(rates[config, 2]) / statistics.median(rates[config, 1])
    users, lab = ratios["users"], ratios["lab"]
    section.verdict = (
        f"users' set-up: 2 processes give {users:.2f}x the throughput of 1 (scaling efficiency {users / 2:.0%}; "
        f"target {TARGET}x: {'met' if users >= TARGET else 'MISSED'}); the lab's set-up: {lab:.2f}x "
        f"({lab / 2:.0%}), the price of computing exactly the 1-process update"
    )
    section.notes = (
        "Per-step phases (``--profile``, runs of their own, the mean over ranks and runs, in the notes): "
        "compute is the forward, backward and optimizer time less the all-reduce; the all-reduce is timed by "
        "a DDP comm hook around DDP's own from bucket ready to result, and split into its wire time (the same "
        "all-reduce of the same gradient bytes after a barrier, so nobody waits) and waiting for the other "
        "rank (the rest); 'outside steps' is the loop between steps (sampler, batching). With 1 process the "
        "all-reduce is DDP's bookkeeping on a group of one. The lab's set-up halves each rank's batch, so its "
        "compute halves while the all-reduce of the same gradients (float64: twice the bytes) does not: the "
        "fixed cost per step is a larger share. The users' set-up keeps each rank's compute as it was and adds "
        "only the all-reduce and the two ranks' uneven progress (waiting), which is where its missing share goes."
    )
    return section


def phases(profile: list[dict]) -> str:
    if not profile:
        return "not profiled"
    mean = {k: statistics.fmean(p[k] for p in profile) for k in PHASES}
    return (
        f"per step {mean['step']:.2f} ms: compute {mean['compute']:.2f}, all-reduce wire "
        f"{mean['all_reduce_wire']:.2f}, waiting for the other rank {mean['waiting']:.2f}; outside steps "
        f"{mean['outside_steps']:.2f} ms ({profile[0]['gradient_bytes'] / 1024:.0f} KiB of gradients)"
    )
