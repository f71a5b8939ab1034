"""The kserve role's smoke request (roles/kserve/files/smoke_request.py), run the way the
role runs it (the command line k8s_exec splits with shlex) against the KServe Python
model server serving an sklearn iris model the way kserve-sklearnserver does
(kserve.utils get_predict_input / get_predict_response, V1 and V2 protocols). Needs the
kserve, scikit-learn and joblib packages (the mllab package's labs extra); skipped with
the reason when they are missing, a failure under CI=true (tests/unit/needs.py)."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import harness  # tests/unit/platform (conftest.py)
import pytest
from needs import missing  # tests/unit/needs.py: skips here, fails under CI=true

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "kserve" / "files" / "smoke_request.py"
NAME = "sklearn-iris"
pytestmark = pytest.mark.timeout(300)

SERVER = textwrap.dedent(
    """
    import sys
    import joblib
    import kserve
    from kserve.utils.utils import get_predict_input, get_predict_response

    class SKLearnModel(kserve.Model):  # what kserve-sklearnserver does with model.joblib
        def __init__(self, name, path):
            super().__init__(name)
            self._model = joblib.load(path)
            self.ready = True

        def predict(self, payload, headers=None):
            instances = get_predict_input(payload)
            return get_predict_response(payload, self._model.predict(instances), self.name)

    if __name__ == "__main__":
        name, path, http_port, grpc_port = sys.argv[1:5]
        kserve.ModelServer(http_port=int(http_port), grpc_port=int(grpc_port)).start([SKLearnModel(name, path)])
    """
)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    absent = [m for m in ("kserve", "sklearn", "joblib") if importlib.util.find_spec(m) is None]
    if absent:
        missing(
            f"{', '.join(absent)} not installed here (pip install -c requirements/constraints.txt -e 'python[labs]')"
        )
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC

    work = tmp_path_factory.mktemp("kserve")
    iris = load_iris()
    joblib.dump(SVC(gamma="scale").fit(iris.data, iris.target), work / "model.joblib")
    (work / "server.py").write_text(SERVER)
    port = harness.free_port()
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(work / "server.py"),
            NAME,
            str(work / "model.joblib"),
            str(port),
            str(harness.free_port()),
        ],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    harness.wait_until_serving(
        lambda: harness.http_200(f"{base}/v2/health/ready"), proc, log, work / "server.log", "KServe model server"
    )
    yield base
    harness.stop_server(proc, log)


def _run_like_the_role(name: str, base: str) -> subprocess.CompletedProcess:
    """The role's k8s_exec command: python3 -c <script, quoted> <name>, split with shlex."""
    command = f"python3 -c {shlex.quote(SCRIPT.read_text())} {shlex.quote(name)} {shlex.quote(base)}"
    argv = shlex.split(command)
    argv[0] = sys.executable
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_the_smoke_request_passes_on_v1_and_v2(model_server):
    res = _run_like_the_role(NAME, model_server)
    assert res.returncode == 0, res.stdout + res.stderr
    verdict = json.loads(res.stdout)
    assert verdict["ok"] is True
    assert verdict["v1"] == {"status": 200, "predictions": [1, 1]}
    assert verdict["v2"] == {"status": 200, "outputs": [[1, 1]]}


def test_the_smoke_request_fails_when_the_model_does_not_answer(model_server):
    res = _run_like_the_role("no-such-model", model_server)
    assert res.returncode == 1
    verdict = json.loads(res.stdout)
    assert verdict["ok"] is False and "404" in verdict["error"]
