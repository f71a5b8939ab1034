"""A plausible wrong lab 2 solution: model and optimizer are saved, atomically, but no RNG state,
so the retry shuffles its batches differently from the run that never crashed."""

import os

import torch


def save_checkpoint(path, *, epoch, model, optimizer, shuffler, history):
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history}
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, *, model, optimizer, shuffler):
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"], state["history"]
