"""Unit tests of plugins/filter/mllab_platform.py: the decisions the platform layer takes
before anything is applied (images, quantities, quotas, kubeconfig, names, MLflow hosts)."""

from __future__ import annotations

from decimal import Decimal

import mllab_platform as mp
import pytest

# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "ghcr.io/mlflow/mlflow:v3.17.2-full",
        "quay.io/jupyter/pytorch-notebook:cuda12-python-3.13.14",
        "docker.io/library/postgres:17.6",
        "postgres:17.6",
        "localhost:32000/mllab/jupyter:0.1.0",
        "registry.example.org:5000/team/img@sha256:" + "a" * 64,
        "kserve/sklearnserver:v0.20.0@sha256:" + "0" * 64,
    ],
)
def test_pinned_image_references_pass(ref):
    assert mp.mllab_image_problems({"x_image": ref}) == []


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("quay.io/jupyter/scipy-notebook", "has no tag"),
        ("ghcr.io/mlflow/mlflow:latest", "moving tag 'latest'"),
        ("ghcr.io/MLflow/mlflow:v3", "is malformed"),
        ("mlflow server:v3", "is malformed"),
        ("img@sha256:abc", "is malformed"),
        ("", "is empty"),
        (None, "is empty"),
    ],
)
def test_bad_image_references_are_named_with_the_fix(ref, expected):
    (problem,) = mp.mllab_image_problems({"jupyter_image": ref})
    assert problem.startswith(f"jupyter_image = {ref!r}") and expected in problem


# --- quantities and resources ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (4, Decimal(4)),
        (0.25, Decimal("0.25")),
        ("1Gi", Decimal(2**30)),
        ("512Mi", Decimal(2**29)),
        ("1G", Decimal(10**9)),
        ("1.5", Decimal("1.5")),
        ("1e3", Decimal(1000)),
        ("100k", Decimal(100000)),
    ],
)
def test_quantities_parse_like_kubernetes(value, expected):
    assert mp.mllab_quantity(value) == expected


@pytest.mark.parametrize("value", ["2 GB", "1gi", "abc", "", True, "1.2.3"])
def test_malformed_quantities_are_rejected(value):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        mp.mllab_quantity(value)
    (problem,) = mp.mllab_quantity_problems({"x.size": value})
    assert problem.startswith("x.size = ")


# Every form the parser accepts, negative: plain, decimal, decimal SI, binary SI, exponent, and
# the numbers YAML gives (int, float).
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", Decimal(-1)),
        ("-1.5", Decimal("-1.5")),
        ("-500m", Decimal("-0.5")),
        ("-100k", Decimal(-100000)),
        ("-2Gi", Decimal(-(2**31))),
        ("-1e3", Decimal(-1000)),
        (-4, Decimal(-4)),
        (-0.25, Decimal("-0.25")),
    ],
)
def test_negative_quantities_are_named_with_their_variable(value, expected):
    assert mp.mllab_quantity(value) == expected  # parsed: the problem is the sign, not the form
    assert mp.mllab_quantity_problems({"mlflow_storage_size": value}) == [
        f"mlflow_storage_size = {value!r} is negative: use a positive quantity"
    ]


@pytest.mark.parametrize("value", ["0", "-0", "+1", 0, "0m"])
def test_zero_and_explicit_plus_are_not_negative(value):
    assert mp.mllab_quantity_problems({"mlflow_storage_size": value}) == []


def test_each_negative_quantity_is_its_own_problem():
    values = {"a.cpu": "-1", "b.memory": "2Gi", "c.memory": "-2Gi"}
    assert mp.mllab_quantity_problems(values) == [
        "a.cpu = '-1' is negative: use a positive quantity",
        "c.memory = '-2Gi' is negative: use a positive quantity",
    ]


def test_resources_need_requests_and_limits_and_request_at_most_limit():
    good = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert mp.mllab_resources_problems(good, "jupyter_resources") == []
    (missing,) = mp.mllab_resources_problems({"requests": {"cpu": "1", "memory": "1Gi"}}, "jupyter_resources")
    assert "jupyter_resources.limits" in missing and "must set cpu and memory" in missing
    inverted = {"requests": {"cpu": "4", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    (problem,) = mp.mllab_resources_problems(inverted, "jupyter_resources")
    assert "jupyter_resources.requests.cpu = 4 is above jupyter_resources.limits.cpu = 2" in problem
    assert mp.mllab_resources_problems("2 cpus", "v") == ["v = '2 cpus' must be a mapping with requests and limits"]


# --- quotas ----------------------------------------------------------------------------------

JUPYTER = {
    "name": "jupyter",
    "namespace": "labs",
    "var": "jupyter_resources",
    "requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
    "limits": {"cpu": "2", "memory": "4Gi"},
}


def test_workloads_within_the_quota_pass():
    quotas = {"labs": {"requests.cpu": "4", "limits.memory": "32Gi", "requests.nvidia.com/gpu": "1"}}
    assert mp.mllab_quota_problems(quotas, [JUPYTER]) == []


def test_a_quota_below_a_workload_request_names_both():
    quotas = {"labs": {"requests.cpu": "250m", "requests.nvidia.com/gpu": "0", "limits.memory": "2Gi"}}
    problems = mp.mllab_quota_problems(quotas, [JUPYTER])
    assert len(problems) == 3
    assert problems[0].startswith("training_quotas['labs']['requests.cpu'] = 250m is below the 0.5")
    assert "jupyter 500m (jupyter_resources)" in problems[0]
    assert "requests.nvidia.com/gpu" in problems[1] and "limits.memory" in problems[2]


def test_quota_sums_workloads_and_pvcs_of_the_namespace_only():
    pvcs = mp.mllab_pvc_workloads([{"name": "a", "namespace": "labs", "size": "30Gi"}], "training_pvcs")
    other = dict(JUPYTER, namespace="serving")
    quotas = {"labs": {"requests.storage": "40Gi", "requests.cpu": "1"}}
    workspace = {"name": "PVC ws", "namespace": "labs", "storage": "20Gi", "var": "jupyter_workspace_size"}
    (problem,) = mp.mllab_quota_problems(quotas, [*pvcs, workspace, other])
    assert "requests.storage'] = 40Gi is below the 53687091200" in problem
    assert "PVC a 30Gi (training_pvcs)" in problem and "PVC ws 20Gi" in problem


def test_malformed_quota_values_are_reported_not_raised():
    (problem,) = mp.mllab_quota_problems({"labs": {"requests.cpu": "lots"}}, [JUPYTER])
    assert problem.startswith("training_quotas['labs']['requests.cpu'] = 'lots' is not a Kubernetes quantity")


# --- choices, names, paths, PVCs, limit ranges -------------------------------------------------


def test_unknown_storage_backend_is_named():
    (problem,) = mp.mllab_choice_problems({"mlflow_backend": ["mysql", ["sqlite", "postgresql"]]})
    assert problem == "mlflow_backend = 'mysql' is not supported: use one of sqlite, postgresql"
    assert mp.mllab_choice_problems({"mlflow_backend": ["sqlite", ["sqlite", "postgresql"]]}) == []


def test_names_and_paths():
    assert mp.mllab_name_problems({"ns": "ml-labs"}) == []
    (problem,) = mp.mllab_name_problems({"labs": "ML_Labs"}, prefix="platform_common_namespaces.")
    assert problem.startswith("platform_common_namespaces.labs = 'ML_Labs' is not a valid Kubernetes name")
    assert mp.mllab_name_problems({"host": "lab.example.org"}, kind="subdomain") == []
    assert mp.mllab_name_problems({"ns": "lab.example.org"}) != []
    assert mp.mllab_path_problems({"p": "/mlflow", "q": "/", "r": "/a/b"}) == []
    assert len(mp.mllab_path_problems({"p": "mlflow", "q": "/jupyter/", "r": ""})) == 3


@pytest.mark.parametrize("value", ["64m", "64M", "1m", "1024k", "2g", "1048576", 512 * 1024 * 1024])
def test_nginx_sizes_of_at_least_1m_are_request_caps(value):
    assert mp.mllab_body_size_problems({"platform_common_ingress_max_body_size": value}) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "platform_common_ingress_max_body_size = '0' means no limit to nginx"),
        (0, "platform_common_ingress_max_body_size = 0 means no limit to nginx"),
        ("0m", "platform_common_ingress_max_body_size = '0m' means no limit to nginx"),
        ("unlimited", "platform_common_ingress_max_body_size = 'unlimited' is not an nginx size"),
        ("64MB", "platform_common_ingress_max_body_size = '64MB' is not an nginx size"),
        ("-1", "platform_common_ingress_max_body_size = '-1' is not an nginx size"),
        ("1.5m", "platform_common_ingress_max_body_size = '1.5m' is not an nginx size"),
        ("", "platform_common_ingress_max_body_size = '' is not an nginx size"),
        (True, "platform_common_ingress_max_body_size = True is not an nginx size"),
        ("64", "platform_common_ingress_max_body_size = '64' is below 1m (no suffix = bytes)"),
        ("1023k", "platform_common_ingress_max_body_size = '1023k' is below 1m"),
    ],
)
def test_a_missing_or_malformed_request_cap_is_named_with_the_accepted_form(value, expected):
    (problem,) = mp.mllab_body_size_problems({"platform_common_ingress_max_body_size": value})
    assert problem.startswith(expected), problem
    assert "64m" in problem


def test_no_ingress_fronts_mlflow_without_its_login():
    (problem,) = mp.mllab_ingress_login_problems({"ingress": True, "mlflow_auth": False, "mlflow_namespace": "ml"})
    assert problem.startswith("mlflow_auth_enabled: false together with platform_common_ingress_enabled: true")
    assert "keep mlflow_auth_enabled: true" in problem and "set platform_common_ingress_enabled: false" in problem
    assert "kubectl port-forward -n ml svc/mlflow 5000:5000" in problem
    for fine in (
        {"ingress": True, "mlflow_auth": True},
        {"ingress": False, "mlflow_auth": False},
        {"ingress": True, "mlflow": False, "mlflow_auth": False},  # no MLflow, no MLflow Ingress
    ):
        assert mp.mllab_ingress_login_problems(fine) == [], fine


def test_pvc_and_limit_range_checks():
    good = [{"name": "datasets", "namespace": "training", "size": "20Gi", "access_modes": ["ReadWriteOnce"]}]
    assert mp.mllab_pvc_problems(good, "training_pvcs", ["training", "serving", "labs"]) == []
    bad = [{"name": "Data", "namespace": "prod", "size": "20 GB", "access_modes": ["RWO"]}]
    problems = mp.mllab_pvc_problems(bad, "training_pvcs", ["training", "serving", "labs"])
    assert len(problems) == 4 and all(p.startswith("training_pvcs[0] (Data)") for p in problems)
    lr = {"default": {"cpu": "1"}, "defaultRequest": {"cpu": "2"}, "max": {"cpu": "8"}}
    (problem,) = mp.mllab_limit_range_problems(lr, "training_limit_range")
    assert (
        problem == "training_limit_range.defaultRequest.cpu = 2 is above training_limit_range.default.cpu = 1: lower it"
    )


# --- kubeconfig ------------------------------------------------------------------------------

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: microk8s-cluster, cluster: {server: "https://10.0.0.1:16443"}}]
users: [{name: admin, user: {token: x}}]
contexts: [{name: microk8s, context: {cluster: microk8s-cluster, user: admin}}]
current-context: microk8s
"""


def test_kubeconfig_checks(tmp_path):
    info = {"path": "/a/kubeconfig", "exists": True, "readable": True, "content": KUBECONFIG, "context": ""}
    assert mp.mllab_kubeconfig_problems(info) == []
    (missing,) = mp.mllab_kubeconfig_problems(dict(info, exists=False))
    assert missing.startswith("mllab_kubeconfig = /a/kubeconfig does not exist on the controller")
    assert "mllab_manage_microk8s: false" in missing
    (unreadable,) = mp.mllab_kubeconfig_problems(dict(info, readable=False, content=None))
    assert "is not readable" in unreadable
    (not_yaml,) = mp.mllab_kubeconfig_problems(dict(info, content="a: [b"))
    assert "is not valid YAML" in not_yaml
    (no_clusters,) = mp.mllab_kubeconfig_problems(dict(info, content="kind: Config\nclusters: []\n"))
    assert "is not a kubeconfig" in no_clusters
    (ctx,) = mp.mllab_kubeconfig_problems(dict(info, context="prod"))
    assert ctx == "context 'prod' is not in mllab_kubeconfig = /a/kubeconfig: use one of ['microk8s']"
    (empty,) = mp.mllab_kubeconfig_problems(dict(info, path=""))
    assert empty.startswith("mllab_kubeconfig is empty")


# --- MLflow allowed hosts ----------------------------------------------------------------------


def test_allowed_hosts_cover_service_names_ports_and_ingress_host():
    import fnmatch

    hosts = mp.mllab_allowed_hosts("mlflow", "mlflow", ["lab.example.org"])

    def allowed(host: str) -> bool:  # MLflow's rule: exact match unless the pattern has a *
        return any(fnmatch.fnmatch(host, p) if "*" in p else host == p for p in hosts)

    for host in (
        "mlflow:5000",
        "mlflow.mlflow:5000",
        "mlflow.mlflow.svc.cluster.local:5000",
        "lab.example.org",
        "lab.example.org:443",
        "localhost:5000",
        "10.1.2.3:5000",
        "192.168.1.20",
    ):
        assert allowed(host), host
    assert not allowed("evil.example.com")
    assert len(hosts) == len(set(hosts))


def test_filters_are_registered():
    names = set(mp.FilterModule().filters())
    assert {"mllab_image_problems", "mllab_quota_problems", "mllab_kubeconfig_problems", "mllab_allowed_hosts"} <= names
    assert {"mllab_body_size_problems", "mllab_ingress_login_problems"} <= names
    assert mp.FilterModule().filters()["mllab_quantity"]("250m") == 0.25


# --- apply batches (roles/platform_common/tasks/apply_cluster.yml) ----------------------------------


def _obj(kind: str, name: str, namespace: str = "ns") -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}}


def test_apply_batches_keep_the_order_and_wait_for_each_workload_alone():
    objs = [
        _obj("ServiceAccount", "hub"),
        _obj("ConfigMap", "hub"),
        _obj("Deployment", "proxy"),
        _obj("Service", "proxy"),
        _obj("Deployment", "hub"),
        _obj("StatefulSet", "db"),
        _obj("Role", "a", "learner-a"),
        _obj("RoleBinding", "a", "learner-a"),
    ]
    batches = mp.mllab_apply_batches(objs)
    assert [([o["kind"] for o in b["objects"]], b["wait"]) for b in batches] == [
        (["ServiceAccount", "ConfigMap"], False),
        (["Deployment"], True),
        (["Service"], False),
        (["Deployment"], True),
        (["StatefulSet"], True),
        (["Role", "RoleBinding"], False),
    ]
    # every object once, in the order given
    assert [o for b in batches for o in b["objects"]] == objs
    assert mp.mllab_apply_batches([]) == []
    assert mp.mllab_batch_label(batches[1]) == "Deployment ns/proxy"
    assert mp.mllab_batch_label(batches[0]) == "2 objects: 1 ServiceAccount, 1 ConfigMap"
    many = mp.mllab_apply_batches([_obj("Role", f"r{i}") for i in range(60)] + [_obj("DaemonSet", "x")])
    assert len(many) == 2 and len(many[0]["objects"]) == 60 and many[1]["wait"]
