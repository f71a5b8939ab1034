"""Backends run a lab's heavy parts: the tracking server, jobs, distributed jobs, model servers.

A lab only uses the `Backend` interface; `local` runs real processes on this machine, `k8s`
(Jobs, PyTorchJobs, InferenceServices on the cluster) comes with the cluster-backend issue.
"""

from __future__ import annotations

from mllab.backends.base import Backend, Endpoint, JobResult, JobSpec, ServeSpec
from mllab.errors import BackendUnavailable, UsageError

BACKENDS = ("local", "k8s")

__all__ = ["BACKENDS", "Backend", "Endpoint", "JobResult", "JobSpec", "ServeSpec", "get_backend"]


def get_backend(name: str) -> Backend:
    if name == "local":
        from mllab.backends.local import LocalBackend

        return LocalBackend()
    if name == "k8s":
        raise BackendUnavailable(
            "the k8s backend is not available yet: running labs as Kubernetes Jobs, PyTorchJobs and "
            "InferenceServices is the scope of the cluster-backend issue",
            "use `--backend local` (the default) meanwhile; it runs the same labs with local processes",
        )
    raise UsageError(f"unknown backend {name!r}", f"choose one of: {', '.join(BACKENDS)}")
