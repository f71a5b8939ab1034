"""A fast KServe-protocol model server: a compiled model (ONNX Runtime) behind adaptive
micro-batching, on a lean ASGI app (exact-path dispatch, orjson, uvicorn with uvloop and
httptools, no per-request logging, no middleware).

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
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mllab.serving import protocol  # the shared V1/V2 parser (the labs' KServe server's)
from mllab.serving.protocol import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ROWS,
    INLINE_PARSE_BYTES,
    BadRequest,
    Disconnected,
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
    """Runs the requests that arrive in one turn of the event loop as one model call.

    No fixed delay: a lone request is answered in the same turn; under load, every request whose
    body was read in this turn (the server reads all ready connections before it runs their
    handlers) joins one call of at most ``max_batch`` rows, which amortises the per-call cost.
    A request of more than ``max_batch`` rows is predicted alone in a worker thread, so that health
    probes keep answering meanwhile."""

    def __init__(self, predict, max_batch: int = 512) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.calls = 0
        self.rows = 0

    async def stop(self) -> None:
        for _, fut in self.pending:
            fut.cancel()
        self.pending = []

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush, loop)  # after the handlers already scheduled in this turn
        self.pending.append((rows, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        items, self.pending = self.pending, []
        group: list[tuple[np.ndarray, asyncio.Future]] = []
        size = 0
        for item in items:
            n = len(item[0])
            if n > self.max_batch:  # alone, off the loop
                fut = loop.run_in_executor(None, self.predict, item[0])
                fut.add_done_callback(lambda done, item=item: self._settle(item, done))
                continue
            if size + n > self.max_batch:
                self._call(group, size)
                group, size = [], 0
            group.append(item)
            size += n
        if group:
            self._call(group, size)

    def _call(self, items: list[tuple[np.ndarray, asyncio.Future]], size: int) -> None:
        try:
            out = self.predict(items[0][0] if len(items) == 1 else np.concatenate([rows for rows, _ in items]))
        except Exception as exc:  # one bad batch fails its requests, not the server
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.calls += 1
        self.rows += size
        start = 0
        for rows, fut in items:
            if not fut.done():  # a client that went away has its future cancelled
                fut.set_result(out[start : start + len(rows)])
            start += len(rows)

    def _settle(self, item: tuple[np.ndarray, asyncio.Future], done: asyncio.Future) -> None:
        rows, fut = item
        if fut.done():
            return
        if done.exception() is not None:
            fut.set_exception(done.exception())
        else:
            self.calls += 1
            self.rows += len(rows)
            fut.set_result(done.result())


# ---- protocol payloads (the shared parser: mllab.serving.protocol) ------------------------------
def parse_v1(body: Any, n_features: int | None) -> np.ndarray:
    return protocol.parse_v1(body, InputSpec(n_features))


def parse_v2(body: Any, n_features: int | None) -> tuple[np.ndarray, str | None]:
    return protocol.parse_v2(body, InputSpec(n_features))


# ---- the ASGI app ---------------------------------------------------------------------------
_JSON = [(b"content-type", b"application/json")]


class App:
    """The ASGI app: fixed paths in one dict, the inference paths parsed once (protocol.route), every
    answer JSON. A Starlette stack (middleware, Route regexes, Request objects) cost about half of
    a one-row request's time; here a request costs a dict lookup, the shared parser and the batcher."""

    def __init__(
        self,
        name: str,
        model: OnnxClassifier,
        version: str = "1",
        max_batch: int = 512,
        max_body: int = DEFAULT_MAX_BODY_BYTES,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.name, self.model, self.version, self.max_body = name, model, version, max_body
        self.batcher = MicroBatcher(model.predict, max_batch=max_batch)
        self.metrics = ServerMetrics(name, version)
        self.spec = InputSpec(model.n_features, max_rows=max_rows)
        ready = {"name": name, "ready": True}
        meta = {
            "name": name,
            "versions": [version],
            "platform": "onnxruntime",
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, model.n_features or -1]}],
            "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
        }
        # GET path -> a fixed answer, or a callable for the ones that change
        self.gets: dict[str, Any] = {
            "/v2/health/live": {"live": True},
            "/v2/health/ready": {"ready": True},
            f"/v1/models/{name}": ready,
            f"/v2/models/{name}/ready": ready,
            f"/v2/models/{name}": meta,
            "/stats": lambda: {"calls": self.batcher.calls, "rows": self.batcher.rows},
        }

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":  # nothing to start: a submit schedules its flush
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.batcher.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def http(self, scope: dict, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        route = protocol.route(path)
        if route is not None and method == "POST":
            try:
                status, body = await self.infer(route, scope, receive)
            except Disconnected:  # the client left before its body arrived: nobody to answer
                return
        elif method == "GET" and path in self.gets:
            answer = self.gets[path]
            status, body = 200, _dumps(answer() if callable(answer) else answer)
        elif method == "GET" and path == "/metrics":
            body, content_type = self.metrics.exposition()
            await _send(send, 200, body, [(b"content-type", content_type.encode())])
            return
        else:
            status, body = self.not_here(path, method, route)
        await _send(send, status, body, _JSON)

    async def infer(self, route: tuple[str, str], scope: dict, receive) -> tuple[int, bytes]:
        kind, model = route
        if model != self.name:
            return self.not_served(model)
        parse = protocol.parse_v1 if kind == "v1" else protocol.parse_v2
        try:
            raw = await read_body(scope, receive, self.max_body)
            if len(raw) > INLINE_PARSE_BYTES:  # a large body parses in a worker thread: probes keep answering
                parsed = await asyncio.get_running_loop().run_in_executor(None, parse, raw, self.spec)
            else:
                parsed = parse(raw, self.spec)
        except BadRequest as exc:
            self.metrics.errors.inc()
            return exc.status, _dumps({"error": str(exc)})
        x, rid = (parsed, None) if kind == "v1" else parsed
        start = time.perf_counter()
        labels = await self.batcher.submit(x)
        self.metrics.latency.observe(time.perf_counter() - start)
        self.metrics.predictions.inc(len(labels))
        if kind == "v1":
            return 200, _dumps({"predictions": labels})
        return 200, _dumps(
            {
                "model_name": self.name,
                "model_version": self.version,
                "id": rid or str(uuid.uuid4()),
                "outputs": [{"name": "output-0", "shape": [len(labels)], "datatype": "INT64", "data": labels}],
            }
        )

    def not_served(self, model: str) -> tuple[int, bytes]:
        return 404, _dumps({"error": f"model {model!r} is not served here; this server has {self.name!r}"})

    def not_here(self, path: str, method: str, route: tuple[str, str] | None) -> tuple[int, bytes]:
        """404 naming the model this server has, or 405 naming the method a known path takes."""
        name = route[1] if route else _model_of(path)
        if name is not None and name != self.name:
            return self.not_served(name)
        if route is not None or path in self.gets or path == "/metrics":
            allowed = "POST" if route is not None else "GET"
            return 405, _dumps({"error": f"{method} {path}: this path takes {allowed}"})
        return 404, _dumps({"error": f"no such path {path!r}: see the V1/V2 paths in `python -m mllab.fastserve -h`"})


def _model_of(path: str) -> str | None:
    """The model name in a V1/V2 model path that is not an inference path (/v1/models/M, /v2/models/M/ready)."""
    for prefix in ("/v1/models/", "/v2/models/"):
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            return rest[: -len("/ready")] if rest.endswith("/ready") else rest
    return None


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    # Content-Length, or the server would frame the body as chunks
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


create_app = App  # the public name: create_app(name, model, version=..., max_batch=..., max_body=..., max_rows=...)


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
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        proxy_headers=False,  # no X-Forwarded-* rewriting: nothing here reads the client address
    )


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
