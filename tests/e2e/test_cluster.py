"""Go / no-go of the e2e cluster (tests/e2e/cluster up): the cluster is real.

Each test drives the cluster only through kubectl, as a user would, and checks an
outcome that a broken cluster cannot fake: a pod's process answers `kubectl exec`,
a Service name resolves through CoreDNS to the Service's ClusterIP and its
endpoint answers through kube-proxy's rules, a PersistentVolumeClaim is bound to a
directory on this host that holds what the pod wrote, and deleting it removes that
directory again, and a NetworkPolicy refuses a connection it does not allow (kube-router).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parent
ROOT = E2E.parents[1]
_XDG_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
CACHE = Path(os.environ.get("E2E_CACHE") or _XDG_CACHE / "mllab-e2e")  # as tests/e2e/lib/env.sh
KUBECONFIG = Path(os.environ.get("E2E_KUBECONFIG", CACHE / "kubeconfig"))
KUBECTL = CACHE / "bin" / "kubectl"


def _versions_env() -> dict[str, str]:
    """versions.env, with its $VAR references expanded (it is a shell file)."""
    out = subprocess.run(
        ["bash", "-c", 'set -a; source "$1"; env', "_", str(E2E / "versions.env")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


VERSIONS = _versions_env()
BUSYBOX = VERSIONS["BUSYBOX_IMAGE"]
PINNED = re.search(r"^require k8s.io/kubernetes (v\S+)$", (E2E / "kubernetes" / "go.mod").read_text(), re.M)[1]


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: int = 180) -> str:
    proc = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def apply(*objects: dict) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def busybox_pod(name: str, namespace: str, script: str, **spec: object) -> dict:
    container = {
        "name": name,
        "image": BUSYBOX,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    container.update(spec.pop("container", {}))  # type: ignore[arg-type]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1, **spec},
    }


@pytest.fixture(scope="session", autouse=True)
def cluster() -> None:
    if not KUBECONFIG.is_file() or not KUBECTL.is_file():
        pytest.fail(f"no e2e cluster ({KUBECONFIG} missing): run `tests/e2e/cluster up` first")


@pytest.fixture(scope="module")
def namespace():
    name = f"e2e-smoke-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    # The namespace's default ServiceAccount must exist before pods are admitted.
    deadline = time.monotonic() + 60
    while kubectl("-n", name, "get", "serviceaccount", "default", check=False) == "":
        assert time.monotonic() < deadline, "the default ServiceAccount never appeared"
        time.sleep(0.5)
    yield name
    kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s", check=False)


def test_versions_are_the_pinned_release():
    versions = json.loads(kubectl("version", "-o", "json"))
    assert versions["clientVersion"]["gitVersion"] == PINNED
    assert versions["serverVersion"]["gitVersion"] == PINNED
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 1
    node = nodes[0]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == PINNED
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True", node["status"]["conditions"]


def test_a_pod_runs_and_answers_exec(namespace):
    apply(busybox_pod("sleeper", namespace, "echo started; exec sleep 3600"))
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s")
    phase = kubectl("-n", namespace, "get", "pod", "sleeper", "-o", "jsonpath={.status.phase}")
    assert phase == "Running"
    assert kubectl("-n", namespace, "exec", "sleeper", "--", "cat", "/proc/1/cmdline").startswith("sleep")
    assert "started" in kubectl("-n", namespace, "logs", "sleeper")


def test_a_service_resolves_by_dns_and_answers_from_another_pod(namespace):
    web = busybox_pod(
        "web",
        namespace,
        'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www',
        container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    client = busybox_pod("client", namespace, "exec sleep 3600")
    apply(web, service, client)
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/web", "pod/client", "--timeout=120s")
    cluster_ip = kubectl("-n", namespace, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    fqdn = f"web.{namespace}.svc.cluster.local"

    resolved = kubectl("-n", namespace, "exec", "client", "--", "nslookup", fqdn)
    assert re.search(rf"Address:\s+{re.escape(cluster_ip)}\b", resolved), resolved
    resolv_conf = kubectl("-n", namespace, "exec", "client", "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10" in resolv_conf

    # The short name goes through the pod's DNS search path, the ClusterIP through
    # kube-proxy's rules. (busybox-static's wget segfaults on this kernel, even on the
    # host: nc speaks the HTTP instead.)
    request = r"printf 'GET / HTTP/1.0\r\nHost: web\r\n\r\n' | nc -w 5 web 80"
    deadline = time.monotonic() + 60
    while True:
        response = kubectl("-n", namespace, "exec", "client", "--", "sh", "-c", request, check=False)
        if response.startswith("HTTP/1.1 200") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.startswith("HTTP/1.1 200"), response
    assert response.rstrip().endswith("hello from web"), response


def test_a_claim_binds_to_a_host_directory_and_is_cleaned_up(namespace):
    token = uuid.uuid4().hex
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }
    writer = busybox_pod(
        "writer",
        namespace,
        f"echo {token} > /data/token && cat /data/token",
        restartPolicy="Never",
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    )
    apply(claim, writer)
    kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/writer", "--timeout=180s")
    pvc = json.loads(kubectl("-n", namespace, "get", "pvc", "data", "-o", "json"))
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "local-path"  # the default class
    pv = json.loads(kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json"))
    host_dir = Path(pv["spec"]["hostPath"]["path"])
    assert (host_dir / "token").read_text().strip() == token

    kubectl("-n", namespace, "delete", "pod", "writer", "--wait=true")
    kubectl("-n", namespace, "delete", "pvc", "data", "--wait=true")
    kubectl("wait", "--for=delete", f"pv/{pv['metadata']['name']}", "--timeout=120s")
    deadline = time.monotonic() + 60
    while host_dir.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert not host_dir.exists(), f"{host_dir} outlived its volume"


def _http(namespace: str, client: str, target: str) -> str:
    """One HTTP request from a client pod (nc: busybox's wget segfaults here); '' when refused
    or timed out."""
    request = f"printf 'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' | nc -w 3 {target} 8080"
    return kubectl("-n", namespace, "exec", client, "--", "sh", "-c", request, check=False)


def _eventually(namespace: str, client: str, target: str, answered: bool) -> str:
    """kube-router applies a policy change within a second or two: wait for it, up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        response = _http(namespace, client, target)
        if response.startswith("HTTP/1.1 200") is answered or time.monotonic() > deadline:
            return response
        time.sleep(1)


def test_network_policies_are_enforced(namespace):
    """kube-router (the e2e tier's stand-in for MicroK8s' Calico) enforces a NetworkPolicy:
    with an ingress policy on `guarded`, a pod it names connects and another one times out;
    without the policy both connect again. The class's isolation tests rely on this."""
    guarded = busybox_pod(
        "guarded",
        namespace,
        "mkdir -p /www && echo guarded > /www/index.html && exec httpd -f -p 8080 -h /www",
        container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
    )
    apply(
        guarded,
        busybox_pod("friend", namespace, "exec sleep 3600"),
        busybox_pod("stranger", namespace, "exec sleep 3600"),
    )
    kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/guarded", "pod/friend", "pod/stranger", "--timeout=120s"
    )
    ip = kubectl("-n", namespace, "get", "pod", "guarded", "-o", "jsonpath={.status.podIP}")
    assert _eventually(namespace, "stranger", ip, answered=True).startswith("HTTP/1.1 200")

    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-friend", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {"app": "guarded"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "friend"}}}]}],
        },
    }
    apply(policy)
    refused = _eventually(namespace, "stranger", ip, answered=False)
    assert not refused.startswith("HTTP/1.1 200"), f"the policy is not enforced: {refused!r}"
    assert _http(namespace, "friend", ip).startswith("HTTP/1.1 200"), "the pod the policy allows is refused"

    kubectl("-n", namespace, "delete", "networkpolicy", "only-friend")
    assert _eventually(namespace, "stranger", ip, answered=True).startswith("HTTP/1.1 200")
