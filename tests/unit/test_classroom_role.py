"""The classroom role rendered offline (playbooks/labs.yml, render-only mode) for a class of 30
learners, then checked object by object: every learner namespace has its quota (GPUs from the
roster), LimitRange, PodSecurity `restricted`, default-deny NetworkPolicies, an account bound only
there, and no Secret but its own token; nothing cluster-wide grants a learner anything; every
object passes the Kubernetes 1.34 OpenAPI schema (strict). The Service admission policy's CEL is
evaluated (cel-python) on Services it must allow and refuse, and its message checked. A bad roster
stops the run with every problem named and nothing rendered.

What a real API server does with these objects (authorization, the policy, PodSecurity, the
NetworkPolicies enforced) is tested with real requests in tests/e2e/test_class.py."""

from __future__ import annotations

import base64
import stat
from typing import Any

import harness  # tests/unit/platform (conftest.py)
import pytest
import yaml

pytestmark = pytest.mark.timeout(900)

PLAYBOOK = harness.ROOT / "playbooks" / "labs.yml"
ROSTER: list[Any] = [f"student-{i:02d}" for i in range(1, 28)] + [
    {"name": "gpu-user", "gpus": 2},
    {"name": "big", "quota": {"requests.cpu": "8", "pods": "40"}},
    {"name": "x" * 55},  # the longest name the default prefix allows (63 - len("learner-"))
]
CASES = {
    # The classroom alone: the class hub (on by default with a roster) is tests/unit/test_jupyterhub_role.py's.
    "class-30": {"labs_enabled": False, "jupyterhub_enabled": False, "mllab_learners": ROSTER, "classroom_gpus": 1},
    "class-bad": {
        "labs_enabled": False,
        "mllab_learners": [
            "Alice",
            "bob",
            "bob",
            "default",
            "y" * 56,
            {"name": "carl", "gpus": -1, "colour": "red"},
            {"gpus": 1},
        ],
    },
    "class-bad-prefix": {"labs_enabled": False, "mllab_learners_prefix": "", "mllab_learners": ["ml-labs", "kube-x"]},
}
LEARNER_KEYS = {"ResourceQuota", "LimitRange", "PersistentVolumeClaim", "ServiceAccount", "Role"}


@pytest.fixture(scope="module")
def runs() -> dict[str, harness.Run]:
    return harness.render_playbook(PLAYBOOK, CASES)


@pytest.fixture(scope="module")
def klass(runs) -> harness.Run:
    run = runs["class-30"]
    assert run.rc == 0, run.output[-3000:]
    return run


def _in(run: harness.Run, namespace: str) -> list[dict[str, Any]]:
    return [o for o in run.objects if o["metadata"].get("namespace") == namespace]


def test_one_namespace_per_learner_and_nothing_else_namespaced_elsewhere(klass):
    names = sorted(o["metadata"]["name"] for o in klass.of_kind("Namespace"))
    want = sorted(f"learner-{(e['name'] if isinstance(e, dict) else e)}" for e in ROSTER)
    assert names == want and len(names) == 30
    stray = {o["metadata"].get("namespace") for o in klass.objects} - set(want) - {None}
    assert stray == {"mlflow"}, f"objects outside the learner namespaces: {stray}"
    assert sorted(o["kind"] for o in _in(klass, "mlflow")) == ["Job", "Secret"]
    cluster_wide = sorted({o["kind"] for o in klass.objects if "namespace" not in o["metadata"]})
    assert cluster_wide == ["Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert (klass.render_dir / "classroom.yaml").is_file()
    assert stat.S_IMODE((klass.render_dir / "classroom.yaml").stat().st_mode) == 0o600


@pytest.mark.parametrize("entry", ROSTER, ids=lambda e: (e["name"] if isinstance(e, dict) else e)[:12])
def test_every_learner_namespace_is_complete_and_closed(klass, entry):
    name = entry["name"] if isinstance(entry, dict) else entry
    ns = f"learner-{name}"
    objects = _in(klass, ns)
    kinds = {o["kind"] for o in objects}
    assert kinds >= LEARNER_KEYS | {"RoleBinding", "Secret", "NetworkPolicy"}, kinds
    namespace = klass.get("Namespace", ns)
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["mllab.io/learner"] == name and labels["mllab.io/namespace-role"] == "learner"
    for o in objects:
        assert o["metadata"]["labels"]["mllab.io/learner"] == name, f"{o['kind']} {o['metadata']['name']}"

    hard = klass.get("ResourceQuota", "mllab-quota", ns)["spec"]["hard"]
    gpus = entry.get("gpus", 1) if isinstance(entry, dict) else 1  # classroom_gpus: 1 in this case
    assert hard["requests.nvidia.com/gpu"] == str(gpus)
    assert hard["services.nodeports"] == "0" and hard["services.loadbalancers"] == "0"
    own = entry.get("quota", {}) if isinstance(entry, dict) else {}
    assert hard["requests.cpu"] == own.get("requests.cpu", "4") and hard["pods"] == own.get("pods", "20")
    assert klass.get("LimitRange", "mllab-limits", ns)["spec"]["limits"][0]["defaultRequest"]

    # The only Secrets: the learner's own token, for their own account, and their own MLflow login.
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert sorted(secrets) == ["mlflow-credentials", "mllab-learner-token"]
    token = secrets["mllab-learner-token"]
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "mllab-learner"
    assert "data" not in token and "stringData" not in token
    login = {k: base64.b64decode(v).decode() for k, v in secrets["mlflow-credentials"]["data"].items()}
    assert login["MLFLOW_TRACKING_USERNAME"] == name
    password = klass.artifacts_dir / "class" / name / "mlflow-password"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert login["MLFLOW_TRACKING_PASSWORD"] == password.read_text().strip()

    # Bound only here, only to this namespace's Role, only this namespace's account.
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mllab-learner"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mllab-learner", "namespace": ns}]
    role = klass.get("Role", "mllab-learner", ns)
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert not {"secrets", "roles", "rolebindings", "serviceaccounts", "namespaces"} & set(rule["resources"]), rule
        # a ServiceMonitor may name other namespaces, a PrometheusRule reads every namespace's metrics
        assert "monitoring.coreos.com" not in rule["apiGroups"], rule
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert set(accounts) == {"mllab-learner", "mllab-lab-runner"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())


def _namespace(peer: dict[str, Any]) -> str:
    return peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]


def test_the_learners_mlflow_users_are_made_in_mlflows_namespace_with_the_admins_login(klass):
    secret = klass.get("Secret", "mlflow-learners", "mlflow")
    users = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(users) == 30 and len(set(users.values())) == 30, "one distinct password per learner"
    (job,) = klass.of_kind("Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", e.get("value")) for e in container["env"]}
    assert env["MLFLOW_TRACKING_USERNAME"] == {"name": "mlflow-auth", "key": "admin-username"}
    assert env["MLFLOW_TRACKING_PASSWORD"] == {"name": "mlflow-auth", "key": "admin-password"}
    assert env["MLFLOW_TRACKING_URI"].startswith("http://mlflow.mlflow.svc.cluster.local:5000")
    assert job["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "mlflow-learners"
    assert "create_user" in container["command"][-1] and "update_user_password" in container["command"][-1]
    # MLflow's own image (the auth client imports the server's app and its Flask-WTF), not the lab image
    assert container["image"].split("/")[-1].startswith("mlflow:"), container["image"]
    # no learner namespace holds another learner's or the admin's login
    for s in klass.of_kind("Secret"):
        if s["metadata"]["namespace"] != "mlflow" and "data" in s:
            owner = s["metadata"]["labels"]["mllab.io/learner"]
            assert base64.b64decode(s["data"]["MLFLOW_TRACKING_USERNAME"]).decode() == owner


def test_network_policies_deny_by_default_and_allow_only_what_the_labs_need(klass):
    ns = "learner-student-01"
    policies = {o["metadata"]["name"]: o["spec"] for o in _in(klass, ns) if o["kind"] == "NetworkPolicy"}
    deny = policies["mllab-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    egress = [rule for spec in policies.values() for rule in spec.get("egress", [])]
    peers = [peer for rule in egress for peer in rule["to"]]
    assert {"podSelector": {}} in peers  # the learner's own pods
    outside = [_namespace(p) for p in peers if "namespaceSelector" in p]
    assert sorted(outside) == ["kube-system", "mlflow"]
    for rule in egress:
        if any("namespaceSelector" in p for p in rule["to"]):
            assert rule["ports"], f"egress to another namespace without a port: {rule}"
    ingress = [peer for spec in policies.values() for rule in spec.get("ingress", []) for peer in rule["from"]]
    sources = sorted(_namespace(p) for p in ingress if "namespaceSelector" in p)
    # Prometheus only: no pod of the labs namespace (the one-person JupyterLab) reaches a learner's
    # pods; with the hub on, only its hub and proxy reach the notebooks (test_jupyterhub_role.py)
    assert sources == ["observability"]
    assert not [p for p in peers + ingress if "ipBlock" in p], "no address range is open"


def test_every_object_matches_the_kubernetes_openapi_schema(klass):
    import kubernetes_validate

    assert len(klass.objects) > 30 * 10
    for obj in klass.objects:
        plain = {k: v for k, v in obj.items() if k != "_bundle"}
        try:
            kubernetes_validate.validate(plain, harness.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


# --- the Service admission policy: its CEL evaluated as the API server would -------------------------


def _policy(klass) -> dict[str, Any]:
    return klass.get("ValidatingAdmissionPolicy", "mllab-learner-services")["spec"]


def _admit(klass, service: dict[str, Any]) -> list[str]:
    """The messages of the validations `service` fails (empty: admitted)."""
    import celpy

    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel(service)}
    refused = []
    for v in _policy(klass)["validations"]:
        if not env.program(env.compile(v["expression"])).evaluate(activation):
            refused.append(str(env.program(env.compile(v["messageExpression"])).evaluate(activation)))
    return refused


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "learner-a"}, "spec": spec}


@pytest.mark.parametrize(
    "service",
    [
        _svc("plain", ports=[{"port": 80}]),
        _svc("cluster-ip", type="ClusterIP", ports=[{"port": 80}]),
        _svc("headless", type="ClusterIP", clusterIP="None", ports=[{"port": 29500}]),
        _svc("empty-ips", type="ClusterIP", externalIPs=[]),
    ],
    ids=lambda s: s["metadata"]["name"],
)
def test_the_service_policy_admits_cluster_ip_services(klass, service):
    assert _admit(klass, service) == []


@pytest.mark.parametrize(
    ("service", "words"),
    [
        (_svc("np", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]), ["np", "NodePort", "ClusterIP"]),
        (_svc("lb", type="LoadBalancer"), ["lb", "LoadBalancer", "port-forward"]),
        (_svc("en", type="ExternalName", externalName="mlflow.mlflow.svc"), ["en", "ExternalName"]),
        (_svc("eip", type="ClusterIP", externalIPs=["10.0.0.9"]), ["eip", "externalIPs"]),
    ],
    ids=["nodeport", "loadbalancer", "externalname", "externalips"],
)
def test_the_service_policy_refuses_what_leaves_the_cluster_and_says_why(klass, service, words):
    messages = _admit(klass, service)
    assert len(messages) == 1, messages
    for word in words:
        assert word in messages[0], messages[0]


def test_the_policy_binds_to_learner_namespaces_only_and_denies(klass):
    binding = klass.get("ValidatingAdmissionPolicyBinding", "mllab-learner-services")["spec"]
    assert binding["validationActions"] == ["Deny"]
    assert binding["matchResources"]["namespaceSelector"] == {"matchLabels": {"mllab.io/namespace-role": "learner"}}
    assert _policy(klass)["failurePolicy"] == "Fail"
    rules = _policy(klass)["matchConstraints"]["resourceRules"]
    services = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["services"]}
    assert rules == [services]


# --- bad rosters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "class-bad",
            [
                "mllab_learners[0] = 'Alice' is not a valid learner name",
                "mllab_learners[2] = 'bob' is already mllab_learners[1]",
                "mllab_learners[3] = 'default' is reserved",
                "mllab_learners[4] = '" + "y" * 56 + "' is too long: its namespace",
                "mllab_learners[5] has unknown key(s) colour",
                "mllab_learners[5].gpus = -1 must be a whole number",
                "mllab_learners[6] has no name",
            ],
        ),
        (
            "class-bad-prefix",
            ["mllab_learners[0] = 'ml-labs' is reserved", "mllab_learners[1] = 'kube-x' is reserved"],
        ),
    ],
)
def test_a_bad_roster_names_every_problem_and_renders_nothing(runs, case, expected):
    run = runs[case]
    assert run.rc != 0
    assert f"Class checks found {len(expected)} problem(s); nothing was applied" in run.output, run.output[-3000:]
    for text in expected:
        assert text in run.output, f"{text!r} not in the output"
    assert not run.objects and not (run.render_dir / "classroom.yaml").exists()


def test_the_rendered_bundle_round_trips(klass):
    docs = [d for d in yaml.safe_load_all((klass.render_dir / "classroom.yaml").read_text()) if d]
    assert len(docs) == len(klass.objects)
