"""A fast KServe-protocol model server: a compiled model (ONNX Runtime) behind adaptive
micro-batching, on a lean ASGI app (Starlette routing, orjson, uvicorn with uvloop and
httptools, no per-request logging).

It speaks the same protocol as a KServe model server, so clients and the InferenceService
do not change:

- V1: ``GET /v1/models/NAME`` (ready), ``POST /v1/models/NAME:predict`` with
  ``{"instances": [[...], ...]}`` -> ``{"predictions": [...]}``
- V2 (Open Inference Protocol): ``GET /v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/NAME`` (metadata), ``/v2/models/NAME/ready``, ``POST /v2/models/NAME/infer``

Why it is fast: a scikit-learn forest pays ~10 ms of Python overhead per ``predict()``
call whatever the batch size; compiled to ONNX the same trees answer one row in tens of
microseconds, and the micro-batcher turns the requests that arrive while one batch runs
into the next single call. Malformed requests get HTTP 400 with a JSON ``error`` naming
what is wrong (the V1/V2 parser is the labs' server's, ``mllab.serving.protocol``); bodies over
``--max-body-mib`` (default 4) and requests over ``--max-rows`` (default 10000) get 413; the
server keeps serving, and health probes answer while a large request is parsed or predicted.
It binds 127.0.0.1 unless ``--host`` says otherwise (``--host 0.0.0.0`` in a pod).

    python -m mllab.fastserve compile model.joblib --sample X.npy -o model.onnx
    python -m mllab.fastserve serve model.onnx --name iris --port 8080
    python -m mllab.fastserve smoke-model /mnt/models     # iris forest -> /mnt/models/model.onnx

As a KServe ServingRuntime (the kserve role's ``mllab-fastserve``), MODEL is the directory
KServe mounts at /mnt/models; the server loads ``model.onnx`` from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mllab.serving import protocol  # the shared V1/V2 parser (the labs' KServe server's)
from mllab.serving.protocol import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ROWS,
    INLINE_PARSE_BYTES,
    BadRequest,
    InputSpec,
    add_limit_options,
    max_body_bytes,
    read_body,
)

__all__ = ["BadRequest", "MicroBatcher", "OnnxClassifier", "create_app", "parse_v1", "parse_v2", "serve"]


# ---- the compiled model ------------------------------------------------------------------
def compile_sklearn(model: Any, sample: np.ndarray, opset: int = 18) -> bytes:
    """Compile a fitted scikit-learn classifier to ONNX (labels + probabilities, no zipmap)."""
    from skl2onnx import to_onnx

    onx = to_onnx(
        model, np.asarray(sample[:1], dtype=np.float32), options={id(model): {"zipmap": False}}, target_opset=opset
    )
    return onx.SerializeToString()


class OnnxClassifier:
    """An ONNX classifier on one intra-op thread (the server's one core is the batch's)."""

    def __init__(self, model: bytes | str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.n_features = inp.shape[1] if isinstance(inp.shape[1], int) else None
        self.label_name = self.session.get_outputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.label_name], {self.input_name: x})[0]


def agreement(model: Any, onnx_model: OnnxClassifier, X: np.ndarray) -> float:
    """Share of rows where the compiled model predicts what the original predicts."""
    ref = np.asarray(model.predict(X))
    got = onnx_model.predict(np.asarray(X, dtype=np.float32))
    return float((ref == got).mean())


# ---- adaptive micro-batching -------------------------------------------------------------
class MicroBatcher:
    """Runs the requests that wait while one model call is busy as the next single call.

    No fixed delay: a lone request is answered at once; under load, batches grow to
    whatever queued up (at most ``max_batch`` rows), which amortises the per-call cost."""

    def __init__(self, predict, max_batch: int = 512) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.calls = 0
        self.rows = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            items = [await self.queue.get()]
            size = len(items[0][0])
            while size < self.max_batch and not self.queue.empty():
                item = self.queue.get_nowait()
                items.append(item)
                size += len(item[0])
            try:
                batch = items[0][0] if len(items) == 1 else np.concatenate([rows for rows, _ in items])
                if size > self.max_batch:  # one request over max_batch: off the loop, so probes still answer
                    out = await asyncio.get_running_loop().run_in_executor(None, self.predict, batch)
                else:
                    out = self.predict(batch)
            except Exception as exc:  # one bad batch fails its requests, not the server
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.calls += 1
            self.rows += size
            start = 0
            for rows, fut in items:
                if not fut.done():
                    fut.set_result(out[start : start + len(rows)])
                start += len(rows)


# ---- protocol payloads (the shared parser: mllab.serving.protocol) ------------------------------
def parse_v1(body: Any, n_features: int | None) -> np.ndarray:
    return protocol.parse_v1(body, InputSpec(n_features))


def parse_v2(body: Any, n_features: int | None) -> tuple[np.ndarray, str | None]:
    return protocol.parse_v2(body, InputSpec(n_features))


# ---- the ASGI app ---------------------------------------------------------------------------
def create_app(
    name: str,
    model: OnnxClassifier,
    version: str = "1",
    max_batch: int = 512,
    max_body: int = DEFAULT_MAX_BODY_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
):
    import anyio
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    batcher = MicroBatcher(model.predict, max_batch=max_batch)
    spec = InputSpec(model.n_features, max_rows=max_rows)
    metrics = ServerMetrics(name, version)

    def js(obj: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")

    def check_name(request: Request) -> Response | None:
        got = request.path_params["model"]
        return (
            None if got == name else js({"error": f"model {got!r} is not served here; this server has {name!r}"}, 404)
        )

    async def parsed(request: Request, parse):
        """The body (size-checked before it is read) through the shared parser; a large body parses
        in a worker thread, so health probes keep answering meanwhile."""
        raw = await read_body(request, max_body)
        if len(raw) > INLINE_PARSE_BYTES:
            return await anyio.to_thread.run_sync(parse, raw, spec)
        return parse(raw, spec)

    async def v1_predict(request: Request) -> Response:
        if (err := check_name(request)) is not None:
            return err
        try:
            x = await parsed(request, protocol.parse_v1)
        except BadRequest as exc:
            metrics.errors.inc()
            return js({"error": str(exc)}, exc.status)
        with metrics.latency.time():
            labels = await batcher.submit(x)
        metrics.predictions.inc(len(labels))
        return js({"predictions": labels})

    async def v2_infer(request: Request) -> Response:
        if (err := check_name(request)) is not None:
            return err
        try:
            x, rid = await parsed(request, protocol.parse_v2)
        except BadRequest as exc:
            metrics.errors.inc()
            return js({"error": str(exc)}, exc.status)
        with metrics.latency.time():
            labels = await batcher.submit(x)
        metrics.predictions.inc(len(labels))
        return js(
            {
                "model_name": name,
                "model_version": version,
                "id": rid or str(uuid.uuid4()),
                "outputs": [{"name": "output-0", "shape": [len(labels)], "datatype": "INT64", "data": labels}],
            }
        )

    async def v1_ready(request: Request) -> Response:
        return check_name(request) or js({"name": name, "ready": True})

    async def v2_meta(request: Request) -> Response:
        return check_name(request) or js(
            {
                "name": name,
                "versions": [version],
                "platform": "onnxruntime",
                "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, model.n_features or -1]}],
                "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
            }
        )

    async def v2_model_ready(request: Request) -> Response:
        return check_name(request) or js({"name": name, "ready": True})

    async def live(_: Request) -> Response:
        return js({"live": True})

    async def ready(_: Request) -> Response:
        return js({"ready": True})

    async def stats(_: Request) -> Response:
        return js({"calls": batcher.calls, "rows": batcher.rows})

    async def prometheus_metrics(_: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    routes = [
        Route("/v1/models/{model}:predict", v1_predict, methods=["POST"]),
        Route("/v1/models/{model}", v1_ready, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{model}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{model}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{model}", v2_meta, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher = batcher
    app.state.metrics = metrics
    return app


class ServerMetrics:
    """What a KServe model server exports on ``/metrics``, so the kit's PodMonitor, alert rules and
    serving dashboard read fastserve like the stock server: KServe's ``request_predict_seconds``
    histogram (the name and the ``model_name`` label of ``kserve.metrics``), and the kit's
    ``model_predictions_total{model_name, model_version}`` (one per row) and
    ``model_prediction_errors_total{model_name}`` (refused requests). A registry of its own, so
    two apps in one process do not collide."""

    def __init__(self, name: str, version: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "request_predict_seconds", "predict request latency", ["model_name"], registry=self.registry
        ).labels(name)
        self.predictions = Counter(
            "model_predictions_total",
            "Predictions served (one per instance)",
            ["model_name", "model_version"],
            registry=self.registry,
        ).labels(name, version)
        self.errors = Counter(
            "model_prediction_errors_total", "Rejected or failed requests", ["model_name"], registry=self.registry
        ).labels(name)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


MODEL_FILE = "model.onnx"


def resolve_model(path: str | Path) -> Path:
    """MODEL as given: an ONNX file, or a directory holding model.onnx (KServe's /mnt/models)."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"no ONNX model at {path} (expected a .onnx file or a directory with {MODEL_FILE}); "
            "compile one with `python -m mllab.fastserve compile` or `smoke-model`"
        )
    return p


def smoke_model(out_dir: str | Path, seed: int = 42) -> Path:
    """The smoke-test model: a 100-tree forest on iris, compiled, checked on every iris row."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=100, random_state=seed).fit(X, y)
    data = compile_sklearn(model, X)
    share = agreement(model, OnnxClassifier(data), X)
    if share < 1.0:
        raise RuntimeError(f"the compiled smoke model agrees with scikit-learn on only {share:.2%} of iris")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MODEL_FILE + ".partial")
    tmp.write_bytes(data)
    tmp.replace(out / MODEL_FILE)  # a reader never sees half a model
    return out / MODEL_FILE


def serve(
    model_path: str,
    name: str,
    port: int,
    host: str = "127.0.0.1",
    max_batch: int = 512,
    max_body: int = DEFAULT_MAX_BODY_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> None:
    import uvicorn

    app = create_app(name, OnnxClassifier(model_path), max_batch=max_batch, max_body=max_body, max_rows=max_rows)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", loop="uvloop", http="httptools")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mllab.fastserve", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile a joblib scikit-learn classifier to ONNX and check it agrees")
    c.add_argument("model")
    c.add_argument("--sample", required=True, help=".npy file of rows to check the predictions on")
    c.add_argument("-o", "--output", required=True)
    s = sub.add_parser("serve", help="serve an ONNX classifier with the KServe V1/V2 protocol")
    s.add_argument("model")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, default=8080)
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a pod, for the Service)"
    )
    s.add_argument("--max-batch", type=int, default=512, help="most rows in one model call (default 512)")
    add_limit_options(s)
    m = sub.add_parser("smoke-model", help="write the smoke-test model (iris forest, compiled) to DIR/model.onnx")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.cmd == "smoke-model":
        path = smoke_model(args.dir, args.seed)
        print(f"wrote {path}: agrees with scikit-learn on all 150 iris rows")
        return 0
    if args.cmd == "compile":
        import joblib

        model, X = joblib.load(args.model), np.load(args.sample)
        data = compile_sklearn(model, X)
        share = agreement(model, OnnxClassifier(data), X)
        if share < 1.0:
            print(f"compiled model agrees on only {share:.2%} of {len(X)} rows; not written", file=sys.stderr)
            return 1
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}: agrees with the original on all {len(X)} rows")
        return 0
    try:
        model = resolve_model(args.model)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    serve(str(model), args.name, args.port, args.host, args.max_batch, max_body_bytes(args), args.max_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
