"""The experiment on Optuna's samplers: ask/tell batches, the stop conditions, the planning executor."""

from __future__ import annotations

import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest
from mllab.search import Experiment, Objective, contains


def space(trial: Any) -> dict[str, Any]:
    return {
        "n": trial.suggest_int("n", 10, 20),
        "lr": trial.suggest_float("lr", 0.001, 1, log=True),
        "d": trial.suggest_float("d", 0, 1),
        "opt": trial.suggest_categorical("opt", ["sgd", "adam"]),
    }


def objective(params: dict[str, Any], trial_name: str) -> float:
    """A deterministic objective: best when d is near 0.5."""
    return 1 - abs(params["d"] - 0.5)


def jittery(params: dict[str, Any], trial_name: str) -> float:
    """The same objective, finishing in a random order."""
    time.sleep(random.random() * 0.01)
    return objective(params, trial_name)


def failing(params: dict[str, Any], trial_name: str) -> float:
    if params["d"] < 0.7:
        raise RuntimeError("out of memory")
    return params["d"]


def test_random_draws_stay_in_the_space_and_cover_it() -> None:
    exp = Experiment(space, Objective("score"), algorithm="random", max_trials=1500, parallel=4, seed=0)
    exp.run(ThreadPoolExecutor, objective)
    samples = [t.params for t in exp.trials]
    assert len(samples) == 1500 and all(t.status == "Succeeded" for t in exp.trials)
    assert all(
        t.params == t.drawn and all(contains(t.distributions[k], v) for k, v in t.params.items()) for t in exp.trials
    )
    assert {s["n"] for s in samples} == set(range(10, 21))  # both ends reachable
    assert all(isinstance(s["n"], int) for s in samples)
    assert {s["opt"] for s in samples} == {"sgd", "adam"}
    # log scale: each decade (0.001-0.01, 0.01-0.1, 0.1-1) gets about a third of the samples
    decades = [sum(1 for s in samples if 10**k <= s["lr"] < 10 ** (k + 1)) / len(samples) for k in (-3, -2, -1)]
    assert all(abs(f - 1 / 3) < 0.05 for f in decades), decades
    # uniform: mean near the middle
    assert abs(sum(s["d"] for s in samples) / len(samples) - 0.5) < 0.03
    assert not contains(exp.trials[0].distributions["lr"], 2.0) and not contains(exp.trials[0].distributions["n"], 10.5)


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_the_same_seed_gives_the_same_trials_whatever_order_they_finish_in(algorithm: str) -> None:
    runs = []
    for _ in range(2):
        exp = Experiment(space, Objective("score"), algorithm=algorithm, max_trials=14, parallel=3, seed=7)
        exp.run(ThreadPoolExecutor, jittery)
        runs.append([t.params for t in exp.trials])
    assert runs[0] == runs[1]
    assert [t.name for t in exp.trials] == [f"trial-{i:03d}" for i in range(1, 15)]


def test_tpe_learns_from_the_results_random_does_not() -> None:
    far = {}
    for algorithm in ("tpe", "random"):
        exp = Experiment(space, Objective("score"), algorithm=algorithm, max_trials=40, parallel=2, seed=3)
        exp.run(ThreadPoolExecutor, objective)
        far[algorithm] = sum(abs(t.params["d"] - 0.5) for t in exp.trials[-15:]) / 15
    assert far["tpe"] < far["random"] / 2, far  # TPE's later trials crowd around the best d


def test_goal_stops_the_experiment() -> None:
    exp = Experiment(space, Objective("score", "maximize", goal=0.95), max_trials=200, parallel=2, seed=1)
    exp.run(ThreadPoolExecutor, objective)
    assert exp.status == "Succeeded" and "goal reached" in exp.reason
    assert len(exp.trials) < 200
    assert exp.best is not None and exp.best.value >= 0.95
    assert exp.best.value == max(t.value for t in exp.trials if t.value is not None)
    assert exp.study.best_trial.number == exp.best.number  # Optuna was told every result


def test_max_trials_and_minimize() -> None:
    exp = Experiment(space, Objective("loss", "minimize"), max_trials=7, parallel=3, seed=2)
    exp.run(ThreadPoolExecutor, objective)
    assert exp.status == "Succeeded" and "maxTrialCount 7" in exp.reason
    assert len(exp.trials) == 7 and len(exp.study.trials) == 7
    assert exp.best.value == min(t.value for t in exp.trials)
    assert exp.study.direction.name == "MINIMIZE" and exp.study.best_value == exp.best.value


def test_too_many_failures_fail_the_experiment() -> None:
    exp = Experiment(space, Objective("score"), max_trials=50, parallel=1, max_failed=2, seed=3)
    exp.run(ThreadPoolExecutor, failing)
    failed = [t for t in exp.trials if t.status == "Failed"]
    assert exp.status == "Failed" and len(failed) == 3 and "maxFailedTrialCount 2" in exp.reason
    assert all("out of memory" in t.error for t in failed)


def test_a_non_finite_value_is_a_failed_trial() -> None:
    exp = Experiment(space, Objective("score"), max_trials=3, parallel=1, seed=3)
    exp.run(ThreadPoolExecutor, lambda params, trial_name: math.nan)
    assert [t.status for t in exp.trials] == ["Failed"] * 3 and "nan" in exp.trials[0].error


def test_a_broken_space_stops_the_run_with_its_error() -> None:
    def no_dict(trial: Any) -> Any:
        return trial.suggest_float("x", 0, 1)

    with pytest.raises(TypeError, match="not a dict"):
        Experiment(no_dict, Objective()).run(ThreadPoolExecutor, objective)

    def raises(trial: Any) -> Any:
        raise KeyError("lr")

    with pytest.raises(KeyError):
        Experiment(raises, Objective()).run(ThreadPoolExecutor, objective)


def test_bad_experiment_settings() -> None:
    with pytest.raises(ValueError, match="parallel"):
        Experiment(space, Objective(), parallel=0)
    with pytest.raises(ValueError, match="tpe, random"):
        Experiment(space, Objective(), algorithm="grid")
    with pytest.raises(ValueError, match="maximize or minimize"):
        Objective(type="best")


class PlannedPool(ThreadPoolExecutor):
    """An executor that, like the k8s backend's trial job, is given every trial of its batch before the first."""

    made: ClassVar[list[PlannedPool]] = []

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.planned: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.submitted: list[str] = []
        self.ref = f"ns/job-{len(PlannedPool.made)}"
        PlannedPool.made.append(self)

    def prepare(self, fn: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> str:
        assert not self.planned, "prepared twice"
        self.planned = calls
        return self.ref

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        assert kwargs["trial_name"] in [kw["trial_name"] for _, kw in self.planned], "not prepared"
        self.submitted.append(kwargs["trial_name"])
        return super().submit(fn, *args, **kwargs)


def test_random_search_plans_the_whole_budget_in_one_executor_with_the_same_draws() -> None:
    plain = Experiment(space, Objective("score", "maximize", goal=0.97), algorithm="random", max_trials=40, seed=5)
    plain.run(ThreadPoolExecutor, objective)
    PlannedPool.made = []
    planned = Experiment(space, Objective("score", "maximize", goal=0.97), algorithm="random", max_trials=40, seed=5)
    planned.run(PlannedPool, objective)
    [pool] = PlannedPool.made  # one trial job
    assert len(pool.planned) == 40  # the whole budget, before any result is known
    assert [kw["trial_name"] for _, kw in pool.planned] == [f"trial-{i:03d}" for i in range(1, 41)]
    # what ran is a prefix of the plan, with the plan's parameters
    assert pool.submitted == [kw["trial_name"] for _, kw in pool.planned[: len(pool.submitted)]]
    assert [t.params for t in planned.trials] == [args[0] for args, _ in pool.planned[: len(planned.trials)]]
    # and planning changes nothing: the same parameters as without a plan
    assert [t.params for t in plain.trials] == [t.params for t in planned.trials]
    assert planned.status == "Succeeded" and "goal reached" in planned.reason and len(planned.trials) < 40
    assert planned.jobs == [{"ref": "ns/job-0", "trials": pool.submitted}]


def test_tpe_plans_one_executor_per_batch_of_parallel_trials() -> None:
    plain = Experiment(space, Objective("score"), algorithm="tpe", max_trials=9, parallel=2, seed=5)
    plain.run(ThreadPoolExecutor, objective)
    PlannedPool.made = []
    planned = Experiment(space, Objective("score"), algorithm="tpe", max_trials=9, parallel=2, seed=5)
    planned.run(PlannedPool, objective)
    assert [len(p.planned) for p in PlannedPool.made] == [2, 2, 2, 2, 1]  # one trial job per batch
    assert [p.submitted for p in PlannedPool.made] == [
        [kw["trial_name"] for _, kw in p.planned] for p in PlannedPool.made
    ]
    assert [j["ref"] for j in planned.jobs] == [f"ns/job-{i}" for i in range(5)]
    assert [n for j in planned.jobs for n in j["trials"]] == [t.name for t in planned.trials]
    assert [t.params for t in plain.trials] == [t.params for t in planned.trials]


class FakeCluster:
    """What TrialJobExecutor asks of the k8s backend, with an Indexed Job whose pods run (in this
    process, through k8s_call's resolver) `parallelism` at a time: each look at the pods finds the
    next ones finished."""

    def __init__(self) -> None:
        from mllab.backends import k8s_objects as o

        self.cfg = o.K8sConfig(image="mllab.local/e2e/mllab:0.1.0", job_tracking_uri="http://mlflow:5000")
        self.jobs: dict[str, list[dict[str, Any]]] = {}  # name -> its calls
        self.pods: dict[str, list[Any]] = {}
        self.parallelism: dict[str, int] = {}
        self.seen: dict[str, int] = {}  # how many of a job's pods have finished so far
        self.deleted: list[str] = []
        self.batch = self

    def _labels(self, job: str) -> dict[str, str]:
        return {"mllab.io/job": job}

    def _create(self, body: dict[str, Any], namespace: str) -> None:
        import json
        from types import SimpleNamespace as NS

        from mllab.backends.k8s_call import resolve

        name = body["metadata"]["name"]
        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        calls = json.loads(env["MLLAB_CALLS"])
        assert body["spec"]["completions"] == len(calls) and body["spec"]["backoffLimitPerIndex"] == 0
        self.jobs[name], self.pods[name], self.parallelism[name] = calls, [], body["spec"]["parallelism"]
        for i, call in enumerate(calls):
            try:
                msg, phase = json.dumps({"result": resolve(call["fn"])(*call["args"], **call["kwargs"])}), "Succeeded"
            except Exception as exc:
                msg, phase = f"{type(exc).__name__}: {exc}", "Failed"
            term = NS(message=msg, exit_code=0 if phase == "Succeeded" else 1)
            self.pods[name].append(
                NS(
                    metadata=NS(name=f"{name}-{i}", annotations={"batch.kubernetes.io/job-completion-index": str(i)}),
                    status=NS(phase=phase, container_statuses=[NS(state=NS(terminated=term, waiting=None))]),
                )
            )

    def _pods(self, job: str) -> list[Any]:
        if job in self.deleted:
            return []
        self.seen[job] = self.seen.get(job, 0) + self.parallelism.get(job, 0)
        return self.pods.get(job, [])[: self.seen[job]]

    def _check_pod(self, pod: Any) -> None:
        pass

    def read_namespaced_job_status(self, name: str, namespace: str) -> Any:
        from types import SimpleNamespace as NS

        return NS(status=NS(conditions=[]))

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        self.deleted.append(name)


@pytest.mark.timeout(60)
def test_the_k8s_trial_job_executor_runs_one_indexed_job_per_tpe_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from mllab.backends import k8s
    from mllab.backends.k8s import TrialJobExecutor

    monkeypatch.setattr(k8s, "POLL_S", 0.02)
    cluster = FakeCluster()
    exp = Experiment(space, Objective("score"), algorithm="tpe", max_trials=5, parallel=2, seed=4)
    exp.run(lambda n: TrialJobExecutor(cluster, n), objective)  # type: ignore[arg-type]
    assert exp.status == "Succeeded" and [t.status for t in exp.trials] == ["Succeeded"] * 5
    assert [len(c) for c in cluster.jobs.values()] == [2, 2, 1] and not cluster.deleted
    assert [j["ref"] for j in exp.jobs] == [f"{cluster.cfg.namespace}/{n}" for n in cluster.jobs]
    ran = [c for calls in cluster.jobs.values() for c in calls]
    assert [c["args"][0] for c in ran] == [t.params for t in exp.trials]
    assert [c["kwargs"]["trial_name"] for c in ran] == [t.name for t in exp.trials]
    assert [t.value for t in exp.trials] == [objective(t.params, t.name) for t in exp.trials]


@pytest.mark.timeout(60)
def test_the_k8s_trial_job_of_a_random_search_is_deleted_at_the_early_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    from mllab.backends import k8s
    from mllab.backends.k8s import TrialJobExecutor

    monkeypatch.setattr(k8s, "POLL_S", 0.02)
    cluster = FakeCluster()
    exp = Experiment(space, Objective("score", goal=0.9), algorithm="random", max_trials=30, parallel=2, seed=1)
    exp.run(lambda n: TrialJobExecutor(cluster, n), objective)  # type: ignore[arg-type]
    [(name, calls)] = cluster.jobs.items()
    assert len(calls) == 30 and "goal reached" in exp.reason and len(exp.trials) < 30
    assert cluster.deleted == [name]  # no further trial may start
    assert exp.jobs == [{"ref": f"{cluster.cfg.namespace}/{name}", "trials": [t.name for t in exp.trials]}]
