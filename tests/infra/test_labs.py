"""Labs layer on real hosts (L3/L4): on the control host the mllab CLI runs from its venv and is
on PATH, /etc/profile.d/mllab.sh sets the k8s backend up and its MLflow URL answers from the
host, the lab users' learner kubeconfigs are private; on the cluster the learner account may
run lab Jobs and may not read Secrets or touch anything cluster-wide (asked with
SelfSubjectAccessReview as the learner, then a server-side dry-run Job), and JupyterLab has
the mllab-dist ConfigMap, its start hook, and the guides in the workspace.

Host checks go through testinfra (`make verify`: the inventory's hosts; the e2e tier:
--hosts=local://); the labs layer's role writes /etc/mllab/layers/labs on the control host
only, so other hosts skip with the reason (the cluster checks too: they run once, from the
control host's entry). Cluster checks use the admin kubeconfig
($MLLAB_KUBECONFIG, else <artifacts>/kubeconfig) and the learner's
(<artifacts>/learner-kubeconfig). Settings are the inventory's or the role defaults; a YAML
file of extra vars (the `-e @file` the playbook ran with) can be given in $MLLAB_VARS_FILE.
MLLAB_EXPECT_LAYERS containing "labs" turns skips into failures.
"""

from __future__ import annotations

import os
import shlex
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from knobs import knob

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def _expected() -> bool:
    return "labs" in {x.strip() for x in os.environ.get("MLLAB_EXPECT_LAYERS", "").split(",")}


def _absent(reason: str) -> None:
    if _expected():
        pytest.fail(reason + ", but MLLAB_EXPECT_LAYERS expects the labs layer")
    pytest.skip(reason)


def setting(host: Any, name: str) -> Any:
    """$MLLAB_VARS_FILE's value, else the inventory's, else the role default (templates resolved
    for the few defaults that are templates)."""
    path = os.environ.get("MLLAB_VARS_FILE")
    if path:
        extra = yaml.safe_load(Path(path).read_text()) or {}
        if name in extra:
            return extra[name]
    try:
        return knob(host, name)
    except RuntimeError:  # not an Ansible backend (--hosts=local://): the role defaults
        for defaults in sorted(ROOT.glob("roles/*/defaults/main.yml")):
            values = yaml.safe_load(defaults.read_text()) or {}
            if name in values:
                return values[name]
        raise KeyError(name) from None


def artifacts() -> Path:
    return Path(os.environ.get("MLLAB_ARTIFACTS_DIR") or ROOT / "artifacts")


def namespaces(host: Any) -> dict[str, str]:
    return setting(host, "platform_common_namespaces")


# --- the control host ----------------------------------------------------------------------------


@pytest.fixture
def control_host(host, require_layer):
    require_layer("labs")
    return host


def test_mllab_cli_runs_from_its_venv_and_is_on_path(control_host):
    venv = setting(control_host, "labs_venv")
    link = control_host.file(setting(control_host, "labs_cli_link"))
    assert link.is_symlink and link.linked_to == f"{venv}/bin/mllab"
    out = control_host.run(f"{shlex.quote(link.path)} --version")
    assert out.rc == 0 and out.stdout.startswith("mllab "), out.stderr
    freeze = control_host.run(f"{venv}/bin/python -m pip show kubernetes mllab")
    assert freeze.rc == 0 and "Name: kubernetes" in freeze.stdout, "the k8s extra is not installed"


def _profile_env(host: Any) -> dict[str, str]:
    profile = setting(host, "labs_profile_file")
    out = host.run(f"env -i HOME=/nonexistent bash -c '. {shlex.quote(profile)} && env -0'")
    assert out.rc == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.split("\0") if "=" in line)


def test_profile_sets_up_the_k8s_backend(control_host):
    f = control_host.file(setting(control_host, "labs_profile_file"))
    assert f.exists and f.user == "root" and f.mode == 0o644
    env = _profile_env(control_host)
    ns = namespaces(control_host)
    assert env["MLLAB_BACKEND"] == "k8s"
    assert env["MLLAB_IMAGE"] == setting(control_host, "mllab_image")
    assert env["MLLAB_TRAINING_NAMESPACE"] == ns["training"]
    assert env["MLLAB_SERVING_NAMESPACE"] == ns["serving"]
    assert env["MLLAB_JOB_TRACKING_URI"].startswith("http://mlflow.")
    assert env["MLFLOW_TRACKING_URI"].startswith(("http://", "https://"))
    assert "KUBECONFIG" not in env, "KUBECONFIG is set although HOME has no learner kubeconfig"


def test_mlflow_answers_at_the_hosts_url(control_host):
    uri = _profile_env(control_host)["MLFLOW_TRACKING_URI"]
    venv = setting(control_host, "labs_venv")
    code = (
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/health', timeout=20).read().decode())"
    )
    out = control_host.run(f"{venv}/bin/python -c {shlex.quote(code)} {shlex.quote(uri)}")
    assert out.rc == 0 and out.stdout.strip() == "OK", f"{uri}/health from the control host: {out.stderr[-500:]}"


def test_learner_kubeconfigs_are_private(control_host):
    account = setting(control_host, "labs_learner_account")
    users = setting(control_host, "mllab_admins")
    if "{{" in str(users):  # the default: the deprecated mllab_users
        users = setting(control_host, "mllab_users")
    profile = setting(control_host, "labs_profile_file")
    for user in users:
        home = control_host.user(user).home
        f = control_host.file(f"{home}/.kube/{account}")
        assert f.exists and f.user == user and f.mode == 0o600, f"{f.path}: {f.user} {oct(f.mode)}"
        env = control_host.run(f"env -i HOME={shlex.quote(home)} bash -c '. {profile} && echo $KUBECONFIG'")
        assert env.stdout.strip() == f"{home}/.kube/{account}"
    local = artifacts() / "learner-kubeconfig"
    assert local.is_file() and stat.S_IMODE(local.stat().st_mode) == 0o600, local


# --- the cluster, as the learner -------------------------------------------------------------------


def _client(path: Path) -> Any:
    from kubernetes import client, config

    if not path.is_file():
        _absent(f"no kubeconfig {path} on this controller (the labs layer writes learner-kubeconfig next to it)")
    api = config.new_client_from_config(config_file=str(path))
    try:
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:  # any connection problem means "no cluster here"
        _absent(f"the cluster of {path} is not reachable: {str(exc)[:200]}")
    return api


@pytest.fixture(scope="module")
def learner():
    return _client(artifacts() / "learner-kubeconfig")


@pytest.fixture(scope="module")
def admin():
    path = Path(os.environ["MLLAB_KUBECONFIG"]) if os.environ.get("MLLAB_KUBECONFIG") else artifacts() / "kubeconfig"
    return _client(path)


def _allowed(api: Any, verb: str, resource: str, namespace: str = "", group: str = "", sub: str = "") -> bool:
    from kubernetes import client

    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, namespace=namespace or None, group=group, subresource=sub or None
            )
        )
    )
    return client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed


def test_learner_may_run_lab_jobs(learner, control_host):
    host = control_host
    ns = namespaces(host)
    for namespace in (ns["training"], ns["serving"], ns["labs"]):
        assert _allowed(learner, "create", "jobs", namespace, "batch"), namespace
        assert _allowed(learner, "get", "jobs", namespace, "batch", "status"), namespace
        for verb in ("create", "delete", "list"):
            assert _allowed(learner, verb, "pods", namespace), f"{verb} pods in {namespace}"
            assert _allowed(learner, verb, "services", namespace), f"{verb} services in {namespace}"
        assert _allowed(learner, "get", "pods", namespace, sub="log"), namespace
    assert _allowed(learner, "create", "inferenceservices", ns["serving"], "serving.kserve.io")


def test_learner_may_not_read_secrets_or_touch_the_cluster(learner, control_host):
    host = control_host
    ns = namespaces(host)
    for namespace in set(ns.values()):
        for verb in ("get", "list", "watch", "create"):
            assert not _allowed(learner, verb, "secrets", namespace), f"{verb} secrets in {namespace}"
    assert not _allowed(learner, "create", "jobs", "default", "batch")
    assert not _allowed(learner, "create", "jobs", ns["mlflow"], "batch")
    assert not _allowed(learner, "list", "nodes")
    assert not _allowed(learner, "create", "clusterrolebindings", group="rbac.authorization.k8s.io")
    assert not _allowed(learner, "create", "rolebindings", ns["training"], "rbac.authorization.k8s.io")
    assert not _allowed(learner, "create", "namespaces")


def test_learner_creates_a_job_for_real_server_side_dry_run(learner, control_host):
    """Authorization and admission (quota, LimitRange, Pod Security) accept a lab-like Job."""
    host = control_host
    from kubernetes import client

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "mllab-verify-learner", "labels": {"app.kubernetes.io/managed-by": "mllab"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "main",
                            "image": setting(host, "mllab_image"),
                            "command": ["mllab", "--version"],
                            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                }
            },
        },
    }
    made = client.BatchV1Api(learner).create_namespaced_job(namespaces(host)["training"], job, dry_run="All")
    assert made.metadata.name == "mllab-verify-learner"


# --- JupyterLab ----------------------------------------------------------------------------------


def _dist(admin: Any, host: Any) -> Any:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = setting(host, "labs_dist_configmap")
    try:
        return client.CoreV1Api(admin).read_namespaced_config_map(name, namespaces(host)["labs"])
    except ApiException as exc:
        if exc.status == 404:
            _absent(
                f"ConfigMap {name} is not in the labs namespace: the labs layer has not run (or labs_jupyter: false)"
            )
        raise


def test_mllab_dist_holds_the_wheel_the_guides_and_the_hook(admin, control_host):
    host = control_host
    cm = _dist(admin, host)
    wheels = [k for k in (cm.binary_data or {}) if k.endswith(".whl")]
    assert wheels == [cm.metadata.annotations["mllab.io/wheel"]]
    assert "before-notebook.sh" in cm.data and "guides.tsv" in cm.data
    listed = dict(line.split("\t") for line in cm.data["guides.tsv"].splitlines())
    assert "README.md" in listed.values() and set(listed) <= set(cm.data)


def _jupyter_pod(admin: Any, host: Any) -> str:
    from kubernetes import client

    ns = namespaces(host)["labs"]
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("jupyter", ns)
    spec = deployment.spec.template.spec
    dist = setting(host, "labs_dist_configmap")
    assert any(v.config_map and v.config_map.name == dist for v in spec.volumes), "JupyterLab does not mount mllab-dist"
    mounts = {m.mount_path for m in spec.containers[0].volume_mounts}
    assert "/usr/local/bin/before-notebook.d/40-mllab.sh" in mounts
    checksum = deployment.spec.template.metadata.annotations["mllab.io/dist-checksum"]
    assert checksum == _dist(admin, host).metadata.annotations["mllab.io/checksum"]
    deadline = time.monotonic() + 300
    while True:
        pods = client.CoreV1Api(admin).list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=jupyter").items
        ready = [
            p
            for p in pods
            if p.metadata.deletion_timestamp is None
            and (p.metadata.annotations or {}).get("mllab.io/dist-checksum") == checksum
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        if ready:
            return ready[0].metadata.name
        assert time.monotonic() < deadline, "no Ready JupyterLab pod with the current mllab-dist after 300 s"
        time.sleep(5)


def _exec(admin: Any, namespace: str, pod: str, script: str) -> str:
    from kubernetes import client
    from kubernetes.stream import stream

    return stream(
        client.CoreV1Api(admin).connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["bash", "-c", script],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )


# pip's messages when the index cannot be reached (no route, DNS, proxy, TLS interception).
NO_PYPI = (
    "Could not find a version",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "SSLError",
    "CERTIFICATE_VERIFY_FAILED",
    "ProxyError",
    "Network is unreachable",
    "Read timed out",
)


def test_jupyterlab_has_the_guides_and_installs_mllab(admin, control_host):
    host = control_host
    ns = namespaces(host)["labs"]
    pod = _jupyter_pod(admin, host)
    guides = setting(host, "labs_jupyter_guides_dir")
    base = setting(host, "labs_jupyter_python_base")
    listing = _exec(admin, ns, pod, f"cd {shlex.quote(guides)} && ls README.md */README.md")
    assert "README.md" in listing and "02-training-job/README.md" in listing, listing
    # The install runs beside the server: wait for its stamp, or say why it did not come.
    deadline = time.monotonic() + 420
    while True:
        state = _exec(
            admin, ns, pod, f"cat {base}/installed 2>/dev/null; echo ---; tail -8 {base}/install.log 2>/dev/null"
        )
        stamp, _, log = state.partition("---")
        if stamp.strip():
            break
        if "install FAILED" in log:
            if any(sign in log for sign in NO_PYPI):
                pytest.skip(f"the JupyterLab pod cannot reach PyPI for mllab's dependencies: {log.strip()[-300:]}")
            pytest.fail(f"mllab's install in JupyterLab failed: {log.strip()[-800:]}")
        assert time.monotonic() < deadline, f"mllab not installed in JupyterLab after 420 s: {log.strip()[-500:]}"
        time.sleep(10)
    # The kernels' and terminals' environment: what the hook exports (PYTHONUSERBASE, PATH).
    version = _exec(
        admin, ns, pod, "cd ~ && . /usr/local/bin/before-notebook.d/40-mllab.sh >/dev/null && mllab --version"
    )
    assert "mllab " in version, version
