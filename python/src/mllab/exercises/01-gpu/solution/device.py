"""Lab 1: pick the device the work runs on, and move the work there.

The benchmark job (`python -m mllab.gpu_bench`, in the pod job.yaml describes) calls these two
functions: `pick_device()` once, then `to_device(device, model, *tensors)` before it times the
work. `python device.py` prints what it picks where you run it.
"""

import torch


def pick_device():
    """torch.device("cuda") when PyTorch sees a usable GPU, else torch.device("cpu")."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def to_device(device, model, *tensors):
    """The model and the tensors on `device`: returns (model, *tensors), in the order given."""
    return (model.to(device), *(t.to(device) for t in tensors))


if __name__ == "__main__":
    device = pick_device()
    print(f"picked {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
