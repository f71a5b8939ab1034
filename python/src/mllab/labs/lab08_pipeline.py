"""Lab 8: a pipeline from data to a deployed model, with a quality gate.

preprocess -> train -> evaluate -> gate (register if accuracy >= threshold) -> deploy. On the cluster,
preprocess, train and evaluate are a chain of Jobs sharing the work PVC; the gate registers the
model from this process, and deploy is the lab's InferenceService. Every step is
an MLflow run with its outputs as versioned artifacts (content hashes; unchanged steps are cached).
The lab runs the pipeline twice: a good training config passes the gate, is registered (alias
`production`) and deployed to a KServe server that answers; a bad config (1 epoch) fails the gate,
and the deployment is stopped with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mllab.backends import ServeSpec
from mllab.errors import UsageError
from mllab.labs.base import Check, LabContext
from mllab.pipeline import GateFailed, Step, StepResult, run_pipeline

MODEL_NAME = "mllab-pipeline-digits"

HINTS = [
    "Each step writes only to its own output directory; the next step reads it. That is what makes outputs "
    "versionable (hash them) and cacheable (same inputs + params = same output).",
    "The gate raises with the reason (accuracy vs. threshold); the steps after it are skipped, not run.",
    "Register only what passed the gate, then point the `production` alias at that version; deploy by alias.",
    "Deploy = a server that answers: check /v2/health/ready and a prediction before you call it deployed.",
]


def threshold() -> float:
    raw = os.environ.get("PIPELINE_ACCURACY_THRESHOLD", "0.9")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise UsageError(f"PIPELINE_ACCURACY_THRESHOLD={raw!r} is not in (0, 1]", "use e.g. 0.9")
    return value


def preprocess(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    import numpy as np

    from mllab.data import load_digits_split, to_images

    s = load_digits_split(test_size=params["test_size"])
    np.savez(
        out / "digits.npz",
        X_train=to_images(s.X_train),
        y_train=s.y_train,
        X_test=to_images(s.X_test),
        y_test=s.y_test,
        X_train_raw=s.X_train,
    )
    return {"n_train": len(s.y_train), "n_test": len(s.y_test)}


def train_step(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    import numpy as np

    from mllab.model import save_model_dir
    from mllab.plots import learning_curve
    from mllab.training import TrainConfig, train

    data = np.load(inputs["preprocess"] / "digits.npz")
    res = train(TrainConfig(epochs=params["epochs"], seed=params["seed"], checkpoint_every=params["epochs"]))
    save_model_dir(
        res["model"], out / "model", reference=data["X_train_raw"], version=params["version"], epochs=params["epochs"]
    )
    learning_curve(res["history"], out / "learning_curve.png", title=f"train ({params['epochs']} epochs)")
    return {"final_train_loss": res["history"][-1]["train_loss"]}


def evaluate_step(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    import numpy as np

    from mllab.model import load_model_dir, predict_proba
    from mllab.plots import confusion_matrix

    data = np.load(inputs["preprocess"] / "digits.npz")
    model, _ = load_model_dir(inputs["train"] / "model")
    pred = predict_proba(model, data["X_test"]).argmax(1)
    acc = float((pred == data["y_test"]).mean())
    confusion_matrix(data["y_test"], pred, out / "confusion_matrix.png")
    return {"accuracy": acc}


def make_gate(mlflow: Any) -> Any:
    def gate(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
        acc = json.loads((inputs["evaluate"] / "metrics.json").read_text())["accuracy"]
        if acc < params["threshold"]:
            raise GateFailed(f"accuracy {acc:.4f} < threshold {params['threshold']}: not registered, not deployed")
        # Register: the model directory goes to the registry as an MLflow model (pytorch flavour).
        from mllab.model import load_model_dir

        model, _meta = load_model_dir(inputs["train"] / "model")
        import numpy as np

        example = np.zeros((2, 1, 8, 8), dtype=np.float32)  # batch > 1, or pt2 export pins batch=1
        info = mlflow.pytorch.log_model(model, name="model", input_example=example, pip_requirements=["torch==2.15.0"])
        mlflow.log_artifacts(str(inputs["train"] / "model"), artifact_path="model_dir")
        mv = mlflow.register_model(info.model_uri, MODEL_NAME, tags={"accuracy": f"{acc:.4f}"})
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, "production", mv.version)
        run_id = mlflow.active_run().info.run_id
        (out / "registered.json").write_text(
            json.dumps({"name": MODEL_NAME, "version": mv.version, "alias": "production", "run_id": run_id})
        )
        return {"accuracy": acc, "registered_version": int(mv.version)}

    return gate


def make_deploy(ctx: LabContext, mlflow: Any) -> Any:
    def deploy(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
        import numpy as np

        from mllab.serving.client import Client

        reg = json.loads((inputs["gate"] / "registered.json").read_text())
        mv = mlflow.MlflowClient().get_model_version_by_alias(reg["name"], "production")
        # Deploy what the registry's `production` alias points at (not whatever is on disk).
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path="model_dir", dst_path=str(out / "downloaded")
            )
        )
        from mllab.data import load_digits_split

        s = load_digits_split()
        with ctx.backend.serve(ServeSpec("deploy", {"digits": model_dir}, workdir=out)) as ep, Client(ep.url) as c:
            ready = c.ready()
            preds = c.v1_predict(s.X_test[:50])
        smoke = float(np.mean(np.array(preds) == s.y_test[:50]))
        (out / "deployment.json").write_text(
            json.dumps(
                {
                    "model": reg["name"],
                    "version": mv.version,
                    "alias": "production",
                    "ready": ready,
                    "smoke_accuracy": smoke,
                }
            )
        )
        if not ready or smoke < params["min_smoke_accuracy"]:
            raise GateFailed(f"deployment smoke test failed: ready={ready}, accuracy {smoke:.3f}")
        return {"smoke_accuracy": smoke, "deployed_version": int(mv.version)}

    return deploy


def pipeline(ctx: LabContext, mlflow: Any, epochs: int, thr: float) -> list[Step]:
    return [
        # remote: through the backend (on the cluster, a chain of Jobs sharing the work PVC)
        Step("preprocess", preprocess, params={"test_size": 0.25}, remote=True),
        Step(
            "train",
            train_step,
            ["preprocess"],
            {"epochs": epochs, "seed": ctx.seed, "version": f"e{epochs}"},
            remote=True,
        ),
        Step("evaluate", evaluate_step, ["preprocess", "train"], remote=True),
        Step("gate", make_gate(mlflow), ["evaluate", "train"], {"threshold": thr}, cache=False),
        Step("deploy", make_deploy(ctx, mlflow), ["gate"], {"min_smoke_accuracy": thr}, cache=False),
    ]


def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()
    thr = threshold()
    mlflow.set_experiment(ctx.experiment())
    # Outlives a run: unchanged steps are reused next time. One per backend, since the k8s backend's
    # cached outputs also live on the work PVC, where the next step's Job reads them.
    cache = ctx.rundir.parent / f"cache-{ctx.backend.name}"
    out: dict[str, Any] = {"threshold": thr, "experiment": ctx.experiment(), "pipelines": {}}

    def show(r: StepResult) -> None:
        color = {"Succeeded": "green", "Cached": "cyan", "Failed": "red", "Skipped": "yellow"}[r.status]
        extra = r.reason or ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.metrics.items()
        )
        ctx.console.print(f"  [{color}]{r.status:9}[/] {r.name:10} {r.output_hash[:12]:12} {extra}")

    for label, epochs in (("good-config", 8 if ctx.quick else 12), ("bad-config", 1)):
        ctx.console.print(f"pipeline {label} (train {epochs} epochs, gate accuracy >= {thr}):")
        pid, steps = run_pipeline(
            pipeline(ctx, mlflow, epochs, thr),
            ctx.rundir / label,
            cache,
            mlflow,
            label,
            on_step=show,
            run_step=ctx.backend.run_step,
        )
        out["pipelines"][label] = {
            "run_id": pid,
            "steps": [
                {
                    "name": s.name,
                    "status": s.status,
                    "reason": s.reason,
                    "output_version": s.output_hash[:16],
                    "metrics": s.metrics,
                    "run_id": s.run_id,
                }
                for s in steps
            ],
        }
    return out


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    mlflow = ctx.mlflow()
    client = mlflow.MlflowClient()
    checks: list[Check] = []
    good = {s["name"]: s for s in result["pipelines"]["good-config"]["steps"]}
    bad = {s["name"]: s for s in result["pipelines"]["bad-config"]["steps"]}
    ok_steps = all(
        good[n]["status"] in ("Succeeded", "Cached") for n in ("preprocess", "train", "evaluate", "gate", "deploy")
    )
    checks.append(
        Check(
            "good pipeline ran every step",
            ok_steps,
            ", ".join(f"{n}: {s['status']}" for n, s in good.items()),
            HINTS[0],
        )
    )
    versioned = []
    for n in ("preprocess", "train", "evaluate"):
        r = client.get_run(good[n]["run_id"])
        arts = [f.path for f in client.list_artifacts(r.info.run_id)]
        versioned.append(bool(arts) and r.data.tags.get("mllab.output_version") == good[n]["output_version"])
    checks.append(
        Check(
            "each step's outputs are versioned MLflow artifacts",
            all(versioned),
            f"artifacts + output_version tag per step: {versioned}",
            HINTS[0],
        )
    )
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, "production")
        acc = float(mv.tags.get("accuracy", "0"))
        checks.append(
            Check(
                "a model passing the gate is registered as production",
                acc >= result["threshold"],
                f"{MODEL_NAME} v{mv.version}, accuracy {acc}",
                HINTS[2],
            )
        )
    except Exception as exc:
        checks.append(Check("a model passing the gate is registered as production", False, str(exc), HINTS[2]))
    dep = good["deploy"]["metrics"]
    checks.append(
        Check(
            "the registered model was deployed and answered",
            good["deploy"]["status"] == "Succeeded" and dep.get("smoke_accuracy", 0) >= result["threshold"],
            f"smoke accuracy {dep.get('smoke_accuracy')}, version {dep.get('deployed_version')}",
            HINTS[3],
        )
    )
    checks.append(
        Check(
            "a failing gate stops the deployment and says why",
            bad["gate"]["status"] == "Failed"
            and "threshold" in bad["gate"]["reason"]
            and bad["deploy"]["status"] == "Skipped",
            f"gate: {bad['gate']['reason']}; deploy: {bad['deploy']['status']}",
            HINTS[1],
        )
    )
    prun = client.get_run(result["pipelines"]["bad-config"]["run_id"])
    checks.append(
        Check(
            "the failed pipeline's reason is recorded in MLflow",
            prun.data.tags.get("mllab.pipeline_status") == "Failed"
            and "threshold" in prun.data.tags.get("mllab.pipeline_reason", ""),
            f"{prun.data.tags.get('mllab.pipeline_status')}: {prun.data.tags.get('mllab.pipeline_reason')}",
            HINTS[1],
        )
    )
    checks.append(
        Check(
            "unchanged steps are reused (cache)",
            bad["preprocess"]["status"] == "Cached",
            f"preprocess in the second pipeline: {bad['preprocess']['status']}",
            HINTS[0],
        )
    )
    return checks
