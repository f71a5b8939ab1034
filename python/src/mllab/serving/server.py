"""The KServe model server process: `python -m mllab.serving --http-port 8080 --model digits=DIR`.

Under bad input (issue 16): bodies over --max-body-mib get 413 before they are read, requests of
more rows than --max-rows get 413, a V2 body whose envelope has the wrong JSON types (what KServe's
typed decoder would coerce or answer with 422) gets 400 naming the value; the rest of the protocol
is the learner's DigitsModel's (lab 6: its predict answers a malformed request with 400). The
learner's predict runs in a worker thread, so health probes answer while a request is predicted.
The server binds 127.0.0.1 unless --host says otherwise (a pod passes --host 0.0.0.0).
"""

from __future__ import annotations

import argparse
import collections
import contextvars
import dataclasses
import functools
import inspect
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mllab import INSTALL_LABS
from mllab.serving import protocol
from mllab.serving.protocol import DIGITS, BadRequest, InputSpec

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


def model_code() -> Any:
    """The module whose `DigitsModel` (a `kserve.Model` with `predict`) the server serves: the
    learner's digits_model.py (lab 6's exercise, at $MLLAB_EXERCISE), else lab 6's reference."""
    from mllab.exercise import ExerciseError, from_env

    code = from_env("digits_model", required=("DigitsModel",), default_lab=6)
    kserve = _load_kserve()
    if not (isinstance(code.DigitsModel, type) and issubclass(code.DigitsModel, kserve.Model)):
        raise ExerciseError(
            f"{Path(code.__file__ or 'digits_model.py').name}: DigitsModel is not a subclass of kserve.Model",
            "keep `class DigitsModel(kserve.Model)` of the starter file",
        )
    return code


_REQUEST: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("mllab_request")


def build_models(
    name: str,
    model_dir: Path,
    canary: tuple[Path, int] | None,
    metrics: Metrics,
    seed: int = 0,
    spec: InputSpec = DIGITS,
):
    """NAME's model (the learner's `DigitsModel`, given `classify`, the revisions and the canary
    split) and NAME-feedback (delayed labels). The kit's part: which revision answers, metrics,
    the drift window, the record of served predictions, the row cap (spec.max_rows) and running the
    learner's predict off the event loop; the protocol is the learner's."""
    import anyio

    kserve = _load_kserve()
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferRequest

    from mllab.data import to_images
    from mllab.drift import psi
    from mllab.model import predict_proba

    Learner = model_code().DigitsModel
    learner_async = inspect.iscoroutinefunction(Learner.predict)

    class DigitsModel(Learner):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            Learner.__init__(self, name)
            self._stable: Revision | None = None
            self._canary: Revision | None = None
            self._canary_percent = canary[1] if canary else 0
            self._rng = random.Random(seed)
            self._lock = threading.Lock()
            self._window: collections.deque[np.ndarray] = collections.deque(maxlen=WINDOW)
            self._served: collections.OrderedDict[str, tuple[str, np.ndarray]] = collections.OrderedDict()
            self._outcomes: dict[str, collections.deque[bool]] = collections.defaultdict(
                lambda: collections.deque(maxlen=ACCURACY_WINDOW)
            )

        def load(self) -> bool:
            self._stable = Revision(model_dir)
            if canary:
                self._canary = Revision(canary[0])
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
            assert self._stable is not None
            if self._canary is not None and self._rng.random() * 100 < self._canary_percent:
                return self._canary
            return self._stable

        def classify(self, X: Any) -> tuple[str, np.ndarray]:
            """The learner's predict calls this: X [n, 64] -> (the version that answers, probabilities [n, 10])."""
            X = np.asarray(X, dtype=np.float32)
            if X.ndim != 2 or X.shape[1] != 64 or len(X) == 0:
                raise ValueError(f"classify() takes the pixels as an array of shape [n, 64], got {list(X.shape)}")
            protocol.rows_cap(len(X), spec)  # a body the learner parsed itself (no JSON content type)
            rev = self._pick()
            probs = predict_proba(rev.model, to_images(X))
            record = _REQUEST.get(None)
            if record is not None:
                record.update(rev=rev, X=X, labels=probs.argmax(1))
            return rev.version, probs

        def validate(self, payload: Any) -> Any:
            """KServe's own check of a V1 body ("instances" not a list) answers 'Expected "instances" to be
            a list' without the value sent; here the learner's predict gets the body, as in lab 6's
            probes (parse_v1 names the value). A learner's own validate still runs."""
            if Learner.validate is not kserve.Model.validate:
                return Learner.validate(self, payload)
            return payload

        async def predict(self, payload: Any, headers: dict[str, str] | None = None, *rest: Any) -> Any:
            """The learner's predict; a plain (sync) one runs in a worker thread, so the event loop keeps
            answering health probes meanwhile (the thread gets a copy of this context: the request's
            record, a mutable dict, is the one __call__ reads)."""
            if learner_async:
                return await Learner.predict(self, payload, headers, *rest)
            return await anyio.to_thread.run_sync(functools.partial(Learner.predict, self, payload, headers, *rest))

        async def __call__(self, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
            start = time.perf_counter()
            if isinstance(body, InferRequest) and not body.id:
                body.id = (headers or {}).get("x-request-id") or uuid.uuid4().hex
            record: dict[str, Any] = {}
            token = _REQUEST.set(record)
            try:
                if isinstance(body, dict) and type(body.get("instances")) is list:
                    protocol.rows_cap(len(body["instances"]), spec)  # before the learner parses them
                result = await super().__call__(body, headers, **kwargs)
            except BadRequest as exc:
                metrics.errors.labels(name).inc()
                if exc.status != 400:  # TooLarge: 413 through the server's BadRequest handler
                    raise
                raise InvalidInput(str(exc)) from None
            except Exception:
                metrics.errors.labels(name).inc()
                raise
            finally:
                _REQUEST.reset(token)
            if "rev" in record:
                rev = record["rev"]
                if isinstance(body, InferRequest):
                    request_id = str(body.id)
                else:
                    request_id = (headers or {}).get("x-request-id") or uuid.uuid4().hex
                self._observe(rev, record["X"], record["labels"], request_id)
                metrics.predictions.labels(name, rev.version).inc(len(record["labels"]))
            metrics.latency.labels(name).observe(time.perf_counter() - start)
            return result

        def _observe(self, rev: Revision, X: np.ndarray, labels: np.ndarray, request_id: str) -> None:
            with self._lock:
                self._served[request_id] = (rev.version, labels)
                while len(self._served) > 10_000:
                    self._served.popitem(last=False)
                if rev.reference is None:
                    return
                self._window.extend(X)
                if len(self._window) >= MIN_WINDOW:
                    live = np.asarray(self._window)
                    for j in range(live.shape[1]):
                        metrics.psi.labels(name, f"pixel_{j}").set(psi(rev.reference[:, j], live[:, j]))

        def feedback(self, items: Any) -> list[dict[str, Any]]:
            if not isinstance(items, list) or not items:
                raise BadRequest('feedback needs {"instances": [{"id": "<request id>", "labels": [..]}]}')
            out = []
            with self._lock:
                for i, item in enumerate(items):
                    if not isinstance(item, dict) or "id" not in item or "labels" not in item:
                        raise BadRequest(f"feedback instance {i} needs 'id' (a prediction's request id) and 'labels'")
                    rid = str(item["id"])
                    if rid not in self._served:
                        raise BadRequest(f"unknown request id {rid!r}: send labels for ids of served predictions")
                    version, predicted = self._served[rid]
                    truth = np.asarray(item["labels"]).reshape(-1)
                    if truth.size != predicted.size:
                        raise BadRequest(f"request {rid!r} had {predicted.size} predictions, got {truth.size} labels")
                    self._outcomes[version].extend((predicted == truth).tolist())
                    acc = float(np.mean(self._outcomes[version]))
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


V2_BINARY_HEADER = "inference-header-content-length"  # KServe's binary tensor extension: JSON, then the data


def guard(app: Any, specs: dict[str, InputSpec], metrics: Metrics, max_body: int) -> None:
    """The request guard in front of KServe's app, and the handlers that answer what it and the
    model refuse with ``{"error": ...}``: bodies over `max_body` get 413 before they are read; a V2
    body for one of `specs`' models has its envelope's JSON types checked (protocol.v2_inputs, in a
    worker thread when large) and its rows capped (413), because KServe's typed decoder coerces a
    shape of ``["1", 64]`` or ``[true, 64]`` to ``[1, 64]`` or answers wrong types with 422. What the
    values mean (datatype, shape, data) is left to the learner's predict: lab 6 grades it."""
    from fastapi.exceptions import RequestValidationError
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    def validate(path: str, headers: Any, body: bytes) -> None:
        hit = protocol.route(path)
        if hit is None or hit[0] != "v2" or hit[1] not in specs:
            return
        spec = specs[hit[1]]
        raw, data = body, True
        if (length := headers.get(V2_BINARY_HEADER)) is not None:
            if not (length.isdigit() and 0 < int(length) <= len(body)):
                raise BadRequest(
                    f"{V2_BINARY_HEADER}: {length!r} is not the size of the request's JSON part ({len(body)} bytes "
                    "in all): send the JSON's size in bytes, or no such header with a JSON body"
                )
            raw, data = body[: int(length)], False
        inputs = protocol.v2_inputs(protocol.loads(raw, spec.v2_example), spec, data=data)
        if inputs[0]["shape"]:
            protocol.rows_cap(inputs[0]["shape"][0], spec)

    def on_reject(path: str) -> None:
        hit = protocol.route(path)
        if hit is not None and hit[1] in specs:
            metrics.errors.labels(hit[1]).inc()

    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # what KServe's V2 decoder refuses past the guard (e.g. "parameters" that is not an object); its
        # body is Union[InferenceRequest, bytes]: the errors of the bytes branch say nothing useful
        errors = [e for e in exc.errors() if tuple(e.get("loc", ()))[1:2] != ("bytes",)] or list(exc.errors())
        problems = "; ".join(
            f"{'.'.join(str(k) for k in e.get('loc', ())[1:] if k != 'InferenceRequest') or 'body'}: "
            f"{e.get('msg')} (got {str(e.get('input'))[:40]})"
            for e in errors[:3]
        )
        return JSONResponse({"error": f"malformed request: {problems}; example: {protocol.V2_EXAMPLE}"}, 400)

    async def refused(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, exc.status)

    app.add_middleware(protocol.RequestGuard, max_body=max_body, validate=validate, on_reject=on_reject)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(BadRequest, refused)


def invalid_json_handler(app: Any) -> None:
    """KServe answers a V1 body that is not JSON with "Unrecognized request format: <orjson's error>";
    this handler (added after KServe's own) says what to send instead, as the shared parser does."""
    from kserve.errors import InvalidInput, invalid_input_handler
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def handler(request: Request, exc: InvalidInput) -> JSONResponse:
        prefix = "Unrecognized request format: "
        if not str(exc).startswith(prefix):
            return await invalid_input_handler(request, exc)
        hit = protocol.route(request.url.path)
        example = protocol.V2_EXAMPLE if hit and hit[0] == "v2" else protocol.V1_EXAMPLE
        why = str(exc)[len(prefix) :]
        return JSONResponse(
            {"error": f"the request body is not valid JSON ({why}); send Content-Type: application/json and {example}"},
            400,
        )

    app.add_exception_handler(InvalidInput, handler)


def model_server(kserve: Any, host: str, **kwargs: Any) -> Any:
    """kserve.ModelServer binding `host` (KServe's REST server hard-codes 0.0.0.0), with the
    invalid-JSON handler added after KServe's handlers."""

    class HostModelServer(kserve.ModelServer):
        async def _serve(self) -> None:
            rest = getattr(self, "_rest_server", None)
            if rest is None or not hasattr(rest, "config") or not hasattr(rest, "create_application"):
                raise RuntimeError(
                    f"kserve {getattr(kserve, '__version__', '?')} has no REST server config to set the host on: "
                    f"use the kserve version of the labs extra ({INSTALL_LABS})"
                )
            rest.config.host = host  # read when uvicorn binds, which happens inside super()._serve()
            create = rest.create_application

            def create_application() -> None:
                create()
                from kserve.model_server import app

                invalid_json_handler(app)

            rest.create_application = create_application
            await super()._serve()

    return HostModelServer(**kwargs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllab.serving", description="KServe model server for the labs")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a pod, for the Service)"
    )
    p.add_argument("--model", type=_model_arg, action="append", required=True, help="NAME=DIR (repeatable)")
    p.add_argument("--canary", type=_canary_arg, action="append", default=[], help="NAME=DIR:PERCENT")
    p.add_argument("--seed", type=int, default=0, help="seed of the canary traffic split")
    protocol.add_limit_options(p)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    kserve = _load_kserve()
    canaries = {n: (d, pct) for n, d, pct in args.canary}
    unknown = sorted(set(canaries) - {n for n, _ in args.model})
    if unknown:
        p.error(f"--canary for {unknown} but no --model with that name")
    from mllab.exercise import ExerciseError

    metrics = Metrics()
    spec = dataclasses.replace(DIGITS, max_rows=args.max_rows)
    models = []
    try:
        for name, path in args.model:
            models += build_models(name, path, canaries.get(name), metrics, seed=args.seed, spec=spec)
    except ExerciseError as exc:  # the learner's digits_model.py cannot be served: say why, in the log
        print(f"error: {exc.message}\nfix: {exc.fix}", file=sys.stderr, flush=True)
        return exc.exit_code
    from kserve.model_server import app

    guard(app, {name: spec for name, _ in args.model}, metrics, protocol.max_body_bytes(args))
    model_server(
        kserve,
        args.host,
        http_port=args.http_port,
        enable_grpc=False,
        workers=1,
        grace_period=2,
        enable_latency_logging=False,
    ).start(models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
