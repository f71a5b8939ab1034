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


def driver_packages(host) -> list[str]:
    """gpu_driver_packages for this host's distribution, gpu_driver_branch filled in."""
    distro = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(host.system_info.distribution, "")
    packages = (knob(host, "gpu_driver_packages") or {}).get(distro, [])
    branch = str(knob(host, "gpu_driver_branch"))
    packages = [p.replace("{{ gpu_driver_branch }}", branch) for p in packages]
    return [p for p in packages if "{{" not in p]  # an inventory's own template: not checkable here


def groups(host) -> dict[str, list[str]]:
    return host.ansible.get_variables().get("groups", {})


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


def test_a_node_without_gpu_has_no_driver(host):
    """The layer ran; on a node without GPU it installed no driver, even for gpu_driver: host
    (the molecule no-GPU path)."""
    if gpus(host):
        pytest.skip("this host has an NVIDIA GPU (lspci -nn): the no-GPU checks do not apply (test_a_gpu_node_*)")
    packages = [p for p in driver_packages(host) if host.package(p).is_installed]
    assert packages == [], f"driver packages installed on a node without GPU: {packages}"
    assert not host.file("/usr/bin/nvidia-smi").exists


def test_a_gpu_node_has_what_the_layer_puts_on_the_host(gpu_host):
    """On a node with a GPU: the layer's marker, and what the role installs on the host itself.
    gpu_driver: host on a gpu-group host: the distribution's driver packages and nvidia-smi;
    gpu_stack: device-plugin: nvidia-smi, the NVIDIA container runtime and MicroK8s' containerd
    knowing an `nvidia` runtime. With the operator's driver container and the operator's
    toolkit nothing else lands on the host: Kubernetes is checked below."""
    marker = gpu_host.file("/etc/mllab/layers/gpu")
    assert marker.content_string == "gpu layer of ML Lab Kit applied\n", marker.content_string
    in_gpu_group = gpu_host.ansible.get_variables().get("inventory_hostname") in groups(gpu_host).get("gpu", [])
    host_driver = knob(gpu_host, "gpu_driver") == "host" and in_gpu_group
    device_plugin = knob(gpu_host, "gpu_stack") == "device-plugin"
    if not (host_driver or device_plugin):
        pytest.skip(
            f"gpu_driver: {knob(gpu_host, 'gpu_driver')}, gpu_stack: {knob(gpu_host, 'gpu_stack')}"
            f"{'' if in_gpu_group else ', not in the gpu group'}: the role installs no driver on this host"
        )
    assert gpu_host.file("/usr/bin/nvidia-smi").exists, "the driver path leaves no /usr/bin/nvidia-smi"
    if host_driver:
        missing = [p for p in driver_packages(gpu_host) if not gpu_host.package(p).is_installed]
        assert missing == [], f"gpu_driver: host, but these driver packages are not installed: {missing}"
    if device_plugin:
        runtime = knob(gpu_host, "gpu_container_runtime")
        assert gpu_host.file(runtime).exists, f"gpu_stack: device-plugin needs {runtime}"
        with gpu_host.sudo():
            template = gpu_host.file("/var/snap/microk8s/current/args/containerd-template.toml").content_string
        assert "containerd.runtimes.nvidia]" in template, "MicroK8s' containerd has no nvidia runtime"


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
