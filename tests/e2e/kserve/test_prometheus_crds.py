"""prometheus-operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, generated from
its Go module (build.sh prometheus-crds), installed in the e2e cluster, and the monitoring
role's objects validated by the API server against them (server-side dry run with strict
field validation: a misspelt field is an error, not silently pruned). Prometheus itself does
not run here, so the monitoring role stays off in platform.sh; this proves its manifests.
Runs with the cluster's go / no-go tests (`tests/e2e/run`); skipped without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
_XDG_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
CACHE = Path(os.environ.get("E2E_CACHE") or _XDG_CACHE / "mllab-e2e")  # as tests/e2e/lib/env.sh
KUBECONFIG = Path(os.environ.get("E2E_KUBECONFIG", CACHE / "kubeconfig"))
KUBECTL = CACHE / "bin" / "kubectl"
CHECK_NS = "mllab-monitoring-crd-check"
pytestmark = pytest.mark.timeout(900)


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args], input=stdin, capture_output=True, text=True, timeout=300
    )
    if check and res.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)}: {res.stderr[-2000:]}")
    return res


@pytest.fixture(scope="module")
def crds_installed() -> list[str]:
    if not KUBECONFIG.is_file() or not KUBECTL.is_file():
        pytest.skip(f"no e2e cluster ({KUBECONFIG}): tests/e2e/cluster up")
    res = subprocess.run(
        ["bash", str(ROOT / "tests" / "e2e" / "kserve" / "build.sh"), "prometheus-crds"],
        capture_output=True,
        text=True,
        timeout=840,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    folder = CACHE / "kserve" / "prometheus-crds"
    kubectl("apply", "--server-side", "--field-manager", "mllab-e2e", "-f", str(folder))
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted(folder.glob("*.yaml"))]
    kubectl("wait", "--for=condition=Established", "--timeout=120s", *[f"crd/{n}" for n in names])
    kubectl("create", "namespace", CHECK_NS, check=False)
    yield names
    kubectl("delete", "namespace", CHECK_NS, "--wait=false", check=False)


@pytest.fixture(scope="module")
def monitoring_objects() -> list[dict[str, Any]]:
    """The monitoring role's ServiceMonitor, PodMonitors and PrometheusRule, rendered offline."""
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "platform"))
    sys.path.insert(0, str(ROOT / "plugins" / "filter"))
    import harness

    run = harness.run_playbooks({"e2e-monitoring": ({"mllab_manage_microk8s": "false"}, True)})["e2e-monitoring"]
    assert run.rc == 0, run.output[-3000:]
    objs = [o for o in run.objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in objs} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    return [harness.strip_private(o) for o in objs]


def _dry_run(obj: dict[str, Any]) -> subprocess.CompletedProcess:
    obj = json.loads(json.dumps(obj))
    obj["metadata"]["namespace"] = CHECK_NS  # the role's namespaces need not exist yet
    return kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=json.dumps(obj), check=False)


def test_the_generated_crds_are_served(crds_installed):
    assert sorted(crds_installed) == [
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
    ]
    res = kubectl("api-resources", "--api-group=monitoring.coreos.com", "-o", "name")
    assert {"servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com"} <= set(res.stdout.split())


def test_the_monitoring_roles_objects_pass_server_side_validation(crds_installed, monitoring_objects):
    for obj in monitoring_objects:
        res = _dry_run(obj)
        assert res.returncode == 0, f"{obj['kind']} {obj['metadata']['name']}: {res.stderr[-1500:]}"


def test_a_misspelt_field_is_rejected_by_the_api_server(crds_installed):
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "typo"},
        "spec": {"selector": {}, "podMetricEndpoints": [{"port": "metrics"}]},
    }
    res = _dry_run(bad)
    assert res.returncode != 0 and "podMetricEndpoints" in res.stderr, res.stderr
