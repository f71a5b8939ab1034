"""fastserve: the compiled predictor, the micro-batcher, the V1/V2 payloads, and a real
server process answering both protocols, refusing malformed requests with 400 and
serving on afterwards."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from mllab import fastserve as fs
from mllab.procs import free_port, wait_http


@pytest.fixture(scope="module")
def forest():
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, _ = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    return RandomForestClassifier(n_estimators=50, random_state=0).fit(X_tr, y_tr), X_tr, X_te


@pytest.fixture(scope="module")
def onnx_bytes(forest):
    model, X_tr, _ = forest
    return fs.compile_sklearn(model, X_tr)


def test_compiled_model_gives_the_same_answers(forest, onnx_bytes):
    model, _, X_te = forest
    compiled = fs.OnnxClassifier(onnx_bytes)
    assert compiled.n_features == 4
    assert fs.agreement(model, compiled, X_te) == 1.0
    np.testing.assert_array_equal(compiled.predict(X_te.astype(np.float32)), model.predict(X_te))


def test_agreement_detects_a_different_model(forest):
    from sklearn.dummy import DummyClassifier

    model, X_tr, X_te = forest
    dummy = DummyClassifier(strategy="constant", constant=0).fit(X_tr, np.zeros(len(X_tr), dtype=int))
    assert fs.agreement(dummy, fs.OnnxClassifier(fs.compile_sklearn(model, X_tr)), X_te) < 0.5


def test_batcher_merges_concurrent_requests_and_keeps_their_order():
    calls = []

    def predict(x):
        calls.append(len(x))
        return x[:, 0] * 10

    async def scenario():
        batcher = fs.MicroBatcher(predict, max_batch=100)
        rows = [np.array([[i, 0.0]] * (1 + i % 3)) for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(r) for r in rows))
        await batcher.stop()
        return rows, results

    rows, results = asyncio.run(scenario())
    for r, out in zip(rows, results, strict=True):
        np.testing.assert_array_equal(out, r[:, 0] * 10)
    assert sum(calls) == sum(len(r) for r in rows)
    assert len(calls) < len(rows), f"no batching happened: {calls}"


def test_batcher_respects_max_batch():
    calls = []

    async def scenario():
        batcher = fs.MicroBatcher(lambda x: calls.append(len(x)) or x[:, 0], max_batch=4)
        await asyncio.gather(*(batcher.submit(np.ones((1, 2))) for _ in range(10)))
        await batcher.stop()

    asyncio.run(scenario())
    assert max(calls) <= 4 and sum(calls) == 10


def test_a_failing_batch_fails_its_requests_only():
    async def scenario():
        state = {"n": 0}

        def predict(x):
            state["n"] += 1
            if state["n"] == 1:
                raise RuntimeError("boom")
            return x[:, 0]

        batcher = fs.MicroBatcher(predict)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.ones((1, 2)))
        ok = await batcher.submit(np.full((1, 2), 3.0))
        await batcher.stop()
        return ok

    np.testing.assert_array_equal(asyncio.run(scenario()), [3.0])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([1, 2], '"instances"'),
        ({"instances": []}, "non-empty list of rows"),
        ({"instances": [[1, 2, 3]]}, "3 features, the model expects 4"),
        ({"instances": [["a", 1, 2, 3]]}, "numbers only"),
        ({"instances": [[1, 2], [3]]}, "numbers only"),
        ({"instances": [[1, 2, 3, float("nan")]]}, "NaN"),
    ],
)
def test_v1_payload_errors_name_the_problem(body, fragment):
    with pytest.raises(fs.BadRequest, match=fragment):
        fs.parse_v1(body, 4)


def test_v2_payload_is_reshaped():
    body = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    x, rid = fs.parse_v2(body, 2)
    assert rid == "r1" and x.shape == (2, 2) and x[1, 0] == 3


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"name": "x", "shape": [1, 4], "data": [1, 2, 3, 4]}, "lacks datatype"),
        ({"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": [1, 2, 3, 4]}, "'BYTES' is not supported"),
        ({"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}, r"shape must be \[rows, features\]"),
        ({"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, "has 4 values but shape"),
        ({"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, "the model expects 4"),
    ],
)
def test_v2_payload_errors_name_the_problem(tensor, fragment):
    with pytest.raises(fs.BadRequest, match=fragment):
        fs.parse_v2({"inputs": [tensor]}, 4)


# --- a real server process ------------------------------------------------------------------------
def call(url: str, payload: object | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.fixture(scope="module")
def server(tmp_path_factory, onnx_bytes):
    path = tmp_path_factory.mktemp("fastserve") / "iris.onnx"
    path.write_bytes(onnx_bytes)
    port = free_port()
    argv = [sys.executable, "-m", "mllab.fastserve", "serve", str(path), "--name", "iris", "--port", str(port)]
    proc = subprocess.Popen([*argv, "--host", "127.0.0.1"])
    base = f"http://127.0.0.1:{port}"
    if not wait_http(base + "/v2/health/ready", 60, proc):
        proc.kill()
        pytest.fail("fastserve did not become ready in 60 s")
    yield base
    proc.terminate()
    proc.wait(10)


def test_server_answers_v1_and_v2_like_the_model(server, forest):
    model, _, X_te = forest
    status, body = call(server + "/v1/models/iris:predict", {"instances": X_te.tolist()})
    assert status == 200 and body["predictions"] == model.predict(X_te).tolist()
    tensor = {"name": "x", "shape": list(X_te.shape), "datatype": "FP64", "data": X_te.ravel().tolist()}
    status, body = call(server + "/v2/models/iris/infer", {"id": "abc", "inputs": [tensor]})
    assert status == 200 and body["id"] == "abc" and body["model_name"] == "iris"
    assert body["outputs"][0]["data"] == model.predict(X_te).tolist()
    assert body["outputs"][0]["shape"] == [len(X_te)]


def test_server_metadata_and_readiness(server):
    assert call(server + "/v2/health/live") == (200, {"live": True})
    assert call(server + "/v2/models/iris/ready")[1]["ready"] is True
    status, meta = call(server + "/v2/models/iris")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 4]
    assert call(server + "/v1/models/iris")[1] == {"name": "iris", "ready": True}


def test_server_refuses_bad_requests_and_keeps_serving(server):
    status, body = call(server + "/v1/models/iris:predict", raw=b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = call(server + "/v1/models/iris:predict", {"instances": [[1, 2]]})
    assert status == 400 and "2 features, the model expects 4" in body["error"]
    status, body = call(server + "/v1/models/other:predict", {"instances": [[1, 2, 3, 4]]})
    assert status == 404 and "'other' is not served here" in body["error"]
    status, body = call(server + "/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert status == 200 and body["predictions"] == [0]


def test_smoke_model_writes_a_model_the_server_loads_from_its_directory(tmp_path):
    """`smoke-model DIR` then `serve DIR` is what the kserve role's mllab-fastserve runtime does."""
    path = fs.smoke_model(tmp_path / "models")
    assert path == tmp_path / "models" / "model.onnx"
    assert fs.resolve_model(tmp_path / "models") == path
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    acc = float((fs.OnnxClassifier(path).predict(X.astype("float32")) == y).mean())
    assert acc > 0.95, acc  # a forest fits iris's training rows almost perfectly
    assert not list((tmp_path / "models").glob("*.partial"))


def test_serve_names_a_missing_model_and_how_to_make_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        fs.main(["serve", str(tmp_path), "--name", "iris"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "model.onnx" in err and "smoke-model" in err


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text exposition (parsed by prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f"{s.name}{{{','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))}}}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_server_exports_kserve_and_kit_metrics(server):
    """Issue 15: the kit's PodMonitor scrapes predictors on :8080/metrics, and the serving dashboard
    reads KServe's request_predict_seconds and the kit's model_* counters: fastserve exports them,
    counting rows served and requests refused."""
    import urllib.request

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(server + "/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            return _samples(resp.read().decode())

    before = scrape()
    rows = [[5.1, 3.5, 1.4, 0.2]] * 3
    assert call(server + "/v1/models/iris:predict", {"instances": rows})[0] == 200
    assert call(server + "/v1/models/iris:predict", {"instances": [[1, 2]]})[0] == 400
    after = scrape()

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("model_predictions_total{model_name=iris,model_version=1}") == 3
    assert delta("model_prediction_errors_total{model_name=iris}") == 1
    assert delta("request_predict_seconds_count{model_name=iris}") == 1
    assert delta("request_predict_seconds_bucket{le=+Inf,model_name=iris}") == 1
