"""The local backend: real processes on this machine (MLflow server, jobs, torchrun, KServe server)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from mllab import INSTALL_LABS, procs
from mllab.backends.base import Backend, Endpoint, JobResult, JobSpec, ServeSpec
from mllab.errors import MllabError, TrackingUnavailable
from mllab.home import home
from mllab.procs import http_ok


def check_tracking_uri(uri: str) -> None:
    """Fail early and clearly when MLFLOW_TRACKING_URI points at a server that does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    health = uri.rstrip("/") + "/health"
    if not http_ok(health, timeout=5.0):
        raise TrackingUnavailable(
            f"MLflow is unreachable at MLFLOW_TRACKING_URI={uri!r} ({health} does not answer); nothing was written",
            "start that server (or port-forward it), or unset MLFLOW_TRACKING_URI so the local backend "
            "starts its own MLflow server",
        )


def _one_thread_per_worker() -> None:
    """Parallel trials share the cores: one BLAS/OpenMP thread each."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home()
        self._tracking: str | None = None
        self._mlflow_proc: subprocess.Popen[bytes] | None = None
        # No usage telemetry from labs (and these machines may have no route out anyway).
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "true")

    def bind(self, lab: int, console: object = None, exercise: Path | None = None) -> None:
        """Every process this backend starts (jobs, torchrun ranks, trial workers, model servers)
        inherits $MLLAB_EXERCISE, the folder of the learner's code; close() restores it."""
        from mllab.exercise import EXERCISE_ENV

        super().bind(lab, console, exercise)
        if exercise is not None:
            if not hasattr(self, "_saved_exercise_env"):  # bound again: close() still restores the first
                self._saved_exercise_env = os.environ.get(EXERCISE_ENV)
            os.environ[EXERCISE_ENV] = str(exercise)

    # --- tracking ------------------------------------------------------------------------
    def tracking_uri(self) -> str:
        if self._tracking:
            return self._tracking
        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if env_uri:
            check_tracking_uri(env_uri)
            self._tracking = env_uri
            return env_uri
        self._tracking = self._start_mlflow()
        return self._tracking

    def _start_mlflow(self) -> str:
        store = self.root / "mlflow"
        store.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        log = store / "server.log"
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        # No server-side job runners (huey consumers, for MLflow's GenAI jobs): the labs do not use them,
        # and they would cost 4 idle processes on a 2-core laptop.
        proc = procs.spawn(argv, log, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        url = f"http://127.0.0.1:{port}"
        if not procs.wait_http(url + "/health", timeout=120, proc=proc):
            procs.stop(proc)
            raise TrackingUnavailable(
                f"the local MLflow server did not start on port {port}; last log lines:\n{procs.tail(log)}",
                f"read {log}; check that the labs extra is installed: {INSTALL_LABS}",
            )
        self._mlflow_proc = proc
        os.environ["MLFLOW_TRACKING_URI"] = url  # jobs and trials started from here inherit it
        self._owns_env = True
        return url

    # --- jobs ----------------------------------------------------------------------------
    def _job_env(self, spec: JobSpec) -> dict[str, str]:
        env = dict(spec.env)
        if self._tracking:
            env.setdefault("MLFLOW_TRACKING_URI", self._tracking)
        if spec.gpus == 0 and "CUDA_VISIBLE_DEVICES" not in env and os.environ.get("MLLAB_FORCE_CPU"):
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _run(self, spec: JobSpec, argv: list[str]) -> JobResult:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        log = spec.workdir / f"{spec.name}.log"
        start = time.monotonic()
        deadline = start + spec.active_deadline_seconds if spec.active_deadline_seconds else None
        codes: list[int] = []
        status = "Failed"
        for attempt in range(1, spec.backoff_limit + 2):
            with open(log, "a") as fh:
                fh.write(f"=== {spec.name}: attempt {attempt} of {spec.backoff_limit + 1}\n")
            env = {**self._job_env(spec), "MLLAB_JOB_ATTEMPT": str(attempt), "MLLAB_JOB_NAME": spec.name}
            proc = procs.spawn(argv, log, env=env)
            try:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    code = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    procs.stop(proc)
                    codes.append(proc.returncode if proc.returncode is not None else -9)
                    status = "DeadlineExceeded"
                    break
            finally:
                procs.stop(proc)
            codes.append(code)
            if code == 0:
                status = "Succeeded"
                break
            if attempt <= spec.backoff_limit:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))  # Job-like exponential back-off, scaled down
        return JobResult(spec.name, status, len(codes), codes, time.monotonic() - start, log)

    def run_job(self, spec: JobSpec) -> JobResult:
        return self._run(spec, [sys.executable, "-m", spec.module, *spec.args])

    def run_distributed(self, spec: JobSpec, nproc: int) -> JobResult:
        if nproc < 1:
            raise MllabError(f"nproc must be >= 1, got {nproc}", "pass a positive number of processes")
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            spec.module,
            *spec.args,
        ]
        return self._run(spec, argv)

    # --- serving -------------------------------------------------------------------------
    @contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        argv = [sys.executable, "-m", "mllab.serving", "--http-port", str(port), "--host", "127.0.0.1"]
        for name, path in spec.models.items():
            argv += ["--model", f"{name}={path}"]
        for name, (path, percent) in spec.canary.items():
            argv += ["--canary", f"{name}={path}:{percent}"]
        argv += spec.extra_args
        log = spec.workdir / f"{spec.name}.log"
        proc = procs.spawn(argv, log)
        url = f"http://127.0.0.1:{port}"
        try:
            if not procs.wait_http(url + "/v2/health/ready", timeout=120, proc=proc):
                raise MllabError(
                    f"the model server {spec.name!r} did not become ready on port {port}; last log lines:\n"
                    f"{procs.tail(log)}",
                    f"read {log}",
                )
            yield Endpoint(url=url, metrics_url=url + "/metrics")
        finally:
            procs.stop(proc)

    def executor(self, max_workers: int) -> Executor:
        import multiprocessing

        # spawn, not fork: the parent may hold threads and sockets (MLflow client, torch) that fork would copy.
        return ProcessPoolExecutor(
            max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread_per_worker
        )

    def close(self) -> None:
        if self._mlflow_proc is not None:
            procs.stop(self._mlflow_proc)
            self._mlflow_proc = None
            if getattr(self, "_owns_env", False):
                os.environ.pop("MLFLOW_TRACKING_URI", None)
        self._tracking = None
        if hasattr(self, "_saved_exercise_env"):
            from mllab.exercise import EXERCISE_ENV

            saved = self.__dict__.pop("_saved_exercise_env")
            if saved is None:
                os.environ.pop(EXERCISE_ENV, None)
            else:
                os.environ[EXERCISE_ENV] = saved

    def describe(self) -> Iterator[tuple[str, str]]:
        yield ("backend", "local (processes on this machine)")
        yield ("tracking", self._tracking or "not started")
