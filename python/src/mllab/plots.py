"""PNG plots learners look at: learning curves, confusion matrices, drift histograms, throughput."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: Sequence[dict], path: Path, title: str = "learning curve") -> Path:
    """Loss and accuracy per epoch. With validation metrics (val_loss, val_accuracy) both curves are
    the held-out ones; a history with only train_loss and train_accuracy (lab 8's train step) plots
    those, labelled as not held out."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    held_out = bool(history) and "val_accuracy" in history[0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    if held_out:
        ax1.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
        ax1.legend()
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    key, label = (
        ("val_accuracy", "validation accuracy") if held_out else ("train_accuracy", "training accuracy (not held out)")
    )
    ax2.plot(epochs, [h[key] for h in history], marker="o", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(label)
    ax2.set_ylim(0, 1.02)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "confusion matrix") -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, ax=ax, colorbar=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def drift_histograms(
    ref: np.ndarray, cur: np.ndarray, features: Sequence[int], psi: Sequence[float], path: Path
) -> Path:
    plt = _plt()
    n = len(features)
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3), squeeze=False)
    bins = np.linspace(0, 16, 17)
    for ax, f, p in zip(axes[0], features, psi, strict=True):
        ax.hist(ref[:, f], bins=bins, alpha=0.5, density=True, label="reference")
        ax.hist(cur[:, f], bins=bins, alpha=0.5, density=True, label="live")
        ax.set_title(f"pixel {f}: PSI {p:.2f}")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def bars(labels: Sequence[str], values: Sequence[float], path: Path, ylabel: str, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(labels, values)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
