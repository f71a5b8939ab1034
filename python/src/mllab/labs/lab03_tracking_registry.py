"""Lab 3: compare runs, register the best model, move aliases, load by alias.

Several scikit-learn classifiers are trained on the digits, one MLflow run each (params, metrics,
model). We compare them with `search_runs`, register the two best as versions of one registered
model, point the `champion` and `challenger` aliases at them (MLflow 3: aliases, not the deprecated
stages) and load the champion back with `models:/NAME@champion`.
"""

from __future__ import annotations

from typing import Any

from mllab.labs.base import Check, LabContext

MODEL_NAME = "mllab-digits-classifier"
# MLflow 3 saves scikit-learn models with skops, which refuses types it cannot verify; we created
# these trees ourselves, so we trust exactly this one type (never "everything it reports").
TRUSTED = ["sklearn.tree._tree.Tree"]

HINTS = [
    "mlflow.search_runs(experiment_names=[...], order_by=['metrics.accuracy DESC']) compares runs in one call.",
    "Register with mlflow.register_model('runs:/<run_id>/model', NAME); each call creates a new version.",
    "Aliases replace stages: MlflowClient().set_registered_model_alias(NAME, 'champion', version).",
    "Load by alias: mlflow.pyfunc.load_model(f'models:/{NAME}@champion').",
]


def _candidates(quick: bool) -> list[tuple[str, Any, dict[str, Any]]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    out: list[tuple[str, Any, dict[str, Any]]] = []
    for c in (0.001, 0.1) if quick else (0.001, 0.01, 0.1, 1.0):
        out.append(
            (
                f"logreg-C{c}",
                make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)),
                {"model": "logistic_regression", "C": c},
            )
        )
    out.append(
        (
            "random-forest",
            RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=1),
            {"model": "random_forest", "n_estimators": 60},
        )
    )
    out.append(("svc-rbf", make_pipeline(StandardScaler(), SVC(C=5.0, gamma="scale")), {"model": "svc", "C": 5.0}))
    return out


def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()
    from rich.progress import Progress
    from rich.table import Table
    from sklearn.metrics import accuracy_score, f1_score

    from mllab.data import load_digits_split

    s = load_digits_split()
    mlflow.set_experiment(ctx.experiment())
    run_ids = []
    model_uris: dict[str, str] = {}
    candidates = _candidates(ctx.quick)
    with Progress(console=ctx.console, transient=True) as bar:
        task = bar.add_task("training candidates", total=len(candidates))
        for name, est, params in candidates:
            with mlflow.start_run(run_name=name) as r:
                est.fit(s.X_train, s.y_train)
                pred = est.predict(s.X_test)
                mlflow.log_params({**params, "seed": ctx.seed})
                mlflow.log_metrics(
                    {"accuracy": accuracy_score(s.y_test, pred), "f1_macro": f1_score(s.y_test, pred, average="macro")}
                )
                info = mlflow.sklearn.log_model(
                    est,
                    name="model",
                    input_example=s.X_test[:2],
                    pip_requirements=["scikit-learn==1.9.1"],
                    skops_trusted_types=TRUSTED,
                )
                run_ids.append(r.info.run_id)
                model_uris[r.info.run_id] = info.model_uri  # MLflow 3: models:/m-<id>, a LoggedModel
            bar.advance(task)
    # Compare: one query over the runs of this lab session, best first.
    runs = mlflow.search_runs(
        experiment_names=[ctx.experiment()],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["metrics.accuracy DESC"],
    )
    runs = runs[runs["run_id"].isin(run_ids)]
    table = Table("run", "accuracy", "f1_macro", title="runs compared (best first)")
    for _, row in runs.iterrows():
        table.add_row(row["tags.mlflow.runName"], f"{row['metrics.accuracy']:.4f}", f"{row['metrics.f1_macro']:.4f}")
    ctx.console.print(table)
    best, second = runs.iloc[0], runs.iloc[1]
    client = mlflow.MlflowClient()
    versions = {}
    for alias, row in (("champion", best), ("challenger", second)):
        mv = mlflow.register_model(model_uris[row["run_id"]], MODEL_NAME)
        client.set_registered_model_alias(MODEL_NAME, alias, mv.version)
        versions[alias] = {"version": mv.version, "run_id": row["run_id"], "accuracy": float(row["metrics.accuracy"])}
        ctx.console.print(
            f"{alias}: {MODEL_NAME} v{mv.version} ({row['tags.mlflow.runName']}, "
            f"accuracy {row['metrics.accuracy']:.4f})"
        )
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    acc = float(accuracy_score(s.y_test, model.predict(s.X_test)))
    ctx.console.print(f"loaded models:/{MODEL_NAME}@champion: accuracy {acc:.4f}")
    return {
        "experiment": ctx.experiment(),
        "model_name": MODEL_NAME,
        "run_ids": run_ids,
        "aliases": versions,
        "champion_loaded_accuracy": acc,
    }


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    mlflow = ctx.mlflow()
    from sklearn.metrics import accuracy_score

    from mllab.data import load_digits_split

    client = mlflow.MlflowClient()
    checks: list[Check] = []
    accs = {}
    for rid in result["run_ids"]:
        r = client.get_run(rid)
        if r.info.status == "FINISHED" and "accuracy" in r.data.metrics:
            accs[rid] = r.data.metrics["accuracy"]
    checks.append(
        Check(
            "several runs with an accuracy metric",
            len(accs) >= 3,
            f"{len(accs)} finished runs with 'accuracy' in {result['experiment']}",
            "log one run per candidate with mlflow.log_metric('accuracy', ...)",
        )
    )
    try:
        champ = client.get_model_version_by_alias(result["model_name"], "champion")
        chall = client.get_model_version_by_alias(result["model_name"], "challenger")
    except Exception as exc:
        checks.append(Check("aliases champion and challenger set", False, str(exc), HINTS[2]))
        return checks
    checks.append(
        Check(
            "aliases champion and challenger on different versions",
            champ.version != chall.version,
            f"champion v{champ.version}, challenger v{chall.version}",
            HINTS[2],
        )
    )
    best = max(accs.values()) if accs else None
    champ_acc = accs.get(champ.run_id)
    checks.append(
        Check(
            "champion is the best run",
            champ_acc is not None and champ_acc == best,
            f"champion run accuracy {champ_acc}, best {best}",
            "register the run ranked first by search_runs(order_by=['metrics.accuracy DESC'])",
        )
    )
    chall_acc = accs.get(chall.run_id)
    checks.append(
        Check(
            "challenger is a runner-up",
            chall_acc is not None and chall_acc <= (best or 0),
            f"challenger run accuracy {chall_acc}",
            HINTS[1],
        )
    )
    stage = getattr(champ, "current_stage", None)
    checks.append(
        Check(
            "no deprecated stages used",
            stage in (None, "None", ""),
            f"current_stage={stage!r}",
            "use aliases, not transition_model_version_stage",
        )
    )
    s = load_digits_split()
    model = mlflow.pyfunc.load_model(f"models:/{result['model_name']}@champion")
    acc = float(accuracy_score(s.y_test, model.predict(s.X_test)))
    checks.append(
        Check(
            "model loaded by alias reproduces the champion's accuracy",
            abs(acc - (champ_acc or -1)) < 1e-9,
            f"loaded {acc:.4f}, logged {champ_acc}",
            HINTS[3],
        )
    )
    return checks
