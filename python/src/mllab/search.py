"""Katib-style random search: a search space, parallel trials, an objective with a goal, a failure budget.

The space uses Katib's vocabulary::

    {"name": "learning_rate", "parameterType": "double",
     "feasibleSpace": {"min": "0.01", "max": "0.5", "distribution": "logUniform"}}

`parameterType` is int, double or categorical (`feasibleSpace: {"list": [...]}`); `distribution`
is uniform (default) or logUniform. The experiment stops when the goal is reached (Succeeded),
when maxTrialCount trials have finished (Succeeded), or when more than maxFailedTrialCount trials
have failed (Failed).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # int | double | categorical
    min: float | None = None
    max: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @classmethod
    def from_katib(cls, spec: dict[str, Any]) -> Parameter:
        name = spec.get("name")
        if not name:
            raise ValueError(f"a parameter needs a name: {spec!r}")
        ptype = spec.get("parameterType")
        fs = spec.get("feasibleSpace") or {}
        if ptype == "categorical":
            choices = tuple(fs.get("list") or ())
            if not choices:
                raise ValueError(f"parameter {name!r}: categorical needs feasibleSpace.list with at least one value")
            return cls(name, ptype, choices=choices)
        if ptype not in ("int", "double"):
            raise ValueError(f"parameter {name!r}: parameterType {ptype!r} is not int, double or categorical")
        try:
            lo, hi = float(fs["min"]), float(fs["max"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"parameter {name!r}: feasibleSpace needs numeric min and max, got {fs!r}") from None
        dist = fs.get("distribution", "uniform")
        if dist not in ("uniform", "logUniform"):
            raise ValueError(f"parameter {name!r}: distribution {dist!r} is not uniform or logUniform")
        if lo > hi:
            raise ValueError(f"parameter {name!r}: min {lo} is greater than max {hi}")
        if dist == "logUniform" and lo <= 0:
            raise ValueError(f"parameter {name!r}: logUniform needs min > 0, got {lo}")
        if ptype == "int" and (lo != int(lo) or hi != int(hi)):
            raise ValueError(f"parameter {name!r}: int bounds must be integers, got {lo}..{hi}")
        return cls(name, ptype, lo, hi, log=dist == "logUniform")

    def sample(self, rng: random.Random) -> Any:
        if self.type == "categorical":
            return rng.choice(self.choices)
        assert self.min is not None and self.max is not None
        if self.type == "int":
            if self.log:  # uniform in log space, then rounded: small values as likely as in Katib
                return int(
                    min(
                        self.max,
                        max(self.min, round(math.exp(rng.uniform(math.log(self.min), math.log(self.max + 1) - 1e-12)))),
                    )
                )
            return rng.randint(int(self.min), int(self.max))
        if self.log:
            return math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        return rng.uniform(self.min, self.max)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        assert self.min is not None and self.max is not None
        v = float(value)
        if self.type == "int" and v != int(v):
            return False
        return self.min <= v <= self.max


@dataclass
class SearchSpace:
    parameters: list[Parameter]

    @classmethod
    def from_katib(cls, specs: list[dict[str, Any]]) -> SearchSpace:
        params = [Parameter.from_katib(s) for s in specs]
        names = [p.name for p in params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate parameter names: {dupes}")
        if not params:
            raise ValueError("the search space is empty")
        return cls(params)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {p.name: p.sample(rng) for p in self.parameters}

    def contains(self, assignment: dict[str, Any]) -> bool:
        return set(assignment) == {p.name for p in self.parameters} and all(
            p.contains(assignment[p.name]) for p in self.parameters
        )


@dataclass
class Objective:
    metric: str = "accuracy"
    type: str = "maximize"  # maximize | minimize
    goal: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ("maximize", "minimize"):
            raise ValueError(f"objective type must be maximize or minimize, got {self.type!r}")

    def better(self, a: float, b: float) -> bool:
        return a > b if self.type == "maximize" else a < b

    def reached(self, value: float) -> bool:
        if self.goal is None:
            return False
        return value >= self.goal if self.type == "maximize" else value <= self.goal


@dataclass
class Trial:
    name: str
    params: dict[str, Any]
    status: str = "Pending"  # Succeeded | Failed
    value: float | None = None
    error: str = ""


@dataclass
class Experiment:
    space: SearchSpace
    objective: Objective
    max_trials: int = 12
    parallel: int = 2
    max_failed: int = 3
    seed: int = 42
    trials: list[Trial] = field(default_factory=list)
    status: str = "Created"
    reason: str = ""

    def __post_init__(self) -> None:
        for name in ("max_trials", "parallel"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_failed < 0:
            raise ValueError(f"max_failed must be >= 0, got {self.max_failed}")

    @property
    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.status == "Succeeded" and t.value is not None]
        best = None
        for t in done:
            if best is None or self.objective.better(t.value, best.value):  # type: ignore[arg-type]
                best = t
        return best

    def run(
        self,
        executor: Executor,
        fn: Callable[..., float],
        on_done: Callable[[Trial], None] | None = None,
        **kwargs: Any,
    ) -> Experiment:
        """Run trials `fn(params, trial_name=..., **kwargs) -> objective value` until a stop condition.

        Random search draws every trial's parameters up front (the same draws, in the same order,
        as one at a time); an executor with a `prepare(fn, calls)` method gets them all before the
        first submit (the k8s backend runs them as one Indexed Job)."""
        rng = random.Random(self.seed)
        plan = [Trial(f"trial-{i + 1:03d}", self.space.sample(rng)) for i in range(self.max_trials)]
        prepare = getattr(executor, "prepare", None)
        if prepare is not None:
            prepare(fn, [((t.params,), {"trial_name": t.name, **kwargs}) for t in plan])
        running: dict[Future[float], Trial] = {}
        submitted = 0
        stop = False
        self.status = "Running"
        while running or (not stop and submitted < self.max_trials):
            while not stop and submitted < self.max_trials and len(running) < self.parallel:
                trial = plan[submitted]
                self.trials.append(trial)
                running[executor.submit(fn, trial.params, trial_name=trial.name, **kwargs)] = trial
                submitted += 1
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                trial = running.pop(fut)
                try:
                    trial.value = float(fut.result())
                    trial.status = "Succeeded"
                except Exception as exc:
                    trial.status, trial.error = "Failed", f"{type(exc).__name__}: {exc}"
                if on_done:
                    on_done(trial)
                failed = sum(t.status == "Failed" for t in self.trials)
                if failed > self.max_failed and not stop:
                    stop = True
                    self.status, self.reason = (
                        "Failed",
                        f"{failed} trials failed (maxFailedTrialCount {self.max_failed})",
                    )
                elif trial.value is not None and self.objective.reached(trial.value) and not stop:
                    stop = True
                    self.status = "Succeeded"
                    self.reason = f"goal reached: {self.objective.metric} {trial.value:.4f} by {trial.name}"
        if self.status == "Running":
            self.status, self.reason = "Succeeded", f"maxTrialCount {self.max_trials} reached"
        return self
