"""A Katib-style experiment on Optuna's samplers: parallel trials, an objective with a goal, a failure budget.

The search space is a function of an Optuna trial (define-by-run), as in Optuna's own examples::

    def search_space(trial):
        return {"learning_rate": trial.suggest_float("learning_rate", 0.01, 0.5, log=True), ...}

The trials are drawn through Optuna's ask/tell interface, in batches: a batch of trials is asked,
run on an executor (worker processes; on the cluster, one Indexed Job per batch), and every result
is told before the next batch is asked. TPE (Katib's algorithmName `tpe`) asks `parallel` trials
at a time, so each batch learns from every earlier result; random search's draws never depend on a
result, so it asks the whole budget at once (one Indexed Job on the cluster). The same seed gives
the same trials, however fast each one ran.

The experiment stops when the goal is reached (Succeeded: running trials finish, no new one
starts), when maxTrialCount trials have finished (Succeeded), or when more than
maxFailedTrialCount trials have failed (Failed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any

ALGORITHMS = ("tpe", "random")  # Katib's algorithmName values this kit runs (Optuna's samplers)


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
    params: dict[str, Any]  # what the space function returned: what the trial runs with
    number: int = 0  # Optuna's trial number
    drawn: dict[str, Any] = field(default_factory=dict)  # what the sampler drew (optuna's trial.params)
    distributions: dict[str, str] = field(default_factory=dict)  # name -> optuna distribution, as JSON
    status: str = "Pending"  # Succeeded | Failed
    value: float | None = None
    error: str = ""


def sampler(algorithm: str, seed: int, startup_trials: int = 10) -> Any:
    """Optuna's sampler for Katib's algorithmName: `tpe` (random for the first `startup_trials`
    trials, then a model of where the good ones were) or `random`."""
    import optuna

    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")


def contains(distribution: str, value: Any) -> bool:
    """Whether `value` lies in an Optuna distribution (given as JSON, as Trial.distributions holds it)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution, json_to_distribution

    d = json_to_distribution(distribution)
    if isinstance(d, CategoricalDistribution):
        return value in d.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(d, IntDistribution):
        return value == int(value) and d.low <= value <= d.high
    assert isinstance(d, FloatDistribution)
    return math.isfinite(value) and d.low <= value <= d.high


@dataclass
class Experiment:
    space: Callable[[Any], dict[str, Any]]  # an optuna trial -> the trial's parameters
    objective: Objective
    algorithm: str = "tpe"
    max_trials: int = 12
    parallel: int = 2
    max_failed: int = 3
    seed: int = 42
    startup_trials: int = 4  # TPE: random trials before the model (Optuna's n_startup_trials)
    trials: list[Trial] = field(default_factory=list)  # the trials that ran, in the order they started
    jobs: list[dict[str, Any]] = field(default_factory=list)  # planning executors: {"ref", "trials"}
    status: str = "Created"
    reason: str = ""
    study: Any = None  # the optuna Study, once run

    def __post_init__(self) -> None:
        for name in ("max_trials", "parallel"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_failed < 0:
            raise ValueError(f"max_failed must be >= 0, got {self.max_failed}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")

    @property
    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.status == "Succeeded" and t.value is not None]
        best = None
        for t in done:
            if best is None or self.objective.better(t.value, best.value):  # type: ignore[arg-type]
                best = t
        return best

    @property
    def batch_size(self) -> int:
        """How many trials are asked before the next result is told."""
        return self.max_trials if self.algorithm == "random" else self.parallel

    def _ask(self, n: int) -> list[tuple[Any, Trial]]:
        from optuna.distributions import distribution_to_json
        from optuna.trial import TrialState

        batch = []
        for _ in range(n):
            ot = self.study.ask()
            try:
                params = self.space(ot)
                if not isinstance(params, dict) or not params:
                    raise TypeError(
                        f"the search space returned {type(params).__name__} {params!r}, not a dict of parameters"
                    )
            except BaseException:
                self.study.tell(ot, state=TrialState.FAIL)
                raise
            trial = Trial(
                f"trial-{ot.number + 1:03d}",
                dict(params),
                number=ot.number,
                drawn=dict(ot.params),
                distributions={k: distribution_to_json(d) for k, d in ot.distributions.items()},
            )
            batch.append((ot, trial))
        return batch

    def run(
        self,
        executor: Callable[[int], Executor],
        fn: Callable[..., float],
        on_done: Callable[[Trial], None] | None = None,
        **kwargs: Any,
    ) -> Experiment:
        """Run trials `fn(params, trial_name=..., **kwargs) -> objective value` until a stop condition.

        `executor(max_workers)` opens where the trials run (a backend's `executor`). One that plans
        (has `prepare(fn, calls)`, the k8s backend's: one Indexed Job) is given every trial of a
        batch before the first submit, and a fresh one runs each batch; any other is used for all."""
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # TPE's constant liar (on by default) is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(
                direction=self.objective.type, sampler=sampler(self.algorithm, self.seed, self.startup_trials)
            )
        pool: Executor | None = None
        stop, asked = False, 0
        self.status = "Running"
        try:
            while not stop and asked < self.max_trials:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    batch = self._ask(min(self.batch_size, self.max_trials - asked))
                asked += len(batch)
                if pool is None or hasattr(pool, "prepare"):  # a planning executor runs one batch
                    if pool is not None:
                        pool.shutdown(wait=True)
                    pool = executor(self.parallel)
                    prepare = getattr(pool, "prepare", None)
                    if prepare is not None:
                        got = prepare(fn, [((t.params,), {"trial_name": t.name, **kwargs}) for _, t in batch])
                        self.jobs.append({"ref": getattr(pool, "ref", "") or str(got or ""), "trials": []})
                queue = list(batch)
                running: dict[Future[float], tuple[Any, Trial]] = {}
                while running or (queue and not stop):
                    while queue and not stop and len(running) < self.parallel:
                        ot, trial = queue.pop(0)
                        self.trials.append(trial)
                        if self.jobs and hasattr(pool, "prepare"):
                            self.jobs[-1]["trials"].append(trial.name)
                        running[pool.submit(fn, trial.params, trial_name=trial.name, **kwargs)] = (ot, trial)
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in sorted(done, key=lambda f: running[f][1].number):
                        ot, trial = running.pop(fut)
                        try:
                            value = float(fut.result())
                            if not math.isfinite(value):
                                raise ValueError(f"the objective returned {value}")
                            trial.value, trial.status = value, "Succeeded"
                            self.study.tell(ot, value)
                        except Exception as exc:
                            trial.status, trial.error = "Failed", f"{type(exc).__name__}: {exc}"
                            self.study.tell(ot, state=TrialState.FAIL)
                        if on_done:
                            on_done(trial)
                        failed = sum(t.status == "Failed" for t in self.trials)
                        if stop:
                            continue
                        if failed > self.max_failed:
                            stop = True
                            self.status = "Failed"
                            self.reason = f"{failed} trials failed (maxFailedTrialCount {self.max_failed})"
                        elif trial.value is not None and self.objective.reached(trial.value):
                            stop = True
                            self.status = "Succeeded"
                            op = ">=" if self.objective.type == "maximize" else "<="
                            self.reason = (
                                f"goal reached: {self.objective.metric} {trial.value:.4f} {op} {self.objective.goal} "
                                f"by {trial.name}"
                            )
                for ot, _ in queue:  # asked but never started: the experiment stopped first
                    ot.set_user_attr("mllab.not_run", True)
                    self.study.tell(ot, state=TrialState.FAIL)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if self.status == "Running":
            self.status, self.reason = "Succeeded", f"maxTrialCount {self.max_trials} reached"
        return self
