"""Cluster layer (roles/microk8s): the snap installed and held, MicroK8s running, every
node Ready, the configured addons enabled, kubeconfigs private. Runs in `make verify`
against real hosts (and in the microk8s-real molecule scenario); MicroK8s cannot run in
the project's CI containers, so there these tests skip (layer not deployed)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))

import mllab_microk8s as mk  # noqa: E402
from knobs import admins, knob  # noqa: E402


@pytest.fixture(autouse=True)
def _cluster_layer(require_layer):
    require_layer("cluster")


def groups(host) -> dict[str, list[str]]:
    return host.ansible.get_variables().get("groups", {})


def is_first_control_plane(host) -> bool:
    variables = host.ansible.get_variables()
    cps = groups(host).get("control_plane") or []
    return bool(cps) and variables["inventory_hostname"] == cps[0]


def is_worker(host) -> bool:
    return "workers" in host.ansible.get_variables().get("group_names", [])


def microk8s(host, args: str) -> str:
    with host.sudo():
        return host.check_output(f"/snap/bin/microk8s {args}")


def test_snap_installed_on_channel_and_held(host):
    with host.sudo():
        out = host.check_output("snap list microk8s")
    snap = mk.mllab_microk8s_snap_list(out)["microk8s"]
    if snap["tracking"] != "-":  # "-" = installed from a file (air-gapped)
        assert snap["tracking"] == knob(host, "microk8s_channel")
    assert "classic" in snap["notes"]
    if knob(host, "microk8s_hold_refresh"):
        assert "held" in snap["notes"], f"automatic refreshes are not held: notes {snap['notes']}"


def test_microk8s_running(host):
    if is_worker(host):
        assert host.service("snap.microk8s.daemon-kubelite").is_running
        return
    status = mk.mllab_microk8s_status(microk8s(host, "status --format yaml"))
    assert status["state"] == "running", status["state"]
    assert host.socket("tcp://16443").is_listening


def test_every_node_ready(host):
    if not is_first_control_plane(host):
        pytest.skip("checked on the first control-plane node")
    nodes = mk.mllab_microk8s_nodes(microk8s(host, "kubectl get nodes -o json"))
    assert len(nodes) == len(groups(host).get("cluster") or []), [n["name"] for n in nodes]
    assert [n["name"] for n in nodes if not n["ready"]] == []
    workers = groups(host).get("workers") or []
    assert sum(n["role"] == "worker" for n in nodes) == len(workers)


def test_high_availability_when_three_control_planes(host):
    cps = groups(host).get("control_plane") or []
    if not is_first_control_plane(host) or len(cps) < 3:
        pytest.skip("HA is checked on the first control-plane node of a 3+ control-plane cluster")
    status = mk.mllab_microk8s_status(microk8s(host, "status --format yaml"))
    voters = [n for n in status["ha"]["nodes"] if n["role"] == "voter"]
    assert status["ha"]["enabled"] and len(voters) >= 3, status["ha"]


def test_configured_addons_in_their_state(host):
    if not is_first_control_plane(host):
        pytest.skip("addons are cluster-wide: checked on the first control-plane node")
    status = microk8s(host, "status --format yaml")
    plan = mk.mllab_microk8s_addon_plan(status, knob(host, "microk8s_addons"))
    assert plan == [], "addons differ from microk8s_addons: " + "; ".join(" ".join(a["argv"]) for a in plan)


def test_user_kubeconfigs_private(host):
    if not knob(host, "microk8s_user_kubeconfig"):
        pytest.skip("microk8s_user_kubeconfig is false")
    users = admins(host)
    if not users:
        pytest.skip("mllab_admins is empty: no admin kubeconfig to check")
    for user in users:
        config = host.file(f"{host.user(user).home}/.kube/config")
        assert config.exists, f"{user} has no ~/.kube/config"
        assert (config.user, config.mode) == (user, 0o600)
        assert "current-context: microk8s" in config.content_string


def test_controller_kubeconfig_private(host):
    path = os.environ.get("MLLAB_KUBECONFIG") or str(
        Path(os.environ.get("MLLAB_ARTIFACTS_DIR") or ROOT / "artifacts") / "kubeconfig"
    )
    if not Path(path).exists():
        pytest.skip(f"no kubeconfig at {path} on this controller (set MLLAB_KUBECONFIG to check it)")
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    assert mode == 0o600, f"{path} has mode {oct(mode)}, expected 0o600"
    config = yaml.safe_load(Path(path).read_text())
    assert config["current-context"] == "microk8s"
    assert config["clusters"][0]["cluster"]["server"].startswith("https://")
