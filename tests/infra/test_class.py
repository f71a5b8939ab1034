"""A class on a real cluster (roles/classroom applied): what a learner can and cannot do, shown
with real requests made with the learner's own kubeconfig (artifacts/class/<learner>/kubeconfig),
not by reading the manifests or asking `auth can-i`.

- Authorization: a learner creates Jobs, pods and ClusterIP Services in their namespace; cannot
  read Secrets (not even their own token's), cannot list or create anything in another learner's
  namespace, cannot list namespaces or nodes, cannot grant themselves rights.
- Admission: the kit's ValidatingAdmissionPolicy refuses NodePort, LoadBalancer and externalIPs
  Services with its message; PodSecurity `restricted` refuses a privileged pod and a root pod.
- Network (needs a NetworkPolicy enforcer: kube-router in the e2e tier, Calico on MicroK8s): a pod
  of learner B cannot connect to learner A's server, nor to the API server or JupyterLab, and
  reaches MLflow; A's own pods reach A's server.
- MLflow: no request without a login; A uses their own experiment; B gets 403 reading or changing
  it, or moving A's model alias.
- JupyterHub (MLLAB_CLASS_HUB_URL: the hub's public URL as this machine reaches it): a wrong
  password or a name off the roster gets 403; each learner of MLLAB_CLASS_LEARNERS logs in through
  the login form, gets a token and starts their notebook through the REST API; it runs in their
  namespace as their account, restricted, on their PVC; B's token and B's session get 403 on A's
  notebook; B's pods cannot connect to it; the hub's memory with every notebook running goes to
  MLLAB_CLASS_REPORT.

Settings: MLLAB_KUBECONFIG (the admin's, as for test_platform.py), MLLAB_ARTIFACTS_DIR (the
learners' files in <artifacts>/class), MLLAB_CLASS_LEARNERS (two or more names; default: every
learner folder found there, first two used). Without a class the tests skip with the reason;
MLLAB_EXPECT_LAYERS containing "class" turns those skips into failures (tests/e2e/class.sh)."""

from __future__ import annotations

import json
import os
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)
PORT = 8080


def _absent(reason: str) -> None:
    if "class" in {x.strip() for x in os.environ.get("MLLAB_EXPECT_LAYERS", "").split(",")}:
        pytest.fail(reason + ", but MLLAB_EXPECT_LAYERS expects the class")
    pytest.skip(reason)


def _class_dir() -> Path:
    return Path(os.environ.get("MLLAB_ARTIFACTS_DIR") or ROOT / "artifacts") / "class"


def _env_file(name: str) -> dict[str, str]:
    out = {}
    for line in (_class_dir() / name / "mllab.env").read_text().splitlines():
        if line.startswith("export ") and "=" in line and "$(" not in line:
            key, _, value = line[len("export ") :].partition("=")
            out[key] = shlex.split(value)[0] if value else ""
    return out


class Learner:
    def __init__(self, name: str) -> None:
        from kubernetes import client, config

        self.name = name
        self.env = _env_file(name)
        self.namespace = self.env["MLLAB_TRAINING_NAMESPACE"]
        self.api = config.new_client_from_config(config_file=str(_class_dir() / name / "kubeconfig"))
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)


def _class_names() -> list[str]:
    """MLLAB_CLASS_LEARNERS, or every learner folder with a kubeconfig in the class folder."""
    wanted = os.environ.get("MLLAB_CLASS_LEARNERS", "").split()
    folder = _class_dir()
    if not wanted and folder.is_dir():
        wanted = sorted(p.name for p in folder.iterdir() if (p / "kubeconfig").is_file())
    return wanted


@pytest.fixture(scope="module")
def learners() -> tuple[Learner, Learner]:
    wanted = _class_names()
    folder = _class_dir()
    if len(wanted) < 2:
        _absent(f"no class to test: fewer than two learner kubeconfigs in {folder} (mllab_learners)")
    try:
        a, b = Learner(wanted[0]), Learner(wanted[1])
        a.core.list_namespaced_pod(a.namespace, _request_timeout=10)
    except Exception as exc:  # no cluster, or a stale kubeconfig
        _absent(f"learner {wanted[0]}'s cluster does not answer: {str(exc)[:200]}")
    return a, b


def _refused(call, *args, **kwargs) -> Any:
    """The ApiException of a request that must be refused (the test fails if it is allowed)."""
    from kubernetes.client import ApiException

    try:
        call(*args, **kwargs)
    except ApiException as exc:
        return exc
    pytest.fail(f"{call.__name__}{args[:2]} was allowed")


def _name(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:6]}"


def _pod(name: str, image: str, command: list[str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod `restricted` admits: non-root, no privilege escalation, no capabilities, RuntimeDefault."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def _job(base: str, image: str) -> dict[str, Any]:
    """A suspended Job (it makes no pod): what is tested is whether the API accepts it."""
    template = {"spec": _pod("x", image, ["true"])["spec"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": _name(base)},
        "spec": {"suspend": True, "template": template},
    }


# --- authorization ---------------------------------------------------------------------------


def test_a_learner_creates_jobs_and_cluster_ip_services_in_their_namespace(learners):
    a, _ = learners
    made = a.batch.create_namespaced_job(a.namespace, _job("authz-job", a.env["MLLAB_IMAGE"]))
    assert made.metadata.namespace == a.namespace
    a.batch.delete_namespaced_job(made.metadata.name, a.namespace, propagation_policy="Background")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": _name("authz-svc")},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    made = a.core.create_namespaced_service(a.namespace, svc)
    assert made.spec.type == "ClusterIP"
    a.core.delete_namespaced_service(made.metadata.name, a.namespace)


def test_a_learner_cannot_read_secrets_not_even_their_own_token(learners):
    a, _ = learners
    assert _refused(a.core.list_namespaced_secret, a.namespace).status == 403
    assert _refused(a.core.read_namespaced_secret, "mllab-learner-token", a.namespace).status == 403


def test_a_learner_cannot_see_or_touch_another_learners_namespace(learners):
    a, b = learners
    assert _refused(a.core.list_namespaced_pod, b.namespace).status == 403
    assert _refused(a.core.list_namespaced_config_map, b.namespace).status == 403
    job = _job("intruder", a.env["MLLAB_IMAGE"])
    assert _refused(a.batch.create_namespaced_job, b.namespace, job).status == 403
    # and B's account, by symmetry
    assert _refused(b.core.list_namespaced_pod, a.namespace).status == 403


def test_a_learner_has_nothing_cluster_wide_and_cannot_grant_themselves_rights(learners):
    a, _ = learners
    assert _refused(a.core.list_namespace).status == 403
    assert _refused(a.core.list_node).status == 403
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": _name("escalate")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "mllab-learner", "namespace": a.namespace}],
    }
    assert _refused(a.rbac.create_namespaced_role_binding, a.namespace, binding).status == 403


# --- admission -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"type": "NodePort", "ports": [{"port": 80}]}, ["NodePort", "ClusterIP", "port-forward"]),
        ({"type": "LoadBalancer", "ports": [{"port": 80}]}, ["LoadBalancer"]),
        ({"ports": [{"port": 80}], "externalIPs": ["192.0.2.10"]}, ["externalIPs"]),
    ],
    ids=["nodeport", "loadbalancer", "externalips"],
)
def test_the_admission_policy_refuses_services_that_leave_the_cluster(learners, spec, words):
    a, _ = learners
    name = _name("exposed")
    exc = _refused(
        a.core.create_namespaced_service,
        a.namespace,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec},
    )
    assert exc.status in (403, 422), exc.status
    assert "mllab-learner-services" in exc.body and name in exc.body, exc.body
    for word in words:
        assert word in exc.body, exc.body


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (
            lambda p: p["spec"]["containers"][0]["securityContext"].update(
                privileged=True, allowPrivilegeEscalation=True
            ),
            "privileged",
        ),
        (lambda p: p["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0), "runAsNonRoot"),
        (
            lambda p: p["spec"]["containers"][0]["securityContext"].update(capabilities={"add": ["NET_ADMIN"]}),
            "capabilities",
        ),
    ],
    ids=["privileged", "root", "net-admin"],
)
def test_pod_security_restricted_refuses_unsafe_pods(learners, change, rule):
    a, _ = learners
    pod = _pod(_name("unsafe"), a.env["MLLAB_IMAGE"], ["true"])
    change(pod)
    exc = _refused(a.core.create_namespaced_pod, a.namespace, pod)
    message = json.loads(exc.body)["message"]
    assert exc.status == 403 and 'violates PodSecurity "restricted:latest"' in message, message
    assert rule in message, message


# --- network -------------------------------------------------------------------------------------

# The policies of a new pod take a moment to be enforced (kube-router, like Calico, programs them
# after the pod's IP is known): the probe tries again, for up to 60 s, until what it sees is what
# the test expects, then prints what it saw last; the test compares that.
PROBE = """
import socket, sys, time
expected = dict(arg.rsplit("=", 1) for arg in sys.argv[1:])
deadline = time.monotonic() + 60
while True:
    seen = {}
    for target in expected:
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            seen[target] = "OPEN"
        except OSError:
            seen[target] = "CLOSED"
    if seen == expected or time.monotonic() > deadline:
        break
    time.sleep(2)
for target, state in seen.items():
    print(target, state, flush=True)
"""


def _wait_pod(who: Learner, name: str, phases: tuple[str, ...], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = who.core.read_namespaced_pod(name, who.namespace)
        if pod.status.phase in phases:
            return pod
        if pod.status.phase == "Failed":
            pytest.fail(f"pod {who.namespace}/{name} failed: {who.core.read_namespaced_pod_log(name, who.namespace)}")
        time.sleep(1)
    pytest.fail(f"pod {who.namespace}/{name} did not reach {phases} in {timeout} s")


def _probe(who: Learner, expected: dict[str, str]) -> dict[str, str]:
    """OPEN / CLOSED for each host:port, seen from a pod in `who`'s namespace, made with their
    credentials (once the pod's policies are enforced, or after 60 s)."""
    targets = list(expected)
    name = _name("probe")
    args = [f"{target}={state}" for target, state in expected.items()]
    who.core.create_namespaced_pod(who.namespace, _pod(name, who.env["MLLAB_IMAGE"], ["python3", "-c", PROBE, *args]))
    try:
        _wait_pod(who, name, ("Succeeded",))
        log = who.core.read_namespaced_pod_log(name, who.namespace, _preload_content=False).data.decode()
    finally:
        who.core.delete_namespaced_pod(name, who.namespace, grace_period_seconds=0)
    seen = {line.split()[0]: line.split()[1] for line in log.splitlines() if len(line.split()) >= 2}
    assert set(seen) == set(targets), log
    return seen


@pytest.fixture(scope="module")
def server(learners) -> str:
    """A web server in learner A's namespace (their model server's stand-in): its pod IP:port."""
    a, _ = learners
    name = _name("server")
    pod = _pod(name, a.env["MLLAB_IMAGE"], ["python3", "-m", "http.server", str(PORT)])
    a.core.create_namespaced_pod(a.namespace, pod)
    running = _wait_pod(a, name, ("Running",))
    yield f"{running.status.pod_ip}:{PORT}"
    a.core.delete_namespaced_pod(name, a.namespace, grace_period_seconds=0)


def _mlflow() -> str:
    from urllib.parse import urlsplit

    uri = os.environ.get("MLLAB_JOB_TRACKING_URI", "http://mlflow.mlflow.svc.cluster.local:5000/mlflow")
    parts = urlsplit(uri)
    return f"{parts.hostname}:{parts.port or 80}"


def test_a_learners_own_pods_reach_their_server(learners, server):
    a, _ = learners
    assert _probe(a, {server: "OPEN"}) == {server: "OPEN"}


def test_another_learner_cannot_reach_it_but_reaches_mlflow(learners, server):
    _, b = learners
    jupyter = os.environ.get("MLLAB_CLASS_JUPYTER", "jupyter.ml-labs.svc.cluster.local:8888")
    api = os.environ.get("MLLAB_CLASS_API", "kubernetes.default.svc.cluster.local:443")
    expected = {server: "CLOSED", _mlflow(): "OPEN", jupyter: "CLOSED", api: "CLOSED"}
    seen = _probe(b, expected)
    assert seen == expected, seen


# --- MLflow: each learner's own login, and nothing of another learner's ------------------------------


def _mlflow_call(who: str | None, method: str, path: str, body: dict[str, Any] | None = None, password: str = ""):
    """(status, JSON) of an MLflow REST call as learner `who` (their generated password), through
    MLFLOW_TRACKING_URI (MLflow as the machine running the tests reaches it)."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    base = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not base.startswith("http"):
        _absent("MLFLOW_TRACKING_URI (MLflow as this machine reaches it) is not set")
    url = base.rstrip("/") + "/api/2.0/mlflow/" + path
    data = None
    if method == "GET" and body:
        url += "?" + urllib.parse.urlencode(body)
    elif body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if who:
        secret = password or (_class_dir() / who / "mlflow-password").read_text().strip()
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{who}:{secret}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


@pytest.fixture(scope="module")
def a_experiment(learners) -> str:
    a, _ = learners
    status, out = _mlflow_call(a.name, "POST", "experiments/create", {"name": _name(f"isolation-{a.name}")})
    assert status == 200, (status, out)
    return out["experiment_id"]


def test_mlflow_wants_a_login_and_refuses_a_wrong_one(learners):
    a, _ = learners
    assert _mlflow_call(None, "GET", "experiments/search", {"max_results": 1})[0] == 401
    assert _mlflow_call(a.name, "GET", "experiments/search", {"max_results": 1}, password="not-it")[0] == 401


def test_a_learner_uses_their_own_experiment(learners, a_experiment):
    a, _ = learners
    status, out = _mlflow_call(a.name, "POST", "runs/create", {"experiment_id": a_experiment})
    assert status == 200, out
    assert _mlflow_call(a.name, "GET", "experiments/get", {"experiment_id": a_experiment})[0] == 200


def test_another_learner_cannot_read_or_write_it(learners, a_experiment):
    _, b = learners
    assert _mlflow_call(b.name, "GET", "experiments/get", {"experiment_id": a_experiment})[0] == 403
    assert _mlflow_call(b.name, "POST", "runs/create", {"experiment_id": a_experiment})[0] == 403
    assert _mlflow_call(b.name, "POST", "experiments/delete", {"experiment_id": a_experiment})[0] == 403


def test_another_learner_cannot_move_their_model_alias(learners):
    a, b = learners
    model = _name(f"isolation-model-{a.name}")
    assert _mlflow_call(a.name, "POST", "registered-models/create", {"name": model})[0] == 200
    alias = {"name": model, "alias": "champion", "version": "1"}
    # A may (the version does not exist: not found, not forbidden); B may not touch it at all
    assert _mlflow_call(a.name, "POST", "registered-models/alias", alias)[0] == 404
    assert _mlflow_call(b.name, "POST", "registered-models/alias", alias)[0] == 403
    assert (
        _mlflow_call(b.name, "POST", "registered-models/set-tag", {"name": model, "key": "k", "value": "v"})[0] == 403
    )
    assert (
        _mlflow_call(a.name, "POST", "registered-models/set-tag", {"name": model, "key": "k", "value": "v"})[0] == 200
    )


# --- JupyterHub: each learner's notebook, in their namespace, reached only with their login -------


class HubUser:
    """A learner logged in to the hub as a browser does (the login form, its _xsrf cookie), with an
    API token the hub made for them from that session."""

    def __init__(self, hub: str, name: str) -> None:
        import requests

        self.hub, self.name = hub, name
        self.session = requests.Session()
        self.session.get(hub + "hub/login", timeout=30).raise_for_status()
        xsrf = self.session.cookies.get("_xsrf")
        assert xsrf, "the hub's login page set no _xsrf cookie"
        password = (_class_dir() / name / "hub-password").read_text().strip()
        r = self.session.post(
            hub + "hub/login",
            data={"username": name, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=60,
        )
        assert r.status_code == 302, f"{name}'s login with their password: {r.status_code} {r.text[:300]}"
        # The hub ties its XSRF token to the login: the anonymous one no longer passes, and a page of
        # the logged-in session sets the new one (as a browser's next page load does).
        for cookie in [c for c in self.session.cookies if c.name == "_xsrf"]:
            self.session.cookies.clear(cookie.domain, cookie.path, cookie.name)
        r = self.session.get(hub + "hub/home", timeout=30)
        assert r.status_code == 200, f"{name}'s hub home page: {r.status_code}"
        xsrf = self.session.cookies.get("_xsrf")
        r = self.session.post(
            hub + f"hub/api/users/{name}/tokens",
            json={"note": "mllab e2e", "expires_in": 1800},
            headers={"X-XSRFToken": xsrf},
            timeout=30,
        )
        assert r.status_code == 201, f"{name}'s token: {r.status_code} {r.text[:300]}"
        self.token = r.json()["token"]

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        """A request to the hub or a notebook (path under the hub's base URL) with this learner's
        token, or with `token`."""
        import requests

        headers = {"Authorization": f"token {token or self.token}"}
        return requests.request(method, self.hub + path, headers=headers, timeout=60, allow_redirects=False, **kwargs)


def _hub_url() -> str:
    url = os.environ.get("MLLAB_CLASS_HUB_URL", "")
    if not url:
        _absent("MLLAB_CLASS_HUB_URL (the hub's public URL as this machine reaches it) is not set")
    return url.rstrip("/") + "/"


@pytest.fixture(scope="module")
def notebooks(learners):
    """Every learner of MLLAB_CLASS_LEARNERS logged in, with their notebook started through the hub's
    REST API and ready; stopped at the end (their PVCs stay, as the hub keeps them)."""
    hub = _hub_url()
    users = {name: HubUser(hub, name) for name in _class_names()}  # the learners fixture's names, all of them
    for user in users.values():
        r = user.call("POST", f"hub/api/users/{user.name}/server")
        assert r.status_code in (201, 202), f"{user.name}'s server: {r.status_code} {r.text[:300]}"
    deadline = time.monotonic() + 600
    pending = set(users)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            model = users[name].call("GET", f"hub/api/users/{name}").json()
            if (model.get("servers") or {}).get("", {}).get("ready"):
                pending.discard(name)
        time.sleep(3)
    try:
        assert not pending, f"notebooks not ready in 600 s: {sorted(pending)}"
        yield users
    finally:
        for user in users.values():
            user.call("DELETE", f"hub/api/users/{user.name}/server")


def _notebook_pod(who: Learner) -> Any:
    pods = who.core.list_namespaced_pod(who.namespace, label_selector="component=singleuser-server").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def test_a_wrong_password_or_a_name_off_the_roster_does_not_log_in(learners):
    import requests

    hub = _hub_url()
    for name, password in ((learners[0].name, "not-it"), ("mallory", "whatever")):
        session = requests.Session()
        session.get(hub + "hub/login", timeout=30)
        r = session.post(
            hub + "hub/login",
            data={"username": name, "password": password, "_xsrf": session.cookies.get("_xsrf")},
            allow_redirects=False,
            timeout=60,
        )
        assert r.status_code == 403, (name, r.status_code)


def test_the_hub_spawns_each_notebook_in_the_learners_namespace_as_their_account(learners, notebooks):
    a, _ = learners
    pod = _notebook_pod(a)
    assert pod.status.phase == "Running"
    assert pod.spec.service_account_name == "mllab-learner"  # classroom_account: bound in their namespace only
    assert pod.metadata.labels.get("mllab.io/learner") == a.name
    (container,) = pod.spec.containers
    assert container.security_context.run_as_non_root and not container.security_context.allow_privilege_escalation
    assert container.security_context.capabilities.drop == ["ALL"]
    claims = [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim]
    assert claims == ["notebook"]
    assert a.core.read_namespaced_persistent_volume_claim("notebook", a.namespace).status.phase == "Bound"
    # the notebook is the learner's environment: their namespace for the labs, their MLflow login
    env = {e.name: e.value for e in container.env or []}
    assert env["MLLAB_NAMESPACE"] == a.namespace and env["MLLAB_LEARNER"] == a.name
    assert [e.secret_ref.name for e in container.env_from or []] == ["mlflow-credentials"]


def test_a_learner_reaches_their_own_notebook(learners, notebooks):
    a, _ = learners
    r = notebooks[a.name].call("GET", f"user/{a.name}/api/status")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert "started" in r.json()


def test_another_learners_credentials_get_403_on_it(learners, notebooks):
    a, b = learners
    theirs = notebooks[b.name]
    # B's token on A's notebook, and B's hub session (cookie) there: both refused
    assert theirs.call("GET", f"user/{a.name}/api/status").status_code == 403
    for page in ("api/status", "lab"):  # the API refuses; the page sends B to the hub's OAuth, which refuses
        r = theirs.session.get(theirs.hub + f"user/{a.name}/{page}", timeout=60, allow_redirects=True)
        assert r.status_code == 403, (page, r.status_code, r.url)
    # nor can B see, start or stop A's server through the hub
    assert theirs.call("GET", f"hub/api/users/{a.name}").status_code in (403, 404)
    assert theirs.call("DELETE", f"hub/api/users/{a.name}/server").status_code in (403, 404)
    # and A's notebook is still there
    assert notebooks[a.name].call("GET", f"user/{a.name}/api/status").status_code == 200


def test_another_learners_pods_cannot_open_a_connection_to_it(learners, notebooks):
    a, b = learners
    target = f"{_notebook_pod(a).status.pod_ip}:{os.environ.get('MLLAB_CLASS_NOTEBOOK_PORT', '8888')}"
    assert _probe(b, {target: "CLOSED"}) == {target: "CLOSED"}


def test_the_hubs_memory_with_every_notebook_running(learners, notebooks):
    """The hub's container memory (kubelet's stats summary, working set) with len(notebooks)
    servers running, written to MLLAB_CLASS_REPORT for the run's log."""
    from kubernetes import client, config

    admin = os.environ.get("MLLAB_KUBECONFIG")
    if not admin:
        _absent("MLLAB_KUBECONFIG (the admin's, to read the kubelet's stats) is not set")
    api = config.new_client_from_config(config_file=admin)
    core = client.CoreV1Api(api)
    (hub,) = core.list_namespaced_pod(
        "ml-labs", label_selector="app.kubernetes.io/name=jupyterhub,app.kubernetes.io/component=hub"
    ).items
    response = api.call_api(
        f"/api/v1/nodes/{hub.spec.node_name}/proxy/stats/summary",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    summary = json.loads(response.data)
    (stats,) = [p for p in summary["pods"] if p["podRef"]["name"] == hub.metadata.name]
    used = {c["name"]: c["memory"]["workingSetBytes"] for c in stats["containers"]}
    running = [n for n in notebooks if _notebook_pod(Learner(n)).status.phase == "Running"]
    assert len(running) == len(notebooks) >= 3, running
    mib = sum(used.values()) / 2**20
    assert 0 < mib < 1024, used  # within the hub's limit (jupyterhub_hub_resources)
    line = f"hub memory with {len(running)} notebooks running ({', '.join(running)}): {mib:.0f} MiB working set"
    report = os.environ.get("MLLAB_CLASS_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as f:
            f.write(line + "\n")
