"""mllab: guided, self-checking ML-on-Kubernetes labs.

Importing this package is cheap on purpose: torch, mlflow, kserve and scikit-learn are imported
inside the functions that need them, so `mllab --help` and `mllab list` start fast.
"""

__version__ = "0.1.0"  # the one place of the version (pyproject.toml reads it)
