"""Lab 6: serve the digits model with KServe; V1 and V2 protocols; a canary with a measured split.

Two versions of the CNN are trained (v1: a few epochs, v2: more). The KServe model server serves
v1 alone first: the tutorial-style V1 client, the V2 Open Inference Protocol (health, metadata,
infer), and a malformed request that gets HTTP 400 while the server keeps serving. Then v2 joins as
a canary with CANARY_PERCENT of the traffic; we send requests and measure the split from the
`model_version` of each V2 response.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from mllab.backends import ServeSpec
from mllab.errors import UsageError
from mllab.labs.base import Check, LabContext

HINTS = [
    'V1: POST /v1/models/digits:predict with {"instances": [[64 numbers], ...]}; the answer is {"predictions": [...]}.',
    "V2: POST /v2/models/digits/infer with inputs [{name, shape: [n, 64], datatype: FP32, data}]; "
    "GET /v2/health/ready and GET /v2/models/digits (metadata).",
    "A malformed request must get HTTP 400 with an error body, and the next good request must still work.",
    "The observed canary share is a binomial sample: with n requests expect p ± 3·sqrt(p(1-p)/n).",
]


def canary_percent() -> int:
    raw = os.environ.get("CANARY_PERCENT", "10")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise UsageError(f"CANARY_PERCENT={raw!r} is not a percentage", "set CANARY_PERCENT to an integer 0-100")
    return value


def train_versions(ctx: LabContext, versions: dict[str, int]) -> dict[str, Path]:
    """Train one CNN per version (in-process, seconds each) and write model directories."""
    from mllab.data import load_digits_split
    from mllab.model import save_model_dir
    from mllab.training import TrainConfig, train

    ref = load_digits_split().X_train
    dirs = {}
    for version, epochs in versions.items():
        with ctx.console.status(f"training {version} ({epochs} epochs)"):
            out = train(TrainConfig(epochs=epochs, seed=ctx.seed, checkpoint_every=epochs))
        dirs[version] = ctx.rundir / "models" / version
        save_model_dir(
            out["model"], dirs[version], reference=ref, version=version, epochs=epochs, val_accuracy=out["val_accuracy"]
        )
        ctx.console.print(f"  {version}: {epochs} epochs, val accuracy {out['val_accuracy']:.4f}")
    return dirs


def split_tolerance(p: float, n: int) -> float:
    return 3 * math.sqrt(max(p * (1 - p), 1e-9) / n) + 1 / n


def measure_split(client: Any, X: Any, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(n):
        resp = client.v2_infer(X[i % len(X) : i % len(X) + 1], request_id=f"canary-{i}")
        counts[resp["model_version"]] = counts.get(resp["model_version"], 0) + 1
    return counts


def run(ctx: LabContext) -> dict[str, Any]:
    import numpy as np
    from rich.progress import track

    from mllab.data import load_digits_split
    from mllab.serving.client import Client, ServerError

    percent = canary_percent()
    dirs = train_versions(ctx, {"v1": 3, "v2": 10} if ctx.quick else {"v1": 4, "v2": 15})
    s = load_digits_split()
    X, y = s.X_test[:200], s.y_test[:200]
    out: dict[str, Any] = {"canary_percent": percent, "models": {v: str(d) for v, d in dirs.items()}}
    with (
        ctx.backend.serve(ServeSpec("serve-v1", {"digits": dirs["v1"]}, workdir=ctx.rundir)) as ep,
        Client(ep.url) as c,
    ):
        ctx.console.print(f"KServe model server on {ep.url}")
        preds = c.v1_predict(X)  # the tutorial's client: {"instances": [...]} -> {"predictions": [...]}
        out["v1_accuracy"] = float(np.mean(np.array(preds) == y))
        ctx.console.print(f"V1 /v1/models/digits:predict -> {preds[:10]}... accuracy {out['v1_accuracy']:.3f}")
        resp = c.v2_infer(X[:5], request_id="lab6-v2")
        out["v2"] = {
            "ready": c.ready(),
            "metadata": c.metadata(),
            "model_version": resp["model_version"],
            "predictions": Client.v2_predictions(resp),
        }
        ctx.console.print(
            f"V2 ready={out['v2']['ready']}, metadata inputs {out['v2']['metadata']['inputs']}, "
            f"infer -> {out['v2']['predictions']}"
        )
        try:
            c.v1_predict([[1, 2, 3]])
        except ServerError as exc:
            out["bad_request"] = {"status": exc.status, "body": exc.body}
            ctx.console.print(f"malformed request -> HTTP {exc.status}: {exc.body}")
        out["still_serving"] = c.v1_predict(X[:1]) == preds[:1]
    n = 200 if ctx.quick else 400
    spec = ServeSpec(
        "serve-canary",
        {"digits": dirs["v1"]},
        canary={"digits": (dirs["v2"], percent)},
        workdir=ctx.rundir,
        extra_args=["--seed", str(ctx.seed)],
    )
    with ctx.backend.serve(spec) as ep, Client(ep.url) as c:
        counts: dict[str, int] = {}
        for i in track(range(n), description=f"canary {percent}%: {n} requests", console=ctx.console):
            v = c.v2_infer(X[i % len(X) : i % len(X) + 1], request_id=f"canary-{i}")["model_version"]
            counts[v] = counts.get(v, 0) + 1
    observed = 100 * counts.get("v2", 0) / n
    tol = 100 * split_tolerance(percent / 100, n)
    out["canary"] = {"requests": n, "counts": counts, "observed_percent": observed, "tolerance_percent": tol}
    ctx.console.print(
        f"canary: configured {percent}%, observed {observed:.1f}% of {n} requests (tolerance ±{tol:.1f} points)"
    )
    return out


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:

    from mllab.data import load_digits_split, to_images
    from mllab.model import load_model_dir, predict_proba
    from mllab.serving.client import Client

    dirs = {v: Path(p) for v, p in result["models"].items()}
    dirs = {v: ctx.rundir / "models" / v for v in dirs}  # the committed run dir
    missing = [str(d) for d in dirs.values() if not (d / "model.pt").exists()]
    if missing:
        return [Check("model directories exist", False, f"missing {missing}", "run the lab: mllab run 6")]
    s = load_digits_split()
    X = s.X_test[:100]
    offline = {v: predict_proba(load_model_dir(d)[0], to_images(X)).argmax(1) for v, d in dirs.items()}
    percent = int(result["canary_percent"])
    n = 200
    checks: list[Check] = []
    spec = ServeSpec(
        "check-canary",
        {"digits": dirs["v1"]},
        canary={"digits": (dirs["v2"], percent)},
        workdir=ctx.rundir / "check",
        extra_args=["--seed", str(ctx.seed + 1)],
    )
    with ctx.backend.serve(spec) as ep, Client(ep.url) as c:
        checks.append(
            Check(
                "V2 server ready",
                c.ready() and c.model_ready(),
                "/v2/health/ready and /v2/models/digits/ready answer ready",
                HINTS[1],
            )
        )
        meta = c.metadata()
        checks.append(
            Check(
                "V2 model metadata",
                meta.get("name") == "digits" and meta["inputs"][0]["shape"] == [-1, 64],
                f"name {meta.get('name')}, inputs {meta.get('inputs')}",
                HINTS[1],
            )
        )
        preds = c.v1_predict(X[:10])
        ok_v1 = len(preds) == 10 and all(
            p in (a, b) for p, a, b in zip(preds, offline["v1"][:10], offline["v2"][:10], strict=True)
        )
        checks.append(Check("V1 predict answers with the served model's predictions", ok_v1, f"{preds}", HINTS[0]))
        status, _body = c.raw_post("/v1/models/digits:predict", '{"instances": "not a list"')
        status2, body2 = c.raw_post(
            "/v2/models/digits/infer",
            '{"inputs": [{"name": "pixels", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
        )
        alive = c.v1_predict(X[:1]) in ([int(offline["v1"][0])], [int(offline["v2"][0])])
        checks.append(
            Check(
                "malformed V1/V2 requests get HTTP 400 and the server keeps serving",
                status == 400 and status2 == 400 and "error" in str(body2) and alive,
                f"V1 -> {status}, V2 -> {status2} {body2}; next request answered: {alive}",
                HINTS[2],
            )
        )
        counts: dict[str, int] = {}
        agree = 0
        for i in range(n):
            resp = c.v2_infer(X[i % len(X) : i % len(X) + 1], request_id=f"check-{i}")
            v = resp["model_version"]
            counts[v] = counts.get(v, 0) + 1
            agree += Client.v2_predictions(resp)[0] == int(offline[v][i % len(X)])
    checks.append(
        Check(
            "each V2 answer comes from the version it names",
            agree == n,
            f"{agree}/{n} agree with that version's offline predictions",
            "report model_version of the revision that answered",
        )
    )
    observed = counts.get("v2", 0) / n
    tol = split_tolerance(percent / 100, n)
    checks.append(
        Check(
            f"canary split {percent}% observed",
            abs(observed - percent / 100) <= tol,
            f"observed {100 * observed:.1f}% of {n} (±{100 * tol:.1f})",
            HINTS[3],
        )
    )
    return checks
