"""Lab 1: pick the device the work runs on, and move the work there.

The benchmark job (`python -m mllab.gpu_bench`, in the pod job.yaml describes) calls these two
functions: `pick_device()` once, then `to_device(device, model, *tensors)` before it times the
work. `python device.py` prints what it picks where you run it.
As given, this file runs, but everything stays on the CPU, even in a pod with a GPU: complete the
TODOs (and those in job.yaml), then `mllab run 1` and `mllab check 1`.
"""

import torch


def pick_device():
    """torch.device("cuda") when PyTorch sees a usable GPU, else torch.device("cpu")."""
    # TODO: return torch.device("cuda") when torch.cuda.is_available(), else torch.device("cpu"):
    #       decided at run time, since the same file runs on your laptop and in the GPU pod.
    return torch.device("cpu")


def to_device(device, model, *tensors):
    """The model and the tensors on `device`: returns (model, *tensors), in the order given."""
    # TODO: move the model and every tensor to `device` (model.to(device), t.to(device)), not to "cpu".
    #       Work left on the CPU next to a model on the GPU fails: "Expected all tensors to be on the same device".
    return (model.to("cpu"), *(t.to("cpu") for t in tensors))


if __name__ == "__main__":
    device = pick_device()
    print(f"picked {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
