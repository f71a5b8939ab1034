"""Lab 5: the three things that make one training script a distributed one.

torchrun starts one process per rank (`python -m torch.distributed.run --nproc-per-node=N -m
mllab.ddp_train`, or one pod per rank of an Indexed Job on the cluster); each of them runs
`mllab.ddp_train`, which calls these three functions. With N ranks the job must reach the weights
of the 1-process run (within floating-point rounding), while each rank trains on 1/N of the data.

As given, this file runs, but every rank believes it is alone: it trains on the whole dataset
and writes the files itself. Complete the TODOs, then `mllab run 5` and `mllab check 5`.
"""

import json

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler  # noqa: F401  (you will need DistributedSampler)


def init_distributed(device):
    """Join the process group torchrun started this process in; return (rank, world_size).

    `device` is where this rank trains (torch.device("cpu"), or torch.device("cuda", LOCAL_RANK),
    already made the current CUDA device): the backend must suit it.
    """
    # TODO: choose the backend from `device`: "nccl" when device.type == "cuda" (GPU to GPU), else "gloo"
    dist.init_process_group(backend="gloo")  # init_method env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    # TODO: return this process's rank and the number of ranks, as torchrun set them (RANK and WORLD_SIZE
    #       in the environment; after init_process_group, dist.get_rank() and dist.get_world_size())
    return 0, 1


def train_loop(dataset, *, rank, world_size, global_batch, epochs, seed, step):
    """Train `epochs` epochs over `dataset` on this rank: `step(x, y)` does one optimizer step of the
    DDP model on a batch (DDP averages the gradients over the ranks inside it)."""
    # TODO: give each rank its own share of every epoch: a DistributedSampler(dataset, num_replicas=world_size,
    #       rank=rank, shuffle=True, seed=seed), passed to the DataLoader as sampler= (instead of shuffle= and
    #       generator=: the sampler shuffles, with one permutation shared by all ranks)
    loader = DataLoader(
        dataset,
        batch_size=global_batch // world_size,  # the N per-rank batches of a step make up the global batch
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,  # a last, partial global batch would split unevenly across the ranks
    )
    for epoch in range(epochs):  # noqa: B007  (you will use it)
        # TODO: sampler.set_epoch(epoch) first: without it the sampler repeats epoch 0's order every epoch
        for x, y in loader:
            step(x, y)


def save_result(out_dir, *, rank, state_dict, info):
    """Write the trained weights (model.pt) and the run's result (result.json) into `out_dir`, once."""
    # TODO: only rank 0 writes (every rank holds the same weights; N writers of the same files race)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, out_dir / "model.pt")
    (out_dir / "result.json").write_text(json.dumps(info, indent=2))
    # TODO: then every rank, rank 0 included, waits at dist.barrier(): no rank goes on (reads the files,
    #       ends its pod) before rank 0 has written them
