"""Lab 5: distributed data-parallel training with torchrun.

The same training runs with 1 and with 2 processes (`torchrun --nproc-per-node=N`, gloo on CPU,
nccl on GPUs). With a fixed global batch split evenly across ranks and gradients averaged by DDP,
N processes must reach the same weights as one, within floating-point tolerance; we also measure
the throughput (samples/s) per process count.
"""

from __future__ import annotations

import json
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
    "Keep the global batch fixed: with N processes each rank takes global_batch / N samples per step.",
    "Every rank must see the same shuffled order (same seed per epoch) and take its own slice of each batch.",
    "DDP averages gradients across ranks; a model with dropout or batch norm needs more care to match exactly.",
    "torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; init_process_group('gloo') on CPU, 'nccl' on GPUs.",
]


def weight_gap(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """(relative L2 distance, max absolute difference) between two state dicts."""
    import torch

    num = sum(float(torch.sum((a[k].double() - b[k].double()) ** 2)) for k in a)
    den = sum(float(torch.sum(a[k].double() ** 2)) for k in a)
    return (num / den) ** 0.5, max(float((a[k] - b[k]).abs().max()) for k in a)


def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()
    import torch

    from mllab.plots import bars

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
            raise JobFailed(
                f"torchrun with {n} process(es) ended {res.status} (exit codes {res.exit_codes})", f"read {res.log}"
            )
        out[str(n)] = json.loads((d / "result.json").read_text())
        ctx.console.print(
            f"  {n} process(es), {out[str(n)]['backend']}: {out[str(n)]['samples_per_s']:.0f} samples/s, "
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
    paths = {n: ctx.rundir / f"nproc-{n}" / "model.pt" for n in ("1", "2")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        return [Check("trained weights saved", False, f"missing {missing}", "run the lab: mllab run 5")]
    a, b = (torch.load(paths[n], weights_only=True) for n in ("1", "2"))
    rel, diff = weight_gap(a, b)  # recomputed from the files, not read from the log
    checks.append(
        Check(
            "2 processes reach the weights of 1 process",
            rel <= WEIGHT_RTOL,
            f"relative L2 gap {rel:.2e} (tolerance {WEIGHT_RTOL}), max |Δw| {diff:.1e}",
            HINTS[1],
        )
    )
    r1, r2 = result["results"]["1"], result["results"]["2"]
    dacc = abs(r1["val_accuracy"] - r2["val_accuracy"])
    checks.append(
        Check(
            "same validation accuracy",
            dacc <= ACCURACY_TOL,
            f"{r1['val_accuracy']:.4f} vs {r2['val_accuracy']:.4f}",
            HINTS[0],
        )
    )
    checks.append(
        Check(
            "2 processes really ran as 2 ranks",
            r2["world_size"] == 2 and r2["per_rank_batch"] * 2 == r2["global_batch"],
            f"world_size {r2['world_size']}, per-rank batch {r2['per_rank_batch']}",
            HINTS[3],
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
