"""The one interface every backend implements (and the only one a lab uses)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from mllab.prometheus import RuleSet


@dataclass
class JobSpec:
    """A batch job, as a Kubernetes Job would run it: `python -m module args...`.

    `backoff_limit` and `active_deadline_seconds` mean what they mean on a Job: the number of
    retries after a failed attempt, and a deadline for the whole job (all attempts together).
    """

    name: str
    module: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    backoff_limit: int = 0
    active_deadline_seconds: float | None = None
    gpus: int = 0
    workdir: Path = Path(".")
    # A content-addressed output folder shared by every run (pipeline steps): the k8s backend keeps
    # the job's working directory at <work PVC>/mllab/shared/<shared_key> instead of under the run.
    shared_key: str = ""

    def __post_init__(self) -> None:
        if self.backoff_limit < 0:
            raise ValueError(f"backoff_limit must be >= 0, got {self.backoff_limit}")
        if self.active_deadline_seconds is not None and self.active_deadline_seconds <= 0:
            raise ValueError(f"active_deadline_seconds must be > 0, got {self.active_deadline_seconds}")


@dataclass
class JobResult:
    name: str
    status: str  # Succeeded | Failed | DeadlineExceeded
    attempts: int
    exit_codes: list[int]
    wall_s: float
    log: Path
    ref: str = ""  # where the backend keeps it (k8s: "namespace/job-name"), for job_state()

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"


@dataclass
class ServeSpec:
    """A model server: `models` maps a model name to a model directory (see mllab.serving)."""

    name: str
    models: dict[str, Path]
    canary: dict[str, tuple[Path, int]] = field(default_factory=dict)  # model name -> (canary model dir, percent)
    workdir: Path = Path(".")
    extra_args: list[str] = field(default_factory=list)
    monitor: bool = False  # k8s: a ServiceMonitor so the cluster's Prometheus scrapes it (lab 7)
    # k8s: a Prometheus rule file the cluster's Prometheus evaluates on this server's metrics (lab 7's
    # drift_alert.yaml, as a PrometheusRule); the Endpoint's `rules` says where to read its alerts.
    rules: Path | None = None


@dataclass
class Endpoint:
    url: str  # base URL, e.g. http://127.0.0.1:8080
    metrics_url: str
    rules: RuleSet | None = None  # where Prometheus evaluates ServeSpec.rules (k8s only)


class Backend(abc.ABC):
    name: str
    lab_number: int | None = None
    exercise: Path | None = None  # the learner's code this backend's jobs and servers run (bind())

    @abc.abstractmethod
    def tracking_uri(self) -> str:
        """The MLflow tracking URI (the backend starts or finds the server)."""

    @abc.abstractmethod
    def run_job(self, spec: JobSpec) -> JobResult:
        """Run a job to completion (retries and deadline included)."""

    @abc.abstractmethod
    def run_distributed(self, spec: JobSpec, nproc: int) -> JobResult:
        """Run a job as `nproc` cooperating processes (torchrun / PyTorchJob)."""

    @abc.abstractmethod
    def serve(self, spec: ServeSpec) -> AbstractContextManager[Endpoint]:
        """Start a model server; stop it when the context ends."""

    @abc.abstractmethod
    def executor(self, max_workers: int) -> Executor:
        """Where parallel trials run (local: worker processes; cluster: Katib trials)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop everything this backend started."""

    def run_step(
        self,
        fn: Callable[[dict[str, Path], dict[str, Any], Path], dict[str, Any]],
        inputs: dict[str, Path],
        params: dict[str, Any],
        out: Path,
        key: str,
        input_keys: dict[str, str],
    ) -> dict[str, Any]:
        """Run one pipeline step `fn(inputs, params, out) -> metrics` (lab 8). Here: in this process;
        the k8s backend runs it as a Job. `key` names the step's content-addressed output (and
        `input_keys` those of its inputs), which the k8s backend keeps on the work PVC."""
        return fn(inputs, params, out)

    def job_state(self, ref: str) -> dict[str, object] | None:
        """The job's state as the backend sees it now (None: this backend keeps no record)."""
        return None

    def bind(self, lab: int, console: object = None, exercise: Path | None = None) -> None:
        """Called by the runner before a lab runs: the lab's number (backends that label what they
        create use it) and the folder of the learner's code, which every job and model server the
        backend starts must see at $MLLAB_EXERCISE."""
        self.lab_number = lab
        self.exercise = exercise

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> Iterator[tuple[str, str]]:
        yield ("backend", self.name)
