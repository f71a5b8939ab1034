"""Lab 6: serve the digits model with KServe; V1 and V2 protocols; a canary with a measured split.

The learner writes the two halves of a KServe deployment: `digits_model.py`, the `kserve.Model`
whose `predict` answers V1 (``instances`` -> ``predictions``) and V2 (Open Inference Protocol
tensors) requests, and `inferenceservice.yaml`, the InferenceService that rolls v2 out as a canary
(Standard mode: ``spec.canary`` with a ``trafficPercent``).

Two versions of the CNN are trained (v1: a few epochs, v2: more). The kit's model server
(`python -m mllab.serving`, the learner's DigitsModel inside) serves the manifest's stable version
alone first: the tutorial-style V1 client, V2 (health, metadata, infer), and a malformed request
that must get HTTP 400 while the server keeps serving. Then the manifest's canary joins with its
share of the traffic; we send requests and measure the split from the `model_version` of each V2
response. The split is made inside the server (what the kit runs, locally and on the cluster):
KServe 0.20's Standard mode accepts ``spec.canary`` and runs the canary's Deployment, but routes
no traffic to it (the weighted routing came after 0.20, for Gateway API HTTPRoutes only).
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllab.backends import ServeSpec
from mllab.errors import UsageError
from mllab.labs.base import Check, LabContext

HINTS = [
    'V1: KServe hands predict() the decoded JSON body {"instances": [[64 numbers], ...]}; the answer is '
    '{"predictions": [...]}, one class label (an int) per instance: probs.argmax(1).',
    "V2: predict() gets an InferRequest; its input tensor has name, shape [n, 64], datatype FP32 and the data "
    "flattened row-major. Answer an InferResponse with two output tensors described the same way: predictions "
    "INT64 [n] and probabilities FP32 [n, 10], and model_version set to the version classify() returned.",
    "A malformed request must raise kserve.errors.InvalidInput (HTTP 400, the message goes back to the client); "
    "any other exception is HTTP 500. parse_v1 / parse_v2_input check a request and raise BadRequest, which the "
    "kit's server turns into InvalidInput.",
    "The canary in Standard mode is spec.canary: a list of {trafficPercent, predictor: {name, ...the new model}}; "
    "trafficPercent is the canary's share and the stable predictor keeps the rest. "
    "predictor.canaryTrafficPercent is the Serverless (Knative) field, ignored in Standard mode.",
    "The observed canary share is a binomial sample: with n requests expect p ± 3·sqrt(p(1-p)/n).",
]

MODEL_FILE = "digits_model.py"
MANIFEST = "inferenceservice.yaml"
VERSIONS = ("v1", "v2")  # the stable version in production, and the new one rolled out as the canary
ISVC_API = "serving.kserve.io/v1beta1"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"


def canary_percent() -> int:
    """The canary's share the task asks for (CANARY_PERCENT, default 10)."""
    raw = os.environ.get("CANARY_PERCENT", "10")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 < value < 100:
        raise UsageError(f"CANARY_PERCENT={raw!r} is not a canary share", "set CANARY_PERCENT to an integer 1-99")
    return value


# ---- the manifest -------------------------------------------------------------------------------
def read_manifest(path: Path) -> Any:
    """The learner's inferenceservice.yaml, parsed; ExerciseError naming the line when it is not YAML."""
    import yaml

    from mllab.exercise import ExerciseError

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ExerciseError(
            f"{path.name}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}", f"fix {path}"
        ) from None
    if len(docs) != 1:
        raise ExerciseError(
            f"{path.name} holds {len(docs)} YAML documents; it must hold one InferenceService", f"fix {path}"
        )
    return docs[0]


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def model_uri(predictor: Any) -> str | None:
    """Where a predictor's model comes from: the STORAGE_URI of its container (a custom predictor)
    or the storageUri of its model (a serving runtime)."""
    uri = _get(predictor, "model", "storageUri")
    if isinstance(uri, str):
        return uri
    containers = _get(predictor, "containers")
    for c in containers if isinstance(containers, list) else []:
        for e in _get(c, "env") or []:
            if isinstance(e, dict) and e.get("name") == "STORAGE_URI" and isinstance(e.get("value"), str):
                return e["value"]
    return None


def model_version(predictor: Any) -> str | None:
    """The model version a predictor serves: the last folder of its model's URI (…/digits/v2 -> v2)."""
    uri = model_uri(predictor)
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None


@dataclass
class Plan:
    """What the manifest asks the kit to serve."""

    stable: str
    canary: str | None = None
    percent: int = 0


def serve_plan(doc: Any) -> Plan:
    """The versions the kit serves for this manifest: the stable predictor's, and its first canary's
    with that canary's trafficPercent. ExerciseError when a model is not one the lab trained."""
    from mllab.exercise import ExerciseError

    spec = _get(doc, "spec")
    stable = model_version(_get(spec, "predictor")) or "v1"
    canaries = _get(spec, "canary")
    entry = canaries[0] if isinstance(canaries, list) and canaries else None
    canary = model_version(_get(entry, "predictor")) if entry is not None else None
    for what, v in (("spec.predictor", stable), ("spec.canary[0].predictor", canary)):
        if v is not None and v not in VERSIONS:
            raise ExerciseError(
                f"{MANIFEST}: {what} serves model {v!r}; the lab trains {' and '.join(VERSIONS)}",
                f"point its STORAGE_URI at pvc://models/digits/v1 or pvc://models/digits/v2 in {MANIFEST}",
            )
    percent = _get(entry, "trafficPercent")
    if canary is None or not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
        return Plan(stable)
    return Plan(stable, canary, percent)


def manifest_checks(doc: Any, target: int) -> list[Check]:
    """The manifest against what KServe 0.20 accepts in Standard mode and what the task asks: v1
    stays the stable predictor, v2 is the canary with `target`% of the traffic."""
    checks: list[Check] = []
    problems = []
    if not isinstance(doc, dict):
        problems.append(f"the file holds a {type(doc).__name__}, not an object")
        doc = {}
    if doc.get("apiVersion") != ISVC_API:
        problems.append(f"apiVersion is {doc.get('apiVersion')!r}, not {ISVC_API}")
    if doc.get("kind") != "InferenceService":
        problems.append(f"kind is {doc.get('kind')!r}")
    if not isinstance(_get(doc, "metadata", "name"), str):
        problems.append("metadata.name is missing")
    mode = _get(doc, "metadata", "annotations", MODE_ANNOTATION)
    if mode != "Standard":
        problems.append(f"metadata.annotations[{MODE_ANNOTATION}] is {mode!r}, not 'Standard'")
    predictor = _get(doc, "spec", "predictor")
    if not isinstance(predictor, dict):
        problems.append("spec.predictor is missing")
    elif model_uri(predictor) is None:
        problems.append("spec.predictor has no model (a container with STORAGE_URI, or model.storageUri)")
    checks.append(
        Check(
            f"{MANIFEST} is a KServe InferenceService (v1beta1, Standard mode)",
            not problems,
            "; ".join(problems) or f"{ISVC_API} InferenceService {_get(doc, 'metadata', 'name')!r}, Standard mode",
            "keep the starter's apiVersion, kind, metadata (with the deploymentMode: Standard annotation: the "
            "cluster's KServe runs without Knative, and spec.canary is only accepted in Standard mode) and "
            "spec.predictor",
        )
    )
    stable = model_version(predictor)
    checks.append(
        Check(
            "the stable predictor serves v1",
            stable == "v1",
            f"spec.predictor serves {model_uri(predictor)!r} ({stable})",
            "the stable predictor keeps the version in production (v1, STORAGE_URI pvc://models/digits/v1); the "
            "new version (v2) goes into spec.canary",
        )
    )
    canaries = _get(doc, "spec", "canary")
    ctp = _get(predictor, "canaryTrafficPercent")
    entries = canaries if isinstance(canaries, list) else []
    problems = []
    if canaries is None:
        problems.append("there is no spec.canary")
        if ctp is not None:
            problems.append(
                f"spec.predictor.canaryTrafficPercent ({ctp}) splits traffic between Knative revisions "
                "(Serverless mode); KServe ignores it in Standard mode"
            )
    elif not isinstance(canaries, list) or len(entries) != 1:
        problems.append("spec.canary must be a list with one entry (the v2 canary)")
    else:
        entry = entries[0]
        name = _get(entry, "predictor", "name")
        if not isinstance(name, str) or not name:
            problems.append("spec.canary[0].predictor.name is missing (KServe requires it: the canary's Deployment)")
        elif name == _get(predictor, "name"):
            problems.append(f"the canary's name {name!r} is the stable predictor's")
        version = model_version(_get(entry, "predictor"))
        if version != "v2":
            problems.append(f"the canary serves {model_uri(_get(entry, 'predictor'))!r} ({version}), not v2")
        ext = _get(entry, "predictor") or {}
        fixed = [k for k in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling") if k in ext]
        if fixed:
            problems.append(f"a canary uses fixed replicas: KServe rejects {', '.join(fixed)} on it")
    checks.append(
        Check(
            "the InferenceService rolls v2 out as a canary (spec.canary)",
            not problems,
            "; ".join(problems) or f"spec.canary: {_get(entries[0], 'predictor', 'name')!r} serves v2",
            "in Standard mode the canary is spec.canary: - {trafficPercent: N, predictor: {name: v2, containers: "
            "[the same container, STORAGE_URI pvc://models/digits/v2]}}",
        )
    )
    percent = _get(entries[0], "trafficPercent") if len(entries) == 1 else None
    if percent == 100 - target and percent != target:
        why = (
            f"the canary gets {percent}% and v1 only {100 - percent}%: the wrong way round, trafficPercent is the "
            "canary's share"
        )
    elif percent is None:
        why = "no canary trafficPercent"
    else:
        why = f"the canary's trafficPercent is {percent!r}"
    checks.append(
        Check(
            f"the canary takes {target}% of the traffic",
            percent == target and not isinstance(percent, bool),
            why,
            f"trafficPercent is the share of the requests the canary answers: {target} sends {target}% to v2, and "
            f"the stable predictor keeps the other {100 - target}%",
        )
    )
    return checks


# ---- the learner's DigitsModel, probed directly ----------------------------------------------------
def probe_model(code: Any) -> list[Check]:
    """Call the learner's DigitsModel the way KServe does (`await model(payload, headers)`: preprocess,
    predict, postprocess) with a known classify(), one property per check."""
    import numpy as np
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

    from mllab.data import load_digits_split
    from mllab.exercise import ExerciseError, where
    from mllab.serving.protocol import BadRequest

    X = load_digits_split().X_test[:3]
    probs = np.random.default_rng(6).dirichlet(np.full(10, 0.3), size=3).astype(np.float32)
    labels = probs.argmax(1).tolist()
    seen: list[Any] = []

    class Probe(code.DigitsModel):  # type: ignore[misc,name-defined]
        def classify(self, X: Any) -> tuple[str, Any]:
            arr = np.asarray(X, dtype=np.float32)
            seen.append(arr)
            if arr.ndim != 2 or arr.shape[1] != 64:
                raise ValueError(f"classify() takes the pixels as an array of shape [n, 64], got {list(arr.shape)}")
            return "probe-version", probs[: len(arr)]

    path = Path(code.__file__ or MODEL_FILE)
    try:
        model = Probe("digits")
        model.ready = True
    except Exception as exc:
        return [Check(f"{MODEL_FILE} defines a kserve.Model", False, where(exc, path), HINTS[1])]

    def ask(payload: Any) -> Any:
        return asyncio.run(model(payload, headers={}))[0]

    def v2(shape: list[int], datatype: str, data: Any, rid: str = "probe-1") -> Any:
        return InferRequest("digits", [InferInput("pixels", shape, datatype, data)], request_id=rid)

    checks: list[Check] = []
    try:
        v1 = ask({"instances": X.tolist()})
        seen.clear()
        resp = ask(v2([3, 64], "FP32", X.ravel().tolist()))
    except Exception as exc:
        err = ExerciseError(f"{path.name}: predict() raised {where(exc, path)}", f"fix {path}")
        return [Check(f"{MODEL_FILE} answers a V1 and a V2 request", False, err.message, err.fix)]

    preds = v1.get("predictions") if isinstance(v1, dict) else None
    ok = isinstance(preds, list) and [p for p in preds if isinstance(p, int | np.integer)] == preds and preds == labels
    if isinstance(preds, list) and preds and isinstance(preds[0], list):
        why = f"predictions are lists of {len(preds[0])} numbers (probabilities), not class labels"
    else:
        why = f"answered {str(v1)[:160]} for 3 instances whose labels are {labels}"
    checks.append(
        Check(
            "V1: one class label per instance",
            ok,
            f'{{"predictions": {labels}}}' if ok else why,
            HINTS[0],
        )
    )

    problems = []
    rest: dict[str, Any] = {}
    if not isinstance(resp, InferResponse):
        problems.append(f"predict returned a {type(resp).__name__} for a V2 request, not an InferResponse")
    else:
        try:
            rest = resp.to_rest()[0]
        except Exception as exc:  # shape and data disagree, unknown datatype...
            problems.append(f"the InferResponse cannot be sent: {where(exc, path)}")
    if seen and seen[0].shape == X.shape and not np.allclose(seen[0], X):
        problems.append("classify() got the pixels in the wrong order: reshape the flat data to the tensor's shape")
    outputs = {o.get("name"): o for o in rest.get("outputs", []) if isinstance(o, dict)}
    expected = {
        "predictions": ("INT64", [3], labels),
        "probabilities": ("FP32", [3, 10], probs.ravel().tolist()),
    }
    for name, (dtype, shape, data) in expected.items():
        out = outputs.get(name)
        if rest and out is None:
            problems.append(f"no output {name!r} (outputs: {sorted(outputs)})")
            continue
        if out is None:
            continue
        got = f"{out.get('datatype')} {out.get('shape')}"
        if out.get("datatype") != dtype or list(out.get("shape") or []) != shape:
            note = " (n = 3)" if name == "predictions" else ""
            if list(out.get("shape") or []) == [math.prod(shape)] and len(shape) > 1:
                note = f" (the shape is the tensor's, {shape}; only its data is flattened)"
            problems.append(f"{name} is {got}, not {dtype} {shape}{note}")
        elif not np.allclose(np.asarray(out.get("data"), dtype=np.float64).ravel(), data, atol=1e-5):
            problems.append(f"{name} has data {str(out.get('data'))[:80]}, expected {str(data)[:80]}")
    checks.append(
        Check(
            "V2: outputs predictions INT64 [n] and probabilities FP32 [n, 10]",
            not problems,
            "; ".join(problems) or "both output tensors with the right datatype, shape and data",
            HINTS[1],
        )
    )
    version, rid = rest.get("model_version"), rest.get("id")
    checks.append(
        Check(
            "V2: the response names the model_version that answered and echoes the request id",
            version == "probe-version" and rid == "probe-1" and rest.get("model_name") == "digits",
            f"model_version {version!r} (classify() returned 'probe-version'), id {rid!r} (the request's: "
            f"'probe-1'), model_name {rest.get('model_name')!r}",
            "InferResponse(response_id=request.id, model_name=self.name, model_version=<the version classify() "
            "returned>, ...): the canary split is measured from model_version",
        )
    )

    bad = [
        ("V1 with 3 values", {"instances": [[1, 2, 3]]}),
        ("V1 without 'instances'", {"rows": []}),
        ("V2 shape [1, 3]", v2([1, 3], "FP32", [1, 2, 3], "bad-1")),
        ("V2 datatype BYTES", v2([1, 64], "BYTES", ["x"] * 64, "bad-2")),
        ("V2 shape [2, 64] with 64 values", v2([2, 64], "FP32", [1.0] * 64, "bad-3")),
    ]
    wrong = []
    for what, payload in bad:
        try:
            ask(payload)
            wrong.append(f"{what}: answered (HTTP 200)")
        except (InvalidInput, BadRequest):
            pass
        except Exception as exc:
            wrong.append(f"{what}: {where(exc, path)} (HTTP 500)")
    checks.append(
        Check(
            "malformed requests raise InvalidInput (HTTP 400)",
            not wrong,
            "; ".join(wrong) or f"all {len(bad)} malformed requests raised InvalidInput",
            HINTS[2],
        )
    )
    return checks


# ---- training, serving, measuring -------------------------------------------------------------------
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


def _attempt(fn: Any) -> tuple[Any, str | None]:
    """fn() or, when the server refuses or answers something unreadable, the error as text."""
    try:
        return fn(), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]


def _labels(preds: Any) -> list[int] | None:
    """A V1 answer's predictions when they are class labels."""
    if isinstance(preds, list) and all(isinstance(p, int) and not isinstance(p, bool) for p in preds):
        return preds
    return None


def _still_serving(client: Any, X: Any) -> bool:
    """Whether the server answers a good V1 request (after an HTTP 500 the server closes that
    connection: one retry on a new one)."""
    for _ in range(2):
        answer, _err = _attempt(lambda: client.v1_predict(X[:1]))
        if answer is not None:
            return True
    return False


def _version_of(resp: Any) -> str:
    return str(resp.get("model_version")) if isinstance(resp, dict) else "error"


def measure_split(client: Any, X: Any, n: int, prefix: str, track: Any = None) -> tuple[dict[str, int], list]:
    """n one-row V2 requests: how many each version answered, and (version, label) per request."""
    from mllab.serving.client import Client

    counts: dict[str, int] = {}
    answers = []
    steps = track(range(n)) if track else range(n)
    for i in steps:
        resp, _err = _attempt(lambda i=i: client.v2_infer(X[i % len(X) : i % len(X) + 1], request_id=f"{prefix}-{i}"))
        v = _version_of(resp)
        counts[v] = counts.get(v, 0) + 1
        label, _ = _attempt(lambda resp=resp: Client.v2_predictions(resp)[0])
        answers.append((v, label))
    return counts, answers


def _spec(name: str, dirs: dict[str, Path], plan: Plan, workdir: Path, seed: int, canary: bool = True) -> ServeSpec:
    with_canary = canary and plan.canary is not None
    return ServeSpec(
        name,
        {"digits": dirs[plan.stable]},
        canary={"digits": (dirs[plan.canary], plan.percent)} if with_canary and plan.canary else {},
        workdir=workdir,
        extra_args=["--seed", str(seed)],
    )


def _exercise(ctx: LabContext) -> Path:
    from mllab.exercise import solution_dir

    return ctx.exercise if ctx.exercise is not None else solution_dir(ctx.lab)


def run(ctx: LabContext) -> dict[str, Any]:
    import numpy as np
    from rich.progress import track

    from mllab.data import load_digits_split
    from mllab.serving.client import Client, ServerError

    def say(text: str) -> None:  # server answers as they are: "[n, 64]" is not rich markup
        ctx.console.print(text, markup=False, highlight=False)

    target = canary_percent()
    folder = _exercise(ctx)
    if ctx.exercise is not None:
        ctx.learner("digits_model", "DigitsModel")  # a syntax error fails here, before anything is trained
    plan = serve_plan(read_manifest(folder / MANIFEST))
    ctx.console.print(
        f"{MANIFEST}: stable {plan.stable}"
        + (f", canary {plan.canary} with {plan.percent}% of the traffic" if plan.canary else ", no canary")
    )
    dirs = train_versions(ctx, {"v1": 3, "v2": 10} if ctx.quick else {"v1": 4, "v2": 15})
    s = load_digits_split()
    X, y = s.X_test[:200], s.y_test[:200]
    out: dict[str, Any] = {
        "canary_percent": target,
        "plan": {"stable": plan.stable, "canary": plan.canary, "percent": plan.percent},
        "models": {v: str(d) for v, d in dirs.items()},
    }
    with (
        ctx.backend.serve(_spec("serve-stable", dirs, plan, ctx.rundir, ctx.seed, canary=False)) as ep,
        Client(ep.url) as c,
    ):
        say(f"KServe model server ({plan.stable}, your DigitsModel) on {ep.url}")
        preds, err = _attempt(lambda: c.v1_predict(X))  # the tutorial's client: {"instances": [...]}
        labels = _labels(preds)
        out["v1"] = {"error": err, "labels": labels is not None}
        if labels is not None and len(labels) == len(y):
            out["v1"]["accuracy"] = float(np.mean(np.array(labels) == y))
        shown = err or f"{str(preds)[:100]}" + (
            f"... accuracy {out['v1']['accuracy']:.3f}" if "accuracy" in out["v1"] else ""
        )
        say(f"V1 /v1/models/digits:predict -> {shown}")
        resp, err = _attempt(lambda: c.v2_infer(X[:5], request_id="lab6-v2"))
        meta, _ = _attempt(c.metadata)
        out["v2"] = {
            "ready": c.ready(),
            "inputs": (meta or {}).get("inputs"),
            "error": err,
            "model_version": _version_of(resp) if resp else None,
            "outputs": [{k: o.get(k) for k in ("name", "datatype", "shape")} for o in (resp or {}).get("outputs", [])],
        }
        say(
            f"V2 ready={out['v2']['ready']}, metadata inputs {out['v2']['inputs']}, infer -> "
            + (err or f"model_version {out['v2']['model_version']}, outputs {out['v2']['outputs']}")
        )
        try:
            c.v1_predict([[1, 2, 3]])
            out["bad_request"] = {"status": 200}
        except ServerError as exc:
            out["bad_request"] = {"status": exc.status, "body": exc.body}
        status, body = c.raw_post(
            "/v2/models/digits/infer",
            '{"inputs": [{"name": "pixels", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
        )
        out["bad_request_v2"] = {"status": status, "body": body}
        say(
            f"malformed requests -> V1 HTTP {out['bad_request']['status']}: {out['bad_request'].get('body')}; "
            f"V2 HTTP {status}: {str(body)[:120]}"
        )
        out["still_serving"] = _still_serving(c, X)
    n = 200 if ctx.quick else 400
    with ctx.backend.serve(_spec("serve-canary", dirs, plan, ctx.rundir, ctx.seed)) as ep, Client(ep.url) as c:
        what = f"canary {plan.canary} {plan.percent}%" if plan.canary else f"{plan.stable} alone (no canary)"

        def progress(it: Any) -> Any:
            return track(it, description=f"{what}: {n} requests", console=ctx.console)

        counts, _answers = measure_split(c, X, n, "canary", progress)
    observed = 100 * counts.get("v2", 0) / n
    tol = 100 * split_tolerance(target / 100, n)
    out["canary"] = {"requests": n, "counts": counts, "observed_percent": observed, "tolerance_percent": tol}
    say(
        f"v2 answered {observed:.1f}% of {n} requests ({counts}); the task asks {target}% (tolerance ±{tol:.1f} points)"
    )
    return out


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    from mllab.data import load_digits_split, to_images
    from mllab.exercise import ExerciseError
    from mllab.model import load_model_dir, predict_proba
    from mllab.serving.client import Client

    target = int(result["canary_percent"])
    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's two files, property by property
        try:
            checks += probe_model(ctx.learner("digits_model", "DigitsModel"))
        except ExerciseError as exc:
            checks.append(Check(f"{MODEL_FILE} can be imported", False, exc.message, exc.fix))
        try:
            checks += manifest_checks(read_manifest(ctx.exercise / MANIFEST), target)
        except ExerciseError as exc:
            checks.append(Check(f"{MANIFEST} can be read", False, exc.message, exc.fix))
    dirs = {v: ctx.rundir / "models" / v for v in result["models"]}  # the committed run dir
    missing = [str(d) for d in dirs.values() if not (d / "model.pt").exists()]
    if missing:
        return [*checks, Check("model directories exist", False, f"missing {missing}", "run the lab: mllab run 6")]
    plan = Plan(**result["plan"])
    s = load_digits_split()
    X = s.X_test[:100]
    offline = {v: predict_proba(load_model_dir(d)[0], to_images(X)).argmax(1) for v, d in dirs.items()}
    n = 200
    with (
        ctx.backend.serve(_spec("check-canary", dirs, plan, ctx.rundir / "check", ctx.seed + 1)) as ep,
        Client(ep.url) as c,
    ):
        checks.append(
            Check(
                "V2 server ready",
                c.ready() and c.model_ready(),
                "/v2/health/ready and /v2/models/digits/ready answer ready",
                HINTS[1],
            )
        )
        meta, err = _attempt(c.metadata)
        inputs = (meta or {}).get("inputs") or [{}]
        checks.append(
            Check(
                "V2 model metadata",
                (meta or {}).get("name") == "digits" and inputs[0].get("shape") == [-1, 64],
                err or f"name {(meta or {}).get('name')}, inputs {inputs}",
                HINTS[1],
            )
        )
        served = [offline[v] for v in (plan.stable, plan.canary) if v]
        preds, err = _attempt(lambda: c.v1_predict(X[:10]))
        labels = _labels(preds)
        ok_v1 = (
            labels is not None
            and len(labels) == 10
            and all(any(p == o[i] for o in served) for i, p in enumerate(labels))
        )
        checks.append(
            Check(
                "V1 predict answers with the served model's predictions",
                ok_v1,
                err or f"{str(preds)[:200]}",
                HINTS[0],
            )
        )
        status, _body = c.raw_post("/v1/models/digits:predict", '{"instances": [[1, 2, 3]]}')
        status2, body2 = c.raw_post(
            "/v2/models/digits/infer",
            '{"inputs": [{"name": "pixels", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
        )
        alive = _still_serving(c, X)
        checks.append(
            Check(
                "malformed V1/V2 requests get HTTP 400 and the server keeps serving",
                status == 400 and status2 == 400 and "error" in str(body2) and alive,
                f"V1 -> {status}, V2 -> {status2} {str(body2)[:200]}; next request answered: {alive}",
                HINTS[2],
            )
        )
        counts, answers = measure_split(c, X, n, "check")
    agree = sum(1 for i, (v, label) in enumerate(answers) if v in offline and label == int(offline[v][i % len(X)]))
    checks.append(
        Check(
            "each V2 answer comes from the version it names",
            agree == n,
            f"{agree}/{n} agree with the offline predictions of the model_version they name (versions seen: {counts})",
            "set the InferResponse's model_version to the version classify() returned, and predictions to its "
            "class labels",
        )
    )
    observed = counts.get("v2", 0) / n
    tol = split_tolerance(target / 100, n)
    checks.append(
        Check(
            f"canary split {target}% observed",
            abs(observed - target / 100) <= tol,
            f"v2 answered {100 * observed:.1f}% of {n} requests (±{100 * tol:.1f}); served: {plan.stable} stable"
            + (f", {plan.canary} canary at {plan.percent}%" if plan.canary else ", no canary"),
            f"the canary (v2) answers its trafficPercent of the requests: spec.canary with trafficPercent {target} "
            f"in {MANIFEST}. " + HINTS[4],
        )
    )
    return checks
