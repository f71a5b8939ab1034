"""The lab registry: metadata only, so `mllab list` never imports a lab's heavy code.

Every lab module exposes the same interface (see `mllab.labs.base`):

- ``run(ctx) -> dict``: do the lab (the "solve"), return a JSON-able summary of what it produced;
- ``check(ctx, result) -> list[Check]``: verify real outcomes (MLflow runs, files, a server that answers);
- ``HINTS``: progressive hints, shown by `mllab hint N` (a failing check also carries its own hint).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from mllab.errors import UsageError


@dataclass(frozen=True)
class LabInfo:
    number: int
    slug: str
    title: str
    summary: str
    needs: tuple[str, ...]  # what it runs on the backend: mlflow, job, torchrun, server

    @property
    def dirname(self) -> str:
        return f"{self.number:02d}-{self.slug}"

    @property
    def module_name(self) -> str:
        return f"mllab.labs.lab{self.number:02d}_{self.slug.replace('-', '_')}"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module_name)


LABS: tuple[LabInfo, ...] = (
    LabInfo(
        1,
        "gpu",
        "GPU: detect CUDA, measure the speed-up",
        "CPU vs GPU on a matmul and a training step; CPU-only machines pass as 'skipped: no GPU'.",
        ("job",),
    ),
    LabInfo(
        2,
        "training-job",
        "Training job: seeds, checkpoints, resume, retries",
        "A PyTorch CNN on sklearn digits as a Job: killed mid-training, resumed to identical weights.",
        ("mlflow", "job"),
    ),
    LabInfo(
        3,
        "tracking-registry",
        "Tracking and model registry",
        "Compare runs, register the best model, move the champion/challenger aliases, load by alias.",
        ("mlflow",),
    ),
    LabInfo(
        4,
        "hyperparameter-search",
        "Hyperparameter search (Optuna; Katib-style trials)",
        "Optuna TPE/random search over your search space and objective: parallel trials, a goal, a failure budget.",
        ("mlflow", "job"),
    ),
    LabInfo(
        5,
        "distributed-training",
        "Distributed training with torchrun (DDP)",
        "N local processes (gloo on CPU, nccl on GPU) match single-process training; throughput per N.",
        ("mlflow", "torchrun"),
    ),
    LabInfo(
        6,
        "serving",
        "Serving with KServe: V1, V2 and a canary",
        "Your KServe model (V1 and V2 predict) and InferenceService with a canary; the split, measured.",
        ("server",),
    ),
    LabInfo(
        7,
        "monitoring-drift",
        "Monitoring and drift",
        "Prometheus metrics, delayed-label accuracy, PSI and KS drift, alert rules, drift-triggered retraining.",
        ("mlflow", "job", "server"),
    ),
    LabInfo(
        8,
        "pipeline",
        "Pipeline: preprocess, train, evaluate, gate, deploy",
        "Versioned step artifacts, an accuracy gate that stops a bad model, deployment of a good one.",
        ("mlflow", "server"),
    ),
)


def get_lab(value: str | int) -> LabInfo:
    """Find a lab by number ("2", "02") or slug ("training-job"); a clear error otherwise."""
    text = str(value).strip()
    for lab in LABS:
        if (text.isdigit() and int(text) == lab.number) or text in (lab.slug, lab.dirname):
            return lab
    numbers = ", ".join(str(lab.number) for lab in LABS)
    raise UsageError(f"unknown lab {value!r}", f"use a lab number ({numbers}) or a name from `mllab list`")
