"""Section 1: lab 6's serving path against its peers, side by side in one run.

One trained model (scikit-learn RandomForest, 100 trees, random_state=0, trained on iris) in two
forms: the pickle (scikit-learn's predict) and its ONNX compilation, which fastserve serves. Two
groups of peers, so that the server and the model runtime are measured apart:

- same-model peers serve the very model.onnx fastserve serves, with ONNX Runtime on one intra-op
  thread: the stock KServe SDK server with a kserve.Model around it, and MLServer with a custom
  runtime around it (with and without its adaptive batching). Ours against the best of them is
  the server-against-server claim;
- scikit-learn peers serve the pickle (the stock KServe server, MLServer's sklearn runtime, the
  tutorial's FastAPI app). The stock KServe server with each runtime gives the runtime's gain.

One row per request, CPU core 0 for the server and core 1 for the load generator (wrk), 2 and
16 connections. Before any load, each server must give the same answers as the model on the
held-out rows, or it is not measured."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import ROOT, Figure, Row, Section

HERE = Path(__file__).resolve().parent
MLSERVER_VENV = ROOT / ".cache/bench/mlserver-venv"
CONNS = (2, 16)
TARGET_RATIO, TARGET_P99 = 8.0, 0.25  # against the best same-model peer
ONNX, SKLEARN = "ONNX Runtime, same model.onnx", "scikit-learn predict"


@dataclass
class Server:
    name: str
    argv: list[str]
    ready_url: str
    url: str  # the predict endpoint
    body: str  # one row, as this server wants it
    answers: callable | None  # (rows) -> list of predicted labels, through HTTP; None: a reference without a model
    note: str = ""
    cwd: str | None = None
    runtime: str = SKLEARN  # what answers inside the server: ONNX or SKLEARN


def post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    from mllab.procs import wait_http

    if not wait_http(url, timeout, proc):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        raise RuntimeError(f"{url} not ready after {timeout} s")


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_P99 = re.compile(r"99%\s+([\d.]+)(us|ms|s)\b")
WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def wrk(url: str, body: str, conns: int, seconds: int) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
        lua.write('wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run(
            ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", lua.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(lua.name)
    if (m := WRK_ERRORS.search(out)) and int(m[1]) > 0:
        raise RuntimeError(f"{m[1]} error responses from {url} under load")
    value, unit = WRK_P99.search(out).groups()
    p99_ms = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    return float(WRK_RPS.search(out)[1]), p99_ms


def prepare(workdir: Path) -> tuple[object, np.ndarray, np.ndarray, Path, Path]:
    import joblib
    from mllab.fastserve import OnnxClassifier, agreement, compile_sklearn
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, _ = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X_tr, y_tr)
    joblib.dump(model, workdir / "model.joblib")
    onnx = compile_sklearn(model, X_tr)
    share = agreement(model, OnnxClassifier(onnx), X_te)
    if share < 1.0:
        raise RuntimeError(f"the compiled model agrees with scikit-learn on only {share:.1%} of the test rows")
    (workdir / "model.onnx").write_bytes(onnx)
    for sub, batching in MLSERVER_SETUPS:
        d = workdir / "mlserver" / sub / "iris"
        d.mkdir(parents=True)
        if sub.startswith("onnx"):  # the custom runtime next to the model: MLServer puts the folder on sys.path
            shutil.copy(workdir / "model.onnx", d / "model.onnx")
            shutil.copy(HERE / "servers/mlserver_onnx.py", d / "mlserver_onnx.py")
            settings = {"implementation": "mlserver_onnx.OnnxRuntime", "parameters": {"uri": "./model.onnx"}}
        else:
            shutil.copy(workdir / "model.joblib", d / "model.joblib")
            settings = {"implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}
        settings["name"] = "iris"
        if batching:
            settings.update(max_batch_size=32, max_batch_time=0.01)
        (d / "model-settings.json").write_text(json.dumps(settings))
    return model, X_te, model.predict(X_te), workdir / "model.joblib", workdir / "model.onnx"


# MLServer set-ups: (folder, adaptive batching on)
MLSERVER_SETUPS = [("onnx-default", False), ("onnx-batching", True), ("default", False), ("batching", True)]


def v2_body(rows: np.ndarray, datatype: str) -> dict:
    data = rows.ravel().tolist()
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": datatype, "data": data}]}


def servers(joblib_path: Path, onnx_path: Path, workdir: Path, port0: int) -> list[Server]:
    py = sys.executable
    row = np.asarray([[6.8, 2.8, 4.8, 1.4]])

    def v1(url: str) -> tuple[str, callable]:
        return json.dumps({"instances": row.tolist()}), lambda rows: post(url, {"instances": rows.tolist()})[
            "predictions"
        ]

    def v2(url: str, datatype: str) -> tuple[str, callable]:
        body = json.dumps(v2_body(row, datatype))
        return body, lambda rows: post(url, v2_body(rows, datatype))["outputs"][0]["data"]

    def local(port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    out = []
    for port, (label, script, model, runtime) in enumerate(
        [
            ("KServe SDK, kserve.Model around ONNX Runtime (same-model peer)", "kserve_onnx.py", onnx_path, ONNX),
            ("KServe SDK, stock kserve.Model (sklearn peer)", "kserve_stock.py", joblib_path, SKLEARN),
        ],
        start=port0,
    ):
        url = local(port, "/v1/models/iris:predict")
        argv = [py, str(HERE / "servers" / script), str(model), str(port)]
        out.append(Server(label, argv, local(port, "/v2/health/ready"), url, *v1(url), "V1", runtime=runtime))

    mlserver = MLSERVER_VENV / "bin/mlserver"
    labels = {
        "onnx-default": ("MLServer, custom ONNX Runtime runtime (same-model peer)", ONNX),
        "onnx-batching": ("MLServer, custom ONNX Runtime runtime, adaptive batching (same-model peer)", ONNX),
        "default": ("MLServer sklearn runtime, default (sklearn peer)", SKLEARN),
        "batching": ("MLServer sklearn runtime, adaptive batching (sklearn peer)", SKLEARN),
    }
    for port, (sub, _) in enumerate(MLSERVER_SETUPS, start=port0 + 2):
        d = workdir / "mlserver" / sub
        settings = {"http_port": port, "grpc_port": port + 100, "metrics_port": port + 200, "parallel_workers": 0}
        (d / "settings.json").write_text(json.dumps(settings))
        url = local(port, "/v2/models/iris/infer")
        label, runtime = labels[sub]
        server = Server(
            label,
            [str(mlserver), "start", str(d)],
            local(port, "/v2/health/ready"),
            url,
            *v2(url, "FP64"),
            "V2",
            cwd=str(d),
            runtime=runtime,
        )
        if not mlserver.exists():
            server.note = f"not installed ({mlserver}): make bench installs it"
        out.append(server)

    port = port0 + 6
    url = local(port, "/predict")
    argv = [py, str(HERE / "servers/fastapi_naive.py"), str(joblib_path), str(port)]
    out.append(
        Server(
            "naive FastAPI, the tutorial's (peer)",
            argv,
            local(port, "/health"),
            url,
            json.dumps({"features": row[0].tolist()}),
            lambda rows, url=url: [post(url, {"features": r})["prediction"] for r in rows.tolist()],
            "own JSON, 1 row per call",
        )
    )

    port = port0 + 7
    argv = [
        py,
        "-m",
        "mllab.fastserve",
        "serve",
        str(onnx_path),
        "--name",
        "iris",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    url = local(port, "/v1/models/iris:predict")
    ready = local(port, "/v2/health/ready")
    out.append(Server("mllab fastserve (ours)", argv, ready, url, *v1(url), "V1", runtime=ONNX))
    url = local(port, "/v2/models/iris/infer")
    out.append(Server("mllab fastserve, V2 (ours)", argv, ready, url, *v2(url, "FP32"), "V2", runtime=ONNX))

    port = port0 + 8
    url = local(port, "/v1/models/iris:predict")
    floor = Server(
        "HTTP floor: uvicorn + httptools, constant answer (reference)",
        [py, str(HERE / "servers/asgi_floor.py"), str(port)],
        url,
        url,
        *v1(url),
        "no parsing, no model: the server stack alone",
        runtime="none",
    )
    floor.answers = None  # a constant: nothing to compare with the model
    out.append(floor)
    return out


def in_process(model, onnx_path: Path, X: np.ndarray, seconds: float = 3.0) -> list[Row]:
    from mllab.fastserve import OnnxClassifier

    onnx = OnnxClassifier(onnx_path)
    rows = []
    for name, fn, batch in [
        ("in-process model.predict(), 1 row (scikit-learn)", lambda x: model.predict(x), 1),
        ("in-process compiled model, 1 row (ONNX Runtime)", lambda x: onnx.predict(x.astype(np.float32)), 1),
        ("in-process compiled model, 16 rows per call", lambda x: onnx.predict(x.astype(np.float32)), 16),
    ]:
        x = np.repeat(X[:1], batch, axis=0)
        rates = []
        for _ in range(3):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                fn(x)
                n += batch
            rates.append(n / (time.perf_counter() - start))
        rows.append(Row(name, {"rows/s (16 conns)": Figure(rates, "rows/s")}, note="ceiling, no HTTP"))
    return rows


def serving(runs: int = 3, seconds: int = 8, port0: int = 18600) -> Section:
    section = Section(
        "Serving: lab 6's model server vs peers (1 core server, 1 core wrk)",
        [f"{k} {c}" for c in CONNS for k in ("req/s @", "p99 ms @")] + ["rows/s (16 conns)"],
        target=f"ours >= {TARGET_RATIO:.0f}x the req/s of the best same-model peer (the same model.onnx, "
        f"ONNX Runtime) at 16 connections, with p99 <= {TARGET_P99:.0%} of that peer's p99",
        reproduce="make bench BENCH=serving",
        chart="req/s @ 16",
    )
    section.columns = ["req/s @ 2", "p99 ms @ 2", "req/s @ 16", "p99 ms @ 16", "rows/s (16 conns)"]
    if not shutil.which("wrk") or not shutil.which("taskset"):
        section.verdict = "skipped: wrk or taskset missing (apt-get install wrk util-linux)"
        return section
    with tempfile.TemporaryDirectory(prefix="mllab-bench-") as tmp:
        workdir = Path(tmp)
        model, X_te, expected, joblib_path, onnx_path = prepare(workdir)
        for srv in servers(joblib_path, onnx_path, workdir, port0):
            if srv.note.startswith("not installed"):
                section.rows.append(Row(srv.name, {}, note=srv.note))
                continue
            log = workdir / f"server-{len(section.rows)}.log"
            section.rows.append(measure(srv, X_te, expected, runs, seconds, log))
        section.rows += in_process(model, onnx_path, X_te)
    section.verdict = verdict(section.rows)
    return section


def measure(srv: Server, X_te: np.ndarray, expected: np.ndarray, runs: int, seconds: int, log: Path) -> Row:
    # Logs go to a file: a pipe nobody reads would fill up and stall a server that logs per request.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", "0", *srv.argv], cwd=srv.cwd, stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_ready(srv.ready_url, proc)
        if srv.answers is not None:
            got = np.asarray(srv.answers(X_te))
            if not np.array_equal(got.astype(int), expected.astype(int)):
                return Row(
                    srv.name,
                    {},
                    note=f"NOT MEASURED: answers differ from the model on {int((got != expected).sum())} rows",
                )
        figures: dict[str, Figure] = {}
        for conns in CONNS:
            wrk(srv.url, srv.body, conns, 2)  # warm-up
            results = [wrk(srv.url, srv.body, conns, seconds) for _ in range(runs)]
            figures[f"req/s @ {conns}"] = Figure([r for r, _ in results], "req/s")
            figures[f"p99 ms @ {conns}"] = Figure([p for _, p in results], "ms")
        figures["rows/s (16 conns)"] = figures["req/s @ 16"]
        checked = f"same answers on {len(X_te)} test rows" if srv.answers is not None else "answers not checked"
        return Row(srv.name, figures, note=f"{srv.note}; {srv.runtime}; {checked}")
    except Exception as exc:  # a peer that fails is reported, the others still run
        return Row(srv.name, {}, note=f"NOT MEASURED: {exc}"[:200])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def verdict(rows: list[Row]) -> str:
    """The server-against-server ratio (same model), then the model runtime's gain, apart."""

    def get(prefix: str, column: str = "req/s @ 16") -> Row | None:
        return next((r for r in rows if r.name.startswith(prefix) and column in r.figures), None)

    def rps(row: Row, column: str = "req/s @ 16") -> float:
        return row.figures[column].median

    ours = get("mllab fastserve (ours)")
    peers = [r for r in rows if "(same-model peer)" in r.name and "req/s @ 16" in r.figures]
    if not (ours and peers):
        return "incomplete: ours or every same-model peer was not measured (see notes)"
    best = max(peers, key=rps)
    ratio = rps(ours) / rps(best)
    p99 = ours.figures["p99 ms @ 16"].median / best.figures["p99 ms @ 16"].median
    parts = [
        f"server against server, same model.onnx: {ratio:.1f}x the best same-model peer ({best.name}) at 16 "
        f"connections (target {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}), p99 {p99:.0%} "
        f"of its p99 (target <= {TARGET_P99:.0%}: {'met' if p99 <= TARGET_P99 else 'MISSED'})"
    ]
    kserve_onnx, kserve_sk = get("KServe SDK, kserve.Model around ONNX"), get("KServe SDK, stock")
    sk1, onnx1 = (get(f"in-process {k}", "rows/s (16 conns)") for k in ("model.predict()", "compiled model, 1 row"))
    if kserve_onnx and kserve_sk:
        parts.append(
            f"the model runtime alone: the stock KServe server answers {rps(kserve_onnx) / rps(kserve_sk):.1f}x "
            "faster with ONNX Runtime than with scikit-learn's predict"
            + (
                f" (in process, one row: {rps(onnx1, 'rows/s (16 conns)') / rps(sk1, 'rows/s (16 conns)'):.0f}x)"
                if sk1 and onnx1
                else ""
            )
        )
        parts.append(
            f"against the stock KServe server with scikit-learn: {rps(ours) / rps(kserve_sk):.0f}x in all, "
            "runtime and server together"
        )
    floor = get("HTTP floor")
    if floor:
        parts.append(
            f"ours reaches {rps(ours) / rps(floor):.0%} of the HTTP floor (the same server stack answering a "
            f"constant: {rps(floor):.0f} req/s); {TARGET_RATIO:.0f}x the best peer would need "
            f"{TARGET_RATIO * rps(best) / rps(floor):.0%} of it"
        )
    ceiling = get("in-process compiled model, 16 rows", "rows/s (16 conns)")
    if ceiling:
        parts.append(
            f"ours reaches {rps(ours) / rps(ceiling, 'rows/s (16 conns)'):.1%} of the compiled model's in-process "
            "rate (16-row calls, no HTTP): the HTTP and JSON path, not the model, is most of the cost"
        )
    return "; ".join(parts)
