"""Lab 5's distributed job, started by torchrun (one process per rank)::

    torchrun --standalone --nproc-per-node=2 -m mllab.ddp_train --out-dir DIR --epochs 4 --global-batch 64

Training runs in float64 by default, so that what is left of the difference is visibly rounding.
Every rank sees the same shuffled order (same seed) and takes its own contiguous slice of each
global batch; DDP averages the gradients, so N processes compute the same update as one process on
the whole global batch, up to floating-point summation order. gloo on CPU, nccl when every rank has a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


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
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA (nccl) when every rank gets a GPU, else CPU (gloo)",
    )
    args = p.parse_args(argv)

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from mllab.model import DigitsCNN
    from mllab.training import TrainConfig, dataset

    rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if args.global_batch % world:
        print(f"error: --global-batch {args.global_batch} is not divisible by {world} processes", file=sys.stderr)
        return 2
    enough_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= world
    if args.device == "cuda" and not enough_gpus:
        print(f"error: --device cuda needs {world} GPUs, {torch.cuda.device_count()} visible", file=sys.stderr)
        return 2
    use_cuda = enough_gpus and args.device != "cpu"
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend)
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    X_tr, y_tr, X_te, y_te = dataset(TrainConfig())
    dtype = getattr(torch, args.dtype)
    Xt, yt = torch.from_numpy(X_tr).to(device, dtype), torch.from_numpy(y_tr).to(device)
    model = DigitsCNN().to(device, dtype)  # same seed on every rank, and DDP broadcasts rank 0's weights anyway
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    B, b = args.global_batch, args.global_batch // world
    n_batches = len(Xt) // B  # drop the last partial global batch: every rank gets the same share
    samples = 0
    dist.barrier()
    start = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(args.seed + epoch)).to(device)
        ddp.train()
        for k in range(n_batches):
            idx = perm[k * B + rank * b : k * B + (rank + 1) * b]
            opt.zero_grad()
            F.cross_entropy(ddp(Xt[idx]), yt[idx]).backward()  # DDP all-reduces (averages) the gradients
            opt.step()
            samples += len(idx)
    if use_cuda:
        torch.cuda.synchronize()
    dist.barrier()
    elapsed = time.perf_counter() - start
    total = torch.tensor([float(samples)], device=device)
    dist.all_reduce(total)
    if rank == 0:
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(X_te).to(device, dtype)).cpu()
        yv = torch.from_numpy(y_te)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, args.out_dir / "model.pt")
        info = {
            "world_size": world,
            "backend": backend,
            "device": str(device),
            "epochs": args.epochs,
            "global_batch": B,
            "per_rank_batch": b,
            "train_s": elapsed,
            "samples_per_s": float(total.item()) / elapsed,
            "val_loss": float(F.cross_entropy(logits, yv)),
            "val_accuracy": float((logits.argmax(1) == yv).float().mean()),
        }
        (args.out_dir / "result.json").write_text(json.dumps(info, indent=2))
        print(json.dumps(info), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
