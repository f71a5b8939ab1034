"""Platform layer rendered offline for the settings matrix (defaults, GPU, PostgreSQL + S3,
auth, existing cluster, ingress off), then checked: Kubernetes OpenAPI schemas
(kubernetes-validate), CRD schemas of the custom resources (from the pinned upstream
releases), Helm values against the charts' own values.yaml, and policy (limits, probes,
non-root, pinned images, labels, no secret values outside Secrets, least-privilege RBAC).
Every Ingress caps the request size and fronts a login. Bad settings must stop the run
before anything is applied, naming the value."""

from __future__ import annotations

import base64
import json
import re
import stat
from typing import Any

import harness  # tests/unit/platform (conftest.py)
import mllab_platform
import pytest
from needs import missing  # tests/unit/needs.py: skips here, fails under CI=true

pytestmark = pytest.mark.timeout(900)

CASE_NAMES = list(harness.CASES)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
CUSTOM_KINDS = {(g, k) for g, k in harness.CRDS}


@pytest.fixture(scope="module")
def matrix() -> dict[str, Any]:
    runs = {n: r for n, r in harness.render_matrix().items() if n in harness.CASES}
    failed = {n: r.output[-3000:] for n, r in runs.items() if r.rc != 0}
    assert not failed, f"render failed: {failed}"
    return runs


def _group(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] in WORKLOAD_KINDS:
        return [obj["spec"]["template"]["spec"]]
    return []


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for spec in _pod_specs(obj):
        out += spec.get("containers", []) + spec.get("initContainers", [])
    if obj["kind"] == "InferenceService":
        out.append(obj["spec"]["predictor"]["model"])
    return out


# --- the render itself ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_case_renders_every_role(matrix, case):
    run = matrix[case]
    bundles = {o["_bundle"] for o in run.objects}
    assert bundles == {"training", "mlflow", "jupyter", "kserve", "monitoring"}, run.output[-2000:]
    assert {"kserve-crd", "kserve", "kserve-runtime-configs"} <= set(run.helm)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_rendered_files_and_generated_secrets_are_private(matrix, case):
    run = matrix[case]
    for path in run.render_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    secrets_dir = run.artifacts_dir / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert run.secrets, "no secret was generated"
    for path in secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert re.fullmatch(r"[A-Za-z0-9]{32}", path.read_text().strip()), f"{path.name} is not a 32-char password"


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_core_objects_match_the_kubernetes_openapi_schema(matrix, case):
    import kubernetes_validate

    checked = 0
    for obj in matrix[case].objects:
        if (_group(obj), obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(harness.strip_private(obj), harness.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("case", CASE_NAMES)
def test_custom_resources_match_their_crd_schema(matrix, case):
    import jsonschema

    seen = set()
    for obj in matrix[case].objects:
        key = (_group(obj), obj["kind"])
        if key not in CUSTOM_KINDS:
            continue
        try:
            schema = harness.crd_schema(*key)
        except harness.UpstreamUnavailable as exc:
            missing(str(exc))
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(harness.strip_private(obj)), key=str)
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
        seen.add(obj["kind"])
    assert {"InferenceService", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= seen


def test_the_strict_crd_schema_catches_a_typo():
    """The CRD check must be able to fail: a misspelt field is rejected."""
    import jsonschema

    try:
        schema = harness.crd_schema("monitoring.coreos.com", "PodMonitor")
    except harness.UpstreamUnavailable as exc:
        missing(str(exc))
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "podMetricEndpoints": [{"port": "metrics"}]},
    }
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


def test_the_serving_runtimes_kserve_ships_match_the_crd():
    """The ClusterServingRuntimes our kserve-runtime-configs release installs (config/runtimes
    of the pinned KServe) validate against the same CRD, and sklearn serves v1 and v2."""
    import jsonschema
    import yaml

    try:
        schema = harness.crd_schema("serving.kserve.io", "ClusterServingRuntime")
        text = harness.upstream_file(harness.KSERVE_MODULE, "config/runtimes/kserve-sklearnserver.yaml")
    except harness.UpstreamUnavailable as exc:
        missing(str(exc))
    runtime = yaml.safe_load(text)
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(runtime))
    assert {"v1", "v2"} <= set(runtime["spec"]["protocolVersions"])
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "sklearn"


def _leaf_paths(values: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(values, dict) and values:
        return [p for k, v in values.items() for p in _leaf_paths(v, (*prefix, k))]
    return [prefix]


@pytest.mark.parametrize(
    ("release", "module", "values_path"),
    [
        ("kserve", harness.KSERVE_MODULE, "charts/kserve-resources/values.yaml"),
        ("kserve-runtime-configs", harness.KSERVE_MODULE, "charts/kserve-runtime-configs/values.yaml"),
        ("cert-manager", harness.CERT_MANAGER_MODULE, "deploy/charts/cert-manager/values.yaml"),
    ],
)
def test_helm_values_exist_in_the_pinned_charts(matrix, release, module, values_path):
    """Every value we set is a key the chart knows (a misspelt key is silently ignored by Helm)."""
    import yaml

    run = matrix["existing-cluster"]
    ours = run.helm[release]["values"]
    try:
        chart_values = yaml.safe_load(harness.upstream_file(module, values_path))
    except harness.UpstreamUnavailable as exc:
        missing(str(exc))
    assert ours
    for path in _leaf_paths(ours):
        node = chart_values
        for key in path:
            assert isinstance(node, dict) and key in node, f"{release}: {'.'.join(path)} is not in {values_path}"
            node = node[key]
    version = module.split("@")[1]
    assert run.helm[release]["chart_version"] == version


# --- policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_workload_has_limits_probes_and_runs_as_non_root(matrix, case):
    workloads = [o for o in matrix[case].objects if o["kind"] in (*WORKLOAD_KINDS, "InferenceService")]
    assert len(workloads) >= 3
    for obj in workloads:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        pod_sc = {}
        for spec in _pod_specs(obj):
            pod_sc = spec.get("securityContext", {})
            assert pod_sc.get("runAsNonRoot") is True, where
            assert pod_sc.get("runAsUser", 1) != 0, where
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for c in _containers(obj):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}/{c.get('name')}: {part}"
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            if obj["kind"] != "InferenceService":
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where}/{c['name']}: probes"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_image_is_pinned(matrix, case):
    images = {
        f"{o['kind']}/{o['metadata']['name']}/{c['name']}": c["image"]
        for o in matrix[case].objects
        for c in _containers(o)
        if "image" in c
    }
    assert images
    assert mllab_platform.mllab_image_problems(images) == []


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_object_carries_the_recommended_labels(matrix, case):
    for obj in matrix[case].objects:
        labels = obj["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"):
            assert key in labels, f"{obj['kind']} {obj['metadata']['name']} lacks {key}"
        for spec_holder in [obj["spec"]["template"]] if obj["kind"] in WORKLOAD_KINDS else []:
            assert "app.kubernetes.io/name" in spec_holder["metadata"]["labels"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_workload_has_a_service_and_an_ingress_when_enabled(matrix, case):
    run = matrix[case]
    ingress_on = harness.flag(run.settings.get("platform_common_ingress_enabled", True))
    for obj in run.of_kind("Deployment") + run.of_kind("StatefulSet"):
        ns, pod_labels = obj["metadata"]["namespace"], obj["spec"]["template"]["metadata"]["labels"]
        services = [
            s
            for s in run.of_kind("Service")
            if s["metadata"]["namespace"] == ns and s["spec"]["selector"].items() <= pod_labels.items()
        ]
        assert services, f"{obj['kind']} {obj['metadata']['name']} has no Service"
    ingresses = {i["metadata"]["name"]: i for i in run.of_kind("Ingress")}
    if not ingress_on:
        assert not ingresses
        assert run.helm["kserve"]["values"]["kserve"]["controller"]["gateway"]["disableIngressCreation"] is True
        return
    assert set(ingresses) == {"mlflow", "jupyter"}
    cls = run.settings.get("platform_common_ingress_class", "public")
    host = run.settings.get("platform_common_ingress_host", "")
    for ing in ingresses.values():
        assert ing["spec"]["ingressClassName"] == cls
        assert ing["spec"]["rules"][0].get("host", "") == host
    assert run.helm["kserve"]["values"]["kserve"]["controller"]["gateway"]["ingressGateway"]["className"] == cls


def _args(run, kind: str, name: str) -> list[str]:
    return run.get(kind, name)["spec"]["template"]["spec"]["containers"][0].get("args", [])


def _default(name: str) -> Any:
    import yaml

    return yaml.safe_load((harness.ROOT / "roles/platform_common/defaults/main.yml").read_text())[name]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_ingress_caps_the_request_size(matrix, case):
    """ingress-nginx enforces the cap (413 above it) on real hosts; the e2e tier has no ingress
    controller, so it is checked here, on the rendered objects."""
    run = matrix[case]
    cap = run.settings.get("platform_common_ingress_max_body_size", _default("platform_common_ingress_max_body_size"))
    assert cap == ("512m" if case == "auth" else "64m")  # a custom cap, and the default
    ingresses = run.of_kind("Ingress")
    assert bool(ingresses) is harness.flag(run.settings.get("platform_common_ingress_enabled", True))
    for ing in ingresses:
        assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == cap, ing["metadata"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_ingress_fronts_a_login(matrix, case):
    """MLflow's basic-auth app, JupyterLab's generated token; an Ingress of a new kind fails here
    until its login is checked."""
    run = matrix[case]
    for ing in run.of_kind("Ingress"):
        name = ing["metadata"]["name"]
        if name == "mlflow":
            assert "--app-name=basic-auth" in _args(run, "Deployment", "mlflow")
        elif name == "jupyter":
            env = run.get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]["env"]
            (token_env,) = [e for e in env if e["name"] == "JUPYTER_TOKEN"]  # once: a later one would replace it
            assert token_env["valueFrom"]["secretKeyRef"] == {"name": "jupyter-token", "key": "token"}
            token = run.get("Secret", "jupyter-token")["data"]["token"]
            assert re.fullmatch(r"[A-Za-z0-9]{32}", base64.b64decode(token).decode())
        else:
            pytest.fail(f"Ingress {name}: which login does it front? (add its check here)")


@pytest.mark.parametrize("case", CASE_NAMES)
def test_mlflow_paths_hosts_and_metrics_agree(matrix, case):
    run = matrix[case]
    args = _args(run, "Deployment", "mlflow")
    prefix = run.settings.get("mlflow_ingress_path", "/mlflow").rstrip("/")
    assert ("--static-prefix=" + prefix in args) is bool(prefix)
    container = run.get("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == f"{prefix}/health"
    assert "--serve-artifacts" in args and "--expose-prometheus=/tmp/prometheus" in args
    hosts = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    for name in ("mlflow.mlflow.svc.cluster.local:*", "mlflow.mlflow:*", "localhost:*"):
        assert name in hosts
    if run.settings.get("platform_common_ingress_host"):
        assert run.settings["platform_common_ingress_host"] in hosts
    if harness.flag(run.settings.get("platform_common_ingress_enabled", True)):
        assert run.get("Ingress", "mlflow")["spec"]["rules"][0]["http"]["paths"][0]["path"] == (prefix or "/")
    monitor = run.get("ServiceMonitor", "mlflow")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"  # not prefixed: see the mlflow server test
    assert ("basicAuth" in monitor["spec"]["endpoints"][0]) is harness.flag(
        run.settings.get("mlflow_auth_enabled", True)
    )
    uri = {
        e["name"]: e.get("value")
        for e in run.get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert uri["MLFLOW_TRACKING_URI"] == f"http://mlflow.mlflow.svc.cluster.local:5000{prefix}"


def test_mlflow_storage_backends(matrix):
    sqlite = _args(matrix["defaults"], "Deployment", "mlflow")
    assert "--backend-store-uri=sqlite:////mlflow/data/mlflow.db" in sqlite
    assert "--artifacts-destination=/mlflow/data/artifacts" in sqlite
    assert matrix["defaults"].get("PersistentVolumeClaim", "mlflow-data", "mlflow")
    pg = matrix["postgresql"]
    args = _args(pg, "Deployment", "mlflow")
    assert any(a.startswith("--backend-store-uri=postgresql+psycopg2://mlflow:$(MLFLOW_DB_PASSWORD)@") for a in args)
    assert "--artifacts-destination=s3://mllab-artifacts/mlflow" in args
    sts = pg.get("StatefulSet", "mlflow-postgres", "mlflow")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert not [p for p in pg.of_kind("PersistentVolumeClaim") if p["metadata"]["name"] == "mlflow-data"]
    env = {e["name"]: e for e in pg.get("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-postgres"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-s3"
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.minio.svc.cluster.local:9000"


def test_mlflow_auth(matrix):
    run = matrix["auth"]
    assert "--app-name=basic-auth" in _args(run, "Deployment", "mlflow")
    ini = run.get("ConfigMap", "mlflow-auth-config")["data"]["basic_auth.ini"]
    assert "admin_password" not in ini and "database_uri = sqlite:////mlflow/data/basic_auth.db" in ini
    jupyter = run.get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]
    assert jupyter["envFrom"] == [{"secretRef": {"name": "mlflow-credentials", "optional": True}}]
    assert run.get("Secret", "mlflow-credentials", "ml-labs")
    # on by default (mllab_defaults); off only when asked
    assert "--app-name=basic-auth" in _args(matrix["defaults"], "Deployment", "mlflow")
    assert "--app-name=basic-auth" not in _args(matrix["ingress-off"], "Deployment", "mlflow")
    assert not [s for s in matrix["ingress-off"].of_kind("Secret") if s["metadata"]["name"] == "mlflow-credentials"]


def _decoded_secret_values(run) -> set[str]:

    values = set(run.secrets.values())
    for s in run.of_kind("Secret"):
        values |= {base64.b64decode(v).decode() for v in s.get("data", {}).values()}
    values |= {v for k, v in run.settings.items() if k.endswith(("access_key_id", "secret_access_key")) and v}
    return {v for v in values if len(v) >= 12}


@pytest.mark.parametrize("case", CASE_NAMES)
def test_no_secret_value_outside_secrets(matrix, case):
    run = matrix[case]
    values = _decoded_secret_values(run)
    assert values, "expected generated secrets"
    for obj in run.objects:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(harness.strip_private(obj))
        for value in values:
            assert value not in text, f"a secret value appears in {obj['kind']} {obj['metadata']['name']}"
    for obj in run.objects:
        for c in _containers(obj):
            for env in c.get("env", []):
                if re.search(r"PASSWORD|TOKEN|SECRET|ACCESS_KEY", env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], f"{c['name']}: {env['name']}"
    for path in run.render_dir.iterdir():
        if path.name.startswith("helm-"):
            text = path.read_text()
            assert not any(v in text for v in values), f"a secret value appears in {path.name}"


def test_secrets_are_stable_between_runs(matrix):
    """Generated once, read back on later runs (idempotent Secrets); a second run changes nothing."""
    again = harness.render_matrix()[harness.RERUN]
    assert again.settings["rc_first"] == 0 and again.rc == 0, again.output[-2000:]
    assert again.secrets == again.settings["secrets_first"]
    assert re.search(r"localhost\s*: ok=\d+\s+changed=0\s", again.output), "second render run changed something"
    assert len(again.secrets) == len(matrix["defaults"].secrets)
    token = again.get("Secret", "jupyter-token")["data"]["token"]
    assert base64.b64decode(token).decode() == again.secrets["jupyter-token"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_rbac_is_namespaced_least_privilege(matrix, case):
    run = matrix[case]
    assert not run.of_kind("ClusterRole") and not run.of_kind("ClusterRoleBinding")
    roles = run.of_kind("Role")
    assert {r["metadata"]["namespace"] for r in roles} == {"ml-training", "ml-serving", "ml-labs"}
    for role in roles:
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"] and "*" not in rule["resources"] and "*" not in rule["verbs"]
        granted = {
            (g, r)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            if "create" in rule["verbs"]
        }
        assert {("batch", "jobs"), ("serving.kserve.io", "inferenceservices")} <= granted
    for binding in run.of_kind("RoleBinding"):
        ns = binding["metadata"]["namespace"]
        subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
        assert ("ml-labs", "mllab-lab-runner") in subjects and (ns, "mllab-lab-runner") in subjects


def _pod_demand(obj, section: str, resource: str) -> float:
    total = 0.0
    for c in _pod_specs(obj)[0]["containers"] if obj["kind"] in WORKLOAD_KINDS else [obj["spec"]["predictor"]["model"]]:
        value = c.get("resources", {}).get(section, {}).get(resource)
        total += float(mllab_platform.mllab_quantity(value)) if value else 0.0
    replicas = obj["spec"].get("replicas", obj["spec"].get("predictor", {}).get("minReplicas", 1))
    return total * int(replicas)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_rendered_workloads_fit_the_rendered_quotas(matrix, case):
    """Cross-check of the pre-apply quota decision on the rendered objects themselves."""
    run = matrix[case]
    for quota in run.of_kind("ResourceQuota"):
        ns, hard = quota["metadata"]["namespace"], quota["spec"]["hard"]
        inside = [o for o in run.objects if o["metadata"].get("namespace") == ns]
        pods = [o for o in inside if o["kind"] in (*WORKLOAD_KINDS, "InferenceService")]
        for key, (section, resource) in {
            "requests.cpu": ("requests", "cpu"),
            "requests.memory": ("requests", "memory"),
            "limits.cpu": ("limits", "cpu"),
            "limits.memory": ("limits", "memory"),
            "requests.nvidia.com/gpu": ("requests", "nvidia.com/gpu"),
        }.items():
            need = sum(_pod_demand(o, section, resource) for o in pods)
            assert need <= float(mllab_platform.mllab_quantity(hard[key])), f"{ns} {key}"
        storage = sum(
            float(mllab_platform.mllab_quantity(p["spec"]["resources"]["requests"]["storage"]))
            for p in inside
            if p["kind"] == "PersistentVolumeClaim"
        )
        assert storage <= float(mllab_platform.mllab_quantity(hard["requests.storage"]))


def test_gpu_case_requests_a_gpu_with_the_cuda_image(matrix):
    pod = matrix["gpu"].get("Deployment", "jupyter")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert ":cuda12-" in c["image"] and pod["runtimeClassName"] == "nvidia"
    cpu_only = matrix["defaults"].get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu_only["resources"]["limits"]


def test_jupyter_token_base_url_and_lab_wiring(matrix):
    run = matrix["defaults"]
    c = run.get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]
    assert "--ServerApp.base_url=/jupyter/" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/jupyter/api"
    env = {e["name"]: e for e in c["env"]}
    assert env["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "jupyter-token", "key": "token"}
    assert env["MLLAB_NAMESPACE"]["value"] == "ml-labs"
    assert run.get("Deployment", "jupyter")["spec"]["template"]["spec"]["serviceAccountName"] == "mllab-lab-runner"
    root = matrix["ingress-off"].get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]
    assert "--ServerApp.base_url=/" in root["args"] and root["readinessProbe"]["httpGet"]["path"] == "/api"
    hook = matrix["auth"].get("ConfigMap", "jupyter-startup")["data"]["50-mllab-pip.sh"]
    assert "pip install --user" in hook and "mllab==0.1.0" in hook


def test_existing_cluster_installs_its_own_stacks(matrix):
    existing, microk8s = matrix["existing-cluster"], matrix["defaults"]
    assert existing.helm["cert-manager"]["values"] == {"crds": {"enabled": True}}
    stack = existing.helm["kube-prom-stack"]
    assert stack["values"]["grafana"]["admin"]["existingSecret"] == "mllab-grafana-admin"
    assert "cert-manager" not in microk8s.helm and "kube-prom-stack" not in microk8s.helm
    assert microk8s.get("Secret", "kube-prom-stack-grafana", "observability")
    for pvc in existing.of_kind("PersistentVolumeClaim"):
        assert pvc["spec"]["storageClassName"] == "local-path"
    assert all("storageClassName" not in p["spec"] for p in microk8s.of_kind("PersistentVolumeClaim"))


def test_dashboards_are_labelled_grafana_json(matrix):
    boards = [
        c for c in matrix["defaults"].of_kind("ConfigMap") if c["metadata"]["name"].startswith("mllab-dashboard-")
    ]
    assert len(boards) == 3
    exprs = ""
    for cm in boards:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "observability"
        (content,) = cm["data"].values()
        board = json.loads(content)
        assert board["uid"] and board["panels"]
        exprs += " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "request_predict_seconds_bucket",
        "model_feature_psi",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
    ):
        assert metric in exprs


# --- bad settings stop the run before anything is applied ------------------------------------


@pytest.fixture(scope="module")
def bad_runs() -> dict[str, Any]:
    return harness.render_matrix()


def test_bad_settings_fail_before_anything_is_rendered(bad_runs):
    run = bad_runs["bad-render"]
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert "problem(s); nothing was applied" in out
    assert "mlflow_backend = 'mongodb' is not supported: use one of sqlite, postgresql" in out
    assert "jupyter_image = 'quay.io/jupyter/scipy-notebook' has no tag" in out
    assert "mlflow_image = 'ghcr.io/MLflow/mlflow:v3.17.2' is malformed" in out
    assert "training_quotas['labs']['requests.cpu'] = 100m is below the 0.5" in out
    assert "platform_common_ingress_max_body_size = '64MB' is not an nginx size: give digits followed by k, m" in out
    assert (
        "mlflow_auth_enabled: false together with platform_common_ingress_enabled: true would publish MLflow"
        " on the Ingress with no login" in out
    )
    assert "Either keep mlflow_auth_enabled: true (the default), or set platform_common_ingress_enabled: false" in out
    assert "kubectl port-forward -n mlflow svc/mlflow 5000:5000" in out
    assert "jupyter_env sets JUPYTER_TOKEN (value not shown), which would replace JupyterLab's login token" in out
    assert not run.render_dir.exists() or not any(run.render_dir.iterdir())
    assert not (run.artifacts_dir / "secrets").exists()


def test_unreachable_cluster_fails_before_anything_is_applied(bad_runs):
    run = bad_runs["unreachable-cluster"]
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert f"Cannot reach the Kubernetes API with mllab_kubeconfig = {harness.UNREACHABLE_KUBECONFIG}" in out
    assert "Nothing was applied" in out
    assert "apply the" not in out and "generate or read" not in out
    assert not (run.artifacts_dir / "secrets").exists()


def test_missing_kubeconfig_fails_naming_path_and_fix(bad_runs):
    run = bad_runs["missing-kubeconfig"]
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert "mllab_kubeconfig = /nonexistent/mllab/kubeconfig does not exist on the controller" in out
    assert "mllab_manage_microk8s: false" in out
    assert "read the cluster's version" not in out and "apply the" not in out
    assert not (run.artifacts_dir / "secrets").exists()
