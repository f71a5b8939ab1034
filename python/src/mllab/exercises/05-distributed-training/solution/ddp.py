"""Lab 5: the three things that make one training script a distributed one.

torchrun starts one process per rank (`python -m torch.distributed.run --nproc-per-node=N -m
mllab.ddp_train`, or one pod per rank of an Indexed Job on the cluster); each of them runs
`mllab.ddp_train`, which calls these three functions. With N ranks the job must reach the weights
of the 1-process run (within floating-point rounding), while each rank trains on 1/N of the data.
"""

import json

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


def init_distributed(device):
    """Join the process group torchrun started this process in; return (rank, world_size).

    `device` is where this rank trains (torch.device("cpu"), or torch.device("cuda", LOCAL_RANK),
    already made the current CUDA device): the backend must suit it.
    """
    backend = "nccl" if device.type == "cuda" else "gloo"  # NCCL talks GPU to GPU; gloo runs on CPUs
    dist.init_process_group(backend=backend)  # init_method env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    return dist.get_rank(), dist.get_world_size()  # torchrun's RANK and WORLD_SIZE


def train_loop(dataset, *, rank, world_size, global_batch, epochs, seed, step):
    """Train `epochs` epochs over `dataset` on this rank: `step(x, y)` does one optimizer step of the
    DDP model on a batch (DDP averages the gradients over the ranks inside it)."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    loader = DataLoader(
        dataset,
        batch_size=global_batch // world_size,  # the N per-rank batches of a step make up the global batch
        sampler=sampler,  # this rank's share: every world_size-th sample of one permutation shared by all ranks
        drop_last=True,  # a last, partial global batch would split unevenly across the ranks
    )
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a new permutation each epoch (seed + epoch), the same on every rank
        for x, y in loader:
            step(x, y)


def save_result(out_dir, *, rank, state_dict, info):
    """Write the trained weights (model.pt) and the run's result (result.json) into `out_dir`, once."""
    if rank == 0:  # every rank holds the same weights: one writer, no race on the same files
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state_dict, out_dir / "model.pt")
        (out_dir / "result.json").write_text(json.dumps(info, indent=2))
    dist.barrier()  # no rank goes on (reads the files, ends its pod) before rank 0 has written them
