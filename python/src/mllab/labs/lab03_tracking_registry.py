"""Lab 3: track runs, register models, and move the champion alias only to a better model.

Classifiers arrive one after the other (a weak logistic regression, a random forest, an RBF SVM,
a stronger logistic regression...), as new models do over time. For each one, in an MLflow run
the lab starts, the learner's `registry.py` logs the params, the test metrics and the model
(`log_candidate`), registers it as a new version of one registered model (`register`), and moves
the `champion` alias to it only when it is more accurate than the current champion, else points
`challenger` at it (`promote`; MLflow 3 aliases, not the deprecated stages). The registry
outlives runs: a new `mllab run 3` competes with the champion the last one left. At the end the
champion is loaded back by alias (`models:/NAME@champion`).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

from mllab.labs.base import Check, LabContext
from mllab.learner import per_learner

MODEL_NAME = per_learner("mllab-digits-classifier")  # the learner's own in a class (mllab.learner)
METRICS = ("accuracy", "f1_macro")

HINTS = [
    "Log inside the run the lab started: mlflow.log_params(...), mlflow.log_metrics({'accuracy': ..., "
    "'f1_macro': ...}) on the test set, and mlflow.sklearn.log_model(...), whose model_uri you return.",
    "Register with mlflow.register_model(model_uri, NAME): each call creates the next version.",
    "Compare before you move: the new version's accuracy (client.get_model_version(NAME, v).run_id -> "
    "client.get_run(...).data.metrics['accuracy']) against the champion's (get_model_version_by_alias).",
    "Higher accuracy is better; only a strictly better model takes 'champion', any other becomes 'challenger'.",
    "mlflow.search_runs(experiment_names=[...], order_by=['metrics.accuracy DESC']) compares runs in one call.",
    "Load by alias: mlflow.pyfunc.load_model(f'models:/{NAME}@champion').",
]


def _candidates(quick: bool) -> list[tuple[str, Any, dict[str, Any]]]:
    """The models in the order they arrive: the first is weak, later ones beat it, the last one does
    not beat the best (so that moving the alias unconditionally ends on the wrong champion)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def logreg(c: float) -> tuple[str, Any, dict[str, Any]]:
        return (
            f"logreg-C{c}",
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)),
            {"model": "logistic_regression", "C": c},
        )

    forest = (
        "random-forest",
        RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=1),
        {"model": "random_forest", "n_estimators": 60},
    )
    svc = ("svc-rbf", make_pipeline(StandardScaler(), SVC(C=5.0, gamma="scale")), {"model": "svc", "C": 5.0})
    if quick:
        return [logreg(0.001), forest, svc, logreg(0.1)]
    return [logreg(0.001), logreg(0.01), forest, svc, logreg(0.1), logreg(1.0)]


def _alias(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points at, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def _fmt(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.4f}"


def _logged_accuracy(client: Any, name: str, version: str | None) -> float | None:
    if version is None:
        return None
    try:
        run_id = client.get_model_version(name, version).run_id
        return client.get_run(run_id).data.metrics.get("accuracy") if run_id else None
    except Exception:
        return None


def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()  # first: an unreachable MLflow fails here, before anything is written
    from rich.table import Table
    from sklearn.metrics import accuracy_score

    from mllab.data import load_digits_split
    from mllab.exercise import call

    code = ctx.learner("registry", "log_candidate", "register", "promote")
    s = load_digits_split()
    mlflow.set_experiment(ctx.experiment())
    client = mlflow.MlflowClient()
    steps: list[dict[str, Any]] = []
    for name, est, params in _candidates(ctx.quick):
        with ctx.console.status(f"{name}: training, logging, registering"):
            est.fit(s.X_train, s.y_train)
            accuracy = float(accuracy_score(s.y_test, est.predict(s.X_test)))  # the truth the checks grade with
            before = _alias(client, MODEL_NAME, "champion")
            step: dict[str, Any] = {
                "run": name,
                "params": {k: str(v) for k, v in params.items()},
                "accuracy": accuracy,
                "champion_before": before,
                "champion_before_accuracy": _logged_accuracy(client, MODEL_NAME, before),
                "model_uri": None,
                "version": None,
            }
            with mlflow.start_run(run_name=name) as r:
                step["run_id"] = r.info.run_id
                uri = call(code, "log_candidate", est, {**params, "seed": ctx.seed}, s.X_test, s.y_test)
            step["model_uri"] = str(uri) if uri else None
            if uri:
                version = call(code, "register", str(uri), MODEL_NAME)
                if version is not None:
                    step["version"] = str(version)
                    step["moved"] = call(code, "promote", client, MODEL_NAME, str(version))
        step["champion_after"] = _alias(client, MODEL_NAME, "champion")
        step["challenger_after"] = _alias(client, MODEL_NAME, "challenger")
        steps.append(step)
        if step["version"] is None:
            what = "no model URI from log_candidate()" if not uri else "no version from register()"
            ctx.console.print(f"  {name}: accuracy {accuracy:.4f}; {what}: nothing registered")
        else:
            before_acc = step["champion_before_accuracy"]
            was = f"v{before}" + (f", {before_acc:.4f}" if before_acc is not None else "") if before else ""
            if step["champion_after"] == step["version"] != before:
                what = f"[green]champion[/] (was {was})" if before else "[green]champion[/] (the first)"
            else:
                after = step["champion_after"]
                what = f"champion stays {was}" if before and after == before else f"champion {after and 'v' + after}"
                what += f", challenger v{step['challenger_after']}" if step["challenger_after"] else ", no challenger"
            ctx.console.print(f"  {name}: accuracy {accuracy:.4f} -> {MODEL_NAME} v{step['version']}; {what}")
    # Compare: one query over this session's runs, best first.
    run_ids = [st["run_id"] for st in steps]
    runs = mlflow.search_runs(experiment_names=[ctx.experiment()], filter_string="attributes.status = 'FINISHED'")
    runs = runs[runs["run_id"].isin(run_ids)]
    if "metrics.accuracy" in runs.columns:
        runs = runs.sort_values("metrics.accuracy", ascending=False, na_position="last")
    table = Table("run", "accuracy", "f1_macro", title="runs compared (best first)")
    for _, row in runs.iterrows():
        cells = [row.get(f"metrics.{m}") for m in METRICS]
        table.add_row(
            row["tags.mlflow.runName"], *(f"{v:.4f}" if v == v and v is not None else "not logged" for v in cells)
        )
    ctx.console.print(table)
    champion = _alias(client, MODEL_NAME, "champion")
    loaded = None
    if champion is not None:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
        loaded = float(accuracy_score(s.y_test, model.predict(s.X_test)))
        ctx.console.print(f"loaded models:/{MODEL_NAME}@champion (v{champion}): accuracy {loaded:.4f}")
    else:
        ctx.console.print(f"[yellow]{MODEL_NAME} has no champion alias[/]")
    return {
        "experiment": ctx.experiment(),
        "model_name": MODEL_NAME,
        "run_ids": run_ids,
        "steps": steps,
        "champion": champion,
        "champion_loaded_accuracy": loaded,
    }


# --- the learner's promote(), on a scratch registered model -----------------------------------
# Each case: the champion's (accuracy, f1_macro), the new version's, and whether champion must move.
# f1_macro disagrees with accuracy in two of them, so a promote() comparing the wrong metric shows.
PROMOTE_CASES = {
    "better accuracy, worse f1_macro": ((0.80, 0.80), (0.85, 0.75), True),
    "worse accuracy, better f1_macro": ((0.85, 0.75), (0.80, 0.90), False),
    "better on both": ((0.80, 0.80), (0.90, 0.92), True),
    "worse on both": ((0.90, 0.92), (0.70, 0.70), False),
}


def _diagnose(moved: dict[str, bool]) -> str:
    """What a promote() that decided `moved` (case -> champion moved) compares."""
    a, b, c, d = (moved[k] for k in PROMOTE_CASES)
    if all((a, b, c, d)):
        return "promote() moves champion to every new version, better or not: compare first"
    if not any((a, b, c, d)):
        return "promote() never moves an existing champion, even to a more accurate model"
    if (a, b, c, d) == (False, True, False, True):
        return "promote()'s comparison is reversed: a higher accuracy is better (move when new > champion)"
    if (a, b, c, d) == (False, True, True, False):
        return "promote() follows f1_macro, not the champion metric: compare metrics['accuracy']"
    return "promote() must move champion exactly when the new accuracy is higher than the champion's"


@contextlib.contextmanager
def _quiet_urls() -> Iterator[None]:
    """No "View run ... at: URL" line per scratch run (MLflow prints one when a run ends)."""
    key = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    saved = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def probe_promote(code: Any, mlflow: Any, experiment: str) -> list[Check]:
    """Call the learner's promote() on a scratch registered model (deleted afterwards): a first version,
    then one new version against a champion the probe sets, per case."""
    from mllab.exercise import ExerciseError, call

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    name = f"mllab-probe-promote-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name, description="mllab check 3: a scratch model for promote(); deleted after")
    run_ids: list[str] = []

    def version(acc: float, f1: float) -> str:
        r = client.create_run(exp_id, run_name="probe", tags={"mllab.probe": "promote"})
        run_ids.append(r.info.run_id)
        client.log_metric(r.info.run_id, "accuracy", acc)
        client.log_metric(r.info.run_id, "f1_macro", f1)
        with _quiet_urls():
            client.set_terminated(r.info.run_id)
        return str(client.create_model_version(name, f"runs:/{r.info.run_id}/model", run_id=r.info.run_id).version)

    checks: list[Check] = []
    try:
        first = version(0.5, 0.5)
        try:
            call(code, "promote", client, name, first)
            moved: dict[str, bool] = {}
            challenger_ok: dict[str, bool] = {}
            first_ok = _alias(client, name, "champion") == first
            for case, (champ, new, _) in PROMOTE_CASES.items():
                v_champ, v_new = version(*champ), version(*new)
                client.set_registered_model_alias(name, "champion", v_champ)
                with contextlib.suppress(Exception):  # none yet
                    client.delete_registered_model_alias(name, "challenger")
                call(code, "promote", client, name, v_new)
                after = _alias(client, name, "champion")
                moved[case] = after == v_new
                challenger_ok[case] = _alias(client, name, "challenger") == v_new
        except ExerciseError as exc:
            return [Check("registry.py's promote() runs", False, exc.message, exc.fix)]
    finally:
        for rid in run_ids:
            with contextlib.suppress(Exception):
                client.delete_run(rid)
        with contextlib.suppress(Exception):
            client.delete_registered_model(name)
    diagnosis = _diagnose(moved)
    checks.append(
        Check(
            "promote() makes the first version champion",
            first_ok,
            "a registered model without a champion: promote(v1) "
            + ("set champion to v1" if first_ok else "left it without one"),
            "get_model_version_by_alias(name, 'champion') raises MlflowException when there is no champion: "
            "catch it, and give the first version the alias",
        )
    )
    should = [c for c, (_, _, m) in PROMOTE_CASES.items() if m]
    missed = [c for c in should if not moved[c]]
    checks.append(
        Check(
            "promote() moves champion to a more accurate model",
            not missed,
            "champion stayed although the new version is more accurate: " + ", ".join(missed)
            if missed
            else f"moved in both cases ({', '.join(should)})",
            diagnosis,
        )
    )
    keep = [c for c, (_, _, m) in PROMOTE_CASES.items() if not m]
    wrongly = [c for c in keep if moved[c]]
    checks.append(
        Check(
            "promote() keeps the champion when the new model is less accurate",
            not wrongly,
            "champion moved to a less accurate version: " + ", ".join(wrongly)
            if wrongly
            else f"kept in both cases ({', '.join(keep)})",
            diagnosis,
        )
    )
    stayed = [c for c in PROMOTE_CASES if not moved[c]]  # graded where promote() itself kept the champion
    no_challenger = [c for c in stayed if not challenger_ok[c]]
    checks.append(
        Check(
            "promote() makes a model that is not promoted the challenger",
            bool(stayed) and not no_challenger,
            "promote() moved champion in every case: no version was left to become challenger"
            if not stayed
            else "no challenger alias on the new version: " + ", ".join(no_challenger)
            if no_challenger
            else f"the new version became challenger ({', '.join(stayed)})",
            diagnosis
            if not stayed
            else "when the new version does not beat the champion: client.set_registered_model_alias(name, "
            "'challenger', version)",
        )
    )
    return checks


# --- check ------------------------------------------------------------------------------------
def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    mlflow = ctx.mlflow()
    from sklearn.metrics import accuracy_score

    from mllab.data import load_digits_split

    client = mlflow.MlflowClient()
    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's promote(), case by case
        checks += probe_promote(ctx.learner("registry", "promote"), mlflow, ctx.experiment("-probe"))
    steps = result["steps"]
    runs = {}
    for st in steps:
        with contextlib.suppress(Exception):  # a run deleted since: reported below
            runs[st["run"]] = client.get_run(st["run_id"])
    missing_params = [
        st["run"]
        for st in steps
        if st["run"] not in runs
        or runs[st["run"]].info.status != "FINISHED"
        or not set(st["params"]) <= set(runs[st["run"]].data.params)
    ]
    checks.append(
        Check(
            "one finished MLflow run per candidate, with its params",
            not missing_params and len(runs) == len(steps) >= 3,
            f"{len(runs)} of {len(steps)} runs found in {result['experiment']}"
            + (f"; without their params or not finished: {', '.join(missing_params)}" if missing_params else ""),
            "log the candidate's params in the run the lab started: mlflow.log_params(params)",
        )
    )
    no_metrics = [n for n, r in runs.items() if not set(METRICS) <= set(r.data.metrics)]
    checks.append(
        Check(
            "every run logged accuracy and f1_macro",
            bool(runs) and not no_metrics,
            f"missing in {', '.join(no_metrics)}" if no_metrics else "both metrics in every run",
            "measure the model on the test set and log both: mlflow.log_metrics({'accuracy': "
            "accuracy_score(y_test, pred), 'f1_macro': f1_score(y_test, pred, average='macro')})",
        )
    )
    measured = {st["run"]: st["accuracy"] for st in steps}
    logged = {n: r.data.metrics["accuracy"] for n, r in runs.items() if "accuracy" in r.data.metrics}
    off = {n: (v, measured[n]) for n, v in logged.items() if abs(v - measured[n]) > 1e-9}
    checks.append(
        Check(
            "the logged accuracy is the model's test accuracy",
            bool(logged) and not off,
            "no run logged accuracy"
            if not logged
            else "; ".join(f"{n}: logged {a:.4f}, test accuracy {b:.4f}" for n, (a, b) in off.items())
            if off
            else f"{len(logged)} runs: logged = measured on the test set",
            "log accuracy_score(y_test, model.predict(X_test)): the test set, not the training set"
            if logged
            else "log the metrics: mlflow.log_metrics({'accuracy': ..., 'f1_macro': ...})",
        )
    )
    no_model = []
    for st in steps:
        ok = False
        if st["model_uri"]:
            try:
                info = mlflow.models.get_model_info(st["model_uri"])
                ok = info.run_id == st["run_id"]
            except Exception:
                ok = False
        if not ok:
            no_model.append(st["run"])
    checks.append(
        Check(
            "every run logged its model",
            not no_model,
            f"no model logged by the run (or none returned): {', '.join(no_model)}"
            if no_model
            else "every run's model is in MLflow",
            "log the fitted model in the run and return its URI: info = mlflow.sklearn.log_model(model, "
            "name='model', ...); return info.model_uri",
        )
    )
    registered = [st for st in steps if st["version"] is not None]
    bad_versions = []
    for st in registered:
        try:
            mv = client.get_model_version(result["model_name"], st["version"])
            if mv.run_id != st["run_id"]:
                bad_versions.append(f"{st['run']} (v{st['version']} is run {mv.run_id})")
        except Exception:
            bad_versions.append(f"{st['run']} (v{st['version']} not found)")
    unregistered = [st["run"] for st in steps if st["version"] is None]
    checks.append(
        Check(
            f"every logged model is a version of {result['model_name']}",
            bool(steps) and not unregistered and not bad_versions,
            ("not registered: " + ", ".join(unregistered) if unregistered else "")
            + ("; " if unregistered and bad_versions else "")
            + ("wrong version: " + ", ".join(bad_versions) if bad_versions else "")
            or f"{len(registered)} versions, one per run",
            "register(model_uri, name): return mlflow.register_model(model_uri, name).version",
        )
    )
    if not registered:
        return checks
    # The registry's history during the run: did the champion move exactly when it should have?
    acc_of = {st["version"]: st["accuracy"] for st in registered}
    wrong_moves, missed = [], []
    for st in registered:
        before, after = st["champion_before"], st["champion_after"]
        before_acc = acc_of.get(before, st["champion_before_accuracy"]) if before else None
        better = before is None or before_acc is None or st["accuracy"] > before_acc
        if after != before and not better:
            wrong_moves.append(f"v{st['version']} {st['run']} ({st['accuracy']:.4f} < champion's {before_acc:.4f})")
        if better and after != st["version"]:
            missed.append(f"v{st['version']} {st['run']} ({st['accuracy']:.4f}, champion stayed v{after})")
    checks.append(
        Check(
            "the champion alias moved only to more accurate models",
            not wrong_moves,
            "moved to a less accurate model: " + "; ".join(wrong_moves)
            if wrong_moves
            else "every move was to a more accurate model",
            "promote() must compare before it moves: the new version's accuracy against the current champion's, "
            "higher is better",
        )
    )
    checks.append(
        Check(
            "a more accurate model always took the champion alias",
            not missed,
            "not promoted: " + "; ".join(missed) if missed else "every more accurate model became champion",
            "promote() must move champion when the new accuracy is higher (or there is no champion yet)",
        )
    )
    try:
        champ = client.get_model_version_by_alias(result["model_name"], "champion")
        chall = client.get_model_version_by_alias(result["model_name"], "challenger")
    except Exception as exc:
        checks.append(
            Check(
                "aliases champion and challenger set",
                False,
                str(exc).splitlines()[0],
                "promote(): champion on a better model, challenger on one that is not",
            )
        )
        return checks
    checks.append(
        Check(
            "aliases champion and challenger on different versions",
            champ.version != chall.version,
            f"champion v{champ.version}, challenger v{chall.version}",
            "a model that does not beat the champion becomes challenger; the champion keeps its alias",
        )
    )
    best = max(acc_of.values())
    champ_acc = _logged_accuracy(client, result["model_name"], str(champ.version))
    checks.append(
        Check(
            "champion is the most accurate model",
            champ_acc is not None and champ_acc >= best - 1e-12,
            f"champion v{champ.version} accuracy {_fmt(champ_acc)}, best of this run {best:.4f}",
            "the champion must end on the most accurate version: promote() moves it only to a more accurate one",
        )
    )
    chall_acc = _logged_accuracy(client, result["model_name"], str(chall.version))
    checks.append(
        Check(
            "challenger is a runner-up",
            chall_acc is not None and champ_acc is not None and chall_acc <= champ_acc,
            f"challenger v{chall.version} accuracy {_fmt(chall_acc)}, champion {_fmt(champ_acc)}",
            "the challenger is a version that did not beat the champion",
        )
    )
    stages = {
        st["version"]: getattr(client.get_model_version(result["model_name"], st["version"]), "current_stage", None)
        for st in registered
    }
    staged = {v: s for v, s in stages.items() if s not in (None, "None", "")}
    checks.append(
        Check(
            "no deprecated stages used",
            not staged,
            f"current_stage: {staged}" if staged else "no version has a stage",
            "use aliases (set_registered_model_alias), not transition_model_version_stage",
        )
    )
    s = load_digits_split()
    model = mlflow.pyfunc.load_model(f"models:/{result['model_name']}@champion")
    acc = float(accuracy_score(s.y_test, model.predict(s.X_test)))
    checks.append(
        Check(
            "model loaded by alias reproduces the champion's accuracy",
            abs(acc - (champ_acc or -1)) < 1e-9,
            f"loaded {acc:.4f}, logged {_fmt(champ_acc)}",
            "log the fitted model and its test accuracy in the same run",
        )
    )
    return checks
