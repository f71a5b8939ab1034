"""The labs' data: scikit-learn's 8x8 digits (shipped with scikit-learn), and a controlled shift of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FEATURES = 64  # 8x8 pixels, values 0..16
SPLIT_SEED = 0  # the train/test split never depends on the training seed


@dataclass
class Split:
    X_train: np.ndarray  # (n, 64) float32 in [0, 16]
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_size: float = 0.25) -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X.astype(np.float32), y.astype(np.int64), test_size=test_size, random_state=SPLIT_SEED, stratify=y
    )
    return Split(X_tr, y_tr, X_te, y_te)


def shift(X: np.ndarray, seed: int = 0, strength: float = 1.0) -> np.ndarray:
    """A new scanner: a grey background (+6.5 levels on every pixel), half the contrast, noise.

    `strength` 0 returns X unchanged; 1 is the shift lab 7 uses. Values stay in [0, 16].
    """
    rng = np.random.default_rng(seed)
    out = X * (1 - 0.55 * strength) + 6.5 * strength + rng.normal(0, 2.2 * strength, X.shape)
    return np.clip(out, 0, 16).astype(np.float32)


def to_images(X: np.ndarray) -> np.ndarray:
    """(n, 64) pixels 0..16 -> (n, 1, 8, 8) floats 0..1, the CNN's input."""
    return (np.asarray(X, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
