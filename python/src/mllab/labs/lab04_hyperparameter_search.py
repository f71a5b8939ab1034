"""Lab 4: a Katib-style hyperparameter search on Optuna's samplers, every trial an MLflow run.

The learner's `tuning.py` holds the search space (`search_space(trial)`, drawn through an Optuna
trial), the objective (`objective(params, data, seed)`: train with the parameters, return the
validation accuracy), its DIRECTION and the ALGORITHM (Katib's algorithmName: tpe or random). The
kit runs the experiment (mllab.search): Optuna's ask/tell in batches, `parallelTrialCount` trials
at once in worker processes (on the cluster: one Indexed Job per batch), a goal, `maxTrialCount`
and `maxFailedTrialCount`. Each trial trains a HistGradientBoostingClassifier on the digits and
logs a child run under the experiment's run; the test split stays out of the search, and the check
re-measures the best parameters on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mllab.labs.base import Check, LabContext
from mllab.search import ALGORITHMS, Experiment, Objective, contains

GOAL = 0.99  # validation accuracy that ends the search early (Katib's objective.goal)
PARALLEL = 2  # parallelTrialCount
MAX_FAILED = 3  # maxFailedTrialCount
STARTUP = 4  # TPE's random trials before its model (Optuna's n_startup_trials)
MIN_TEST_ACCURACY = 0.90
# Two fixed points of the lab's space for the probes: one clearly weaker model, one strong.
WEAK = {"max_iter": 10, "max_depth": 2, "learning_rate": 0.01, "l2_regularization": 1.0}
STRONG = {"max_iter": 60, "max_depth": 6, "learning_rate": 0.2, "l2_regularization": 0.0}

HINTS = [
    "A learning rate matters by orders of magnitude: search it on a log scale "
    "(trial.suggest_float('learning_rate', 0.01, 0.5, log=True)), so each decade gets the same share of trials.",
    "Score each trial on data it did not train on (data.X_val, data.y_val): nearly every model is perfect on "
    "its own training data, so a training score cannot tell good parameters from bad ones.",
    "DIRECTION says which way is better for the value objective() returns: an accuracy is maximized "
    "(Optuna's create_study minimizes unless told otherwise).",
    "Every trial is its own MLflow run, grouped under the experiment's run (mlflow.parentRunId); a failed trial "
    "is counted against maxFailedTrialCount, not a crash.",
]


@dataclass(frozen=True)
class SearchData:
    """What a trial sees: the training split, and a validation split cut from it. The test split of
    mllab.data stays out of the search (the check measures the best parameters on it)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray


def search_data() -> SearchData:
    from sklearn.model_selection import train_test_split

    from mllab.data import SPLIT_SEED, load_digits_split

    s = load_digits_split()
    X_tr, X_val, y_tr, y_val = train_test_split(
        s.X_train, s.y_train, test_size=0.25, random_state=SPLIT_SEED, stratify=s.y_train
    )
    return SearchData(X_tr, y_tr, X_val, y_val)


def reference_model(params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)


def digits_trial(params: dict[str, Any], trial_name: str, experiment: str, parent_run_id: str, seed: int) -> float:
    """One trial (a worker process, or a pod of the k8s trial job): the learner's objective on the
    parameters, logged as a child MLflow run. The run is logged once the model is trained, so a
    trial stopped midway (the experiment ended) leaves no half-written run."""
    import mlflow

    from mllab.exercise import ExerciseError, call, from_env

    code = from_env("tuning", required=("objective",), default_lab=4)
    value = call(code, "objective", dict(params), search_data(), seed)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ExerciseError(f"tuning.py: objective() returned {value!r}, not a number", "return the accuracy") from None
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=trial_name, tags={"mlflow.parentRunId": parent_run_id, "mllab.trial": trial_name}):
        mlflow.log_params(params)
        mlflow.log_metric("accuracy", value)
    return value


def settings(code: Any) -> tuple[str, str]:
    """The learner's ALGORITHM and DIRECTION, checked."""
    from mllab.exercise import ExerciseError

    algorithm = getattr(code, "ALGORITHM", "tpe")
    direction = getattr(code, "DIRECTION", "maximize")
    if algorithm not in ALGORITHMS:
        raise ExerciseError(
            f"tuning.py: ALGORITHM = {algorithm!r} is not one of {', '.join(repr(a) for a in ALGORITHMS)}",
            'set ALGORITHM = "tpe" (or "random") in tuning.py',
        )
    if direction not in ("maximize", "minimize"):
        raise ExerciseError(
            f'tuning.py: DIRECTION = {direction!r} is not "maximize" or "minimize"',
            "set DIRECTION to the way objective()'s value gets better",
        )
    return algorithm, direction


def _space(code: Any, trial: Any) -> dict[str, Any]:
    from mllab.exercise import ExerciseError, call

    params = call(code, "search_space", trial)
    if not isinstance(params, dict) or not params:
        raise ExerciseError(
            f"tuning.py: search_space() returned {params!r}, not a dict of parameters",
            "return {name: trial.suggest_...(name, ...), ...}",
        )
    return params


def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()
    from rich.progress import Progress
    from rich.table import Column, Table

    code = ctx.learner("tuning", "search_space", "objective")
    algorithm, direction = settings(code)
    max_trials = 6 if ctx.quick else 16
    exp = Experiment(
        lambda trial: _space(code, trial),
        Objective("accuracy", direction, goal=GOAL),
        algorithm=algorithm,
        max_trials=max_trials,
        parallel=PARALLEL,
        max_failed=MAX_FAILED,
        seed=ctx.seed,
        startup_trials=STARTUP,
    )
    mlflow.set_experiment(ctx.experiment())
    with mlflow.start_run(run_name=f"{algorithm}-search") as parent:
        mlflow.log_params(
            {
                "algorithm": algorithm,
                "objective_type": direction,
                "maxTrialCount": max_trials,
                "parallelTrialCount": PARALLEL,
                "maxFailedTrialCount": MAX_FAILED,
                "goal": GOAL,
                **({"n_startup_trials": STARTUP} if algorithm == "tpe" else {}),
            }
        )
        with Progress(console=ctx.console) as bar:
            task = bar.add_task("trials", total=max_trials)

            def done(t: Any) -> None:
                bar.update(task, advance=1, description=f"{t.name}: {t.status} {t.value or 0:.4f}")

            exp.run(
                ctx.backend.executor,
                digits_trial,
                on_done=done,
                experiment=ctx.experiment(),
                parent_run_id=parent.info.run_id,
                seed=ctx.seed,
            )
        best = exp.best
        mlflow.set_tags(
            {"mllab.status": exp.status, "mllab.reason": exp.reason, "mllab.best_trial": best.name if best else ""}
        )
        if best:
            mlflow.log_metric("best_accuracy", best.value)  # type: ignore[arg-type]
            mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
    names = list(exp.trials[0].params) if exp.trials else []
    table = Table(Column("trial", no_wrap=True), "status", "accuracy", *names, title=f"trials ({algorithm})")
    for t in exp.trials:
        table.add_row(
            t.name,
            t.status,
            f"{t.value:.4f}" if t.value is not None else t.error[:30],
            *[f"{v:.4g}" if isinstance(v, float) else str(v) for v in (t.params.get(n, "") for n in names)],
        )
    ctx.console.print(table)
    ctx.console.print(
        f"experiment {exp.status}: {exp.reason}; best {best.name if best else None} "
        f"accuracy {best.value if best else None}"
    )
    return {
        "experiment": ctx.experiment(),
        "parent_run_id": parent.info.run_id,
        "algorithm": algorithm,
        "direction": direction,
        "goal": GOAL,
        "status": exp.status,
        "reason": exp.reason,
        "best": best.__dict__ if best else None,
        "trials": [t.__dict__ for t in exp.trials],
        "trial_jobs": exp.jobs,
    }


def probe_objective(code: Any, seed: int) -> list[Check]:
    """Grade the learner's objective and DIRECTION directly: on a weak and a strong point of the
    lab's space, objective() must return the validation accuracy, and DIRECTION must rank the
    strong model above the weak one."""
    from mllab.exercise import ExerciseError, call

    data = search_data()
    ref = {}
    for label, p in (("weak", WEAK), ("strong", STRONG)):
        m = reference_model(p, seed).fit(data.X_train, data.y_train)
        ref[label] = (float(m.score(data.X_train, data.y_train)), float(m.score(data.X_val, data.y_val)))
    got: dict[str, Any] = {}
    try:
        _, direction = settings(code)
        for label, p in (("weak", WEAK), ("strong", STRONG)):
            got[label] = call(code, "objective", dict(p), data, seed)
    except ExerciseError as exc:
        return [Check("tuning.py's objective runs", False, exc.message, exc.fix)]
    bad = {k: v for k, v in got.items() if isinstance(v, bool) or not isinstance(v, int | float | np.number)}
    if bad:
        return [
            Check(
                "objective() returns the validation accuracy",
                False,
                f"objective() returned {bad}, not a number",
                "return accuracy_score(data.y_val, model.predict(data.X_val))",
            )
        ]
    v = {k: float(x) for k, x in got.items()}

    def near(a: float, b: float) -> bool:
        return math.isfinite(a) and abs(a - b) <= 1e-3

    ok = all(near(v[k], ref[k][1]) for k in v)
    said = f"objective() returned {v['strong']:.4f} (strong parameters) and {v['weak']:.4f} (weak)"
    val = f"their validation accuracies are {ref['strong'][1]:.4f} and {ref['weak'][1]:.4f}"
    if ok:
        reason, hint = f"{said}: the validation accuracies", ""
    elif all(near(v[k], ref[k][0]) for k in v):
        reason = f"{said}: the accuracy on the training data ({val})"
        hint = (
            "objective() scores the data the model trained on, where nearly every trial is perfect: the search "
            "cannot tell good parameters from bad ones. Return the accuracy on the validation split, "
            "accuracy_score(data.y_val, model.predict(data.X_val))"
        )
    elif any(not 0 <= x <= 1 for x in v.values()):
        reason = f"{said}: not an accuracy (a loss?); {val}"
        hint = (
            "return the validation accuracy, accuracy_score(data.y_val, model.predict(data.X_val)): "
            f"the lab's goal ({GOAL}) is an accuracy"
        )
    elif all(near(v[k], 1 - ref[k][1]) for k in v):
        reason = f"{said}: the validation error rate (1 - accuracy)"
        hint = f"return the validation accuracy itself: the lab's goal ({GOAL}) is an accuracy"
    else:
        reason = f"{said}; {val}"
        hint = (
            "train HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params) on "
            "data.X_train/y_train and return its accuracy on data.X_val/y_val"
        )
    checks = [Check("objective() returns the validation accuracy", ok, reason, hint)]
    obj = Objective("accuracy", direction)
    prefers_strong = v["strong"] != v["weak"] and obj.better(v["strong"], v["weak"])
    checks.append(
        Check(
            "DIRECTION makes the search prefer the better model",
            prefers_strong,
            f"DIRECTION {direction!r}: the search ranks the strong parameters (objective {v['strong']:.4f}, "
            f"validation accuracy {ref['strong'][1]:.4f}) "
            + ("above" if prefers_strong else "not above")
            + f" the weak ones ({v['weak']:.4f}, validation accuracy {ref['weak'][1]:.4f})",
            (
                "objective() gives a weak and a strong model the same value: it must measure the trained model"
                if v["strong"] == v["weak"]
                else f"the search optimizes the wrong direction: with {direction!r} it hunts for the worst model. "
                + (
                    "objective() returns an accuracy, which is better higher: "
                    if ok
                    else "DIRECTION is the way objective()'s value gets better; for the lab's accuracy: "
                )
                + 'DIRECTION = "maximize" (Optuna\'s create_study minimizes unless told otherwise)'
            ),
        )
    )
    return checks


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.4f}"


def _lowest_decade_share(low: float, high: float, log: bool) -> float:
    """The share of draws in [low, 10*low] (the space's lowest decade)."""
    top = min(10 * low, high)
    if high <= low:
        return 1.0
    if log:
        return math.log(top / low) / math.log(high / low)
    return (top - low) / (high - low)


def check_log_scale(trials: list[dict[str, Any]]) -> Check:
    """The learning rate's distribution, as Optuna recorded it for the run's trials."""
    from optuna.distributions import FloatDistribution, json_to_distribution

    name = "the learning rate is searched on a log scale"
    dists = [t.get("distributions", {}).get("learning_rate") for t in trials]
    if not trials or not all(dists):
        return Check(
            name,
            False,
            "no trial drew a learning_rate" if trials else "no trial ran",
            "keep learning_rate in search_space(), drawn with trial.suggest_float(..., log=True)",
        )
    d = json_to_distribution(dists[0])
    if not isinstance(d, FloatDistribution):
        return Check(name, False, f"learning_rate is drawn from {d}", HINTS[0])
    share, log_share = _lowest_decade_share(d.low, d.high, d.log), _lowest_decade_share(d.low, d.high, True)
    lo, hi = f"{d.low:g}", f"{min(10 * d.low, d.high):g}"
    return Check(
        name,
        d.log,
        f"learning_rate ~ {d.low:g}..{d.high:g}, log={d.log}: {share:.0%} of the trials fall in {lo}..{hi}"
        + ("" if d.log else f" ({log_share:.0%} on a log scale)"),
        "a linear scale spends most trials on the largest learning rates. " + HINTS[0],
    )


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so that the limit below reaches it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # OpenMP's busy-waiting threads make gradient boosting crawl on shared cores
        return _check(ctx, result)


def _check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's objective and DIRECTION, probed directly
        from mllab.exercise import ExerciseError

        try:
            code = ctx.learner("tuning", "search_space", "objective")
        except ExerciseError as exc:
            checks.append(Check("tuning.py loads", False, exc.message, exc.fix))
        else:
            checks += probe_objective(code, ctx.seed)
    trials = result["trials"]
    checks.append(check_log_scale(trials))
    mlflow = ctx.mlflow()
    parent = result["parent_run_id"]
    children = mlflow.search_runs(
        experiment_names=[result["experiment"]],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
        output_format="list",
    )
    ok_trials = [t for t in trials if t["status"] == "Succeeded"]
    failed = [t for t in trials if t["status"] == "Failed"]
    checks.append(
        Check(
            "every trial is an MLflow run",
            len(children) == len(ok_trials) and len(children) > 0,
            f"{len(children)} child runs for {len(ok_trials)} finished trials",
            HINTS[3],
        )
    )
    checks.append(
        Check(
            "every trial succeeded",
            not failed and bool(trials),
            f"{len(failed)} of {len(trials)} trials failed"
            + (f"; {failed[0]['name']}: {failed[0]['error']}" if failed else "")
            if trials
            else "no trial ran",
            "a trial fails when objective() raises: the error above names the line of tuning.py",
        )
    )
    by_name = {t["name"]: t for t in trials}
    bad = []
    for r in children:
        t = by_name.get(r.info.run_name or "")
        if t is None:
            bad.append(f"{r.info.run_name}: not a trial of this experiment")
            continue
        if t["params"] != t["drawn"]:
            diff = {k: v for k, v in t["params"].items() if t["drawn"].get(k, object()) != v}
            bad.append(f"{t['name']}: {diff} is not what the sampler drew ({t['drawn']})")
            continue
        outside = {k: v for k, v in t["params"].items() if not contains(t["distributions"][k], v)}
        if outside:
            bad.append(f"{t['name']}: {outside} outside the space")
        if r.data.params != {k: str(v) for k, v in t["params"].items()}:
            bad.append(f"{t['name']}: MLflow has {r.data.params}, the trial ran {t['params']}")
    checks.append(
        Check(
            "every trial's parameters lie in the search space",
            not bad and bool(children),
            "; ".join(bad[:3]) if bad else f"all {len(children)} as the sampler drew them",
            "search_space() must return the values trial.suggest_*() gave, unchanged: a value the sampler did not "
            "draw is one it cannot learn from",
        )
    )
    finished = [r for r in children if r.info.status == "FINISHED" and "accuracy" in r.data.metrics]
    best_run = max(finished, key=lambda r: r.data.metrics["accuracy"], default=None)
    parent_run = mlflow.MlflowClient().get_run(parent)
    reported = parent_run.data.tags.get("mllab.best_trial")
    rep = next((r for r in finished if r.info.run_name == reported), None)
    rep_acc = rep.data.metrics["accuracy"] if rep else None
    top = best_run.data.metrics["accuracy"] if best_run else None
    checks.append(
        Check(
            "the best trial is reported",
            rep_acc is not None and rep_acc == top,
            f"reported {reported or None} (accuracy {_fmt(rep_acc)}), best accuracy in MLflow {_fmt(top)}",
            f"the experiment ({result.get('direction')}) picked {reported} as its best: "
            "DIRECTION must be the way the accuracy gets better (maximize)",
        )
    )
    best = result.get("best")
    if best:  # the best parameters, re-trained and measured on the test split the search never saw
        from mllab.data import load_digits_split

        test, data = load_digits_split(), search_data()
        model = reference_model(best["params"], ctx.seed).fit(data.X_train, data.y_train)
        test_acc = float(model.score(test.X_test, test.y_test))
        reason = f"{best['name']}: test accuracy {test_acc:.4f} (its objective in the search: {best['value']:.4f})"
    else:
        test_acc, reason = 0.0, "no trial finished"
    checks.append(
        Check(
            "the best parameters hold up on the test set",
            test_acc >= MIN_TEST_ACCURACY,
            reason,
            f"need >= {MIN_TEST_ACCURACY}: widen the space, raise maxTrialCount, or check DIRECTION",
        )
    )
    jobs = [j for j in result.get("trial_jobs") or [] if j.get("ref")]
    if jobs:  # the cluster's own record of the trial jobs (k8s backend: one Indexed Job per batch)
        early = not str(result["reason"]).startswith("maxTrialCount")
        lines, ok = [], True
        for j in jobs:
            state = ctx.backend.job_state(j["ref"])
            pods = int(state["succeeded_pods"]) + int(state["failed_pods"]) if state else 0
            if state:
                ok = ok and pods == len(j["trials"])
                lines.append(f"{j['ref']}: {pods} finished pods for {len(j['trials'])} trials")
            else:
                last = j is jobs[-1]
                ok = ok and early and last
                lines.append(
                    f"Job {j['ref']} is gone"
                    + (" (deleted at the early stop, as it should be)" if early and last else "")
                )
        checks.append(
            Check(
                f"the cluster's trial job {jobs[0]['ref']} ran every trial once"
                if len(jobs) == 1
                else f"the cluster's {len(jobs)} trial jobs ran every trial once",
                ok,
                "; ".join(lines),
                "one completion index per trial, each tried once (backoffLimitPerIndex 0)",
            )
        )
    # The stop condition the experiment run records must be one its trials in MLflow bear out.
    status, why = parent_run.data.tags.get("mllab.status"), parent_run.data.tags.get("mllab.reason") or ""
    spec = parent_run.data.params
    if status == "Succeeded" and why.startswith("goal reached"):
        goal = Objective("accuracy", spec.get("objective_type", "maximize"), goal=float(spec.get("goal", GOAL)))
        hits = [r.info.run_name for r in finished if goal.reached(r.data.metrics["accuracy"])]
        stopped, detail = bool(hits), f"trials at the goal in MLflow: {hits}"
    elif status == "Succeeded" and why.startswith("maxTrialCount"):
        budget = int(spec.get("maxTrialCount", -1))
        stopped = len(trials) == budget == len(finished) + len(failed)
        detail = f"{len(finished)} finished runs and {len(failed)} failed trials of {budget}"
    elif status == "Failed":
        stopped = len(failed) > int(spec.get("maxFailedTrialCount", MAX_FAILED))
        detail = f"{len(failed)} failed trials (maxFailedTrialCount {spec.get('maxFailedTrialCount')})"
    else:
        stopped, detail = False, "no stop condition recorded"
    checks.append(
        Check(
            "the experiment ended with a stop condition",
            stopped,
            f"{status}: {why}; {detail}",
            "stop at the goal, at maxTrialCount, or past maxFailedTrialCount; let running trials finish",
        )
    )
    return checks
