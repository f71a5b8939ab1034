"""The preflight role run for real by ansible-playbook against this machine (local
connection): it must stop within seconds, change nothing and name each problem.

The snap store probe is pointed at addresses on this machine: a closed port (the
"unreachable" path) and a local HTTP server (the "reachable" path), so the test gives
the same answer on hosts with and without snap-store access."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks/host.yml"
CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port: nothing listens here


def write_inventory(tmp_path: Path, control_plane: list[str], workers=(), gpu=()) -> Path:
    def hosts(names):
        # su: these tests run as root, where su needs no password (and sudo may be absent)
        return {
            n: {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become_method": "su",
            }
            for n in names
        }

    inv = {
        "all": {
            "children": {
                "cluster": {
                    "children": {
                        "control_plane": {"hosts": hosts(control_plane)},
                        "workers": {"hosts": hosts(workers)},
                    }
                },
                "gpu": {"hosts": hosts(gpu)},
            }
        }
    }
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inv))
    return path


def run_preflight(
    inventory: Path, tmp_path: Path, tags: str = "preflight", **extra
) -> tuple[subprocess.CompletedProcess, float]:
    extra.setdefault("preflight_snap_store_url", CLOSED_PORT_URL)
    extra.setdefault("preflight_snap_store_timeout", 3)
    # These tests are about the store probe and the inventory checks, not about this machine's free
    # disk (a CI machine's varies with its caches): the disk need is made tiny unless a test sets it.
    extra.setdefault("preflight_base_disk_mb", 1)
    extra.setdefault("preflight_addon_disk_mb", {})
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), MLLAB_ARTIFACTS_DIR=str(tmp_path / "artifacts"))
    env["ANSIBLE_FACT_CACHING"] = "memory"
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory),
        str(PLAYBOOK),
        "--tags",
        tags,
        "-e",
        json.dumps(extra),
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - start


@pytest.fixture
def store():
    """A local HTTP server standing in for the store's address (a reachable URL)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_unreachable_snap_store_stops_fast_and_changes_nothing(tmp_path):
    proc, seconds = run_preflight(write_inventory(tmp_path, ["localhost"]), tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 60
    assert f"snap store ({CLOSED_PORT_URL}) is unreachable" in out
    assert "snap download microk8s --channel=1.36/stable" in out
    assert "changed=0" in out
    assert not (tmp_path / "artifacts").exists()


def test_offline_files_skip_the_store_probe(tmp_path):
    snap, assertion = tmp_path / "microk8s_1.snap", tmp_path / "microk8s_1.assert"
    snap.write_bytes(b"snap")
    assertion.write_text("assert")
    proc, _ = run_preflight(
        write_inventory(tmp_path, ["localhost"]),
        tmp_path,
        microk8s_snap_file=str(snap),
        microk8s_assert_file=str(assertion),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "preflight ok" in out


def test_reachable_store_passes(tmp_path, store):
    proc, _ = run_preflight(write_inventory(tmp_path, ["localhost"]), tmp_path, preflight_snap_store_url=store)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_inventory_and_values_are_all_named(tmp_path, store):
    inventory = write_inventory(tmp_path, ["localhost", "cp2"], gpu=["gpu9"])
    proc, _ = run_preflight(
        inventory,
        tmp_path,
        preflight_snap_store_url=store,
        microk8s_channel="1.36",
        microk8s_addons={"dns": {"enabled": True}, "obsrvability": {"enabled": True}},
        microk8s_snap_file="/nonexistent/microk8s.snap",
        platform_common_ingress_max_body_size="unlimited",
        mlflow_auth_enabled=False,  # with the Ingress on (the default)
    )
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    for fragment in [
        "control_plane has 2 hosts (localhost, cp2)",
        "gpu hosts ['gpu9'] are not in the cluster",
        "unknown MicroK8s addon 'obsrvability' (did you mean 'observability'?)",
        "microk8s_channel = '1.36' is malformed",
        "microk8s_snap_file = /nonexistent/microk8s.snap does not exist",
        "set both microk8s_snap_file and microk8s_assert_file",
        "platform_common_ingress_max_body_size = 'unlimited' is not an nginx size",
        "mlflow_auth_enabled: false together with platform_common_ingress_enabled: true would publish MLflow",
    ]:
        assert fragment in out, fragment


def test_too_little_memory_names_the_need(tmp_path, store):
    proc, _ = run_preflight(
        write_inventory(tmp_path, ["localhost"]),
        tmp_path,
        preflight_snap_store_url=store,
        preflight_base_memory_mb=10**7,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "MiB needed for MicroK8s with addons" in out


def test_an_inventory_without_cluster_hosts_stops(tmp_path):
    """Every play of site.yml targets the cluster group: with no host in it, ansible would skip
    them all and report success."""
    proc, _ = run_preflight(write_inventory(tmp_path, []), tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "has no host in the cluster group" in out and "INVENTORY=inventory/mylab.yml" in out


def test_wrong_types_of_any_layer_are_named_before_anything_runs(tmp_path, store):
    """Settings of later layers (microk8s, gpu, labs) are type-checked by preflight against each
    role's meta/argument_specs.yml: named with the role, no traceback."""
    proc, _ = run_preflight(
        write_inventory(tmp_path, ["localhost"]),
        tmp_path,
        preflight_snap_store_url=store,
        microk8s_ready_timeout="soon",
        gpu_stack="gpu-operator",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out
    for fragment in ["microk8s_ready_timeout", "roles/microk8s", "gpu_stack", "roles/gpu", "changed=0"]:
        assert fragment in out, fragment


def test_missing_helm_and_labs_python_are_named(tmp_path, store):
    """helm is checked when the platform layer runs in this invocation; the labs' Python on the
    control host (the first control-plane host)."""
    proc, _ = run_preflight(
        write_inventory(tmp_path, ["localhost"]),
        tmp_path,
        tags="preflight,platform",
        preflight_snap_store_url=store,
        platform_common_helm_binary="/nonexistent/helm",
        labs_python="/nonexistent/python3",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "helm does not run on the controller (/nonexistent/helm" in out
    assert "labs_python = /nonexistent/python3 does not run on localhost" in out
    assert "python3.11-venv" in out
    proc, _ = run_preflight(write_inventory(tmp_path, ["localhost"]), tmp_path, preflight_snap_store_url=store)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # --tags preflight alone: no platform, no helm needed


def test_no_way_to_become_root_names_minus_k(tmp_path, store):
    """A sudo that cannot run stops preflight with the way out. (Ansible skips become from root to
    root on a local connection, so the test becomes another user through a sudo that is missing:
    the same failure path as a sudo that wants a password Ansible was not given.)"""
    proc, _ = run_preflight(
        write_inventory(tmp_path, ["localhost"]),
        tmp_path,
        preflight_snap_store_url=store,
        ansible_become_method="sudo",
        ansible_become_user="nobody",
        ansible_become_exe="/nonexistent/sudo",
    )
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, out
    assert "Cannot become root on localhost" in out and "make site ANSIBLE_ARGS=-K" in out
