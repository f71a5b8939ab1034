"""Both model servers under bad input (issue 16): every malformed V1/V2 body gets a 4xx JSON error and
the server stays healthy; oversized bodies and too many rows get 413; health probes answer while a
large request is parsed and predicted; both bind 127.0.0.1 unless --host says otherwise.

The servers are real processes: `python -m mllab.fastserve serve` (iris forest, 4 features) and
`python -m mllab.serving` (the labs' KServe server, digits, 64 features) serving lab 6's reference
DigitsModel (the solution's digits_model.py: in the labs' server the protocol is the learner's, so
only a complete exercise answers every bad body with 400)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import mllab_cmd
from mllab.procs import free_port, wait_http

pytestmark = pytest.mark.timeout(300)

MIB = 2**20


@dataclass
class Server:
    kind: str
    port: int
    model: str
    n_features: int
    max_rows: int

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 30, headers: dict | None = None
    ) -> tuple[int, object]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("content-type", "")
        finally:
            conn.close()
        return resp.status, (json.loads(raw) if ctype.startswith("application/json") else raw.decode(errors="replace"))

    def post(self, protocol: str, body: bytes, **kw) -> tuple[int, object]:
        path = f"/v1/models/{self.model}:predict" if protocol == "v1" else f"/v2/models/{self.model}/infer"
        return self.request("POST", path, body, **kw)

    def ready(self, timeout: float = 2.0) -> int:
        return self.request("GET", "/v2/health/ready", timeout=timeout)[0]


def listening_addresses(port: int) -> set[str]:
    """The local addresses a socket LISTENs on for `port` (from /proc/net/tcp: 0100007F = 127.0.0.1)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if int(hexport, 16) == port and state == "0A":
                found.add(addr)
    return found


def lab6(case: str = "solution") -> Path:
    """Lab 6's folder of `case` (solution, starter): its digits_model.py is the learner's DigitsModel."""
    from mllab.exercise import solution_dir
    from mllab.labs import get_lab

    return solution_dir(get_lab(6)).parent / case


def start(argv: list[str], port: int, log: Path, exercise: Path | None = None) -> subprocess.Popen:
    """`argv` with `exercise` (default: lab 6's solution) as MLLAB_EXERCISE, once /v2/health/ready answers."""
    env = {**os.environ, "MLLAB_EXERCISE": str(exercise or lab6())}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    if not wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 120, proc):
        stop(proc)
        pytest.fail(f"server not ready in 120 s (exit code {proc.returncode}):\n{log.read_text()[-3000:]}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mllab import fastserve as fs
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path.write_bytes(fs.compile_sklearn(RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y), X))
    return path


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mllab.data import load_digits_split
    from mllab.model import save_model_dir
    from mllab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("digits") / "v1"
    save_model_dir(train(TrainConfig(epochs=1))["model"], out, reference=load_digits_split().X_train, version="v1")
    return out


@pytest.fixture(scope="module")
def fastserve(onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port, rows = free_port(), 150_000
    argv = [sys.executable, "-m", "mllab.fastserve", "serve", str(onnx_model), "--name", "iris"]
    argv += ["--port", str(port), "--max-rows", str(rows)]  # no --host: the default is under test
    proc = start(argv, port, tmp_path_factory.mktemp("fastserve-log") / "server.log")
    yield Server("fastserve", port, "iris", 4, rows)
    stop(proc)


@pytest.fixture(scope="module")
def kserve(digits_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port, rows = free_port(), 20_000
    argv = [sys.executable, "-m", "mllab.serving", "--http-port", str(port), "--model", f"digits={digits_model}"]
    argv += ["--max-rows", str(rows)]  # no --host: the default is under test
    proc = start(argv, port, tmp_path_factory.mktemp("kserve-log") / "server.log")
    yield Server("kserve", port, "digits", 64, rows)
    stop(proc)


@pytest.fixture(params=["fastserve", "kserve"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(request.param)


# ---- every kind of bad body ---------------------------------------------------------------------
def v2(n: int, **tensor: object) -> dict:
    base = {"name": "x", "shape": [1, n], "datatype": "FP32", "data": [1.0] * n}
    return {"inputs": [{**base, **tensor}]}


def row(n: int, last: object) -> list:
    return [1.0] * (n - 1) + [last]


# (protocol, body as a function of n_features, a fragment of the error message)
BAD = {
    "not JSON": ("v1", lambda n: b"{not json", "not valid JSON"),
    "1e999 (infinity in JSON)": ("v1", lambda n: b'{"instances": [[1e999]]}', "infinity"),
    "NaN literal": ("v2", lambda n: json.dumps(v2(n)).replace("1.0]", "NaN]").encode(), "not valid JSON"),
    "body is a list": ("v1", lambda n: [1, 2], "'instances'"),
    "instances is a string": ("v1", lambda n: {"instances": "1,2,3"}, "non-empty list of rows"),
    "instance is an object": ("v1", lambda n: {"instances": [{"a": 1}]}, "is an object"),
    "instance is a number": ("v1", lambda n: {"instances": [1, 2]}, "instance 0 is a number"),
    "boolean as a number": ("v1", lambda n: {"instances": [row(n, True)]}, "is true (a boolean)"),
    "string as a number": ("v1", lambda n: {"instances": [row(n, "1.5")]}, '"1.5" (a string)'),
    "null as a number": ("v1", lambda n: {"instances": [row(n, None)]}, "null"),
    "wrong row width": ("v1", lambda n: {"instances": [[1.0] * (n + 1)]}, "features, the model expects"),
    "nested too deep": ("v1", lambda n: {"instances": [[[[[1.0]]]] * n]}, "nested deeper"),
    "1e300 overflows float32": ("v1", lambda n: {"instances": [row(n, 1e300)]}, "inf as float32"),
    "huge integer": ("v1", lambda n: {"instances": [row(n, 10**40)]}, "inf as float32"),
    "inputs is an object": ("v2", lambda n: {"inputs": {"name": "x"}}, "'inputs' list"),
    "input is a string": ("v2", lambda n: {"inputs": ["x"]}, "inputs[0] is a string"),
    "no data": ("v2", lambda n: {"inputs": [{"name": "x", "shape": [1, n], "datatype": "FP32"}]}, "lacks data"),
    "name is a number": ("v2", lambda n: v2(n, name=3), "name must be a string"),
    "id is a number": ("v2", lambda n: {**v2(n), "id": 7}, "'id' must be a string"),
    "shape is a string": ("v2", lambda n: v2(n, shape=f"1,{n}"), "shape must be [rows, features]"),
    "shape holds a string": ("v2", lambda n: v2(n, shape=["1", n]), "shape must be [rows, features]"),
    "shape holds a boolean": ("v2", lambda n: v2(n, shape=[True, n]), "shape must be [rows, features]"),
    "shape holds a float": ("v2", lambda n: v2(n, shape=[1.0, n]), "shape must be [rows, features]"),
    "datatype is a number": ("v2", lambda n: v2(n, datatype=32), "is not supported"),
    "datatype BYTES": ("v2", lambda n: v2(n, datatype="BYTES"), "'BYTES' is not supported"),
    "data is an object": ("v2", lambda n: v2(n, data={"a": 1}), "data must be a non-empty list"),
    "data holds a boolean": ("v2", lambda n: v2(n, data=row(n, False)), "is false (a boolean)"),
    "data holds a string": ("v2", lambda n: v2(n, data=row(n, "2")), '"2" (a string)'),
    "data mixes lists and numbers": ("v2", lambda n: v2(n, data=[[1.0], *[1.0] * (n - 1)]), "mixes lists"),
    "INT32 data holds a float": ("v2", lambda n: v2(n, datatype="INT32", data=row(n, 1.5)), "send integers"),
    "data size does not match shape": ("v2", lambda n: v2(n, shape=[2, n]), "values but shape"),
    "data 1e300 overflows float32": ("v2", lambda n: v2(n, data=row(n, -1e300)), "-inf as float32"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_malformed_body_gets_400_json_naming_the_problem_and_the_server_stays_healthy(
    server: Server, case: str
) -> None:
    protocol, make, fragment = BAD[case]
    body = make(server.n_features)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, payload = server.post(protocol, raw)
    assert status == 400, (server.kind, payload)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str), payload
    assert fragment in payload["error"], payload["error"]
    assert "Traceback" not in payload["error"]
    assert server.ready() == 200
    good = {"instances": [[1.0] * server.n_features]}
    assert server.post("v1", json.dumps(good).encode())[0] == 200


# ---- limits -------------------------------------------------------------------------------------
def test_a_body_over_the_limit_gets_413_before_it_is_read(server: Server) -> None:
    raw = b'{"instances": [' + b" " * (4 * MIB) + b"]}"  # just over the default 4 MiB
    status, payload = server.post("v1", raw)
    assert status == 413, payload
    assert "--max-body-mib" in payload["error"] and str(4 * MIB) in payload["error"]
    assert server.ready() == 200


def test_a_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    chunk = b" " * 65536

    def body() -> Iterator[bytes]:  # no Content-Length: http.client sends it chunked
        yield b'{"instances": ['
        for _ in range(4 * MIB // len(chunk) + 1):
            yield chunk
        yield b"]}"

    status, payload = server.post("v1", body())
    assert status == 413, payload
    assert "--max-body-mib" in payload["error"]
    assert server.ready() == 200


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_more_rows_than_the_cap_get_413_naming_the_option(server: Server, protocol: str) -> None:
    n, rows = server.n_features, server.max_rows + 1
    if protocol == "v1":
        raw = json.dumps({"instances": [[0] * n] * rows}).encode()
    else:
        raw = json.dumps(v2(n, shape=[rows, n], data=[0])).encode()  # refused on the shape, data unread
    status, payload = server.post(protocol, raw)
    assert status == 413, payload
    assert f"cap of {server.max_rows} rows" in payload["error"] and "--max-rows" in payload["error"]
    ok = json.dumps({"instances": [[0] * n] * server.max_rows}).encode()
    status, payload = server.post("v1", ok)
    assert status == 200 and len(payload["predictions"]) == server.max_rows, payload


def test_health_probes_answer_while_a_large_request_is_parsed_and_predicted(server: Server) -> None:
    rng = np.random.default_rng(0)
    rows = {"fastserve": 100_000, "kserve": 9_000}[server.kind]  # ~2.5-3 MiB, under both limits
    X = np.round(rng.uniform(0, 16, (rows, server.n_features)), 1)
    raw = json.dumps({"instances": X.tolist()}).encode()
    assert len(raw) < 4 * MIB
    spans: list[tuple[float, float, int]] = []

    def big() -> None:
        for _ in range(3):
            t0 = time.monotonic()
            status, payload = server.post("v1", raw, timeout=120)
            spans.append((t0, time.monotonic(), status))
            assert len(payload["predictions"]) == rows

    worker = threading.Thread(target=big)
    worker.start()
    probes: list[tuple[float, float, int]] = []
    while worker.is_alive():
        t0 = time.monotonic()
        status = server.ready(timeout=2.0)  # a probe that waits behind the big request times out here
        probes.append((t0, time.monotonic(), status))
        time.sleep(0.02)
    worker.join()
    assert [s for *_, s in spans] == [200, 200, 200]
    assert all(s == 200 for *_, s in probes), probes
    inside = [p for p in probes if any(a < p[0] and p[1] < b for a, b, _ in spans)]
    assert inside, f"no probe answered while a large request was in flight: spans {spans}, probes {probes[:5]}"
    # A kubelet probe's default timeout is 1 s. JSON decoding holds the GIL whichever thread runs it, so
    # what keeps a probe under it is the body limit (short decodes) and predicting off the event loop
    # (the model call).
    slowest, shortest = max(b - a for a, b, _ in inside), min(b - a for a, b, _ in spans)
    assert slowest < 1.0, f"a probe took {slowest:.3f} s while a large request took {shortest:.3f} s"


SLOW_PREDICT = """

import time as _time

_predict = DigitsModel.predict


def _slow_predict(self, payload, headers=None):
    _time.sleep(2.0)  # a slow model, or a learner's predict that takes its time
    return _predict(self, payload, headers)


DigitsModel.predict = _slow_predict
"""


def test_health_probes_answer_while_the_learners_predict_is_slow(digits_model: Path, tmp_path: Path) -> None:
    """A learner's (sync) predict that takes 2 s runs off the event loop: probes answer meanwhile, and
    the kit still records what it served (model_predictions_total), from the worker thread."""
    mine = tmp_path / "exercise"
    mine.mkdir()
    (mine / "digits_model.py").write_text((lab6() / "digits_model.py").read_text() + SLOW_PREDICT)
    port = free_port()
    argv = [sys.executable, "-m", "mllab.serving", "--http-port", str(port), "--model", f"digits={digits_model}"]
    proc = start(argv, port, tmp_path / "slow.log", exercise=mine)
    try:
        srv = Server("kserve", port, "digits", 64, 10_000)
        answer: list[tuple[int, object]] = []
        worker = threading.Thread(
            target=lambda: answer.append(srv.post("v1", json.dumps({"instances": [[0] * 64] * 3}).encode()))
        )
        t0 = time.monotonic()
        worker.start()
        probes = []
        while worker.is_alive():
            p0 = time.monotonic()
            probes.append((srv.ready(timeout=1.0), time.monotonic() - p0))  # a kubelet probe's default timeout
            time.sleep(0.05)
        worker.join()
        took = time.monotonic() - t0
        assert answer[0][0] == 200 and len(answer[0][1]["predictions"]) == 3, answer
        assert took >= 2.0 and len(probes) >= 10, (took, probes)
        assert all(status == 200 for status, _ in probes), probes
        assert max(seconds for _, seconds in probes) < 0.5, probes
        status, metrics = srv.request("GET", "/metrics")
        assert status == 200
        served = [line for line in str(metrics).splitlines() if line.startswith("model_predictions_total{")]
        assert served and float(served[0].rsplit(" ", 1)[1]) == 3.0, served
    finally:
        stop(proc)


# ---- where they listen --------------------------------------------------------------------------
def test_both_servers_bind_127_0_0_1_by_default(server: Server) -> None:
    assert listening_addresses(server.port) == {"0100007F"}


def test_host_option_changes_the_bind_address(onnx_model: Path, digits_model: Path, tmp_path: Path) -> None:
    """fastserve's --host, and `mllab serve --host` through to the labs' server (`python -m mllab.serving --host`)."""
    port = free_port()
    argv = [sys.executable, "-m", "mllab.fastserve", "serve", str(onnx_model), "--name", "iris", "--port", str(port)]
    proc = start([*argv, "--host", "0.0.0.0"], port, tmp_path / "fast.log")
    try:
        assert listening_addresses(port) == {"00000000"}
    finally:
        stop(proc)
    port = free_port()
    proc = start(
        mllab_cmd("serve", str(digits_model), "--port", str(port), "--host", "0.0.0.0"), port, tmp_path / "k.log"
    )
    try:
        assert listening_addresses(port) == {"00000000"}
    finally:
        stop(proc)


def test_mllab_serve_binds_127_0_0_1_and_passes_the_limits(digits_model: Path, tmp_path: Path) -> None:
    port = free_port()
    argv = mllab_cmd("serve", str(digits_model), "--port", str(port), "--max-rows", "5", "--max-body-mib", "0.5")
    proc = start(argv, port, tmp_path / "serve.log")
    try:
        assert listening_addresses(port) == {"0100007F"}
        srv = Server("mllab serve", port, "digits", 64, 5)
        status, payload = srv.post("v1", json.dumps({"instances": [[0] * 64] * 6}).encode())
        assert status == 413 and "cap of 5 rows" in payload["error"] and "--max-rows 6" in payload["error"], payload
        status, payload = srv.post("v1", b'{"instances": [' + b" " * (MIB // 2) + b"]}")
        assert status == 413 and f"limit of {MIB // 2} bytes (0.5 MiB)" in payload["error"], payload
        status, payload = srv.post("v1", json.dumps({"instances": [[0] * 64] * 5}).encode())
        assert status == 200 and len(payload["predictions"]) == 5, payload
    finally:
        stop(proc)


# ---- what is the kit's, what is the learner's -----------------------------------------------------
def test_the_labs_server_leaves_the_protocol_to_the_learners_predict(digits_model: Path, tmp_path: Path) -> None:
    """Lab 6's starter checks no V2 tensor (its TODO): the kit's guard does not answer for it, so a
    V2 body with shape [1, 3] fails in the learner's code (500, what lab 6's check names), and the
    server serves on. The size limit is the kit's, whatever the learner wrote."""
    port = free_port()
    argv = [sys.executable, "-m", "mllab.serving", "--http-port", str(port), "--model", f"digits={digits_model}"]
    proc = start(argv, port, tmp_path / "starter.log", exercise=lab6("starter"))
    try:
        srv = Server("kserve", port, "digits", 64, 10_000)
        status, payload = srv.post("v2", json.dumps(v2(3)).encode())
        assert status == 500, payload
        assert srv.ready() == 200
        assert srv.post("v1", json.dumps({"instances": [[0] * 64]}).encode())[0] == 200
        status, payload = srv.post("v1", b'{"instances": [' + b" " * (4 * MIB) + b"]}")
        assert status == 413 and "--max-body-mib" in payload["error"], payload
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("headers", "body", "fragment"),
    [
        ({}, {**v2(64), "parameters": 3}, "malformed request: parameters"),  # KServe's decoder, past the guard
        ({"inference-header-content-length": "x"}, v2(64), "is not the size of the request's JSON part"),
        ({"inference-header-content-length": "0"}, v2(64), "is not the size of the request's JSON part"),
        (
            {"content-type": "application/octet-stream"},
            {"inputs": [{"shape": [1, 64], "datatype": "FP32"}]},
            "lacks name",
        ),
    ],
)
def test_what_kserves_decoder_refuses_gets_400_json_too(
    kserve: Server, headers: dict, body: dict, fragment: str
) -> None:
    """Past the guard KServe decodes a V2 body with pydantic (422 by default) or, with the binary
    extension's header, by hand (a missing name was a KeyError: 500)."""
    raw = json.dumps(body).encode()
    if headers.get("Content-Type") == "application/octet-stream":
        headers = {**headers, "inference-header-content-length": str(len(raw))}
    status, payload = kserve.post("v2", raw, headers=headers)
    assert status == 400, payload
    assert fragment in payload["error"], payload
    assert kserve.ready() == 200
