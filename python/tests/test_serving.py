"""The real KServe model server (lab 6's reference DigitsModel inside): V1, V2, metadata, bad requests, canary
split, delayed labels, cleanup; and which DigitsModel it serves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mllab.backends import ServeSpec
from mllab.backends.local import LocalBackend
from mllab.procs import group_alive, port_is_open

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mllab.data import load_digits_split
    from mllab.model import save_model_dir
    from mllab.training import TrainConfig, train

    root = tmp_path_factory.mktemp("models")
    ref = load_digits_split().X_train
    out = {}
    for version, epochs in (("v1", 1), ("v2", 3)):
        res = train(TrainConfig(epochs=epochs))
        save_model_dir(res["model"], root / version, reference=ref, version=version)
        out[version] = root / version
    return out


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    backend = LocalBackend(root=tmp_path_factory.mktemp("srv"))
    spec = ServeSpec(
        "t", {"digits": models["v1"]}, canary={"digits": (models["v2"], 30)}, workdir=tmp_path_factory.mktemp("srvlog")
    )
    with backend.serve(spec) as ep:
        yield ep.url


@pytest.fixture
def client(server: str):
    from mllab.serving.client import Client

    with Client(server) as c:
        yield c


def test_v1_and_v2_answer_like_the_offline_model(client, models: dict[str, Path]) -> None:
    from mllab.data import load_digits_split, to_images
    from mllab.model import load_model_dir, predict_proba

    X = load_digits_split().X_test[:20]
    offline = {v: predict_proba(load_model_dir(d)[0], to_images(X)).argmax(1) for v, d in models.items()}
    preds = client.v1_predict(X)
    assert len(preds) == 20 and all(p in (offline["v1"][i], offline["v2"][i]) for i, p in enumerate(preds))
    resp = client.v2_infer(X[:4], request_id="abc")
    assert resp["id"] == "abc" and resp["model_name"] == "digits"
    assert client.v2_predictions(resp) == offline[resp["model_version"]][:4].tolist()
    probs = next(o for o in resp["outputs"] if o["name"] == "probabilities")
    assert probs["shape"] == [4, 10] and np.allclose(np.array(probs["data"]).reshape(4, 10).sum(1), 1, atol=1e-5)


def test_health_and_metadata(client) -> None:
    assert client.ready() and client.model_ready()
    meta = client.metadata()
    assert meta["name"] == "digits"
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"] for o in meta["outputs"]} == {"predictions", "probabilities"}


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/models/digits:predict", "{not json", ""),
        ("/v1/models/digits:predict", '{"instances": [[1, 2]]}', "instance 0 has 2 values"),
        ("/v1/models/digits:predict", '{"rows": []}', "'instances'"),
        (
            "/v2/models/digits/infer",
            '{"inputs": [{"name": "p", "shape": [1, 64], "datatype": "BYTES", "data": ["x"]}]}',
            "",
        ),
        (
            "/v2/models/digits/infer",
            '{"inputs": [{"name": "p", "shape": [2, 64], "datatype": "FP32", "data": [1]}]}',
            "needs 128",
        ),
        ("/v1/models/digits-feedback:predict", '{"instances": [{"id": "nope", "labels": [1]}]}', "unknown request id"),
    ],
)
def test_malformed_requests_get_400_and_the_server_keeps_serving(client, path: str, body: str, needle: str) -> None:
    status, payload = client.raw_post(path, body)
    assert status == 400, payload
    assert "error" in json.dumps(payload) or "detail" in json.dumps(payload)
    assert needle in json.dumps(payload)
    assert len(client.v1_predict(np.zeros((1, 64)))) == 1  # still serving


def test_canary_split_is_observed(client) -> None:
    """The bound comes from the binomial distribution, not from the code under test (lab 6's own
    split_tolerance would let a wrong tolerance and a wrong split agree). The server picks the
    revision per request with an independent draw (mllab.serving.server: `_pick`, random.Random,
    not a hash of the request id), so the canary's count in n requests is Binomial(n, 0.30): the
    two-sided interval that holds it with probability >= 1 - 1e-4 ([60, 122] of 300) fails a
    correct split at most once in 10,000 runs. What n = 300 catches: a swapped split (70 %), none
    or all, 10 % or 50 % (each outside with probability > 0.99); a split 10 points off (20 %,
    40 %) only about half the time."""
    from scipy.stats import binom

    n, p, false_failure_rate = 300, 0.30, 1e-4
    X = np.zeros((1, 64))
    versions = [client.v2_infer(X, request_id=f"c{i}")["model_version"] for i in range(n)]
    assert set(versions) == {"v1", "v2"}
    low, high = binom.interval(1 - false_failure_rate, n, p)
    assert low <= versions.count("v2") <= high, (versions.count("v2"), (low, high))


def test_delayed_labels_feed_the_accuracy_gauge(client) -> None:
    from mllab.alerts import Scrape

    resp = client.v2_infer(np.zeros((3, 64)), request_id="late")
    preds = client.v2_predictions(resp)
    truth = [preds[0], (preds[1] + 1) % 10, preds[2]]
    fb = client.feedback("late", truth)
    assert fb["model_version"] == resp["model_version"]
    scrape = Scrape.parse(client.metrics_text())
    gauges = {lab["model_version"]: v for lab, v in scrape.get("model_accuracy")}
    assert gauges[resp["model_version"]] == pytest.approx(fb["accuracy"])
    assert sum(v for _, v in scrape.get("model_predictions_total")) > 0
    assert scrape.get("model_prediction_latency_seconds_bucket")


def test_server_process_group_is_gone_after_the_context(models: dict[str, Path], tmp_path: Path) -> None:
    from conftest import processes_mentioning

    backend = LocalBackend(root=tmp_path)
    with backend.serve(ServeSpec("gone", {"digits": models["v1"]}, workdir=tmp_path)) as ep:
        port = int(ep.url.rsplit(":", 1)[1])
        pgid = int(processes_mentioning(f"mllab.serving --http-port {port}")[0].split(":")[0])
        assert port_is_open(port)
    assert not port_is_open(port), "stale port after the server stopped"
    assert not group_alive(pgid), "orphan server processes"


def test_the_server_serves_the_learners_digits_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lab 6's exercise: the class at $MLLAB_EXERCISE/digits_model.py, a kserve.Model; the reference otherwise."""
    from mllab.exercise import ExerciseError
    from mllab.serving.server import model_code

    mine = tmp_path / "digits_model.py"
    mine.write_text("import kserve\n\n\nclass DigitsModel(kserve.Model):\n    MINE = True\n")
    monkeypatch.setenv("MLLAB_EXERCISE", str(tmp_path))
    assert model_code().DigitsModel.MINE
    mine.write_text("class DigitsModel:\n    pass\n")
    with pytest.raises(ExerciseError, match=r"not a subclass of kserve\.Model"):
        model_code()
    monkeypatch.setenv("MLLAB_EXERCISE", str(tmp_path / "another-labs-folder"))
    assert Path(model_code().__file__).parent.name == "solution"
