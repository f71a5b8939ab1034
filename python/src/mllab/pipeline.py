"""A small pipeline runner (Kubeflow Pipelines' ideas, locally): steps, versioned outputs, caching, a gate.

Each step gets its inputs (the output directories of earlier steps) and parameters, writes into a
fresh directory, and is recorded as an MLflow run (nested under the pipeline's run) with its outputs
as artifacts. A step's outputs are content-addressed: the cache key hashes the step's name, code
version, parameters and the content hashes of its inputs, so an unchanged step is reused, never
recomputed, and every output has a version (its hash).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class GateFailed(Exception):
    """A quality gate said no: the pipeline stops here, and the message says why."""


def dir_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass
class Step:
    name: str
    fn: Callable[[dict[str, Path], dict[str, Any], Path], dict[str, Any]]  # (inputs, params, out_dir) -> metrics
    inputs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    cache: bool = True
    version: str = "1"
    # Runs through the backend's run_step (the k8s backend: a Job on the work PVC) instead of in
    # this process; `fn` must then be a module-level function and its inputs remote steps too.
    remote: bool = False


@dataclass
class StepResult:
    name: str
    status: str  # Succeeded | Cached | Failed | Skipped
    output: Path | None = None
    output_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    run_id: str = ""
    key: str = ""  # "<step>-<cache key>": names the output where the backend keeps it


def run_pipeline(
    steps: list[Step],
    work: Path,
    cache_dir: Path,
    mlflow: Any,
    name: str,
    on_step: Callable[[StepResult], None] | None = None,
    run_step: Callable[..., dict[str, Any]] | None = None,
) -> tuple[str, list[StepResult]]:
    """Run the steps in order; `run_step` (a backend's run_step) runs the steps marked remote."""
    results: dict[str, StepResult] = {}
    by_name = {s.name: s for s in steps}
    for step in steps:
        local = [i for i in step.inputs if step.remote and i in by_name and not by_name[i].remote]
        if local:
            raise ValueError(
                f"remote step {step.name!r} reads outputs of in-process steps {local}: make them remote too"
            )
    status = "Succeeded"
    with mlflow.start_run(run_name=name) as parent:
        for step in steps:
            if status != "Succeeded":
                results[step.name] = StepResult(step.name, "Skipped", reason=f"an earlier step {status.lower()}")
                continue
            missing = [i for i in step.inputs if i not in results or results[i].output is None]
            if missing:
                raise ValueError(f"step {step.name!r} needs outputs of {missing}, which did not run before it")
            key_src = json.dumps(
                {
                    "step": step.name,
                    "version": step.version,
                    "params": step.params,
                    "inputs": {i: results[i].output_hash for i in step.inputs},
                },
                sort_keys=True,
            )
            key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
            job_key = f"{step.name}-{key}"
            cached = cache_dir / job_key
            inputs = {i: results[i].output for i in step.inputs}  # type: ignore[misc]
            with mlflow.start_run(run_name=step.name, nested=True) as r:
                mlflow.set_tags({"mllab.step": step.name, "mllab.cache_key": key})
                mlflow.log_params({f"param.{k}": v for k, v in step.params.items()} or {"param.none": "-"})
                if step.cache and (cached / "metrics.json").exists():
                    res = StepResult(
                        step.name, "Cached", cached, dir_hash(cached), json.loads((cached / "metrics.json").read_text())
                    )
                else:
                    tmp = work / f"{step.name}.tmp"
                    shutil.rmtree(tmp, ignore_errors=True)
                    tmp.mkdir(parents=True)
                    try:
                        if step.remote and run_step is not None:
                            input_keys = {i: results[i].key for i in step.inputs}
                            metrics = run_step(step.fn, inputs, step.params, tmp, job_key, input_keys)
                        else:
                            metrics = step.fn(inputs, step.params, tmp)
                        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
                        final = cached if step.cache else work / step.name
                        shutil.rmtree(final, ignore_errors=True)
                        final.parent.mkdir(parents=True, exist_ok=True)
                        tmp.rename(final)  # only a complete output becomes visible (and cacheable)
                        res = StepResult(step.name, "Succeeded", final, dir_hash(final), metrics)
                    except GateFailed as exc:
                        shutil.rmtree(tmp, ignore_errors=True)
                        res = StepResult(step.name, "Failed", reason=str(exc))
                        status = "Failed"
                    except Exception as exc:
                        shutil.rmtree(tmp, ignore_errors=True)
                        res = StepResult(step.name, "Failed", reason=f"{type(exc).__name__}: {exc}")
                        status = "Failed"
                res.run_id, res.key = r.info.run_id, job_key
                mlflow.set_tags(
                    {
                        "mllab.status": res.status,
                        "mllab.reason": res.reason,
                        "mllab.output_version": res.output_hash[:16],
                    }
                )
                numeric = {
                    k: v for k, v in res.metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
                }
                if numeric:
                    mlflow.log_metrics(numeric)
                if res.output is not None:
                    mlflow.log_artifacts(str(res.output), artifact_path=step.name)
                if res.status == "Failed":
                    mlflow.end_run(status="FAILED")
            results[step.name] = res
            if on_step:
                on_step(res)
        mlflow.set_tags(
            {
                "mllab.pipeline_status": status,
                "mllab.pipeline_reason": next((r.reason for r in results.values() if r.status == "Failed"), ""),
            }
        )
        pid = parent.info.run_id
    return pid, list(results.values())
