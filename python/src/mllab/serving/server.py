"""The KServe model server process: `python -m mllab.serving --http-port 8080 --model digits=DIR`."""

from __future__ import annotations

import argparse
import collections
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mllab.serving.protocol import BadRequest, parse_v1, parse_v2_input, v1_response

WINDOW = 300  # live inputs kept for drift (PSI) per model
MIN_WINDOW = 100  # no PSI before this many inputs
ACCURACY_WINDOW = 200  # labelled predictions kept for the accuracy gauge
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Prometheus metrics, registered once per process in the default registry KServe's /metrics serves."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.predictions = Counter(
            "model_predictions_total", "Predictions served (one per instance)", ["model_name", "model_version"]
        )
        self.latency = Histogram(
            "model_prediction_latency_seconds",
            "Prediction latency per request",
            ["model_name"],
            buckets=LATENCY_BUCKETS,
        )
        self.errors = Counter("model_prediction_errors_total", "Rejected or failed requests", ["model_name"])
        self.accuracy = Gauge(
            "model_accuracy",
            "Accuracy over the last labelled predictions (delayed labels)",
            ["model_name", "model_version"],
        )
        self.labels = Counter("model_feedback_labels_total", "Delayed labels received", ["model_name"])
        self.psi = Gauge(
            "model_feature_psi",
            "Population stability index of a feature, live window vs. training",
            ["model_name", "feature"],
        )


class Revision:
    def __init__(self, model_dir: Path) -> None:
        from mllab.model import load_model_dir

        self.dir = model_dir
        self.model, self.meta = load_model_dir(model_dir)
        self.version = str(self.meta.get("version", model_dir.name))
        ref = model_dir / "reference.npy"
        self.reference = np.load(ref) if ref.exists() else None


def _load_kserve() -> Any:
    import kserve

    return kserve


def build_models(name: str, model_dir: Path, canary: tuple[Path, int] | None, metrics: Metrics, seed: int = 0):
    kserve = _load_kserve()
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    from mllab.data import to_images
    from mllab.drift import psi
    from mllab.model import predict_proba

    class DigitsModel(kserve.Model):
        def __init__(self) -> None:
            super().__init__(name)
            self.stable: Revision | None = None
            self.canary: Revision | None = None
            self.canary_percent = canary[1] if canary else 0
            self.rng = random.Random(seed)
            self.lock = threading.Lock()
            self.window: collections.deque[np.ndarray] = collections.deque(maxlen=WINDOW)
            self.served: collections.OrderedDict[str, tuple[str, np.ndarray]] = collections.OrderedDict()
            self.outcomes: dict[str, collections.deque[bool]] = collections.defaultdict(
                lambda: collections.deque(maxlen=ACCURACY_WINDOW)
            )

        def load(self) -> bool:
            self.stable = Revision(model_dir)
            if canary:
                self.canary = Revision(canary[0])
            self.ready = True
            return self.ready

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [
                {"name": "predictions", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            ]

        def _pick(self) -> Revision:
            assert self.stable is not None
            if self.canary is not None and self.rng.random() * 100 < self.canary_percent:
                return self.canary
            return self.stable

        def _observe(self, rev: Revision, X: np.ndarray, labels: np.ndarray, request_id: str) -> None:
            with self.lock:
                self.served[request_id] = (rev.version, labels)
                while len(self.served) > 10_000:
                    self.served.popitem(last=False)
                if rev.reference is None:
                    return
                self.window.extend(X)
                if len(self.window) >= MIN_WINDOW:
                    live = np.asarray(self.window)
                    for j in range(live.shape[1]):
                        metrics.psi.labels(name, f"pixel_{j}").set(psi(rev.reference[:, j], live[:, j]))

        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            start = time.perf_counter()
            v2 = isinstance(payload, InferRequest)
            try:
                if v2:
                    if not payload.inputs:
                        raise BadRequest("a V2 request needs at least one input tensor")
                    t = payload.inputs[0]
                    X = parse_v2_input(t.name, t.datatype, list(t.shape), t.data)
                else:
                    X = parse_v1(payload)
            except BadRequest as exc:
                metrics.errors.labels(name).inc()
                raise InvalidInput(str(exc)) from None
            rev = self._pick()
            probs = predict_proba(rev.model, to_images(X))
            labels = probs.argmax(1)
            request_id = (payload.id if v2 else None) or (headers or {}).get("x-request-id") or uuid.uuid4().hex
            self._observe(rev, X, labels, request_id)
            metrics.predictions.labels(name, rev.version).inc(len(labels))
            metrics.latency.labels(name).observe(time.perf_counter() - start)
            if not v2:
                return v1_response(labels)
            outputs = [
                InferOutput("predictions", [len(labels)], "INT64", data=[int(v) for v in labels]),
                InferOutput("probabilities", list(probs.shape), "FP32", data=probs.astype(np.float32).ravel().tolist()),
            ]
            return InferResponse(
                response_id=request_id, model_name=name, model_version=rev.version, infer_outputs=outputs
            )

        def feedback(self, items: Any) -> list[dict[str, Any]]:
            if not isinstance(items, list) or not items:
                raise BadRequest('feedback needs {"instances": [{"id": "<request id>", "labels": [..]}]}')
            out = []
            with self.lock:
                for i, item in enumerate(items):
                    if not isinstance(item, dict) or "id" not in item or "labels" not in item:
                        raise BadRequest(f"feedback instance {i} needs 'id' (a prediction's request id) and 'labels'")
                    rid = str(item["id"])
                    if rid not in self.served:
                        raise BadRequest(f"unknown request id {rid!r}: send labels for ids of served predictions")
                    version, predicted = self.served[rid]
                    truth = np.asarray(item["labels"]).reshape(-1)
                    if truth.size != predicted.size:
                        raise BadRequest(f"request {rid!r} had {predicted.size} predictions, got {truth.size} labels")
                    self.outcomes[version].extend((predicted == truth).tolist())
                    acc = float(np.mean(self.outcomes[version]))
                    metrics.accuracy.labels(name, version).set(acc)
                    metrics.labels.labels(name).inc(truth.size)
                    out.append({"id": rid, "model_version": version, "accuracy": acc})
            return out

    class FeedbackModel(kserve.Model):
        """``POST /v1/models/NAME-feedback:predict`` with delayed labels for earlier predictions."""

        def __init__(self, target: DigitsModel) -> None:
            super().__init__(f"{name}-feedback")
            self.target = target
            self.ready = True

        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            if isinstance(payload, InferRequest):
                raise InvalidInput('send delayed labels with the V1 protocol: {"instances": [{"id", "labels"}]}')
            try:
                return {"predictions": self.target.feedback((payload or {}).get("instances"))}
            except BadRequest as exc:
                raise InvalidInput(str(exc)) from None

    model = DigitsModel()
    model.load()
    return [model, FeedbackModel(model)]


def _model_arg(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"invalid --model {value!r}: use NAME=DIR, e.g. digits=./models/v1")
    p = Path(path).expanduser()
    if not (p / "meta.json").is_file() or not (p / "model.pt").is_file():
        raise argparse.ArgumentTypeError(f"invalid --model {value!r}: {p} has no meta.json and model.pt")
    return name, p


def _canary_arg(value: str) -> tuple[str, Path, int]:
    name, sep, rest = value.partition("=")
    path, sep2, pct = rest.rpartition(":")
    try:
        percent = int(pct)
    except ValueError:
        percent = -1
    if not sep or not sep2 or not 0 <= percent <= 100:
        raise argparse.ArgumentTypeError(f"invalid --canary {value!r}: use NAME=DIR:PERCENT with PERCENT 0-100")
    return name, _model_arg(f"{name}={path}")[1], percent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllab.serving", description="KServe model server for the labs")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--model", type=_model_arg, action="append", required=True, help="NAME=DIR (repeatable)")
    p.add_argument("--canary", type=_canary_arg, action="append", default=[], help="NAME=DIR:PERCENT")
    p.add_argument("--seed", type=int, default=0, help="seed of the canary traffic split")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    kserve = _load_kserve()
    canaries = {n: (d, pct) for n, d, pct in args.canary}
    unknown = sorted(set(canaries) - {n for n, _ in args.model})
    if unknown:
        p.error(f"--canary for {unknown} but no --model with that name")
    metrics = Metrics()
    models = []
    for name, path in args.model:
        models += build_models(name, path, canaries.get(name), metrics, seed=args.seed)
    kserve.ModelServer(
        http_port=args.http_port, enable_grpc=False, workers=1, grace_period=2, enable_latency_logging=False
    ).start(models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
