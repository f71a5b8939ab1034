"""Lab 2: a training job that survives a crash.

The job (`python -m mllab.training`) trains a small CNN on scikit-learn's digits with a fixed
RANDOM_SEED and checkpoints every N epochs with the learner's `checkpoint.py` (their exercise:
what goes into a checkpoint, how it is restored, how it is written safely). We run it twice on
the backend, like two Kubernetes Jobs with `backoffLimit: 2` and `activeDeadlineSeconds`: once
undisturbed, once killed (SIGKILL) mid-training on its first attempt. The retry resumes from the
newest checkpoint; both runs must end with bitwise identical weights and identical metrics. Everything goes to MLflow.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mllab.backends import JobSpec
from mllab.errors import JobFailed
from mllab.labs.base import Check, LabContext

HINTS = [
    "A retry can only resume what was saved: the checkpoint must hold the model, the optimizer, the epoch "
    "and every RNG state (torch, numpy, random, and the generator that shuffles the batches).",
    "Identical weights need identical randomness: seed everything from RANDOM_SEED, and restore the RNG "
    "states from the checkpoint instead of re-seeding on resume.",
    "Save checkpoints atomically (write a temp file, then os.replace) so a crash during a save cannot "
    "leave a corrupt checkpoint for the retry.",
    "backoffLimit counts retries after the first failure; activeDeadlineSeconds bounds all attempts together.",
]

MIN_ACCURACY = 0.90


def _job(ctx: LabContext, name: str, epochs: int, crash_at: int | None) -> dict[str, Any]:
    out_dir = ctx.rundir / name
    args = [
        "--epochs",
        str(epochs),
        "--checkpoint-every",
        "2",
        "--seed",
        str(ctx.seed),
        "--checkpoint-dir",
        str(out_dir / "checkpoints"),
        "--out",
        str(out_dir / "result.json"),
        "--experiment",
        ctx.experiment(),
        "--run-name",
        name,
    ]
    if crash_at:
        args += ["--crash-at-epoch", str(crash_at)]
    spec = JobSpec(
        name=name,
        module="mllab.training",
        args=args,
        env={"RANDOM_SEED": str(ctx.seed)},
        backoff_limit=2,
        active_deadline_seconds=900,
        workdir=out_dir,
    )
    with ctx.console.status(
        f"job {name}: training {epochs} epochs" + (f", crash in epoch {crash_at}" if crash_at else "")
    ):
        res = ctx.backend.run_job(spec)
    if not res.succeeded:
        raise JobFailed(
            f"job {name} ended {res.status} after {res.attempts} attempt(s), exit codes {res.exit_codes}",
            f"read its log: {res.log}",
        )
    data = json.loads((out_dir / "result.json").read_text())
    data.update(
        job_status=res.status,
        job_attempts=res.attempts,
        job_exit_codes=res.exit_codes,
        job_wall_s=round(res.wall_s, 1),
        job_ref=res.ref,
    )
    ctx.console.print(
        f"  {name}: {res.status} after {res.attempts} attempt(s) (exit codes {res.exit_codes}), "
        f"val accuracy {data['val_accuracy']:.4f}, weights {data['weights_sha256'][:12]}"
    )
    return data


def probe_checkpoint(code: Any, scratch: Path) -> list[Check]:
    """Grade the learner's save_checkpoint/load_checkpoint directly, one property per check: after a
    save, a few training steps and random draws, a load must bring back the optimizer's state and
    every RNG; a save that crashes half-way must leave the previous checkpoint whole."""
    import random

    import numpy as np
    import torch

    from mllab.exercise import ExerciseError, call
    from mllab.model import DigitsCNN

    scratch.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = DigitsCNN(width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    shuffler = torch.Generator().manual_seed(7)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def draws() -> list[Any]:
        return [
            torch.randperm(20, generator=shuffler).tolist(),
            torch.rand(3).tolist(),
            np.random.rand(3).tolist(),
            [random.random() for _ in range(3)],
        ]

    step()
    path = scratch / "ckpt-epoch0001.pt"
    try:
        call(code, "save_checkpoint", path, epoch=1, model=model, optimizer=opt, shuffler=shuffler, history=[{"e": 1}])
        momentum = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
        expected = draws()
        step()  # move everything on, as the crashed attempt did before it died
        m2 = DigitsCNN(width=4)
        o2 = torch.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9)
        s2 = torch.Generator().manual_seed(99)
        torch.manual_seed(123), np.random.seed(123), random.seed(123)  # a fresh process seeds again
        epoch, history = call(code, "load_checkpoint", path, model=m2, optimizer=o2, shuffler=s2)
    except ExerciseError as exc:
        return [Check("checkpoint.py saves and loads", False, exc.message, exc.fix)]
    checks = [
        Check(
            "load_checkpoint returns the saved epoch and history",
            epoch == 1 and list(history) == [{"e": 1}],
            f"returned epoch {epoch!r}, history {history!r}",
            "return (epoch, history) exactly as save_checkpoint got them",
        )
    ]
    restored = [o2.state.get(p, {}).get("momentum_buffer") for p in m2.parameters()]
    same_momentum = all(r is not None and torch.equal(r, m) for r, m in zip(restored, momentum, strict=True))
    checks.append(
        Check(
            "the optimizer's state is restored",
            same_momentum,
            "SGD's momentum buffers after load_checkpoint "
            + ("equal the saved ones" if same_momentum else "are missing or differ from the saved ones"),
            "the resumed weights differ from the uninterrupted run when the optimizer starts over: save "
            "optimizer.state_dict() and restore it with optimizer.load_state_dict()",
        )
    )
    s2_draws = draws()
    s2_draws[0] = torch.randperm(20, generator=s2).tolist()
    names = ["the batch shuffler", "torch's RNG", "numpy's RNG", "Python's random"]
    lost = [n for n, a, b in zip(names, expected, s2_draws, strict=True) if a != b]
    checks.append(
        Check(
            "every RNG state is restored",
            not lost,
            "not restored: " + ", ".join(lost) if lost else "all four generators continue where they were saved",
            "identical weights need identical randomness: save shuffler.get_state(), torch.get_rng_state(), "
            "np.random.get_state() and random.getstate(), and set them back on load instead of re-seeding",
        )
    )
    # A save that dies half-way (disk full, pod killed) must leave the previous checkpoint whole.
    real_save = torch.save

    def dying_save(obj: Any, f: Any, *a: Any, **kw: Any) -> None:
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("simulated crash while saving")

    torch.save = dying_save
    try:
        call(code, "save_checkpoint", path, epoch=2, model=model, optimizer=opt, shuffler=shuffler, history=[])
    except ExerciseError:
        pass
    finally:
        torch.save = real_save
    try:
        intact = torch.load(path, map_location="cpu", weights_only=False) is not None
    except Exception:
        intact = False
    checks.append(
        Check(
            "a crash while saving leaves the previous checkpoint whole",
            intact,
            f"{path.name} after a save that crashed half-way: " + ("still loads" if intact else "truncated"),
            "write atomically: torch.save to a temporary file next to the checkpoint, then os.replace() it "
            "onto the checkpoint's path",
        )
    )
    return checks


def run(ctx: LabContext) -> dict[str, Any]:
    ctx.backend.tracking_uri()  # first: an unreachable MLflow fails here, before anything is written
    epochs, crash_at = (8, 3) if ctx.quick else (15, 5)
    clean = _job(ctx, "uninterrupted", epochs, None)
    crashed = _job(ctx, "crash-and-resume", epochs, crash_at)
    same = clean["weights_sha256"] == crashed["weights_sha256"] and clean["history"] == crashed["history"]
    ctx.console.print(
        ("[green]identical[/]" if same else "[red]different[/]") + " weights and metrics after resume "
        f"(resumed from the epoch-{crashed['resumed_from_epoch']} checkpoint)"
    )
    ctx.console.print(f"  learning curve: {ctx.rundir.parent / 'run' / 'uninterrupted' / 'learning_curve.png'}")
    return {
        "experiment": ctx.experiment(),
        "epochs": epochs,
        "crash_at_epoch": crash_at,
        "runs": {
            name: {
                k: d[k]
                for k in (
                    "run_id",
                    "weights_sha256",
                    "val_accuracy",
                    "resumed_from_epoch",
                    "job_status",
                    "job_attempts",
                    "job_exit_codes",
                    "job_wall_s",
                    "job_ref",
                )
            }
            for name, d in (("uninterrupted", clean), ("crash-and-resume", crashed))
        },
        "identical": same,
    }


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    import numpy as np

    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's checkpoint.py, property by property
        with tempfile.TemporaryDirectory() as scratch:
            checks += probe_checkpoint(ctx.learner("checkpoint"), Path(scratch))
    mlflow = ctx.mlflow()
    client = mlflow.MlflowClient()
    runs = {}
    for name, rec in result["runs"].items():
        try:
            runs[name] = client.get_run(rec["run_id"])
        except Exception as exc:
            checks.append(
                Check(
                    f"MLflow run '{name}'",
                    False,
                    f"run {rec['run_id']} not found: {exc}",
                    "run the lab again: mllab run 2",
                )
            )
    if len(runs) < 2:
        return checks
    a, b = runs["uninterrupted"], runs["crash-and-resume"]
    for name, r in runs.items():
        acc = r.data.metrics.get("val_accuracy")
        ok = r.info.status == "FINISHED" and acc is not None and acc >= MIN_ACCURACY and "seed" in r.data.params
        checks.append(
            Check(
                f"MLflow run '{name}' finished with metrics and params",
                ok,
                f"status {r.info.status}, val_accuracy {acc}, params {sorted(r.data.params)[:4]}...",
                f"the job must log params (seed...) and reach val_accuracy >= {MIN_ACCURACY}",
            )
        )
    arts = {f.path for f in client.list_artifacts(a.info.run_id)}
    need = {"learning_curve.png", "confusion_matrix.png"}
    checks.append(
        Check(
            "learning curve and confusion matrix in MLflow",
            need <= arts,
            f"artifacts: {sorted(arts)}",
            "log the PNGs with mlflow.log_artifact",
        )
    )
    ref = result["runs"]["crash-and-resume"].get("job_ref", "")
    if ref:  # the cluster's own record of the crashed Job (k8s backend)
        state = ctx.backend.job_state(ref)
        checks.append(
            Check(
                f"the cluster's Job {ref} completed after a failed pod",
                bool(state and state["complete"] and int(state["failed_pods"]) >= 1),
                f"Job state: {state}" if state else f"Job {ref} is gone (finished Jobs are kept for a day)",
                "run the lab again (mllab run 2 --backend k8s); a killed pod must be replaced by the Job controller",
            )
        )
    attempts = int(b.data.tags.get("mllab.attempts", "1"))
    resumed = int(b.data.tags.get("mllab.resumed_from_epoch", "0"))
    checks.append(
        Check(
            "the crashed job was retried and resumed from a checkpoint",
            attempts >= 2 and resumed > 0,
            f"attempts {attempts}, resumed from epoch {resumed}",
            "the retry must load the newest checkpoint, not start over",
        )
    )
    ha, hb = a.data.tags.get("mllab.weights_sha256"), b.data.tags.get("mllab.weights_sha256")
    checks.append(
        Check(
            "resumed run ends with bitwise identical weights",
            bool(ha) and ha == hb,
            f"sha256 {str(ha)[:12]} vs {str(hb)[:12]}",
            "the resumed weights differ from the uninterrupted run: does checkpoint.py save and restore the "
            "optimizer's state and every RNG state (the batch shuffler first)?",
        )
    )
    hist_a = client.get_metric_history(a.info.run_id, "val_accuracy")
    hist_b = client.get_metric_history(b.info.run_id, "val_accuracy")
    curve_a = {m.step: m.value for m in hist_a}
    curve_b = {m.step: m.value for m in hist_b}
    checks.append(
        Check(
            "resumed run has the same learning curve",
            curve_a == curve_b and len(curve_a) > 1,
            f"{len(curve_a)} epochs logged; equal: {curve_a == curve_b}",
            HINTS[0],
        )
    )
    # The model in MLflow really is that model: load it and re-measure its accuracy.
    from mllab.training import TrainConfig, dataset

    model = mlflow.pytorch.load_model(f"runs:/{b.info.run_id}/model", map_location="cpu")
    _, _, X_te, y_te = dataset(TrainConfig())
    import torch

    with torch.no_grad():
        acc = float((model(torch.from_numpy(X_te)).argmax(1).numpy() == y_te).mean())
    logged = b.data.metrics.get("val_accuracy", -1)
    checks.append(
        Check(
            "the model logged to MLflow reproduces the logged accuracy",
            bool(np.isclose(acc, logged)),
            f"re-measured {acc:.4f}, logged {logged:.4f}",
            "log the final model, not an earlier one",
        )
    )
    return checks
