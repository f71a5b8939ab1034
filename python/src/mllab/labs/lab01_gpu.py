"""Lab 1: is there a GPU, and what does it buy us?

A job asks PyTorch for CUDA, then times the same work on the CPU and on the GPU: a large matrix
multiplication and a CNN training step. On a CPU-only machine the lab records the CPU numbers and
passes as "skipped: no GPU" (on the cluster, the job requests `nvidia.com/gpu: 1`).
"""

from __future__ import annotations

import json
from typing import Any

from mllab.backends import JobSpec
from mllab.errors import JobFailed
from mllab.labs.base import Check, LabContext

HINTS = [
    "torch.cuda.is_available() is False when the driver, the CUDA runtime or the device plugin is missing: "
    "run `nvidia-smi` on the node and `mllab doctor`.",
    "GPU work is asynchronous: call torch.cuda.synchronize() before reading the clock, or you time the launch only.",
    "Warm up once before timing: the first CUDA call pays for context creation and kernel selection.",
    "On Kubernetes the pod must request the GPU: resources.limits['nvidia.com/gpu'] = 1.",
]


def run(ctx: LabContext) -> dict[str, Any]:
    size, repeats, batch = (1024, 3, 32) if ctx.quick else (2048, 6, 64)
    spec = JobSpec(
        name="gpu-bench",
        module="mllab.gpu_bench",
        gpus=1,
        active_deadline_seconds=600,
        args=[
            "--out",
            str(ctx.rundir / "bench.json"),
            "--size",
            str(size),
            "--repeats",
            str(repeats),
            "--batch",
            str(batch),
        ],
        workdir=ctx.rundir,
    )
    with ctx.console.status("benchmarking the CPU (and the GPU, if CUDA sees one)"):
        res = ctx.backend.run_job(spec)
    if not res.succeeded:
        raise JobFailed(f"the benchmark job ended {res.status} (exit codes {res.exit_codes})", f"read {res.log}")
    info = json.loads((ctx.rundir / "bench.json").read_text())
    cpu = info["cpu"]
    ctx.console.print(
        f"CPU ({info['cpu_threads']} threads): matmul {size}x{size} {cpu['matmul_tflops']:.3f} TFLOP/s, "
        f"train step {cpu['train_images_per_s']:.0f} images/s"
    )
    if info["gpu"]:
        g = info["gpu_bench"]
        ctx.console.print(
            f"GPU {info['device_name']}: matmul {g['matmul_tflops']:.2f} TFLOP/s "
            f"([bold]{info['speedup_matmul']:.1f}x[/] the CPU), train step "
            f"{g['train_images_per_s']:.0f} images/s ([bold]{info['speedup_train_step']:.1f}x[/])"
        )
        from mllab.plots import bars

        bars(
            ["matmul", "train step"],
            [info["speedup_matmul"], info["speedup_train_step"]],
            ctx.rundir / "speedup.png",
            "GPU speed-up (x)",
            info["device_name"],
        )
    else:
        ctx.console.print("[yellow]skipped: no GPU[/] (torch.cuda.is_available() is False); CPU numbers recorded")
    return info


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    import torch

    checks = [
        Check(
            "CPU benchmark measured",
            result["cpu"]["matmul_s"] > 0 and result["cpu"]["train_step_s"] > 0,
            f"matmul {result['cpu']['matmul_s'] * 1e3:.1f} ms, train step {result['cpu']['train_step_s'] * 1e3:.1f} ms",
            "run the lab: mllab run 1",
        )
    ]
    now = torch.cuda.is_available()
    if not result["gpu"]:
        consistent = not now
        checks.append(
            Check(
                "GPU speed-up",
                consistent,
                "skipped: no GPU" if consistent else "a GPU is visible now but the run saw none",
                "" if consistent else "re-run the lab where the GPU is visible: mllab run 1",
                skipped=consistent,
            )
        )
        return checks
    sm, st = result["speedup_matmul"], result["speedup_train_step"]
    checks.append(
        Check(
            "GPU detected",
            bool(result.get("device_name")),
            f"{result.get('device_name')} (x{result.get('device_count')})",
            HINTS[0],
        )
    )
    checks.append(Check("GPU matmul faster than CPU", sm > 1.0, f"speed-up {sm:.1f}x", HINTS[1]))
    checks.append(Check("GPU training step faster than CPU", st > 1.0, f"speed-up {st:.1f}x", HINTS[2]))
    return checks
