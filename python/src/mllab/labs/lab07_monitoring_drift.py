"""Lab 7: monitoring and drift.

The model server exports Prometheus metrics (the monitoring role's names). We stream traffic in two
phases: first data like the training data, then data from a "new scanner" (a distribution shift).
Labels arrive late (one batch later) and feed the `model_accuracy` gauge. After each phase we scrape
/metrics and evaluate the monitoring role's alert conditions; we also compute PSI and KS per feature
offline. The drift alert triggers lab 2's training job on old + new data, and we compare accuracies.
"""

from __future__ import annotations

import json
from typing import Any

from mllab.backends import JobSpec, ServeSpec
from mllab.errors import JobFailed
from mllab.labs.base import Check, LabContext

HINTS = [
    "Labels arrive late: keep each prediction's request id, and post the labels later to NAME-feedback.",
    "PSI compares binned proportions: sum((live - ref) * ln(live / ref)); above 0.2 is drift.",
    "KS compares whole distributions: the largest gap between the two empirical CDFs (scipy.stats.ks_2samp).",
    "p95 latency comes from histogram buckets: compute it on the requests between two scrapes, like rate().",
    "Retrain on old + new data, then compare the new model with the old one on the new distribution.",
]


def stream(client: Any, X: Any, y: Any, prefix: str, batch: int = 10) -> None:
    """Send X in batches (V2, with request ids) and post each batch's labels one batch later."""
    pending: tuple[str, Any] | None = None
    for k, i in enumerate(range(0, len(X), batch)):
        rid = f"{prefix}-{k}"
        client.v2_infer(X[i : i + batch], request_id=rid)
        if pending:
            client.feedback(*pending)
        pending = (rid, y[i : i + batch].tolist())
    if pending:
        client.feedback(*pending)


def run(ctx: LabContext) -> dict[str, Any]:
    import numpy as np

    from mllab.alerts import Scrape, evaluate
    from mllab.data import load_digits_split, shift, to_images
    from mllab.drift import PSI_DRIFT, ks_per_feature, psi_per_feature
    from mllab.labs.lab06_serving import train_versions
    from mllab.model import load_model_dir, predict_proba
    from mllab.plots import drift_histograms
    from mllab.serving.client import Client

    ctx.backend.tracking_uri()  # the retraining job logs to MLflow: fail early if it is unreachable
    s = load_digits_split()
    n = 200 if ctx.quick else 300
    X_a, y_a = s.X_test[:n], s.y_test[:n]
    X_b, y_b = shift(s.X_test[-n:], seed=3), s.y_test[-n:]
    dirs = train_versions(ctx, {"v1": 6 if ctx.quick else 10})
    out: dict[str, Any] = {"stream": n}
    with (
        ctx.backend.serve(ServeSpec("monitored", {"digits": dirs["v1"]}, workdir=ctx.rundir, monitor=True)) as ep,
        Client(ep.url) as c,
    ):
        s0 = Scrape.parse(c.metrics_text())
        with ctx.console.status(f"phase A: {n} requests like the training data"):
            stream(c, X_a, y_a, "a")
        s1 = Scrape.parse(c.metrics_text())
        with ctx.console.status(f"phase B: {n} requests from the new scanner"):
            stream(c, X_b, y_b, "b")
        s2 = Scrape.parse(c.metrics_text())
    phases = {"A (training-like)": evaluate(s0, s1, "digits"), "B (shifted)": evaluate(s1, s2, "digits")}
    out["alerts"] = {k: [a.to_dict() for a in v] for k, v in phases.items()}
    for phase, alerts in phases.items():
        text = ", ".join(f"{a.name}={'FIRING' if a.firing else 'ok'} ({a.value:.3g} vs {a.threshold})" for a in alerts)
        ctx.console.print(f"phase {phase}: {text}")
    gauge = {lab["feature"]: v for lab, v in s2.get("model_feature_psi")}
    from mllab.serving.server import WINDOW

    live = np.concatenate([X_a, X_b])[-WINDOW:]  # exactly the server's drift window
    psi_live = psi_per_feature(np.load(dirs["v1"] / "reference.npy"), live)
    ref = np.load(dirs["v1"] / "reference.npy")
    psi_a, psi_b = psi_per_feature(ref, X_a), psi_per_feature(ref, X_b)
    ks_a, p_a = ks_per_feature(ref, X_a)
    ks_b, p_b = ks_per_feature(ref, X_b)
    out["offline"] = {
        "psi_max": {"A": float(psi_a.max()), "B": float(psi_b.max())},
        "psi_features_over": {"A": int((psi_a > PSI_DRIFT).sum()), "B": int((psi_b > PSI_DRIFT).sum())},
        "ks_median": {"A": float(np.median(ks_a)), "B": float(np.median(ks_b))},
        "ks_features_p_below_0.01": {"A": int((p_a < 0.01).sum()), "B": int((p_b < 0.01).sum())},
        "server_vs_offline_psi_max_gap": float(max(abs(gauge[f"pixel_{j}"] - psi_live[j]) for j in range(64))),
    }
    ctx.console.print(
        f"offline drift: PSI max A {psi_a.max():.3f} / B {psi_b.max():.3f}; features with KS p<0.01: "
        f"A {out['offline']['ks_features_p_below_0.01']['A']} / B "
        f"{out['offline']['ks_features_p_below_0.01']['B']} of 64"
    )
    top = [int(j) for j in np.argsort(psi_b)[::-1][:3]]
    drift_histograms(ref, X_b, top, [float(psi_b[j]) for j in top], ctx.rundir / "drift_histograms.png")
    old_model = load_model_dir(dirs["v1"])[0]
    old_acc = float((predict_proba(old_model, to_images(X_b)).argmax(1) == y_b).mean())
    drift = any(a.name == "ModelFeatureDrift" and a.firing for a in phases["B (shifted)"])
    out["retrained"] = None
    if drift:
        job_dir = ctx.rundir / "retrain"
        spec = JobSpec(
            name="retrain-after-drift",
            module="mllab.training",
            workdir=job_dir,
            backoff_limit=1,
            active_deadline_seconds=900,
            args=[
                "--epochs",
                "6" if ctx.quick else "10",
                "--data",
                "mixed",
                "--seed",
                str(ctx.seed),
                "--checkpoint-dir",
                str(job_dir / "checkpoints"),
                "--out",
                str(job_dir / "result.json"),
                "--experiment",
                ctx.experiment(),
                "--run-name",
                "retrain-after-drift",
            ],
        )
        with ctx.console.status("drift alert firing: retraining on old + new data (lab 2's job)"):
            res = ctx.backend.run_job(spec)
        if not res.succeeded:
            raise JobFailed(f"the retraining job ended {res.status}", f"read {res.log}")
        job = json.loads((job_dir / "result.json").read_text())
        new_model = load_model_dir(job_dir / "model")[0]
        new_acc = float((predict_proba(new_model, to_images(X_b)).argmax(1) == y_b).mean())
        new_orig = float((predict_proba(new_model, to_images(X_a)).argmax(1) == y_a).mean())
        out["retrained"] = {
            "run_id": job["run_id"],
            "old_accuracy_shifted": old_acc,
            "new_accuracy_shifted": new_acc,
            "new_accuracy_original": new_orig,
        }
        ctx.console.print(
            f"accuracy on the shifted stream: old model {old_acc:.3f} -> retrained {new_acc:.3f} "
            f"(original data: {new_orig:.3f})"
        )
    out["model_dir"] = str(dirs["v1"].relative_to(ctx.rundir))
    return out


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    import numpy as np

    from mllab.alerts import Scrape
    from mllab.data import load_digits_split, shift
    from mllab.serving.client import Client

    checks: list[Check] = []
    model_dir = ctx.rundir / result["model_dir"]
    if not (model_dir / "reference.npy").exists():
        return [Check("monitored model exists", False, f"{model_dir} has no model", "run the lab: mllab run 7")]
    s = load_digits_split()
    X, y = shift(s.X_test[:120], seed=4), s.y_test[:120]
    with (
        ctx.backend.serve(
            ServeSpec("check-monitored", {"digits": model_dir}, workdir=ctx.rundir / "check", monitor=True)
        ) as ep,
        Client(ep.url) as c,
    ):
        preds = []
        for k, i in enumerate(range(0, len(X), 10)):
            preds += Client.v2_predictions(c.v2_infer(X[i : i + 10], request_id=f"chk-{k}"))
            c.feedback(f"chk-{k}", y[i : i + 10].tolist())
        scrape = Scrape.parse(c.metrics_text())
    total = sum(v for _, v in scrape.get("model_predictions_total"))
    checks.append(
        Check(
            "server counts predictions (model_predictions_total)",
            total == len(X),
            f"{total:.0f} counted for {len(X)} sent",
            "increment per instance served",
        )
    )
    count = sum(v for _, v in scrape.get("model_prediction_latency_seconds_count"))
    checks.append(
        Check(
            "server exports a latency histogram",
            count == len(X) // 10,
            f"{count:.0f} observations for {len(X) // 10} requests",
            HINTS[3],
        )
    )
    acc_gauge = [v for _, v in scrape.get("model_accuracy")]
    true_acc = float(np.mean(np.array(preds) == y))
    checks.append(
        Check(
            "accuracy gauge follows the delayed labels",
            bool(acc_gauge) and abs(acc_gauge[0] - true_acc) < 1e-9,
            f"gauge {acc_gauge}, accuracy of the answers {true_acc:.4f}",
            HINTS[0],
        )
    )
    psi_max = max((v for _, v in scrape.get("model_feature_psi")), default=0.0)
    checks.append(
        Check("PSI gauge shows the shifted stream", psi_max > 0.2, f"max model_feature_psi {psi_max:.3f}", HINTS[1])
    )
    a, b = result["alerts"]["A (training-like)"], result["alerts"]["B (shifted)"]
    firing = lambda alerts, name: any(x["name"] == name and x["firing"] for x in alerts)  # noqa: E731
    checks.append(
        Check(
            "no drift alert on training-like traffic",
            not firing(a, "ModelFeatureDrift"),
            f"phase A: {[(x['name'], x['firing']) for x in a]}",
            HINTS[1],
        )
    )
    checks.append(
        Check(
            "drift and accuracy alerts fire on the shifted stream",
            firing(b, "ModelFeatureDrift") and firing(b, "ModelAccuracyDegraded"),
            f"phase B: {[(x['name'], x['firing'], round(x['value'], 3)) for x in b]}",
            HINTS[1],
        )
    )
    off = result["offline"]
    checks.append(
        Check(
            "offline PSI and KS agree: drift in B, not in A",
            off["psi_features_over"]["A"] == 0
            and off["psi_features_over"]["B"] > 0
            and off["ks_features_p_below_0.01"]["B"] > off["ks_features_p_below_0.01"]["A"],
            json.dumps({k: off[k] for k in ("psi_max", "ks_features_p_below_0.01")}),
            HINTS[2],
        )
    )
    checks.append(
        Check(
            "server PSI equals offline PSI",
            off["server_vs_offline_psi_max_gap"] < 1e-3,
            f"largest gap {off['server_vs_offline_psi_max_gap']:.2e}",
            HINTS[1],
        )
    )
    re = result.get("retrained")
    if not re:
        checks.append(Check("drift triggered retraining", False, "no retraining recorded", HINTS[4]))
        return checks
    run = ctx.mlflow().MlflowClient().get_run(re["run_id"])
    checks.append(
        Check(
            "retraining job is an MLflow run",
            run.info.status == "FINISHED",
            f"run {re['run_id'][:8]} {run.info.status}, data={run.data.params.get('data')}",
            HINTS[4],
        )
    )
    checks.append(
        Check(
            "retrained model beats the old one on the new data",
            re["new_accuracy_shifted"] > re["old_accuracy_shifted"],
            f"{re['old_accuracy_shifted']:.3f} -> {re['new_accuracy_shifted']:.3f}",
            HINTS[4],
        )
    )
    return checks
