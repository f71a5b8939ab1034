"""Lab 2: the training job's checkpoint, saved every few epochs and restored by a retry.

The job (`python -m mllab.training`) calls these two functions. A retried pod resumes from the
newest checkpoint, and must end with bitwise the same weights as a run that never crashed.
"""

import os
import random

import numpy as np
import torch


def save_checkpoint(path, *, epoch, model, optimizer, shuffler, history):
    """Write everything a retry needs to go on exactly where this run stopped."""
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),  # SGD's momentum buffers
        "history": history,
        "rng": {
            "shuffle": shuffler.get_state(),  # the generator that shuffles the batches
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash while saving never leaves a truncated checkpoint at `path`


def load_checkpoint(path, *, model, optimizer, shuffler):
    """Restore what save_checkpoint wrote into `model`, `optimizer` and the RNGs; return (epoch, history)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    shuffler.set_state(state["rng"]["shuffle"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["epoch"], state["history"]
