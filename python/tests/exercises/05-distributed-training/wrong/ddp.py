"""A plausible wrong lab 5 solution: DDP without the distributed sampler. The process group and
the rank-0-only save are right, but every rank shuffles and trains on the whole dataset (same
seeded order on every rank), so 2 ranks take twice the steps of half the size: the weights differ
from the 1-process run."""

import json

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader


def init_distributed(device):
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def train_loop(dataset, *, rank, world_size, global_batch, epochs, seed, step):
    loader = DataLoader(
        dataset,
        batch_size=global_batch // world_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
    )
    for _ in range(epochs):
        for x, y in loader:
            step(x, y)


def save_result(out_dir, *, rank, state_dict, info):
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state_dict, out_dir / "model.pt")
        (out_dir / "result.json").write_text(json.dumps(info, indent=2))
    dist.barrier()
