"""Platform layer on a real cluster (L3/L4): the pods run, MLflow answers /health and logs
and reads back a run, JupyterLab answers /api and /api/status with its token, the smoke
InferenceService is Ready and predicts with the V1 and V2 protocols, Prometheus scrapes
MLflow and the KServe predictors and has loaded the ML alert rules.

The platform layer targets the Kubernetes API, not the hosts: these tests talk to the
cluster from the machine that runs pytest, with the kubeconfig in $MLLAB_KUBECONFIG, else
<artifacts>/kubeconfig ($MLLAB_ARTIFACTS_DIR or artifacts/ of the repository). HTTP goes
through port-forwards to the pods (no ingress, DNS or NodePort needed). Without a
reachable cluster, or when a component is not deployed, the tests skip with the reason;
MLLAB_EXPECT_LAYERS containing "platform" turns those skips into failures.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NS = {
    "mlflow": os.environ.get("MLLAB_NS_MLFLOW", "mlflow"),
    "labs": os.environ.get("MLLAB_NS_LABS", "ml-labs"),
    "serving": os.environ.get("MLLAB_NS_SERVING", "ml-serving"),
    "training": os.environ.get("MLLAB_NS_TRAINING", "ml-training"),
    "kserve": os.environ.get("MLLAB_NS_KSERVE", "kserve"),
    "monitoring": os.environ.get("MLLAB_NS_MONITORING", "observability"),
}
MLFLOW_PREFIX = os.environ.get("MLLAB_MLFLOW_PREFIX", "/mlflow")
JUPYTER_BASE = os.environ.get("MLLAB_JUPYTER_BASE_URL", "/jupyter/")
SMOKE = os.environ.get("MLLAB_SMOKE_ISVC", "sklearn-iris")
IRIS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
pytestmark = pytest.mark.timeout(600)


def _expected() -> bool:
    return "platform" in {x.strip() for x in os.environ.get("MLLAB_EXPECT_LAYERS", "").split(",")}


def _absent(reason: str) -> None:
    """Skip, or fail when MLLAB_EXPECT_LAYERS says the platform must be there."""
    if _expected():
        pytest.fail(reason + ", but MLLAB_EXPECT_LAYERS expects the platform layer")
    pytest.skip(reason)


def kubeconfig_path() -> Path:
    if os.environ.get("MLLAB_KUBECONFIG"):
        return Path(os.environ["MLLAB_KUBECONFIG"])
    artifacts = Path(os.environ.get("MLLAB_ARTIFACTS_DIR") or ROOT / "artifacts")
    return artifacts / "kubeconfig"


@pytest.fixture(scope="module")
def api():
    """A kubernetes ApiClient for the platform's cluster, or a skip saying why not."""
    path = kubeconfig_path()
    if not path.is_file():
        _absent(f"no cluster to test: kubeconfig {path} does not exist (set MLLAB_KUBECONFIG)")
    from kubernetes import client, config

    try:
        api_client = config.new_client_from_config(config_file=str(path))
        client.VersionApi(api_client).get_code(_request_timeout=10)
    except Exception as exc:  # any connection or credential problem means "no cluster here"
        _absent(f"the cluster of {path} is not reachable: {str(exc)[:200]}")
    return api_client


@pytest.fixture(scope="module")
def core(api):
    from kubernetes import client

    return client.CoreV1Api(api)


def _deployment(api, namespace: str, name: str) -> Any:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        return client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            _absent(f"Deployment {namespace}/{name} is not deployed")
        raise


def _running_pod(core, namespace: str, selector: str) -> str:
    pods = core.list_namespaced_pod(namespace, label_selector=selector, field_selector="status.phase=Running").items
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]
    assert ready, f"no Ready pod in {namespace} matches {selector}"
    return ready[0].metadata.name


def http_via_port_forward(
    core,
    namespace: str,
    pod: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """One HTTP request to a pod's port through the API server's port-forward."""
    from kubernetes.stream import portforward

    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
    conn = http.client.HTTPConnection("localhost", port, timeout=60)
    conn.sock = pf.socket(port)
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=hdrs | (headers or {}))
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    pf.close()
    return resp.status, text


def _secret(core, namespace: str, name: str, key: str) -> str:
    return base64.b64decode(core.read_namespaced_secret(name, namespace).data[key]).decode()


# --- pods -------------------------------------------------------------------------------------


def test_platform_deployments_are_ready(api):
    from kubernetes import client

    apps = client.AppsV1Api(api)
    found = apps.list_deployment_for_all_namespaces(label_selector="app.kubernetes.io/part-of=mllab").items
    if not found:
        _absent("no Deployment labelled app.kubernetes.io/part-of=mllab: the platform layer is not deployed")
    not_ready = [
        f"{d.metadata.namespace}/{d.metadata.name} {d.status.ready_replicas or 0}/{d.spec.replicas}"
        for d in found
        if (d.status.ready_replicas or 0) < (d.spec.replicas or 0)
    ]
    assert not not_ready, f"Deployments not ready: {not_ready}"
    kserve = apps.list_namespaced_deployment(NS["kserve"]).items
    assert all((d.status.ready_replicas or 0) >= 1 for d in kserve), "KServe controller not ready"


# --- MLflow -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow(api, core):
    _deployment(api, NS["mlflow"], "mlflow")
    pod = _running_pod(core, NS["mlflow"], "app.kubernetes.io/name=mlflow,app.kubernetes.io/part-of=mllab")
    headers = {}
    try:
        user = _secret(core, NS["mlflow"], "mlflow-auth", "admin-username")
        password = _secret(core, NS["mlflow"], "mlflow-auth", "admin-password")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    except Exception:  # no mlflow-auth Secret: auth is off
        pass

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, text = http_via_port_forward(core, NS["mlflow"], pod, 5000, method, MLFLOW_PREFIX + path, body, headers)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    return call


def test_mlflow_health(mlflow):
    status, text = mlflow("GET", "/health")
    assert status == 200 and text == "OK"


def test_mlflow_logs_a_run_and_reads_it_back(mlflow):
    name = "mllab-verify"
    status, found = mlflow("GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
    if status == 200:
        exp_id = found["experiment"]["experiment_id"]
    else:
        status, created = mlflow("POST", "/api/2.0/mlflow/experiments/create", {"name": name})
        assert status == 200, created
        exp_id = created["experiment_id"]
    status, run = mlflow("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp_id, "run_name": "verify"})
    assert status == 200, run
    run_id = run["run"]["info"]["run_id"]
    marker = uuid.uuid4().hex[:8]
    for path, body in (
        ("/api/2.0/mlflow/runs/log-metric", {"run_id": run_id, "key": "accuracy", "value": 0.97, "timestamp": 0}),
        ("/api/2.0/mlflow/runs/log-parameter", {"run_id": run_id, "key": "marker", "value": marker}),
        ("/api/2.0/mlflow/runs/update", {"run_id": run_id, "status": "FINISHED"}),
    ):
        status, out = mlflow("POST", path, body)
        assert status == 200, (path, out)
    status, back = mlflow("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}")
    assert status == 200, back
    data = back["run"]["data"]
    assert {"key": "marker", "value": marker} in data["params"]
    assert [m["value"] for m in data["metrics"] if m["key"] == "accuracy"] == [0.97]
    assert back["run"]["info"]["status"] == "FINISHED"


# --- JupyterLab ---------------------------------------------------------------------------------


def test_jupyter_api_and_status_with_token(api, core):
    _deployment(api, NS["labs"], "jupyter")
    pod = _running_pod(core, NS["labs"], "app.kubernetes.io/name=jupyter,app.kubernetes.io/part-of=mllab")
    token = _secret(core, NS["labs"], "jupyter-token", "token")
    status, text = http_via_port_forward(core, NS["labs"], pod, 8888, "GET", f"{JUPYTER_BASE}api")
    assert status == 200 and "version" in json.loads(text)
    status, text = http_via_port_forward(
        core, NS["labs"], pod, 8888, "GET", f"{JUPYTER_BASE}api/status", headers={"Authorization": f"token {token}"}
    )
    assert status == 200, text
    assert "started" in json.loads(text)
    status, _ = http_via_port_forward(core, NS["labs"], pod, 8888, "GET", f"{JUPYTER_BASE}api/status")
    assert status == 403, "JupyterLab answers /api/status without its token"


# --- KServe ---------------------------------------------------------------------------------------


def test_smoke_inference_service_is_ready_and_predicts_v1_and_v2(api, core):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api)
    try:
        isvc = custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NS["serving"], "inferenceservices", SMOKE
        )
    except ApiException as exc:
        if exc.status == 404:
            _absent(f"InferenceService {NS['serving']}/{SMOKE} is not deployed (kserve_smoke_enabled)")
        raise
    conditions = {c["type"]: c["status"] for c in isvc.get("status", {}).get("conditions", [])}
    assert conditions.get("Ready") == "True", conditions
    pod = _running_pod(core, NS["serving"], f"serving.kserve.io/inferenceservice={SMOKE}")
    status, text = http_via_port_forward(
        core, NS["serving"], pod, 8080, "POST", f"/v1/models/{SMOKE}:predict", {"instances": IRIS}
    )
    assert status == 200, text
    assert json.loads(text)["predictions"] == [1, 1]
    v2 = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": IRIS}]}
    status, text = http_via_port_forward(core, NS["serving"], pod, 8080, "POST", f"/v2/models/{SMOKE}/infer", v2)
    assert status == 200, text
    assert json.loads(text)["outputs"][0]["data"] == [1, 1]


# --- Prometheus -----------------------------------------------------------------------------------


class Prometheus:
    """Prometheus's HTTP API through a port-forward to its pod."""

    def __init__(self, core, pod: str) -> None:
        self.core, self.pod = core, pod

    def raw(self, path: str) -> tuple[int, dict[str, Any]]:
        status, text = http_via_port_forward(self.core, NS["monitoring"], self.pod, 9090, "GET", path)
        return status, json.loads(text)

    def __call__(self, path: str) -> Any:
        status, body = self.raw(path)
        assert status == 200, body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> tuple[int, dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        return self.raw("/api/v1/query?" + urllib.parse.urlencode(params))


@pytest.fixture(scope="module")
def prometheus(api, core) -> Prometheus:
    pods = core.list_namespaced_pod(NS["monitoring"], label_selector="app.kubernetes.io/name=prometheus").items
    if not pods:
        _absent(f"no Prometheus pod in namespace {NS['monitoring']} (monitoring role / observability addon)")
    return Prometheus(core, _running_pod(core, NS["monitoring"], "app.kubernetes.io/name=prometheus"))


def _wait_for(check, timeout: float = 240, every: float = 15):
    """Prometheus discovers new monitors within a few scrape intervals: retry a while."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result[0] or time.monotonic() > deadline:
            return result
        time.sleep(every)


def test_prometheus_scrapes_mlflow_and_kserve_predictors(prometheus):
    wanted = {
        "mlflow": f"serviceMonitor/{NS['mlflow']}/mlflow/",
        "kserve predictors": f"podMonitor/{NS['serving']}/kserve-predictors/",
    }

    def check():
        targets = prometheus("/api/v1/targets?state=active")["activeTargets"]
        health = {
            label: [t["health"] for t in targets if t.get("scrapePool", "").startswith(pool)]
            for label, pool in wanted.items()
        }
        ok = all(h and all(x == "up" for x in h) for h in health.values())
        return ok, health

    ok, health = _wait_for(check)
    assert ok, f"targets not all up: {health}"


def test_prometheus_loaded_the_ml_alert_rules(prometheus):
    def check():
        groups = prometheus("/api/v1/rules?type=alert")["groups"]
        names = {r["name"] for g in groups for r in g["rules"]}
        want = {"ModelAccuracyDegraded", "ModelLatencyHigh", "ModelFeatureDrift", "TrainingJobFailed"}
        return want <= names, names

    ok, names = _wait_for(check)
    assert ok, f"ML alert rules not loaded; Prometheus has {sorted(names)[:20]}"


def _promql():
    sys.path.insert(0, str(Path(__file__).parent))
    import promql

    return promql


def _kit_expressions(api, core) -> list[tuple[str, str]]:
    """Every PromQL expression the monitoring role applied: its dashboards' queries (ConfigMaps,
    Grafana variables filled in) and its alert rules (PrometheusRule objects)."""
    from kubernetes import client

    promql = _promql()
    selector = "app.kubernetes.io/part-of=mllab"
    exprs = []
    for cm in core.list_namespaced_config_map(NS["monitoring"], label_selector=selector).items:
        if (cm.metadata.labels or {}).get("app.kubernetes.io/component") == "dashboard":
            for text in (cm.data or {}).values():
                exprs += promql.dashboard_expressions(text)
    rules = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", NS["monitoring"], "prometheusrules", label_selector=selector
    )["items"]
    for rule in rules:
        exprs += promql.rule_expressions(rule)
    return exprs


def test_prometheus_evaluates_every_dashboard_and_rule_expression(api, core, prometheus):
    """Each query of the three dashboards and each alert rule, sent to /api/v1/query as Grafana and
    the rule evaluator would: none is refused (a typo, a wrong function, a bad matcher)."""
    exprs = _kit_expressions(api, core)
    boards = {where.split(",")[0] for where, _ in exprs if where.startswith("dashboard")}
    assert len(boards) == 3 and sum(w.startswith("PrometheusRule") for w, _ in exprs) == 4, sorted(boards)
    errors = {}
    for where, expr in exprs:
        status, body = prometheus.query(expr)
        if status != 200 or body.get("status") != "success":
            errors[where] = f"{expr!r}: HTTP {status} {body.get('errorType')}: {body.get('error')}"
    assert not errors, "Prometheus refused:\n" + "\n".join(f"{k}: {v}" for k, v in errors.items())


# Who exports each metric the dashboards and rules read. A name missing here is a query that can
# never return data (a typo, a renamed metric): the test below fails on it. Those marked "real
# hosts" have no exporter in the e2e tier, which runs the operator and Prometheus only.
EXPORTERS = {
    # the smoke InferenceService (mllab-fastserve) and every KServe predictor (the stock server's names)
    "request_predict_seconds_bucket": "smoke",
    "request_predict_seconds_count": "smoke",
    "model_predictions_total": "smoke",
    "model_prediction_errors_total": "smoke",
    # the labs' model server (mllab.serving: labs 6 and 7); seen after lab 7 (test_after_lab_7_...)
    "model_prediction_latency_seconds_bucket": "lab server",
    "model_accuracy": "lab server",
    "model_feature_psi": "lab server",
    # Prometheus itself: the series of every pending or firing alert
    "ALERTS": "prometheus",
    # kube-state-metrics, part of kube-prometheus-stack (the MicroK8s observability addon): real hosts
    "kube_pod_container_status_restarts_total": "real hosts (kube-state-metrics)",
    "kube_job_failed": "real hosts (kube-state-metrics)",
    # the GPU operator's dcgm-exporter: real GPU hosts
    "DCGM_FI_DEV_GPU_UTIL": "real hosts (dcgm-exporter)",
    "DCGM_FI_DEV_FB_USED": "real hosts (dcgm-exporter)",
    "DCGM_FI_DEV_FB_FREE": "real hosts (dcgm-exporter)",
    "DCGM_FI_DEV_GPU_TEMP": "real hosts (dcgm-exporter)",
    "DCGM_FI_DEV_POWER_USAGE": "real hosts (dcgm-exporter)",
}


def test_every_metric_the_dashboards_and_rules_read_has_an_exporter(api, core):
    promql = _promql()
    unknown = {
        where: sorted(promql.metric_names(expr) - EXPORTERS.keys())
        for where, expr in _kit_expressions(api, core)
        if promql.metric_names(expr) - EXPORTERS.keys()
    }
    assert not unknown, f"queries naming a metric no exporter of the kit's stack exports: {unknown}"


def _panels(api, core, exporters: set[str]) -> list[tuple[str, str]]:
    """The dashboards' queries whose every metric comes from one of `exporters` (EXPORTERS' values)."""
    promql = _promql()
    return [
        (where, expr)
        for where, expr in _kit_expressions(api, core)
        if where.startswith("dashboard")
        and (names := promql.metric_names(expr))
        and all(EXPORTERS.get(m) in exporters for m in names)
    ]


def _smoke_traffic(core, n: int = 20) -> None:
    pod = _running_pod(core, NS["serving"], f"serving.kserve.io/inferenceservice={SMOKE}")
    for _ in range(n):
        status, text = http_via_port_forward(
            core, NS["serving"], pod, 8080, "POST", f"/v1/models/{SMOKE}:predict", {"instances": IRIS}
        )
        assert status == 200, text


def _answers(prometheus, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
    """The series of an instant query that have a number (NaN: a rate over no requests)."""
    status, body = prometheus.query(expr, at)
    assert status == 200 and body.get("status") == "success", (expr, body)
    values = [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]
    return [(m, v) for m, v in values if math.isfinite(v)]


def test_the_smoke_servers_metrics_carry_the_labels_the_rules_and_panels_use(api, core, prometheus):
    """After traffic, the serving dashboard's panels on the smoke server's metrics return numbers, and
    its series carry the labels the rules aggregate by (namespace, model_name, model_version)."""
    _smoke_traffic(core)
    smoke = _panels(api, core, {"smoke"})
    assert len(smoke) >= 5, smoke

    def check():
        empty = [w for w, e in smoke if not _answers(prometheus, e)]
        return not empty, empty

    ok, empty = _wait_for(check, timeout=300)
    assert ok, f"serving panels without data after traffic to {SMOKE}: {empty}"
    for metric, labels in {
        "request_predict_seconds_bucket": {"namespace", "model_name", "le"},
        "model_predictions_total": {"namespace", "model_name", "model_version"},
    }.items():
        series = _answers(prometheus, f'{metric}{{namespace="{NS["serving"]}",inferenceservice="{SMOKE}"}}')
        assert series, f"{metric} of {SMOKE} is not in Prometheus"
        assert all(labels <= s.keys() for s, _ in series), (metric, series[0][0])
    assert {s["model_name"] for s, _ in series} == {SMOKE}


def test_prometheus_has_mlflows_metrics(prometheus):
    """MLflow 3's server exports its request metrics as mlflow_http_request_* (prometheus_flask_exporter
    with the mlflow_ prefix), scraped through the ServiceMonitor."""
    names = f'{{namespace="{NS["mlflow"]}",__name__=~"mlflow_http_request_.+"}}'
    series = _answers(prometheus, f"count by (__name__, job) ({names})")
    found = {s["__name__"] for s, _ in series}
    assert found >= {"mlflow_http_request_total", "mlflow_http_request_duration_seconds_bucket"}, series
    assert {s["job"] for s, _ in series} == {"mlflow"}, series


def test_after_lab_7_the_lab_servers_metrics_answer_the_drift_and_serving_panels(api, core, prometheus):
    """Run by tests/e2e/labs.sh after lab 7 (platform.sh deselects it): the lab's model server is gone,
    but Prometheus kept its series. At the last moment it was scraped, every dashboard query on the lab
    server's metrics (the drift dashboard's, the serving dashboard's accuracy and latency panels) returns
    numbers, and the series carry the labels the rules aggregate by."""
    # the last moment the lab server's latency count had grown in the minute before: its panels' [5m]
    # rates have requests in them then
    count = f'model_prediction_latency_seconds_count{{namespace="{NS["serving"]}"}}'
    last = _answers(prometheus, f"max(max_over_time(timestamp(changes({count}[1m]) > 0)[3h:15s]))")
    if not last:
        _absent("no lab model server was scraped in the last 3 h (lab 7 on the k8s backend runs one)")
    at = last[0][1]
    smoke = _panels(api, core, {"smoke"})
    lab = [p for p in _panels(api, core, {"lab server", "smoke"}) if p not in smoke]
    assert len(lab) >= 6, lab
    empty = [f"{w}: {e}" for w, e in lab if not _answers(prometheus, e, at=at)]
    assert not empty, "panels without data while the lab 7 server ran:\n" + "\n".join(empty)
    for metric, labels in {
        "model_feature_psi": {"namespace", "model_name", "feature"},
        "model_accuracy": {"namespace", "model_name", "model_version"},
        "model_prediction_latency_seconds_bucket": {"namespace", "model_name", "le"},
    }.items():
        series = _answers(prometheus, f'{metric}{{namespace="{NS["serving"]}"}}', at=at)
        assert series and all(labels <= s.keys() for s, _ in series), (metric, series[:1])
