"""Lab 5's distributed job, started by torchrun (one process per rank)::

    torchrun --standalone --nproc-per-node=2 -m mllab.ddp_train --out-dir DIR --epochs 4 --global-batch 64

The distributed parts are the learner's (`ddp.py`, lab 5's exercise, at $MLLAB_EXERCISE; lab 5's
reference solution elsewhere, e.g. for the benchmark): `init_distributed` joins the process group
(gloo on CPU, nccl on CUDA), `train_loop` gives each rank its share of every epoch
(DistributedSampler) and `save_result` writes the weights and the result once (rank 0). This
module is the rest: the device, the model and its DDP wrapper, the optimizer step, the timing, and
what the lab grades end to end (each rank's reported rank, the samples each rank trained on).

Training runs in float64 by default, so that what is left of the difference is visibly rounding.
Every rank sees the same shuffled order (same seed) and takes its own share of each global batch;
DDP averages the gradients, so N processes compute the same update as one process on the whole
global batch, up to floating-point summation order. gloo on CPU, nccl when every rank has a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

FUNCTIONS = ("init_distributed", "train_loop", "save_result")


def ddp_code() -> Any:
    """The module whose init_distributed/train_loop/save_result the job uses: the learner's ddp.py
    (lab 5's exercise, at $MLLAB_EXERCISE), else lab 5's reference solution."""
    from mllab.exercise import from_env

    return from_env("ddp", required=FUNCTIONS, default_lab=5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllab.ddp_train")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--global-batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="float64 (default) keeps the rounding gap between N and 1 processes tiny",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin each rank to one CPU (LOCAL_RANK modulo the CPUs it may use), as numactl or a launcher would",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="time each step's phases (compute, all-reduce, waiting for the other ranks) into the result",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA (nccl) when every rank gets a GPU, else CPU (gloo)",
    )
    args = p.parse_args(argv)

    from mllab.exercise import ExerciseError

    try:
        return _train(args)
    except ExerciseError as exc:  # the learner's code: name the file, the line and the fix, no traceback
        print(f"error: {exc.message}\nfix: {exc.fix}", file=sys.stderr, flush=True)
        return exc.exit_code


def _train(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import TensorDataset

    from mllab.exercise import ExerciseError, call
    from mllab.model import DigitsCNN
    from mllab.training import TrainConfig, dataset

    world_env, local_rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if args.global_batch % world_env:
        print(f"error: --global-batch {args.global_batch} is not divisible by {world_env} processes", file=sys.stderr)
        return 2
    enough_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= world_env
    if args.device == "cuda" and not enough_gpus:
        print(f"error: --device cuda needs {world_env} GPUs, {torch.cuda.device_count()} visible", file=sys.stderr)
        return 2
    use_cuda = enough_gpus and args.device != "cpu"
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if args.pin and not use_cuda:  # before the process group: gloo's threads, started after, inherit it
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[local_rank % len(cpus)]})
    code = ddp_code()

    rank, world = call(code, "init_distributed", device)  # the learner's: the process group
    if not (dist.is_available() and dist.is_initialized()):
        raise ExerciseError(
            "ddp.py: init_distributed() returned without a process group (DDP needs one)",
            "call dist.init_process_group(backend=...) in init_distributed",
        )
    try:
        rank, world = int(rank), int(world)
    except (TypeError, ValueError):
        raise ExerciseError(
            f"ddp.py: init_distributed() returned {(rank, world)!r}, not (rank, world_size)",
            "return two integers: dist.get_rank(), dist.get_world_size()",
        ) from None
    group_rank, group_size = dist.get_rank(), dist.get_world_size()
    reported: list[Any] = [None] * group_size
    dist.all_gather_object(reported, [rank, world])  # what every rank believes it is, for the lab's check
    if world < 1 or args.global_batch % world:
        raise ExerciseError(
            f"ddp.py: init_distributed() returned world_size {world}, which does not divide the global "
            f"batch {args.global_batch} (torchrun started {group_size} process(es))",
            "return torchrun's world size: dist.get_world_size()",
        )

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    X_tr, y_tr, X_te, y_te = dataset(TrainConfig())
    dtype = getattr(torch, args.dtype)
    data = TensorDataset(torch.from_numpy(X_tr), torch.from_numpy(y_tr))
    model = DigitsCNN().to(device, dtype)  # same seed on every rank, and DDP broadcasts rank 0's weights anyway
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    seen = {"samples": 0, "steps": 0, "batch": 0}
    profile = StepProfile(ddp) if args.profile else None

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step of the DDP model on this rank's batch; DDP all-reduces (averages) the gradients."""
        t0 = time.perf_counter()
        x, y = x.to(device, dtype, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
        if profile is not None:
            profile.stepped(t0, time.perf_counter())
        seen["samples"] += len(y)
        seen["steps"] += 1
        seen["batch"] = max(seen["batch"], len(y))

    ddp.train()
    dist.barrier()
    start = time.perf_counter()
    call(
        code,
        "train_loop",
        data,
        rank=rank,
        world_size=world,
        global_batch=args.global_batch,
        epochs=args.epochs,
        seed=args.seed,
        step=step,
    )
    if use_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    phases = profile.summary(elapsed, model, dtype, device) if profile is not None else None
    per_rank: list[Any] = [None] * group_size
    dist.all_gather_object(per_rank, [elapsed, seen, phases])
    train_s = max(e for e, _, _ in per_rank)  # the slowest rank ends the job
    samples = sum(s["samples"] for _, s, _ in per_rank)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(X_te).to(device, dtype)).cpu()
    yv = torch.from_numpy(y_te)
    info = {
        "world_size": group_size,  # what torchrun started
        "ranks_reported": reported,  # [rank, world_size] as init_distributed returned them, by process
        "backend": str(dist.get_backend()),
        "device": device.type,
        "epochs": args.epochs,
        "global_batch": args.global_batch,
        "per_rank_batch": max(s["batch"] for _, s, _ in per_rank),
        "steps_per_rank": [s["steps"] for _, s, _ in per_rank],
        "train_size": len(data),
        "samples_per_epoch": samples / max(args.epochs, 1),  # all ranks together
        "train_s": train_s,
        "samples_per_s": samples / train_s if train_s > 0 else 0.0,
        "val_loss": float(F.cross_entropy(logits, yv)),
        "val_accuracy": float((logits.argmax(1) == yv).float().mean()),
        "dtype": args.dtype,
        "threads_per_process": torch.get_num_threads(),
        "pinned": bool(args.pin and not use_cuda),
    }
    if profile is not None:
        info["profile_ms_per_step"] = [p for _, _, p in per_rank]  # by rank
    box = [info]
    dist.broadcast_object_list(box, src=0)  # one result, the same bytes on every rank (whoever writes it)
    info = box[0]
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    call(code, "save_result", args.out_dir, rank=rank, state_dict=state, info=info)  # the learner's: rank 0 writes
    if group_rank == 0:
        print(json.dumps(info), flush=True)
    dist.destroy_process_group()
    return 0


class StepProfile:
    """Where a step's time goes, on this rank (``--profile``; the benchmark's "where the time goes"):

    - all-reduce: from the moment DDP hands a gradient bucket to the backend until its averaged
      result is back (a comm hook around DDP's own allreduce hook), summed over a step's buckets.
      DDP's backward waits for it, and with this model's one bucket there is no other work to overlap;
    - of which the wire: the same all-reduce of the same bytes after a barrier, so that no rank
      waits for another (the median of 30, after training);
    - waiting for the other ranks: the all-reduce in the step less the wire;
    - compute: the rest of the step (forward, backward, optimizer);
    - outside the steps: the training loop between steps (sampler, batching, the Python around it).
    """

    def __init__(self, ddp: Any) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        self.comm: list[float] = []  # seconds per bucket all-reduce
        self.steps: list[tuple[float, float]] = []  # (step wall, all-reduce in it)
        self._seen = 0

        # No annotations: DDP checks them against dist.GradBucket, and postponed ones are strings.
        def timed_allreduce(state, bucket):
            t0 = time.perf_counter()

            def done(fut: Any) -> Any:
                self.comm.append(time.perf_counter() - t0)
                return fut.value()

            return default_hooks.allreduce_hook(state, bucket).then(done)

        ddp.register_comm_hook(None, timed_allreduce)

    def stepped(self, t0: float, t1: float) -> None:
        comm = sum(self.comm[self._seen :])
        self._seen = len(self.comm)
        self.steps.append((t1 - t0, comm))

    def summary(self, elapsed: float, model: Any, dtype: Any, device: Any) -> dict[str, float]:
        import statistics

        import torch
        import torch.distributed as dist

        n = max(len(self.steps), 1)
        flat = torch.zeros(sum(p.numel() for p in model.parameters()), dtype=dtype, device=device)
        wire = []
        for _ in range(30):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            wire.append(time.perf_counter() - t0)
        step_s = sum(s for s, _ in self.steps) / n
        comm_s = sum(c for _, c in self.steps) / n
        wire_s = min(statistics.median(wire), comm_s)
        ms = 1000.0
        return {
            "step": step_s * ms,
            "compute": (step_s - comm_s) * ms,
            "all_reduce": comm_s * ms,
            "all_reduce_wire": wire_s * ms,
            "waiting": (comm_s - wire_s) * ms,
            "outside_steps": (elapsed / n - step_s) * ms,
            "gradient_bytes": flat.numel() * flat.element_size(),
        }


if __name__ == "__main__":
    sys.exit(main())
