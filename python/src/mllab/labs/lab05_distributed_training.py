"""Lab 5: distributed data-parallel training with torchrun.

The same training runs with 1 and with 2 processes (`torchrun --nproc-per-node=N`, gloo on CPU,
nccl on GPUs; an Indexed Job of N pods on the cluster). The distributed parts are the learner's
`ddp.py`: the process group (`init_distributed`), each rank's share of the data
(`train_loop`: DistributedSampler, set_epoch) and the rank-0-only save (`save_result`). With a
fixed global batch split evenly across ranks and gradients averaged by DDP, N processes must reach
the same weights as one, within floating-point tolerance; we also measure the throughput
(samples/s) per process count.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mllab.backends import JobSpec
from mllab.errors import JobFailed
from mllab.labs.base import Check, LabContext

# Two processes sum the gradient halves in a different order than one process: the weights differ
# by rounding only. In float32 that rounding is amplified by SGD+momentum to ~1e-3 over a few epochs;
# the job trains in float64, where the gap stays at rounding level (~1e-16 measured). Stated tolerances:
WEIGHT_RTOL = 1e-6  # ||w_N - w_1|| / ||w_1|| over all parameters together (float64 training)
ACCURACY_TOL = 0.01  # |acc_N - acc_1|

HINTS = [
    "torchrun starts one process per rank and sets RANK, WORLD_SIZE and LOCAL_RANK in each: init_distributed "
    "joins the group with dist.init_process_group(backend=...), the backend chosen from the device "
    "('nccl' when device.type == 'cuda', else 'gloo'), and returns dist.get_rank(), dist.get_world_size().",
    "Keep the global batch fixed: with N ranks each takes global_batch // N samples per step, so the N "
    "per-rank batches of a step together are the 1-process batch, and DDP's averaged gradient is its gradient.",
    "Each rank needs its own share of every epoch: DistributedSampler(dataset, num_replicas=world_size, "
    "rank=rank, shuffle=True, seed=seed) as the DataLoader's sampler= (no shuffle= then), and "
    "sampler.set_epoch(epoch) at the start of every epoch.",
    "Every rank holds the same weights after training: only rank 0 writes model.pt and result.json, then "
    "every rank (rank 0 too) calls dist.barrier(), so that no rank goes on before the files exist.",
    "DDP averages gradients across ranks; a model with dropout or batch norm needs more care to match exactly.",
]

SAMPLER_HINT = (
    "give each rank its own share: DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, "
    "seed=seed) as the DataLoader's sampler="
)


def weight_gap(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """(relative L2 distance, max absolute difference) between two state dicts."""
    import torch

    num = sum(float(torch.sum((a[k].double() - b[k].double()) ** 2)) for k in a)
    den = sum(float(torch.sum(a[k].double() ** 2)) for k in a)
    return (num / den) ** 0.5, max(float((a[k] - b[k]).abs().max()) for k in a)


# --- probe checks: the learner's functions, called in this process against a fake process group ----
class _Group:
    """What the fake torch.distributed of `_fake_dist` records: the process group's calls of one rank."""

    def __init__(self) -> None:
        self.rank, self.world = 0, 1
        self.inits: list[Any] = []  # the backend argument of every init_process_group call
        self.barriers: list[tuple[int, bool]] = []  # (rank, were out_dir's files written?) per barrier call
        self.out_dir: Path | None = None


@contextmanager
def _fake_dist(group: _Group) -> Iterator[None]:
    """torch.distributed (and torchrun's environment) as one rank of `group` sees them, without any
    process: init_process_group records its backend, barrier records who called it and when."""
    import torch
    import torch.distributed as dist

    def init_process_group(*args: Any, **kwargs: Any) -> None:
        group.inits.append(kwargs.get("backend", args[0] if args else None))

    def barrier(*args: Any, **kwargs: Any) -> None:
        out = group.out_dir
        written = out is not None and (out / "model.pt").is_file() and (out / "result.json").is_file()
        group.barriers.append((group.rank, written))

    fakes = {
        "init_process_group": init_process_group,
        "is_initialized": lambda: bool(group.inits),
        "is_available": lambda: True,
        "get_rank": lambda *a, **k: group.rank,
        "get_world_size": lambda *a, **k: group.world,
        "barrier": barrier,
    }
    saved = {name: getattr(dist, name) for name in fakes}
    saved_set_device = torch.cuda.set_device
    env_keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    for name, fake in fakes.items():
        setattr(dist, name, fake)
    torch.cuda.set_device = lambda *a, **k: None  # the probe's CUDA device need not exist here
    os.environ.update(
        RANK=str(group.rank),
        WORLD_SIZE=str(group.world),
        LOCAL_RANK=str(group.rank),
        LOCAL_WORLD_SIZE=str(group.world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT="29500",
    )
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)
        torch.cuda.set_device = saved_set_device
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _backend_for(arg: Any, device_type: str) -> str | None:
    """The backend init_process_group(backend=arg) gives tensors on `device_type`."""
    if arg is None:  # torch's default: one backend per device type
        import torch.distributed as dist

        return dist.Backend.default_device_backend_map.get(device_type)
    text = str(arg).lower()
    if ":" in text:  # "cpu:gloo,cuda:nccl"
        pairs = dict(p.split(":", 1) for p in text.split(",") if ":" in p)
        return pairs.get(device_type)
    return text


def probe_init(code: Any) -> list[Check]:
    """init_distributed, as rank 1 of 2: the backend for a CPU and a CUDA device, and the (rank, world) returned."""
    import torch

    from mllab.exercise import ExerciseError, call

    chosen: dict[str, str | None] = {}
    returned: Any = None
    for device in (torch.device("cpu"), torch.device("cuda", 1)):
        group = _Group()
        group.rank, group.world = 1, 2
        try:
            with _fake_dist(group):
                got = call(code, "init_distributed", device)
        except ExerciseError as exc:
            return [Check("ddp.py: init_distributed runs", False, exc.message, exc.fix)]
        if device.type == "cpu":
            returned = got
        chosen[device.type] = _backend_for(group.inits[-1], device.type) if group.inits else "no init_process_group"
    ok = chosen == {"cpu": "gloo", "cuda": "nccl"}
    checks = [
        Check(
            "init_distributed picks the backend from the device (gloo on CPU, nccl on CUDA)",
            ok,
            f"backend for a CPU device: {chosen['cpu']}, for a CUDA device: {chosen['cuda']}",
            "choose from the device you are given: dist.init_process_group(backend='nccl' if device.type == "
            "'cuda' else 'gloo'); NCCL moves CUDA tensors GPU to GPU, gloo runs on CPUs (not torch.cuda."
            "is_available(): a machine with a GPU may still train on the CPU)",
        )
    ]
    try:
        pair = tuple(int(v) for v in returned)
    except (TypeError, ValueError):
        pair = None
    checks.append(
        Check(
            "init_distributed returns torchrun's rank and world size",
            pair == (1, 2),
            f"with RANK=1 WORLD_SIZE=2 (what torchrun sets for the second of 2 processes) it returned {returned!r}",
            "return (dist.get_rank(), dist.get_world_size()) after init_process_group (torchrun's RANK and "
            "WORLD_SIZE): every rank that returns (0, 1) believes it trains alone",
        )
    )
    return checks


def probe_train_loop(code: Any) -> list[Check]:
    """train_loop on a dataset of numbered samples, as 1 process and as ranks 0 and 1 of 2: which
    samples each rank's steps get, step by step, over two epochs."""
    import torch
    from torch.utils.data import TensorDataset

    from mllab.exercise import ExerciseError, call

    n, global_batch, epochs, seed = 43, 8, 2, 3  # odd: the last global batch is partial
    data = TensorDataset(torch.arange(n, dtype=torch.float64).view(n, 1), torch.arange(n))
    runs: dict[tuple[int, int], list[list[int]]] = {}
    for world, rank in ((1, 0), (2, 0), (2, 1)):
        batches: list[list[int]] = []
        group = _Group()
        group.rank, group.world, group.inits = rank, world, ["gloo"]
        try:
            with _fake_dist(group):
                call(
                    code,
                    "train_loop",
                    data,
                    rank=rank,
                    world_size=world,
                    global_batch=global_batch,
                    epochs=epochs,
                    seed=seed,
                    step=lambda x, y, out=batches: out.append([int(i) for i in y]),
                )
        except ExerciseError as exc:
            return [Check("ddp.py: train_loop runs", False, exc.message, exc.fix)]
        runs[(world, rank)] = batches

    def epoch(batches: list[list[int]], e: int) -> list[list[int]]:
        per = len(batches) // epochs
        return batches[e * per : (e + 1) * per]

    one, r0, r1 = runs[(1, 0)], runs[(2, 0)], runs[(2, 1)]
    s0 = {i for b in epoch(r0, 0) for i in b}
    s1 = {i for b in epoch(r1, 0) for i in b}
    shared = s0 & s1
    checks = [
        Check(
            "each rank trains on its own share of the data",
            bool(s1) and len(shared) <= 1 and len(s1) <= (n + 1) // 2,  # 1: the sampler's padding to even shares
            f"on {n} samples, rank 1 of 2 trained on {len(s1)} distinct samples in epoch 0, "
            f"{len(shared)} of them also rank 0's",
            "without a DistributedSampler every rank trains on the whole dataset: " + SAMPLER_HINT,
        )
    ]
    steps_match = len(r0) == len(r1) == len(one) and all(
        sorted(a + b) == sorted(c) for a, b, c in zip(r0, r1, one, strict=True)
    )
    if steps_match:
        why = f"all {len(one)} steps of {epochs} epochs: rank 0's + rank 1's batch = the 1-process batch"
    elif not (len(r0) == len(r1) == len(one)):
        why = f"steps: {len(one)} with 1 process, {len(r0)} and {len(r1)} on ranks 0 and 1 of 2"
    else:
        k = next(i for i, (a, b, c) in enumerate(zip(r0, r1, one, strict=True)) if sorted(a + b) != sorted(c))
        why = f"step {k}: ranks 0+1 trained on {sorted(r0[k] + r1[k])}, 1 process on {sorted(one[k])}"
    checks.append(
        Check(
            "the ranks' batches of a step together make the 1-process batch",
            steps_match,
            why,
            "the same permutation on every rank (DistributedSampler with the same seed, shuffling only in the "
            "sampler), batch_size=global_batch // world_size, and drop_last=True in the DataLoader (a partial "
            "last batch splits unevenly)",
        )
    )
    repeated = [
        "1 process" if w == 1 else f"rank {r} of {w}" for (w, r), b in runs.items() if b and epoch(b, 0) == epoch(b, 1)
    ]
    checks.append(
        Check(
            "every epoch is shuffled anew (sampler.set_epoch)",
            bool(one) and not repeated,
            ("epoch 1 repeats epoch 0's order: " + ", ".join(repeated))
            if repeated
            else "epochs 0 and 1 have different orders on every rank",
            "call sampler.set_epoch(epoch) at the start of every epoch: a DistributedSampler shuffles with "
            "seed + epoch, and without set_epoch it repeats epoch 0's order",
        )
    )
    return checks


def probe_save(code: Any, scratch: Path) -> list[Check]:
    """save_result as rank 0 and as rank 1 of 2, each in its own empty folder: who writes, who waits."""
    import torch

    from mllab.exercise import ExerciseError, call

    state = {"w": torch.arange(6, dtype=torch.float64).view(2, 3)}
    info = {"world_size": 2, "val_accuracy": 0.5}
    barriers: list[tuple[int, bool]] = []
    written: dict[int, list[str]] = {}
    for rank in (1, 0):
        out = scratch / f"rank{rank}" / "out"
        group = _Group()
        group.rank, group.world, group.inits, group.out_dir = rank, 2, ["gloo"], out
        try:
            with _fake_dist(group):
                call(code, "save_result", out, rank=rank, state_dict=state, info=info)
        except ExerciseError as exc:
            return [Check("ddp.py: save_result runs", False, exc.message, exc.fix)]
        barriers += group.barriers
        root = scratch / f"rank{rank}"
        written[rank] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    out0 = scratch / "rank0" / "out"
    try:
        saved = torch.load(out0 / "model.pt", weights_only=True)
        same_weights = set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in state)
        same_info = json.loads((out0 / "result.json").read_text()) == info
    except Exception as exc:
        same_weights = same_info = False
        written[0].append(f"(unreadable: {type(exc).__name__})")
    checks = [
        Check(
            "rank 0 writes model.pt and result.json",
            same_weights and same_info,
            f"rank 0 wrote {written[0] or 'nothing'}"
            + ("" if same_weights and same_info else " (expected out/model.pt: the state dict, out/result.json: info)"),
            "on rank 0: torch.save(state_dict, out_dir / 'model.pt') and (out_dir / 'result.json').write_text("
            "json.dumps(info)), after out_dir.mkdir(parents=True, exist_ok=True)",
        ),
        Check(
            "rank 1 writes nothing",
            not written[1],
            f"rank 1 of 2 wrote {written[1]}" if written[1] else "rank 1 of 2 wrote no file",
            "every rank holds the same weights: only rank 0 writes (if rank == 0: ...); N ranks writing the same "
            "files race, and on the cluster each pod would write its own copy",
        ),
    ]
    calls = {r: [w for rr, w in barriers if rr == r] for r in (0, 1)}
    ok = bool(calls[0]) and bool(calls[1]) and len(calls[0]) == len(calls[1]) and all(calls[0])
    if not calls[0] or not calls[1]:
        why = f"dist.barrier() called {len(calls[0])} time(s) on rank 0, {len(calls[1])} on rank 1"
    elif len(calls[0]) != len(calls[1]):
        why = f"rank 0 calls dist.barrier() {len(calls[0])} time(s), rank 1 {len(calls[1])}: the ranks would hang"
    elif not all(calls[0]):
        why = "rank 0 reaches dist.barrier() before model.pt and result.json are written"
    else:
        why = "both ranks call dist.barrier(), rank 0 after writing"
    checks.append(
        Check(
            "every rank waits at the barrier after rank 0 has written",
            ok,
            why,
            "after the `if rank == 0:` block, every rank (rank 0 too) calls dist.barrier(): when it returns on "
            "any rank, the files exist",
        )
    )
    return checks


# --- the lab ----------------------------------------------------------------------------------------
def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()
    import torch

    from mllab.exercise import ExerciseError
    from mllab.plots import bars
    from mllab.procs import tail

    epochs = 2 if ctx.quick else 4
    counts = (1, 2)
    # Compare like with like: every run on GPUs (nccl) if each rank of the largest run gets one, else all on CPU.
    device = "cuda" if torch.cuda.is_available() and torch.cuda.device_count() >= max(counts) else "cpu"
    out: dict[str, Any] = {}
    mlflow.set_experiment(ctx.experiment())
    for n in counts:
        d = ctx.rundir / f"nproc-{n}"
        spec = JobSpec(
            name=f"ddp-{n}",
            module="mllab.ddp_train",
            workdir=d,
            backoff_limit=1,
            active_deadline_seconds=900,
            args=[
                "--out-dir",
                str(d),
                "--epochs",
                str(epochs),
                "--global-batch",
                "64",
                "--seed",
                str(ctx.seed),
                "--device",
                device,
            ],
        )
        with ctx.console.status(f"torchrun --nproc-per-node={n}: {epochs} epochs"):
            res = ctx.backend.run_distributed(spec, nproc=n)
        if not res.succeeded:
            errors = [ln for ln in tail(res.log, 200).splitlines() if ln.startswith(("error:", "fix:"))]
            raise JobFailed(
                f"torchrun with {n} process(es) ended {res.status} (exit codes {res.exit_codes})"
                + ("".join(f"\n  {ln}" for ln in dict.fromkeys(errors)) if errors else ""),
                f"read {res.log}",
            )
        missing = [f for f in ("model.pt", "result.json") if not (d / f).is_file()]
        if missing:
            raise ExerciseError(
                f"torchrun with {n} process(es) succeeded but left no {' and no '.join(missing)} in {d}",
                "save_result in ddp.py must write model.pt and result.json into out_dir on rank 0",
            )
        out[str(n)] = json.loads((d / "result.json").read_text())
        ctx.console.print(
            f"  {n} process(es), {out[str(n)]['backend']}: {out[str(n)]['samples_per_s']:.0f} samples/s, "
            f"{out[str(n)]['samples_per_epoch']:.0f} samples per epoch over all ranks, "
            f"val accuracy {out[str(n)]['val_accuracy']:.4f}"
        )
    ref = torch.load(ctx.rundir / "nproc-1" / "model.pt", weights_only=True)
    runs = {}
    for n in counts:
        sd = torch.load(ctx.rundir / f"nproc-{n}" / "model.pt", weights_only=True)
        rel, diff = weight_gap(ref, sd)
        out[str(n)]["max_weight_diff_vs_1"] = diff
        out[str(n)]["rel_weight_diff_vs_1"] = rel
        with mlflow.start_run(run_name=f"ddp-nproc-{n}") as r:
            mlflow.log_params({"nproc": n, "backend": out[str(n)]["backend"], "global_batch": 64, "epochs": epochs})
            mlflow.log_metrics(
                {
                    "samples_per_s": out[str(n)]["samples_per_s"],
                    "val_accuracy": out[str(n)]["val_accuracy"],
                    "max_weight_diff_vs_1": diff,
                }
            )
            runs[str(n)] = r.info.run_id
    png = bars(
        [f"{n} proc" for n in counts],
        [out[str(n)]["samples_per_s"] for n in counts],
        ctx.rundir / "throughput.png",
        "samples/s",
        "DDP throughput per process count",
    )
    rel2, diff2 = out["2"]["rel_weight_diff_vs_1"], out["2"]["max_weight_diff_vs_1"]
    ctx.console.print(
        f"||w(2 procs) - w(1 proc)|| / ||w(1 proc)|| = {rel2:.2e} (tolerance {WEIGHT_RTOL}), "
        f"max |Δw| {diff2:.1e}; plot: {png.name}"
    )
    return {
        "experiment": ctx.experiment(),
        "epochs": epochs,
        "results": out,
        "run_ids": runs,
        "weight_rtol": WEIGHT_RTOL,
        "accuracy_tol": ACCURACY_TOL,
    }


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    import torch

    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's ddp.py, function by function
        code = ctx.learner("ddp", "init_distributed", "train_loop", "save_result")
        checks += probe_init(code)
        checks += probe_train_loop(code)
        with tempfile.TemporaryDirectory() as scratch:
            checks += probe_save(code, Path(scratch))
    paths = {n: ctx.rundir / f"nproc-{n}" / "model.pt" for n in ("1", "2")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        return [*checks, Check("trained weights saved", False, f"missing {missing}", "run the lab: mllab run 5")]
    r1, r2 = result["results"]["1"], result["results"]["2"]
    doubled = r2["samples_per_epoch"] > 1.5 * r1["samples_per_epoch"]
    a, b = (torch.load(paths[n], weights_only=True) for n in ("1", "2"))
    rel, diff = weight_gap(a, b)  # recomputed from the files, not read from the log
    checks.append(
        Check(
            "2 processes reach the weights of 1 process",
            rel <= WEIGHT_RTOL,
            f"relative L2 gap {rel:.2e} (tolerance {WEIGHT_RTOL}), max |Δw| {diff:.1e}",
            (
                "each of the 2 ranks trained on the whole dataset, so 2 processes took twice the steps on half "
                "the batch: " + SAMPLER_HINT
            )
            if doubled
            else "the 2 ranks' batches of a step must together be the 1-process batch: a DistributedSampler with "
            "the same seed on every rank, batch_size=global_batch // world_size, drop_last=True",
        )
    )
    checks.append(
        Check(
            "2 ranks together train on the dataset once per epoch",
            r2["samples_per_epoch"] == r1["samples_per_epoch"],
            f"2 ranks: {r2['samples_per_epoch']:.0f} samples per epoch together, 1 process: "
            f"{r1['samples_per_epoch']:.0f} (of {r1['train_size']})",
            ("every rank trained on the whole dataset: " + SAMPLER_HINT)
            if doubled
            else "each rank takes 1/world_size of every epoch: " + SAMPLER_HINT,
        )
    )
    dacc = abs(r1["val_accuracy"] - r2["val_accuracy"])
    checks.append(
        Check(
            "same validation accuracy",
            dacc <= ACCURACY_TOL,
            f"{r1['val_accuracy']:.4f} vs {r2['val_accuracy']:.4f}",
            HINTS[1],
        )
    )
    reported = [tuple(p) for p in r2["ranks_reported"]]
    want_backend = "nccl" if r2["device"] == "cuda" else "gloo"
    checks.append(
        Check(
            "2 processes really ran as 2 ranks",
            r2["world_size"] == 2
            and reported == [(0, 2), (1, 2)]
            and r2["per_rank_batch"] * 2 == r2["global_batch"]
            and want_backend in r2["backend"],
            f"torchrun's group of {r2['world_size']}, init_distributed returned (rank, world_size) "
            f"{', '.join(map(str, reported))}, per-rank batch {r2['per_rank_batch']} of {r2['global_batch']}, "
            f"backend {r2['backend']} on {r2['device']}",
            "init_distributed must return torchrun's rank and world size (dist.get_rank(), dist.get_world_size()) "
            f"and pick the backend from the device ({want_backend} on {r2['device']}); train_loop then takes "
            "global_batch // world_size per rank",
        )
    )
    mlflow = ctx.mlflow()
    client = mlflow.MlflowClient()
    got = {n: client.get_run(rid).data.metrics.get("samples_per_s") for n, rid in result["run_ids"].items()}
    checks.append(
        Check(
            "throughput per process count in MLflow",
            all(v and v > 0 for v in got.values()),
            ", ".join(f"{n} proc: {v:.0f} samples/s" for n, v in got.items() if v),
            "log samples_per_s for each process count",
        )
    )
    return checks
