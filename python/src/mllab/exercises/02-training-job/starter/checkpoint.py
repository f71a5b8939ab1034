"""Lab 2: the training job's checkpoint, saved every few epochs and restored by a retry.

The job (`python -m mllab.training`) calls these two functions. A retried pod resumes from the
newest checkpoint, and must end with bitwise the same weights as a run that never crashed.
As given, this file runs, but a resumed job does not continue where it stopped: complete the
TODOs, then `mllab run 2` and `mllab check 2`.
"""

import os  # noqa: F401  (you will need it)
import random  # noqa: F401

import numpy as np  # noqa: F401
import torch


def save_checkpoint(path, *, epoch, model, optimizer, shuffler, history):
    """Write everything a retry needs to go on exactly where this run stopped."""
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "history": history,
        # TODO: the optimizer's state (SGD keeps momentum buffers): optimizer.state_dict()
        # TODO: every RNG state: the batch shuffler (shuffler.get_state()), torch.get_rng_state(),
        #       np.random.get_state() and random.getstate()
    }
    # TODO: write atomically: torch.save to a temporary file next to `path`, then os.replace() it
    #       onto `path`, so that a crash while saving never leaves a truncated checkpoint behind
    torch.save(state, path)


def load_checkpoint(path, *, model, optimizer, shuffler):
    """Restore what save_checkpoint wrote into `model`, `optimizer` and the RNGs; return (epoch, history)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    # TODO: restore the optimizer's state and every RNG state you saved (shuffler.set_state(...),
    #       torch.set_rng_state(...), np.random.set_state(...), random.setstate(...))
    return state["epoch"], state["history"]
