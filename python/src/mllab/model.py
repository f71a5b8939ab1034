"""The digits CNN shared by labs 2, 5, 6, 7 and 8 (no dropout, no batch norm: DDP-exact)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def weights_sha256(model: nn.Module) -> str:
    """A fingerprint of the exact weights (bitwise): equal hashes mean identical models."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def predict_proba(model: nn.Module, images: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        logits = model(torch.from_numpy(np.ascontiguousarray(images[i : i + batch])))
        out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 10), dtype=np.float32)


def save_model_dir(model: DigitsCNN, path, reference: np.ndarray | None = None, **meta) -> None:
    """A model directory: model.pt (state dict) + meta.json (+ reference.npy: training inputs, for drift).

    What the KServe server and the labs load."""
    import json
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "model.pt")
    if reference is not None:
        np.save(path / "reference.npy", np.asarray(reference, dtype=np.float32))
    width = model.features[0].out_channels
    info = {"format": "mllab-digits-cnn/1", "width": width, "weights_sha256": weights_sha256(model), **meta}
    (path / "meta.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")


def load_model_dir(path) -> tuple[DigitsCNN, dict]:
    import json
    from pathlib import Path

    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    model = DigitsCNN(width=int(meta.get("width", 16)))
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, meta
