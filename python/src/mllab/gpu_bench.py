"""Lab 1's job: detect CUDA and measure CPU vs GPU on a matmul and a training step.

    python -m mllab.gpu_bench --out result.json [--size 4096] [--repeats 10]

On a machine without a usable GPU it records `gpu: false` and the CPU timings only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _timeit(fn: Any, sync: Any, repeats: int) -> float:
    fn()  # warm-up (kernel selection, allocations)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def bench(device: str, size: int, repeats: int, batch: int) -> dict[str, float]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    t_mm = _timeit(lambda: a @ b, sync, repeats)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(1024, 10),
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 64, 64, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    t_step = _timeit(step, sync, max(2, repeats // 2))
    return {
        "matmul_s": t_mm,
        "matmul_tflops": 2 * size**3 / t_mm / 1e12,
        "train_step_s": t_step,
        "train_images_per_s": batch / t_step,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllab.gpu_bench")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        gpu = torch.cuda.is_available() and torch.cuda.device_count() > 0
    except Exception as exc:
        gpu, info["cuda_error"] = False, str(exc)
    info["gpu"] = gpu
    info["cpu_threads"] = torch.get_num_threads()
    info["size"], info["batch"] = args.size, args.batch
    info["cpu"] = bench("cpu", args.size, args.repeats, args.batch)
    if gpu:
        info["device_name"] = torch.cuda.get_device_name(0)
        info["device_count"] = torch.cuda.device_count()
        info["gpu_bench"] = bench("cuda", args.size, args.repeats * 5, args.batch)
        info["speedup_matmul"] = info["cpu"]["matmul_s"] / info["gpu_bench"]["matmul_s"]
        info["speedup_train_step"] = info["cpu"]["train_step_s"] / info["gpu_bench"]["train_step_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
