"""GPU layer (roles/gpu): on nodes with an NVIDIA GPU, the device plugin advertises
nvidia.com/gpu and the smoke Job succeeded; on nodes without one, nothing was installed.
Runs in molecule (no-GPU path) and in `make verify` against real hosts; the GPU checks
need a real GPU and the controller's kubeconfig (artifacts/kubeconfig)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))

import mllab_gpu as mg  # noqa: E402
from knobs import knob  # noqa: E402


@pytest.fixture(autouse=True)
def _gpu_layer(require_layer):
    require_layer("gpu")


def gpus(host) -> list[dict]:
    assert host.package("pciutils").is_installed, "the gpu role installs pciutils for lspci"
    return mg.mllab_gpu_lspci(host.check_output("lspci -nn"))


@pytest.fixture
def gpu_host(host):
    if not gpus(host):
        pytest.skip("no NVIDIA GPU on this host (lspci -nn lists no 10de display/3D controller)")
    return host


@pytest.fixture
def kube(gpu_host):
    """Kubernetes client on the controller's kubeconfig (only for GPU hosts: after gpu_host's skip)."""
    path = os.environ.get("MLLAB_KUBECONFIG") or str(
        Path(os.environ.get("MLLAB_ARTIFACTS_DIR") or ROOT / "artifacts") / "kubeconfig"
    )
    assert Path(path).exists(), f"the gpu layer is deployed but the controller has no kubeconfig at {path}"
    from kubernetes import client, config

    config.load_kube_config(config_file=path)
    return client


def test_detection_matches_lspci(host):
    """The layer ran; on a node without GPU it installed no driver, even for gpu_driver: host."""
    if gpus(host):
        return
    distro = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(host.system_info.distribution, "")
    packages = (knob(host, "gpu_driver_packages") or {}).get(distro, [])
    installed = [p for p in packages if "{{" not in p and host.package(p).is_installed]
    assert installed == [], f"driver packages installed on a node without GPU: {installed}"
    assert not host.file("/usr/bin/nvidia-smi").exists


def test_driver_answers(gpu_host):
    if knob(gpu_host, "gpu_driver") == "operator":
        pytest.skip("gpu_driver: operator runs the driver in a container, not on the host")
    with gpu_host.sudo():
        listed = mg.mllab_gpu_smi_query(gpu_host.check_output(" ".join(mg.SMI_QUERY_ARGV)))["gpus"]
    assert len(listed) >= len(gpus(gpu_host))


def test_node_advertises_gpus(gpu_host, kube):
    node = gpu_host.check_output("hostname").strip().lower()
    allocatable = kube.CoreV1Api().read_node(node).status.allocatable or {}
    resource = mg.mllab_gpu_resource_name(knob(gpu_host, "gpu_sharing") or {})
    count = int(allocatable.get(resource, "0"))
    assert count >= 1, f"node {node} advertises no {resource}: allocatable {allocatable}"
    labels = kube.CoreV1Api().read_node(node).metadata.labels or {}
    assert labels.get(knob(gpu_host, "gpu_node_label")) == "true"


def test_smoke_job_succeeded(gpu_host, kube):
    if not knob(gpu_host, "gpu_smoke_test"):
        pytest.skip("gpu_smoke_test is false")
    job = kube.BatchV1Api().read_namespaced_job("mllab-gpu-smoke", knob(gpu_host, "gpu_smoke_namespace"))
    assert (job.status.succeeded or 0) >= 1, f"smoke Job status: {job.status}"
    log = Path(os.environ.get("MLLAB_ARTIFACTS_DIR") or ROOT / "artifacts") / "gpu-smoke.log"
    if log.exists():
        assert "NVIDIA-SMI" in log.read_text()
