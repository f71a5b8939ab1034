"""The JupyterLab configuration the jupyter role renders, run for real with jupyter_server:
the container's ServerApp arguments (base_url, proxy settings) from the rendered
Deployment and the token from the rendered Secret, passed as JUPYTER_TOKEN exactly as the
pod gets it. The image's start-notebook.py runs `jupyter lab`, a jupyter_server
application with the same ServerApp options; here `jupyter server` stands in for it (no
JupyterLab frontend needed to check the HTTP API), listening on 127.0.0.1. Needs the
jupyter_server package; skipped with the reason when it is missing."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness  # tests/unit/platform (conftest.py)
import pytest
from needs import missing  # tests/unit/needs.py: skips here, fails under CI=true

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", params=["defaults", "ingress-off"])
def jupyter(request, tmp_path_factory):
    jupyter_bin = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if importlib.util.find_spec("jupyter_server") is None or not jupyter_bin:
        missing("jupyter_server is not installed here (requirements/dev.txt)")
    run = harness.render_matrix()[request.param]
    assert run.rc == 0, run.output[-2000:]
    container = run.get("Deployment", "jupyter")["spec"]["template"]["spec"]["containers"][0]
    token = base64.b64decode(run.get("Secret", "jupyter-token")["data"]["token"]).decode()
    assert container["args"][0] == "start-notebook.py"
    work = tmp_path_factory.mktemp("jupyter")
    port = harness.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env |= {
        "HOME": str(work),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
    }
    for item in container["env"]:
        if item["name"] == "JUPYTER_TOKEN":
            assert item["valueFrom"]["secretKeyRef"] == {"name": "jupyter-token", "key": "token"}
            env["JUPYTER_TOKEN"] = token
    argv = [
        jupyter_bin,
        "server",
        *container["args"][1:],
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={work}",
    ]
    if os.geteuid() == 0:  # the pod runs as jovyan (1000); CI containers often run as root
        argv.append("--allow-root")
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(path: str, token_header: str | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"token {token_header}"} if token_header else {}
        conn.request("GET", path, headers=headers)
        status = conn.getresponse().status
        conn.close()
        return status

    probe = container["readinessProbe"]["httpGet"]["path"]
    harness.wait_until_serving(lambda: get(probe) == 200, proc, log, work / "server.log", "jupyter server", 180)
    base = next(a for a in container["args"] if a.startswith("--ServerApp.base_url=")).split("=", 1)[1]
    yield {"get": get, "token": token, "base": base, "probe": probe, "container": container}
    harness.stop_server(proc, log)


def test_probes_answer_without_the_token(jupyter):
    assert jupyter["probe"] == f"{jupyter['base']}api"
    assert jupyter["get"](jupyter["probe"]) == 200
    for kind in ("livenessProbe", "startupProbe"):
        assert jupyter["container"][kind]["httpGet"]["path"] == jupyter["probe"]


def test_status_needs_the_generated_token(jupyter):
    get, status = jupyter["get"], f"{jupyter['base']}api/status"
    assert get(status, jupyter["token"]) == 200
    assert get(status) == 403
    assert get(status, "not-the-token") == 403
