"""Lab 4: a Katib-style random search, every trial an MLflow run.

The search space, objective and budgets follow Katib's Experiment spec (see the tutorial): an
int, a log-uniform double, a uniform double; `parallelTrialCount` trials at once in worker
processes; stop at the goal, after `maxTrialCount`, or when too many trials fail. Each trial trains
a HistGradientBoostingClassifier on the digits and logs a child run under the experiment's run.
"""

from __future__ import annotations

from typing import Any

from mllab.labs.base import Check, LabContext
from mllab.search import Experiment, Objective, SearchSpace

SPACE = [
    {"name": "max_iter", "parameterType": "int", "feasibleSpace": {"min": "10", "max": "80"}},
    {"name": "max_depth", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "8"}},
    {
        "name": "learning_rate",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.01", "max": "0.5", "distribution": "logUniform"},
    },
    {"name": "l2_regularization", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "1.0"}},
]

HINTS = [
    "Sample learning rates log-uniformly: as many trials between 0.01 and 0.1 as between 0.1 and 1.",
    "Every trial is its own MLflow run; tag it with mlflow.parentRunId to group it under the experiment's run.",
    "A failed trial is a result, not a crash: count it, and stop the experiment only past maxFailedTrialCount.",
    "Stop submitting new trials once the goal is reached; let the running ones finish.",
]


def digits_trial(params: dict[str, Any], trial_name: str, experiment: str, parent_run_id: str, seed: int) -> float:
    """One trial (a worker process, or a pod of the k8s trial job): train, evaluate, log a child
    MLflow run, return accuracy. The run is logged once the model is trained, so a trial stopped
    midway (the experiment ended) leaves no half-written run."""
    import mlflow
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score

    from mllab.data import load_digits_split

    s = load_digits_split()
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
    model.fit(s.X_train, s.y_train)
    acc = float(accuracy_score(s.y_test, model.predict(s.X_test)))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=trial_name, tags={"mlflow.parentRunId": parent_run_id, "mllab.trial": trial_name}):
        mlflow.log_params(params)
        mlflow.log_metric("accuracy", acc)
    return acc


def run(ctx: LabContext) -> dict[str, Any]:
    mlflow = ctx.mlflow()
    from rich.progress import Progress
    from rich.table import Column, Table

    space = SearchSpace.from_katib(SPACE)
    max_trials = 6 if ctx.quick else 16
    exp = Experiment(
        space,
        Objective("accuracy", "maximize", goal=0.99),
        max_trials=max_trials,
        parallel=2,
        max_failed=3,
        seed=ctx.seed,
    )
    mlflow.set_experiment(ctx.experiment())
    with mlflow.start_run(run_name="random-search") as parent:
        mlflow.log_params(
            {
                "algorithm": "random",
                "maxTrialCount": max_trials,
                "parallelTrialCount": 2,
                "maxFailedTrialCount": 3,
                "goal": 0.99,
            }
        )
        with Progress(console=ctx.console) as bar, ctx.backend.executor(2) as pool:
            task = bar.add_task("trials", total=max_trials)

            def done(t: Any) -> None:
                bar.update(task, advance=1, description=f"{t.name}: {t.status} {t.value or 0:.4f}")

            exp.run(
                pool,
                digits_trial,
                on_done=done,
                experiment=ctx.experiment(),
                parent_run_id=parent.info.run_id,
                seed=ctx.seed,
            )
            trial_job = getattr(pool, "ref", "")  # k8s: the Indexed Job that ran the trials
        best = exp.best
        mlflow.set_tags(
            {"mllab.status": exp.status, "mllab.reason": exp.reason, "mllab.best_trial": best.name if best else ""}
        )
        if best:
            mlflow.log_metric("best_accuracy", best.value)  # type: ignore[arg-type]
            mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
    table = Table(
        Column("trial", no_wrap=True), "status", "accuracy", *[p.name for p in space.parameters], title="trials"
    )
    for t in exp.trials:
        table.add_row(
            t.name,
            t.status,
            f"{t.value:.4f}" if t.value is not None else t.error[:30],
            *[f"{v:.4g}" if isinstance(v, float) else str(v) for v in t.params.values()],
        )
    ctx.console.print(table)
    ctx.console.print(
        f"experiment {exp.status}: {exp.reason}; best {best.name if best else None} "
        f"accuracy {best.value if best else None}"
    )
    return {
        "experiment": ctx.experiment(),
        "parent_run_id": parent.info.run_id,
        "status": exp.status,
        "reason": exp.reason,
        "space": SPACE,
        "best": best.__dict__ if best else None,
        "trials": [t.__dict__ for t in exp.trials],
        "trial_job": trial_job,
    }


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    mlflow = ctx.mlflow()
    space = SearchSpace.from_katib(result["space"])
    parent = result["parent_run_id"]
    children = mlflow.search_runs(
        experiment_names=[result["experiment"]],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
        output_format="list",
    )
    checks = [
        Check(
            "every trial is an MLflow run",
            len(children) == len(result["trials"]) and len(children) > 0,
            f"{len(children)} child runs for {len(result['trials'])} trials",
            HINTS[1],
        )
    ]

    def _num(v: str) -> Any:
        f = float(v)
        return int(f) if f == int(f) and "." not in v else f

    bad = [r.info.run_name for r in children if not space.contains({k: _num(v) for k, v in r.data.params.items()})]
    checks.append(
        Check(
            "every trial's parameters lie in the search space",
            not bad and bool(children),
            f"outside the space: {bad}" if bad else "all inside",
            HINTS[0],
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
            f"reported {reported} (accuracy {rep_acc}), best accuracy in MLflow {top}",
            "tag the experiment run with the best trial (mllab.best_trial)",
        )
    )
    best_acc = best_run.data.metrics["accuracy"] if best_run else 0.0
    checks.append(
        Check(
            "the search found a good model",
            best_acc >= 0.9,
            f"best accuracy {best_acc:.4f}",
            "widen the space or raise maxTrialCount",
        )
    )
    ref = result.get("trial_job", "")
    if ref:  # the cluster's own record of the trial job (k8s backend)
        state = ctx.backend.job_state(ref)
        early = not str(result["reason"]).startswith("maxTrialCount")
        pods = int(state["succeeded_pods"]) + int(state["failed_pods"]) if state else 0
        checks.append(
            Check(
                f"the cluster's trial job {ref} ran every trial once",
                bool(state and pods == len(result["trials"])) or (state is None and early),
                f"{pods} finished pods for {len(result['trials'])} trials ({state})"
                if state
                else f"Job {ref} is gone" + (" (deleted at the early stop, as it should be)" if early else ""),
                "one completion index per trial, each tried once (backoffLimitPerIndex 0)",
            )
        )
    status = parent_run.data.tags.get("mllab.status")
    checks.append(
        Check(
            "the experiment ended with a stop condition",
            status in ("Succeeded", "Failed"),
            f"{status}: {parent_run.data.tags.get('mllab.reason')}",
            HINTS[3],
        )
    )
    return checks
