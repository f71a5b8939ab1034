"""mllab: guided, self-checking ML-on-Kubernetes labs.

Importing this package is cheap on purpose: torch, mlflow, kserve and scikit-learn are imported
inside the functions that need them, so `mllab --help` and `mllab list` start fast.
"""

__version__ = "0.1.0"  # the one place of the version (pyproject.toml reads it)

# How to install what a command lacks, from the kit's checkout: always with the exact pins
# (requirements/constraints.txt), as make venv, the lab image and JupyterLab's hook install it.
INSTALL_LABS = "pip install -c requirements/constraints.txt -e 'python[labs]'"
INSTALL_K8S = "pip install -c requirements/constraints.txt -e 'python[k8s]'"
