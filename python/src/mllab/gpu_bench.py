"""Lab 1's job: detect CUDA and measure CPU vs GPU on a matmul and a training step.

    python -m mllab.gpu_bench --out result.json [--size 4096] [--repeats 10]

The device comes from the learner's `device.py` (lab 1's exercise, at $MLLAB_EXERCISE; lab 1's
reference solution elsewhere): `pick_device()` chooses it, `to_device()` moves the work there.
The CPU baseline always runs on the CPU; the GPU benchmark runs when `pick_device()` picks cuda.
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


def device_code() -> Any:
    """The module whose pick_device/to_device the job uses: the learner's device.py (lab 1's
    exercise, at $MLLAB_EXERCISE), else lab 1's reference solution."""
    from mllab.exercise import from_env

    return from_env("device", required=("pick_device", "to_device"), default_lab=1)


def _devices(*things: Any) -> list[str]:
    """The device types the model's parameters and the tensors are on."""
    import torch

    found = set()
    for t in things:
        if isinstance(t, torch.nn.Module):
            found |= {p.device.type for p in t.parameters()}
        elif isinstance(t, torch.Tensor):
            found.add(t.device.type)
    return sorted(found)


def bench(device: Any, size: int, repeats: int, batch: int, code: Any = None) -> dict[str, Any]:
    """Time a matmul and a training step on `device`; the work is moved there by `code.to_device`
    (the learner's device.py), and where it really was is recorded (`work_device`)."""
    import torch
    from torch import nn

    from mllab.exercise import ExerciseError, call

    code = code or device_code()
    device = torch.device(device)
    torch.manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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
    )
    work = (
        torch.randn(size, size),
        torch.randn(size, size),
        torch.randn(batch, 3, 64, 64),
        torch.randint(0, 10, (batch,)),
    )
    moved = call(code, "to_device", device, model, *work)
    if not isinstance(moved, (tuple, list)) or len(moved) != 1 + len(work):
        raise ExerciseError(
            f"device.py: to_device() returned {type(moved).__name__} {_short(moved)} "
            f"for a model and {len(work)} tensors",
            "return (model, *tensors): the model first, then every tensor in the order given",
        )
    model, a, b, x, y = moved
    where = _devices(model, a, b, x, y)
    if len(where) > 1:  # a GPU model fed CPU tensors fails in the first step, with a less clear error
        raise ExerciseError(
            f"device.py: after to_device({str(device)!r}, ...) the work is spread over {', '.join(where)}: "
            f"the model on {', '.join(_devices(model))}, the tensors on {', '.join(_devices(a, b, x, y))}",
            "move the model and every tensor to the device given: (model.to(device), *(t.to(device) for t in tensors))",
        )
    t_mm = _timeit(lambda: a @ b, sync, repeats)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    t_step = _timeit(step, sync, max(2, repeats // 2))
    return {
        "device": str(device),
        "work_device": where,
        "matmul_s": t_mm,
        "matmul_tflops": 2 * size**3 / t_mm / 1e12,
        "train_step_s": t_step,
        "train_images_per_s": batch / t_step,
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllab.gpu_bench")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    from mllab.exercise import ExerciseError

    try:
        info = measure(args.size, args.repeats, args.batch)
    except ExerciseError as exc:  # the learner's device.py: say what and where, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return 0


def measure(size: int, repeats: int, batch: int) -> dict[str, Any]:
    """What the job records: what CUDA reports, the device device.py picks, the CPU baseline and,
    when the pick is cuda, the GPU benchmark and the speed-ups."""
    import torch

    from mllab.exercise import ExerciseError, call

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        gpu = torch.cuda.is_available() and torch.cuda.device_count() > 0
    except Exception as exc:
        gpu, info["cuda_error"] = False, str(exc)
    info["gpu"] = gpu  # what CUDA reports in this process (the pod)
    code = device_code()
    picked = call(code, "pick_device")
    try:
        picked = torch.device(picked)
    except (TypeError, RuntimeError) as exc:
        raise ExerciseError(
            f"device.py: pick_device() returned {_short(picked)}, not a device ({exc})",
            'return torch.device("cuda") or torch.device("cpu")',
        ) from None
    info["picked_device"] = picked.type
    print(
        f"device.py picked {picked}"
        + (f" ({torch.cuda.get_device_name(0)})" if gpu and picked.type == "cuda" else "")
        + f"; CUDA available: {gpu}",
        file=sys.stderr,
        flush=True,
    )
    info["cpu_threads"] = torch.get_num_threads()
    info["size"], info["batch"] = size, batch
    info["cpu"] = bench("cpu", size, repeats, batch, code)
    if gpu:
        info["device_name"] = torch.cuda.get_device_name(0)
        info["device_count"] = torch.cuda.device_count()
    if gpu and picked.type == "cuda":
        info["gpu_bench"] = bench(picked, size, repeats * 5, batch, code)
        info["speedup_matmul"] = info["cpu"]["matmul_s"] / info["gpu_bench"]["matmul_s"]
        info["speedup_train_step"] = info["cpu"]["train_step_s"] / info["gpu_bench"]["train_step_s"]
    return info


if __name__ == "__main__":
    sys.exit(main())
