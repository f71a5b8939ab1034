"""Lab 8: a pipeline from data to a deployed model, with a quality gate.

preprocess -> train -> evaluate -> gate -> deploy. The gate is the learner's `gate.py`
(should_deploy: the candidate's held-out accuracy against the threshold and the champion in
production), called in this process. On the cluster, preprocess, train and evaluate are a chain of
Jobs sharing the work PVC; the gate registers the model from this process, and deploy is the lab's
model server. Every step is an MLflow run with its outputs as versioned artifacts (content hashes;
unchanged steps are cached). Each `mllab run 8` starts without a champion (it clears the
`production` alias) and runs three candidates: a good config passes the gate, is registered
(alias `production`) and deployed to a model server that answers; a weaker config (fewer epochs)
passes the threshold but not the champion; an overfit config (a few dozen training digits, many
epochs: training accuracy 1.0) fails the threshold on the held-out test set. Both stop at the gate,
with the reason, and are not deployed.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from mllab.backends import ServeSpec
from mllab.errors import UsageError
from mllab.labs.base import Check, LabContext
from mllab.learner import per_learner
from mllab.pipeline import GateFailed, Step, StepResult, run_pipeline

MODEL_NAME = per_learner("mllab-pipeline-digits")  # the learner's own in a class (mllab.learner)
ALIAS = "production"

HINTS = [
    "Each step writes only to its own output directory; the next step reads it. That is what makes outputs "
    "versionable (hash them) and cacheable (same inputs + params = same output).",
    "Judge a model on data it has not seen: the evaluate step's accuracy (held-out test set). The training "
    "accuracy says how well it memorised its training data; an overfit model has 1.0 there.",
    "The gate says no when the held-out accuracy is below the threshold, or below the champion's (the model "
    "in production): return (False, reason); the steps after it are skipped, not run.",
    "Register only what passed the gate, then point the `production` alias at that version; deploy by alias.",
    "Deploy = a server that answers: check /v2/health/ready and a prediction before you call it deployed.",
]

# label -> the train step's parameters (epochs; train_samples: fit on the first N training digits only)
CONFIGS = {
    "good-config": {"epochs": 12},
    "weaker-config": {"epochs": 6},  # held-out ~0.93: above the threshold, below the good config
    "overfit-config": {"epochs": 150, "train_samples": 40},  # training accuracy 1.0, held-out ~0.72
}


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
    """Train the CNN on the preprocess step's training split (its first `train_samples` rows when
    given), seeded and deterministic; the metrics are on the data it learnt."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mllab.model import DigitsCNN, predict_proba, save_model_dir
    from mllab.plots import learning_curve

    data = np.load(inputs["preprocess"] / "digits.npz")
    n = params.get("train_samples") or len(data["y_train"])
    X, y, X_raw = data["X_train"][:n], data["y_train"][:n], data["X_train_raw"][:n]
    torch.set_num_threads(1)  # bitwise reproducible, and polite on shared machines
    torch.manual_seed(params["seed"])
    torch.use_deterministic_algorithms(True)
    model = DigitsCNN(width=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    shuffler = torch.Generator().manual_seed(params["seed"])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    history = []
    for epoch in range(1, params["epochs"] + 1):
        model.train()
        perm = torch.randperm(len(Xt), generator=shuffler)
        total = 0.0
        for i in range(0, len(Xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = F.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_acc = float((predict_proba(model, X).argmax(1) == y).mean())
        history.append({"epoch": epoch, "train_loss": total / len(Xt), "train_accuracy": train_acc})
    save_model_dir(model, out / "model", reference=X_raw, version=params["version"], epochs=params["epochs"])
    learning_curve(history, out / "training_curve.png", f"train ({params['epochs']} epochs, {n} digits)")
    return {
        "train_accuracy": history[-1]["train_accuracy"],
        "final_train_loss": history[-1]["train_loss"],
        "train_samples": int(n),
        "epochs": params["epochs"],
    }


def evaluate_step(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    """The model's accuracy on the held-out test split, which training never saw."""
    import numpy as np

    from mllab.model import load_model_dir, predict_proba
    from mllab.plots import confusion_matrix

    data = np.load(inputs["preprocess"] / "digits.npz")
    model, _ = load_model_dir(inputs["train"] / "model")
    pred = predict_proba(model, data["X_test"]).argmax(1)
    acc = float((pred == data["y_test"]).mean())
    confusion_matrix(data["y_test"], pred, out / "confusion_matrix.png")
    return {"accuracy": acc, "n_test": len(data["y_test"])}


def champion(mlflow: Any) -> dict[str, Any] | None:
    """The model the `production` alias points at: its held-out accuracy and version; None if none."""
    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, ALIAS)
    except Exception:  # no such model or alias: nothing in production yet
        return None
    try:
        acc = float(mv.tags.get("accuracy", ""))
    except ValueError:
        return None
    return {"accuracy": acc, "version": int(mv.version)}


def decide(code: Any, candidate: dict[str, Any], champ: dict[str, Any] | None, thr: float) -> tuple[bool, str]:
    """The learner's should_deploy on copies of the metrics; ExerciseError for anything but (bool, reason)."""
    from mllab.exercise import ExerciseError, call

    got = call(code, "should_deploy", copy.deepcopy(candidate), copy.deepcopy(champ), thr)
    if not (isinstance(got, tuple | list) and len(got) == 2 and isinstance(got[0], bool | int)):
        raise ExerciseError(
            f"gate.py: should_deploy() returned {got!r}, not (deploy, reason)",
            'return a pair: (True, "why") or (False, "why")',
        )
    return bool(got[0]), str(got[1])


def make_gate(mlflow: Any, code: Any, errors: list[Exception]) -> Any:
    def gate(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
        from mllab.exercise import ExerciseError

        candidate = {n: json.loads((inputs[n] / "metrics.json").read_text()) for n in ("train", "evaluate")}
        champ = champion(mlflow)
        try:
            deploy, reason = decide(code, candidate, champ, params["threshold"])
        except ExerciseError as exc:
            errors.append(exc)  # the run stops with it, after the pipeline has recorded the failure
            raise
        mlflow.set_tags({"mllab.gate_deploy": str(deploy), "mllab.gate_reason": reason[:500]})
        acc = candidate["evaluate"]["accuracy"]
        (out / "decision.json").write_text(
            json.dumps({"deploy": deploy, "reason": reason, "candidate": candidate, "champion": champ})
        )
        if not deploy:
            raise GateFailed(reason or "the gate said no, without a reason")
        # Register: the model directory goes to the registry as an MLflow model (pytorch flavour).
        import numpy as np

        from mllab.model import load_model_dir

        model, _meta = load_model_dir(inputs["train"] / "model")
        example = np.zeros((2, 1, 8, 8), dtype=np.float32)  # batch > 1, or pt2 export pins batch=1
        info = mlflow.pytorch.log_model(model, name="model", input_example=example, pip_requirements=["torch==2.15.0"])
        mlflow.log_artifacts(str(inputs["train"] / "model"), artifact_path="model_dir")
        tags = {
            "accuracy": f"{acc:.4f}",  # held out: what the next gate compares with (the champion's)
            "train_accuracy": f"{candidate['train']['train_accuracy']:.4f}",
            "gate_reason": reason[:500],
        }
        mv = mlflow.register_model(info.model_uri, MODEL_NAME, tags=tags)
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, ALIAS, mv.version)
        run_id = mlflow.active_run().info.run_id
        (out / "registered.json").write_text(
            json.dumps({"name": MODEL_NAME, "version": mv.version, "alias": ALIAS, "run_id": run_id})
        )
        return {"accuracy": acc, "registered_version": int(mv.version), "reason": reason}

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


def pipeline(ctx: LabContext, mlflow: Any, config: dict[str, Any], thr: float, code: Any, errors: list) -> list[Step]:
    train_params = {"seed": ctx.seed, "version": "-".join(f"{k}{v}" for k, v in config.items()), **config}
    return [
        # remote: through the backend (on the cluster, a chain of Jobs sharing the work PVC)
        Step("preprocess", preprocess, params={"test_size": 0.25}, remote=True),
        Step("train", train_step, ["preprocess"], train_params, remote=True, version="2"),
        Step("evaluate", evaluate_step, ["preprocess", "train"], remote=True, version="2"),
        # in this process: the learner's gate.py
        Step("gate", make_gate(mlflow, code, errors), ["evaluate", "train"], {"threshold": thr}, cache=False),
        Step("deploy", make_deploy(ctx, mlflow), ["gate"], {"min_smoke_accuracy": thr}, cache=False),
    ]


def configs(quick: bool) -> dict[str, dict[str, Any]]:
    out = copy.deepcopy(CONFIGS)
    if quick:
        out["good-config"]["epochs"] = 8
    return out


def clear_champion(mlflow: Any) -> int | None:
    """Start the run without a champion: remove the `production` alias (the versions stay in the
    registry). The version it pointed at, or None."""
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except Exception:
        return None
    client.delete_registered_model_alias(MODEL_NAME, ALIAS)
    return int(mv.version)


def run(ctx: LabContext) -> dict[str, Any]:
    from mllab.exercise import ExerciseError

    mlflow = ctx.mlflow()
    thr = threshold()
    code = ctx.learner("gate", "should_deploy")
    # The learner's gate fails here, with its file and line, before anything is trained.
    probe = {"train": {"train_accuracy": 0.99, "final_train_loss": 0.05}, "evaluate": {"accuracy": 0.95}}
    decide(code, probe, None, thr)
    mlflow.set_experiment(ctx.experiment())
    # Outlives a run: unchanged steps are reused next time. One per backend, since the k8s backend's
    # cached outputs also live on the work PVC, where the next step's Job reads them.
    cache = ctx.rundir.parent / f"cache-{ctx.backend.name}"
    out: dict[str, Any] = {"threshold": thr, "experiment": ctx.experiment(), "pipelines": {}}
    previous = clear_champion(mlflow)
    if previous is not None:
        ctx.console.print(
            f"this run starts without a champion: the `{ALIAS}` alias of {MODEL_NAME} (v{previous}) is cleared; "
            "its versions stay in the registry"
        )

    def show(r: StepResult) -> None:
        color = {"Succeeded": "green", "Cached": "cyan", "Failed": "red", "Skipped": "yellow"}[r.status]
        extra = r.reason or ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.metrics.items()
        )
        ctx.console.print(f"  [{color}]{r.status:9}[/] {r.name:10} {r.output_hash[:12]:12} {extra}")

    errors: list[Exception] = []
    for label, config in configs(ctx.quick).items():
        what = ", ".join(f"{k} {v}" for k, v in config.items())
        ctx.console.print(f"pipeline {label} (train: {what}; your gate, threshold {thr}):")
        pid, steps = run_pipeline(
            pipeline(ctx, mlflow, config, thr, code, errors),
            ctx.rundir / label,
            cache,
            mlflow,
            label,
            on_step=show,
            run_step=ctx.backend.run_step,
        )
        if errors:
            exc = errors[0]
            raise exc if isinstance(exc, ExerciseError) else ExerciseError(str(exc), "fix gate.py")
        out["pipelines"][label] = {
            "run_id": pid,
            "config": config,
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


# --- check ----------------------------------------------------------------------------------------


def _candidate(train_accuracy: float, accuracy: float) -> dict[str, Any]:
    return {
        "train": {"train_accuracy": train_accuracy, "final_train_loss": 0.05, "train_samples": 1347, "epochs": 12},
        "evaluate": {"accuracy": accuracy, "n_test": 450},
    }


def probe_gate(code: Any) -> list[Check]:
    """Grade the learner's should_deploy directly, one property per check, on made-up candidates."""
    from mllab.exercise import ExerciseError

    champ = {"accuracy": 0.96, "version": 3}
    cases = {
        "good": (_candidate(0.99, 0.96), None, 0.9),
        "overfit": (_candidate(1.0, 0.62), None, 0.9),  # memorised its training digits
        "train-below": (_candidate(0.86, 0.95), None, 0.9),  # training accuracy below the threshold, held-out above
        "strict": (_candidate(0.95, 0.95), None, 0.97),  # another threshold (both accuracies alike)
        "worse": (_candidate(0.92, 0.92), champ, 0.9),  # against the champion: both accuracies alike
        "better": (_candidate(0.97, 0.97), champ, 0.9),
    }
    got: dict[str, tuple[bool, str]] = {}
    try:
        for name, (cand, ch, thr) in cases.items():
            got[name] = decide(code, cand, ch, thr)
    except ExerciseError as exc:
        return [Check("gate.py: should_deploy() runs and returns (deploy, reason)", False, exc.message, exc.fix)]
    d = {name: dep for name, (dep, _) in got.items()}
    always = all(d.values())
    follows_train = d["overfit"] and not d["train-below"]
    checks = [
        Check(
            "the gate deploys a good candidate when nothing is in production",
            d["good"] and not always,
            "held-out accuracy 0.96, threshold 0.9, no champion: "
            + ("deployed" if d["good"] else f"refused ({got['good'][1]})")
            + ("; but your gate deploys every candidate (cannot tell)" if always else ""),
            "your gate has no condition yet: complete the TODOs of gate.py"
            if always
            else "a candidate above the threshold, with nothing in production, is deployed: return (True, reason)",
        ),
        Check(
            "the gate refuses a candidate below the threshold",
            not d["overfit"] and not d["strict"],
            f"held-out 0.62 (training 1.00), threshold 0.9: {'deployed' if d['overfit'] else 'refused'}; "
            f"held-out 0.95, threshold 0.97: {'deployed' if d['strict'] else 'refused'}",
            "your gate judges the training accuracy: " + HINTS[1]
            if follows_train
            else "compare with the `threshold` argument, not a number of your own (PIPELINE_ACCURACY_THRESHOLD sets it)"
            if not d["overfit"]
            else 'return (False, "why") when the held-out accuracy is below `threshold`',
        ),
        Check(
            "the gate judges the evaluate step's accuracy, not the training accuracy",
            not d["overfit"] and d["train-below"],
            f"training 1.00 / held-out 0.62: {'deployed' if d['overfit'] else 'refused'}; "
            f"training 0.86 / held-out 0.95: {'deployed' if d['train-below'] else 'refused'}",
            "your gate compares the train step's train_accuracy (candidate['train']): an overfit model that "
            "memorised its training digits passes, a good one is refused. Read candidate['evaluate']['accuracy']"
            if follows_train
            else "read the held-out accuracy, candidate['evaluate']['accuracy']: " + HINTS[1],
        ),
        Check(
            "the gate keeps a better champion in production",
            not d["worse"] and d["better"],
            f"champion at 0.96: a candidate at 0.92 is {'deployed' if d['worse'] else 'refused'}, one at 0.97 "
            f"{'deployed' if d['better'] else 'refused'}",
            "when champion is not None, refuse a candidate whose held-out accuracy is below champion['accuracy']"
            if d["worse"]
            else "a candidate better than the champion replaces it: compare with champion['accuracy']",
        ),
    ]
    return checks


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    mlflow = ctx.mlflow()
    client = mlflow.MlflowClient()
    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's gate.py, property by property
        checks += probe_gate(ctx.learner("gate", "should_deploy"))
    pipes = {label: {s["name"]: s for s in p["steps"]} for label, p in result["pipelines"].items()}
    good, weaker, overfit = pipes["good-config"], pipes["weaker-config"], pipes["overfit-config"]
    ok_steps = all(
        good[n]["status"] in ("Succeeded", "Cached") for n in ("preprocess", "train", "evaluate", "gate", "deploy")
    )
    checks.append(
        Check(
            "good pipeline ran every step",
            ok_steps,
            ", ".join(f"{n}: {s['status']}" + (f" ({s['reason']})" if s["reason"] else "") for n, s in good.items()),
            HINTS[2] if good["gate"]["status"] == "Failed" else HINTS[0],
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
    good_version = good["gate"]["metrics"].get("registered_version")
    try:
        mv = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
        acc = float(mv.tags.get("accuracy", "0"))
        checks.append(
            Check(
                "the production model is the good candidate",
                acc >= result["threshold"] and int(mv.version) == good_version,
                f"{MODEL_NAME} v{mv.version} (held-out accuracy {acc}, training accuracy "
                f"{mv.tags.get('train_accuracy')}); the good config registered v{good_version}",
                "a later candidate replaced it: " + HINTS[2]
                if good_version is not None and int(mv.version) != good_version
                else HINTS[3],
            )
        )
    except Exception as exc:
        checks.append(Check("the production model is the good candidate", False, str(exc), HINTS[3]))
    dep = good["deploy"]["metrics"]
    checks.append(
        Check(
            "the registered model was deployed and answered",
            good["deploy"]["status"] == "Succeeded" and dep.get("smoke_accuracy", 0) >= result["threshold"],
            f"smoke accuracy {dep.get('smoke_accuracy')}, version {dep.get('deployed_version')}",
            HINTS[4],
        )
    )
    train_acc = overfit["train"]["metrics"].get("train_accuracy", float("nan"))
    held_out = overfit["evaluate"]["metrics"].get("accuracy", float("nan"))
    stopped = overfit["gate"]["status"] == "Failed" and bool(overfit["gate"]["reason"])
    checks.append(
        Check(
            "the overfit candidate is stopped at the gate",
            stopped and overfit["deploy"]["status"] == "Skipped",
            f"training accuracy {train_acc:.3f}, held-out {held_out:.3f}; gate: {overfit['gate']['status']} "
            f"({overfit['gate']['reason'] or 'no reason'}); deploy: {overfit['deploy']['status']}",
            "it has a training accuracy of 1.0 and fails on new data: the gate must judge the evaluate step's "
            "accuracy against the threshold, and return (False, reason)",
        )
    )
    w_acc = weaker["evaluate"]["metrics"].get("accuracy", float("nan"))
    g_acc = good["evaluate"]["metrics"].get("accuracy", float("nan"))
    checks.append(
        Check(
            "the weaker candidate is stopped at the gate (the champion is better)",
            weaker["gate"]["status"] == "Failed"
            and bool(weaker["gate"]["reason"])
            and weaker["deploy"]["status"] == "Skipped",
            f"held-out {w_acc:.3f} against the champion's {g_acc:.3f} (threshold {result['threshold']}); gate: "
            f"{weaker['gate']['status']} ({weaker['gate']['reason'] or 'no reason'})",
            "it passes the threshold but is worse than the model in production: compare with champion['accuracy']",
        )
    )
    prun = client.get_run(result["pipelines"]["overfit-config"]["run_id"])
    checks.append(
        Check(
            "the stopped pipeline's reason is recorded in MLflow",
            prun.data.tags.get("mllab.pipeline_status") == "Failed"
            and bool(prun.data.tags.get("mllab.pipeline_reason"))
            and prun.data.tags.get("mllab.pipeline_reason") == overfit["gate"]["reason"],
            f"{prun.data.tags.get('mllab.pipeline_status')}: {prun.data.tags.get('mllab.pipeline_reason')}",
            HINTS[2],
        )
    )
    checks.append(
        Check(
            "unchanged steps are reused (cache)",
            weaker["preprocess"]["status"] == "Cached" and overfit["preprocess"]["status"] == "Cached",
            f"preprocess in the later pipelines: {weaker['preprocess']['status']}, {overfit['preprocess']['status']}",
            HINTS[0],
        )
    )
    return checks
