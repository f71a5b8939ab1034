"""The MLflow server configuration the mlflow role renders, run for real: the container's
command and arguments from the rendered Deployment (auth case: basic auth, ingress host,
/mlflow prefix, Prometheus metrics), its environment from the rendered Secrets and the
auth ini from the rendered ConfigMap, started as a local `mlflow server` process.
Only the pod's paths (/mlflow/data, /tmp/prometheus, /etc/mlflow-auth) and the listen
address are mapped to a temporary folder and 127.0.0.1. Needs the mlflow package (the
mllab package's labs extra pins the same version as the mlflow role's image); skipped
with the reason when it is missing."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness  # tests/unit/platform (conftest.py)
import pytest
from needs import missing  # tests/unit/needs.py: skips here, fails under CI=true

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def matrix_monitor():
    def endpoint(case: str) -> dict[str, Any]:
        return harness.render_matrix()[case].get("ServiceMonitor", "mlflow")["spec"]["endpoints"][0]

    return endpoint


@pytest.fixture(scope="module", params=["auth", "ingress-off"])  # basic auth on (as by default), off
def server(request, tmp_path_factory):
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if importlib.util.find_spec("mlflow") is None or not mlflow_bin:
        missing(
            "the mlflow package is not installed here (pip install -c requirements/constraints.txt -e 'python[labs]')"
        )
    if request.param == "auth" and importlib.util.find_spec("flask_wtf") is None:
        missing("mlflow's basic-auth app needs Flask-WTF (mlflow[auth]; the -full image has it)")
    case = request.param
    run = harness.render_matrix()[case]
    assert run.rc == 0, run.output[-2000:]
    authed = bool([c for c in run.of_kind("ConfigMap") if c["metadata"]["name"] == "mlflow-auth-config"])
    assert authed is (case == "auth")
    image_version = run.get("Deployment", "mlflow")["metadata"]["labels"]["app.kubernetes.io/version"]
    container = run.get("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    work = tmp_path_factory.mktemp("mlflow-server")
    (work / "data").mkdir()
    port = harness.free_port()

    def local(text: str) -> str:
        return (
            text.replace("/mlflow/data", str(work / "data"))
            .replace("/tmp/prometheus", str(work / "prometheus"))
            .replace("/etc/mlflow-auth", str(work))
        )

    args, prefix = [], ""
    for arg in container["args"]:
        if arg.startswith("--static-prefix="):
            prefix = arg.partition("=")[2].rstrip("/")
        if arg.startswith("--host="):
            arg = "--host=127.0.0.1"
        elif arg.startswith("--port="):
            arg = f"--port={port}"
        elif arg.startswith("--workers="):
            arg = "--workers=1"
        args.append(local(arg))
    assert prefix == ("/mlflow" if case == "auth" else ""), prefix  # ingress-off serves at the root
    secret = {"admin-username": "", "admin-password": ""}
    if authed:
        ini = run.get("ConfigMap", "mlflow-auth-config")["data"]["basic_auth.ini"]
        (work / "basic_auth.ini").write_text(local(ini))
        secret = {k: base64.b64decode(v).decode() for k, v in run.get("Secret", "mlflow-auth")["data"].items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = local(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "mlflow-auth"
            env[item["name"]] = secret[ref["key"]]
    env["HOME"] = str(work)
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(
        [mlflow_bin, *container["command"][1:], *args],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    auth = None
    if authed:
        auth = "Basic " + base64.b64encode(f"{secret['admin-username']}:{secret['admin-password']}".encode()).decode()

    def call(
        method: str,
        path: str,
        body: Any = None,
        host: str | None = None,
        authorized: bool = True,
        prefixed: bool = True,
    ):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Host": host or f"mlflow.mlflow.svc.cluster.local:{port}"}
        if authorized and auth:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        conn.request(method, (prefix if prefixed else "") + path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        conn.close()
        return resp.status, text

    harness.wait_until_serving(
        lambda: call("GET", "/health", authorized=False)[0] == 200, proc, log, work / "server.log", "mlflow server", 240
    )
    import mlflow

    yield {
        "call": call,
        "image_version": image_version,
        "mlflow_version": mlflow.__version__,
        "auth": authed,
        "prefix": prefix,
        "case": case,
    }
    harness.stop_server(proc, log)


def test_the_role_pins_the_mlflow_of_the_lab_client(server):
    assert server["image_version"].lstrip("v").removesuffix("-full") == server["mlflow_version"]


def test_health_under_the_prefix(server):
    assert server["call"]("GET", "/health", authorized=False) == (200, "OK")


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_service_and_ingress_host_headers_are_accepted(server):
    """/health is exempt from MLflow's Host check, so an API route is used here."""
    call = server["call"]
    hosts = ["mlflow.mlflow.svc.cluster.local:5000", "mlflow.mlflow:5000", "localhost:5000", "10.1.2.3:5000"]
    if server["auth"]:  # the auth case also sets platform_common_ingress_host
        hosts.append("lab.example.org")
    for host in hosts:
        status, text = call("GET", SEARCH, host=host)
        assert status == 200, (host, text[:200])


def test_unknown_host_headers_are_refused(server):
    status, _ = server["call"]("GET", SEARCH, host="evil.example.com")
    assert status == 403


def test_metrics_are_served_where_the_service_monitor_scrapes(server, matrix_monitor):
    """The ServiceMonitor's path and credentials, against the real server: MLflow serves
    /metrics at the root even with --static-prefix, behind basic auth when auth is on."""
    call = server["call"]
    endpoint = matrix_monitor(server["case"])
    assert endpoint["path"] == "/metrics"
    status, _ = call("GET", endpoint["path"], authorized=False, prefixed=False)
    assert status == (401 if server["auth"] else 200)
    assert ("basicAuth" in endpoint) is server["auth"]
    status, text = call("GET", endpoint["path"], prefixed=False)
    assert status == 200 and "# HELP mlflow_" in text
    if server["prefix"]:  # the auth case: MLflow under /mlflow
        assert call("GET", "/metrics")[0] == 404  # not under the prefix


def test_a_run_is_logged_and_read_back_with_the_generated_admin_password(server):
    call = server["call"]
    if server["auth"]:
        assert call("POST", "/api/2.0/mlflow/experiments/create", {"name": "anon"}, authorized=False)[0] == 401
    status, text = call("POST", "/api/2.0/mlflow/experiments/create", {"name": "verify"})
    assert status == 200, text
    exp_id = json.loads(text)["experiment_id"]
    status, text = call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp_id})
    assert status == 200, text
    run_id = json.loads(text)["run"]["info"]["run_id"]
    body = {"run_id": run_id, "key": "accuracy", "value": 0.97, "timestamp": 0}
    assert call("POST", "/api/2.0/mlflow/runs/log-metric", body)[0] == 200
    status, text = call("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}")
    assert status == 200
    assert json.loads(text)["run"]["data"]["metrics"][0]["value"] == 0.97
