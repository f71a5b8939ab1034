"""The Katib-style search space sampler and the experiment's stop conditions."""

from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from mllab.search import Experiment, Objective, Parameter, SearchSpace


def space() -> SearchSpace:
    return SearchSpace.from_katib(
        [
            {"name": "n", "parameterType": "int", "feasibleSpace": {"min": "10", "max": "20"}},
            {
                "name": "lr",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.001", "max": "1", "distribution": "logUniform"},
            },
            {"name": "d", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
            {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
        ]
    )


def test_samples_stay_in_the_space_and_cover_it() -> None:
    sp, rng = space(), random.Random(0)
    samples = [sp.sample(rng) for _ in range(2000)]
    assert all(sp.contains(s) for s in samples)
    assert {s["n"] for s in samples} == set(range(10, 21))  # both ends reachable
    assert all(isinstance(s["n"], int) for s in samples)
    assert {s["opt"] for s in samples} == {"sgd", "adam"}
    # log-uniform: each decade (0.001-0.01, 0.01-0.1, 0.1-1) gets about a third of the samples
    decades = [sum(1 for s in samples if 10**k <= s["lr"] < 10 ** (k + 1)) / len(samples) for k in (-3, -2, -1)]
    assert all(abs(f - 1 / 3) < 0.05 for f in decades), decades
    # uniform: mean near the middle
    assert abs(sum(s["d"] for s in samples) / len(samples) - 0.5) < 0.03


def test_sampling_is_reproducible() -> None:
    a = [space().sample(random.Random(7)) for _ in range(3)]
    b = [space().sample(random.Random(7)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "parameterType": "int", "feasibleSpace": {"min": "5", "max": "1"}}, "greater than max"),
        (
            {
                "name": "x",
                "parameterType": "double",
                "feasibleSpace": {"min": "0", "max": "1", "distribution": "logUniform"},
            },
            "min > 0",
        ),
        ({"name": "x", "parameterType": "float", "feasibleSpace": {"min": "0", "max": "1"}}, "not int, double"),
        ({"name": "x", "parameterType": "int", "feasibleSpace": {"min": "a", "max": "1"}}, "numeric min and max"),
        ({"name": "x", "parameterType": "int", "feasibleSpace": {"min": "0.5", "max": "1"}}, "integers"),
        ({"name": "x", "parameterType": "categorical", "feasibleSpace": {}}, "feasibleSpace.list"),
    ],
)
def test_bad_parameters_name_the_problem(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        Parameter.from_katib(spec)
    assert "'x'" in str(exc.value)


def test_duplicate_names_rejected() -> None:
    p = {"name": "a", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}}
    with pytest.raises(ValueError, match="duplicate"):
        SearchSpace.from_katib([p, p])


def objective(params: dict[str, Any], trial_name: str) -> float:
    """A deterministic objective: best when d is near 0.5."""
    return 1 - abs(params["d"] - 0.5)


def failing(params: dict[str, Any], trial_name: str) -> float:
    if params["d"] < 0.7:
        raise RuntimeError("out of memory")
    return params["d"]


def test_goal_stops_the_experiment() -> None:
    exp = Experiment(space(), Objective("score", "maximize", goal=0.95), max_trials=200, parallel=2, seed=1)
    with ThreadPoolExecutor(2) as pool:
        exp.run(pool, objective)
    assert exp.status == "Succeeded" and "goal reached" in exp.reason
    assert len(exp.trials) < 200
    assert exp.best is not None and exp.best.value >= 0.95
    assert exp.best.value == max(t.value for t in exp.trials if t.value is not None)


def test_max_trials_and_minimize() -> None:
    exp = Experiment(space(), Objective("loss", "minimize"), max_trials=7, parallel=3, seed=2)
    with ThreadPoolExecutor(3) as pool:
        exp.run(pool, objective)
    assert exp.status == "Succeeded" and "maxTrialCount 7" in exp.reason
    assert len(exp.trials) == 7
    assert exp.best.value == min(t.value for t in exp.trials)


def test_too_many_failures_fail_the_experiment() -> None:
    exp = Experiment(space(), Objective("score"), max_trials=50, parallel=1, max_failed=2, seed=3)
    with ThreadPoolExecutor(1) as pool:
        exp.run(pool, failing)
    failed = [t for t in exp.trials if t.status == "Failed"]
    assert exp.status == "Failed" and len(failed) == 3 and "maxFailedTrialCount 2" in exp.reason
    assert all("out of memory" in t.error for t in failed)


def test_bad_experiment_settings() -> None:
    with pytest.raises(ValueError, match="parallel"):
        Experiment(space(), Objective(), parallel=0)
    with pytest.raises(ValueError, match="maximize or minimize"):
        Objective(type="best")
    assert math.isfinite(objective(space().sample(random.Random(0)), "t"))


class PlannedPool(ThreadPoolExecutor):
    """An executor that, like the k8s backend's trial job, is given every trial before the first."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.planned: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.submitted: list[str] = []

    def prepare(self, fn: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        self.planned = calls

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(kwargs["trial_name"])
        return super().submit(fn, *args, **kwargs)


def test_a_planning_executor_gets_every_trial_first_with_the_same_draws() -> None:
    plain = Experiment(space(), Objective("score", "maximize", goal=0.97), max_trials=40, parallel=2, seed=5)
    with ThreadPoolExecutor(2) as pool:
        plain.run(pool, objective)
    planned = Experiment(space(), Objective("score", "maximize", goal=0.97), max_trials=40, parallel=2, seed=5)
    with PlannedPool(2) as pool:
        planned.run(pool, objective)
    assert len(pool.planned) == 40  # the whole budget, before any result is known
    assert [kw["trial_name"] for _, kw in pool.planned] == [f"trial-{i:03d}" for i in range(1, 41)]
    # what ran is a prefix of the plan, with the plan's parameters
    assert pool.submitted == [kw["trial_name"] for _, kw in pool.planned[: len(pool.submitted)]]
    assert [t.params for t in planned.trials] == [args[0] for args, _ in pool.planned[: len(planned.trials)]]
    # and drawing up front changes nothing: same parameters as drawing one at a time
    assert [t.params for t in plain.trials] == [args[0] for args, _ in pool.planned[: len(plain.trials)]]
    assert planned.status == "Succeeded" and "goal reached" in planned.reason and len(planned.trials) < 40
