"""Backends run a lab's heavy parts: the tracking server, jobs, distributed jobs, model servers.

A lab only uses the `Backend` interface; `local` runs real processes on this machine, `k8s`
runs the same work as Jobs on the cluster (mllab.backends.k8s).
"""

from __future__ import annotations

from mllab import INSTALL_K8S
from mllab.backends.base import Backend, Endpoint, JobResult, JobSpec, ServeSpec
from mllab.errors import BackendUnavailable, UsageError

BACKENDS = ("local", "k8s")

__all__ = ["BACKENDS", "Backend", "Endpoint", "JobResult", "JobSpec", "ServeSpec", "get_backend"]


def get_backend(name: str) -> Backend:
    if name == "local":
        from mllab.backends.local import LocalBackend

        return LocalBackend()
    if name == "k8s":
        try:
            from mllab.backends.k8s import K8sBackend
        except ImportError as exc:
            raise BackendUnavailable(f"the k8s backend needs the kubernetes client ({exc})", INSTALL_K8S) from None
        return K8sBackend()
    raise UsageError(f"unknown backend {name!r}", f"choose one of: {', '.join(BACKENDS)}")
