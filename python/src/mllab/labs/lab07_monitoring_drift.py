"""Lab 7: monitoring and drift.

The learner writes the drift statistic (`drift.py`: psi(), which the model server exports per
pixel as `model_feature_psi`) and the drift alert (`drift_alert.yaml`, a Prometheus rule). The
model server exports Prometheus metrics (the monitoring role's names). We stream traffic in two
phases: first data like the training data, then data from a "new scanner" (a distribution shift).
Labels arrive late (one batch later) and feed the `model_accuracy` gauge. After each phase we scrape
/metrics, evaluate the role's accuracy and latency conditions and the learner's drift rule; we also
compute PSI (the learner's) and KS per feature offline. The learner's drift alert triggers lab 2's
training job on old + new data, and we compare accuracies.

On the k8s backend the cluster's Prometheus does the evaluating: it scrapes the server (a
ServiceMonitor) and evaluates the learner's drift_alert.yaml (a PrometheusRule) beside the
monitoring role's rules; the lab waits for the drift alert to fire there (its `for:` included) and
`check` reads the alerts' history back from Prometheus (the ALERTS series). The local backend has no
Prometheus and evaluates the same rules in process (mllab.alerts).
"""

from __future__ import annotations

import json
import math
import re
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from mllab.backends import JobSpec, ServeSpec
from mllab.errors import JobFailed
from mllab.labs.base import Check, LabContext

RULE_FILE = "drift_alert.yaml"

HINTS = [
    "Labels arrive late: keep each prediction's request id, and post the labels later to NAME-feedback.",
    "PSI compares binned shares: sum((live - ref) * ln(live / ref)) over the reference's bins; above 0.2 is drift.",
    "An empty bin makes ln(0): floor every share at eps (np.clip(p, eps, None)) and renormalise, in both samples.",
    "Every PSI term is >= 0: (a - e) and ln(a / e) always share a sign. A negative PSI has one of them reversed.",
    "The drift rule: max by (model_name, feature) (model_feature_psi) > 0.2, held `for: 5m` before it fires.",
    "p95 latency comes from histogram buckets: compute it on the requests between two scrapes, like rate().",
    "KS compares whole distributions: the largest gap between the two empirical CDFs (scipy.stats.ks_2samp).",
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


# --- the learner's code --------------------------------------------------------------------------


def rule_path(ctx: LabContext) -> Path:
    from mllab.exercise import solution_dir

    return (ctx.exercise or solution_dir(ctx.lab)) / RULE_FILE


def learner_rule(path: Path) -> Any:
    """The ModelFeatureDrift rule of the learner's drift_alert.yaml; ExerciseError naming the problem."""
    from mllab.alerts import RuleError, load_rule
    from mllab.exercise import ExerciseError

    try:
        return load_rule(path)
    except RuleError as exc:
        raise ExerciseError(
            f"{RULE_FILE}: {exc}", f"fix {path} (mllab start 7 --reset-files puts the starter back)"
        ) from None


def drift_alert(path: Path, rule: Any, scrape: Any) -> Any:
    """The learner's drift rule on one scrape, as an Alert (value: the largest PSI gauge)."""
    from mllab.alerts import DRIFT_PSI_MAX, Alert, RuleError, scrape_alerts
    from mllab.exercise import ExerciseError

    try:
        firing, labels = scrape_alerts(path, rule, scrape.samples)
    except RuleError as exc:
        raise ExerciseError(f"{RULE_FILE}: the expression {rule.expr!r}: {exc}", f"fix the `expr:` of {path}") from None
    psis = [v for lab, v in scrape.get("model_feature_psi") if lab.get("model_name") == "digits"]
    features = sorted({lab["feature"] for lab in labels if "feature" in lab}, key=lambda f: (len(f), f))
    return Alert(
        rule.alert,
        firing,
        max(psis, default=0.0),
        DRIFT_PSI_MAX,
        {"rule": RULE_FILE, "alerts": str(len(labels)), "features": ",".join(features[:8])},
    )


def independent_psi(reference: Any, current: Any, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI computed here, apart from the learner's code: the reference's quantile bins, open at both
    ends, shares floored at eps; PSI = KL(a || e) + KL(e || a) (scipy.stats.entropy)."""
    import numpy as np
    from scipy.stats import entropy

    ref, cur = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))

    def shares(x: Any) -> Any:
        idx = (x[:, None] > edges[None, :]).sum(axis=1)  # bin i holds (edges[i-1], edges[i]]
        p = np.maximum(np.bincount(idx, minlength=len(edges) + 1) / len(x), eps)
        return p / p.sum()

    e, a = shares(ref), shares(cur)
    return float(entropy(a, e) + entropy(e, a))


FLOOR_HINT = (
    "an empty bin gives ln(0) (inf or nan; np.nansum hides the nan, not the inf): floor every share at eps "
    "(np.clip(p, eps, None)) and renormalise, in both samples; the reference's last bin is always empty"
)
SIGN_HINT = (
    "the PSI is negative: a term's sign is swapped. It is sum((a - e) * ln(a / e)), a the current share and e "
    "the reference's; (a - e) and ln(a / e) always share a sign, so every term is >= 0"
)


def probe_psi(code: Any) -> list[Check]:
    """Grade the learner's psi() directly, one property per check, against `independent_psi`."""
    import warnings

    import numpy as np

    from mllab.exercise import ExerciseError, call

    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    cases = {
        "same": (x, x),
        "empty": (rng.normal(size=1000), np.full(200, 0.05)),  # everything in one bin
        "shifted": (rng.normal(0, 1, 2000), rng.normal(1, 1, 1000)),
        "outside": (np.zeros(500), np.full(100, 4.0)),  # a constant feature that moves
        "wider": (rng.normal(0, 1, 2000), rng.normal(0.7, 1.3, 1500)),
        "pixels": (
            rng.integers(0, 17, 500).astype(float),  # ties, like pixel values
            np.clip(rng.integers(0, 17, 300) + 3, 0, 16).astype(float),
        ),
    }
    got: dict[str, float] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # log(0) warnings: the checks below say it
            for name, (ref, cur) in cases.items():
                got[name] = float(call(code, "psi", ref, cur, bins=10, eps=1e-4))
    except ExerciseError as exc:
        return [Check("drift.py: psi() runs", False, exc.message, exc.fix)]
    except (TypeError, ValueError) as exc:
        return [Check("drift.py: psi() runs", False, f"psi() did not return a number: {exc}", "return a float")]
    want = {name: independent_psi(ref, cur) for name, (ref, cur) in cases.items()}

    def finite(v: float) -> bool:
        return math.isfinite(v)

    unwritten = all(v == 0 for v in got.values())

    def why(v: float, fallback: str) -> str:
        if unwritten:
            return "psi() returns 0 for every input: complete the TODOs of drift.py"
        if not finite(v):
            return FLOOR_HINT
        if v < 0:
            return SIGN_HINT
        return fallback

    checks = []
    v = got["same"]
    checks.append(
        Check(
            "psi() of a sample against itself is 0",
            finite(v) and abs(v) < 1e-9 and not unwritten,
            f"psi(x, x) = {v:.6g}" + (" (cannot tell: psi() returns 0 for every input)" if unwritten else ""),
            why(v, "the same sample must give 0: compute both shares over the reference's bins (bin_edges(reference))"),
        )
    )
    v = got["empty"]
    checks.append(
        Check(
            "psi() stays finite with empty bins (the eps floor)",
            finite(v) and v > 1,
            f"all of the current sample in one bin: psi = {v:.6g} (expected {want['empty']:.4g})",
            why(v, "floor the shares at eps, then renormalise them to sum to 1"),
        )
    )
    v = got["shifted"]
    checks.append(
        Check(
            "psi() of a shifted distribution is large and positive",
            finite(v) and v > 0.2,
            f"N(0, 1) against N(1, 1): psi = {v:.6g} (expected {want['shifted']:.3f}, drift above 0.2)",
            why(v, "shares, not counts (divide each by its total), and the natural log (np.log)"),
        )
    )
    v = got["outside"]
    checks.append(
        Check(
            "psi() sees a feature move outside the reference's range",
            finite(v) and v > 1,
            f"a constant 0 feature that becomes 4: psi = {v:.6g} (expected {want['outside']:.3g})",
            why(
                v,
                "floor the empty bins at eps instead of skipping them: skipping the bins the reference never "
                "filled hides every value beyond its range",
            ),
        )
    )
    off = {n: (got[n], want[n]) for n in ("shifted", "wider", "pixels")}
    bad = {n: gw for n, gw in off.items() if not (finite(gw[0]) and math.isclose(gw[0], gw[1], rel_tol=1e-2))}
    ratios = [w / g for g, w in bad.values() if finite(g) and g > 0]
    log_base = next(
        (
            name
            for name, k in (("np.log10", math.log(10)), ("np.log2", math.log(2)))
            if ratios and all(math.isclose(r, k, rel_tol=2e-2) for r in ratios)
        ),
        None,
    )
    checks.append(
        Check(
            "psi() matches an independent computation",
            not bad,
            "; ".join(f"{n}: yours {g:.4g}, independent {w:.4g}" for n, (g, w) in off.items())
            + " (the reference's quantile bins, shares floored at eps, KL(a||e) + KL(e||a) with scipy)",
            f"PSI uses the natural log: np.log, not {log_base}"
            if log_base
            else why(
                min((g for g, _ in bad.values()), default=0.0),
                "both samples' shares over the reference's bins (bin_counts / total), floored at eps and "
                "renormalised, then sum((a - e) * np.log(a / e))",
            ),
        )
    )
    return checks


def _psi_series(feature: str, values: list[float]) -> tuple[str, dict[str, str], list[float]]:
    labels = {"namespace": "mllab-labs", "pod": "monitored-0", "model_name": "digits", "feature": feature}
    return ("model_feature_psi", labels, values)


# Synthetic series, one value a minute for 20 minutes, as Prometheus would scrape them from the server.
DRIFTING = [_psi_series("pixel_3", [0.3] * 21), _psi_series("pixel_4", [0.45] * 21)]
MODERATE = [
    _psi_series("pixel_3", [0.15] * 21),
    _psi_series("pixel_5", [0.02] * 21),
    ("model_accuracy", {"namespace": "mllab-labs", "model_name": "digits", "model_version": "v1"}, [0.5] * 21),
]


# --- on a cluster: the alerts as the cluster's Prometheus evaluates them -----------------------------

ROLE_ALERTS = ("ModelAccuracyDegraded", "ModelLatencyHigh")  # the monitoring role's, read beside the learner's
MODEL = "digits"


def _state(alerts: list[dict[str, Any]]) -> str:
    states = {a.get("state") for a in alerts}
    return "firing" if "firing" in states else "pending" if "pending" in states else "inactive"


def _role_alerts(rule: dict[str, Any] | None, namespace: str) -> list[dict[str, Any]]:
    """The role rule's alerts for this lab's model in the serving namespace (its rules aggregate by
    namespace and model_name)."""
    return [
        a
        for a in (rule or {}).get("alerts", [])
        if a.get("labels", {}).get("namespace") == namespace and a.get("labels", {}).get("model_name") == MODEL
    ]


def prometheus_phase(
    ctx: LabContext, prom: Any, rules: Any, rule: Any, sent: int, role: list[Any], wait_firing: bool
) -> list[Any]:
    """One phase's alerts as Prometheus has them: wait until it has scraped the server's `sent`
    predictions and evaluated the rules after that; with `wait_firing`, until the learner's drift
    alert and the role's accuracy alert are no longer pending (their `for:`). `role` are the
    in-process Alerts of the role's conditions (their values); Prometheus says whether they fire."""
    from mllab.alerts import DRIFT_PSI_MAX, Alert
    from mllab.prometheus import evaluated_since, threshold

    theirs = lambda f: not rules.in_file(f)  # noqa: E731  (the role's rules)
    sel = f'model_predictions_total{{namespace="{rules.namespace}",pod=~"{rules.server}-.+"}}'

    def scraped() -> float:
        got = prom.query(f"max({sel})")
        return time.time() if got and got[0][1] >= sent else 0.0

    at = prom.wait(
        f"{sent} predictions of the server are not scraped ({sel})",
        scraped,
        180,
        fix="is the server's ServiceMonitor selected by the Prometheus (MLLAB_MONITOR_LABELS)?",
    )

    def read() -> dict[str, Any]:
        loaded = prom.rules()
        return {"learner": loaded.get(rule.alert, rules.in_file), **{n: loaded.get(n, theirs) for n in ROLE_ALERTS}}

    now = prom.wait(
        "the rules are not evaluated after the scrape",
        lambda: (
            (got := read())["learner"] is not None
            and all(r is None or evaluated_since(r, at) for r in got.values())
            and got
        ),
        180,
    )
    t0, deadline = time.monotonic(), time.monotonic() + rule.for_s + 120
    with ctx.console.status("Prometheus: reading the alerts") as status:
        while wait_firing:
            learner, accuracy = (
                _state(now["learner"]["alerts"]),
                _state(_role_alerts(now[ROLE_ALERTS[0]], rules.namespace)),
            )
            if "pending" not in (learner, accuracy) or time.monotonic() > deadline:
                break
            status.update(
                f"Prometheus: {rule.alert} {learner}, {ROLE_ALERTS[0]} {accuracy}, {time.monotonic() - t0:.0f} s "
                f"(an alert fires after its condition held for `for: {rule.for_s:g}s`)"
            )
            time.sleep(5)
            now = read()
    if now["learner"].get("health") == "err":
        from mllab.exercise import ExerciseError

        raise ExerciseError(
            f"{RULE_FILE}: Prometheus cannot evaluate {rule.alert}: {now['learner'].get('lastError')}",
            f"fix the `expr:` of {RULE_FILE}",
        )
    alerts = []
    for a in role:
        r = now.get(a.name)
        if r is None:
            continue
        state = _state(_role_alerts(r, rules.namespace))
        alerts.append(
            Alert(
                a.name,
                state == "firing",
                a.value,
                threshold(r.get("query", "")) or a.threshold,
                {**a.labels, "source": "prometheus", "state": state},
            )
        )
    learner = now["learner"]
    state = _state(learner["alerts"])
    firing = [x for x in learner["alerts"] if x.get("state") == "firing"]
    features = sorted({x["labels"]["feature"] for x in firing if "feature" in x["labels"]}, key=lambda f: (len(f), f))
    values = [float(x["value"]) for x in learner["alerts"]]
    alerts.append(
        Alert(
            rule.alert,
            state == "firing",
            max(values, default=0.0),
            DRIFT_PSI_MAX,
            {
                "rule": RULE_FILE,
                "alerts": str(len(firing)),
                "features": ",".join(features[:8]),
                "source": "prometheus",
                "state": state,
            },
        )
    )
    return alerts


def history_checks(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    """The alerts of the run as Prometheus recorded them (the ALERTS series, one sample per evaluation
    while an alert is pending or firing), and the cluster's accuracy threshold against this host's."""
    from mllab.alerts import accuracy_min
    from mllab.prometheus import SERVER_LABEL, Prometheus, PrometheusError, RuleSet, threshold

    p = result["prometheus"]
    rules = RuleSet(**{k: p[k] for k in ("url", "namespace", "name", "server")})
    (a0, a1), (b0, b1) = p["phases"]["A"], p["phases"]["B"]
    mine = f'ALERTS{{alertname="ModelFeatureDrift",{SERVER_LABEL}="{p["server"]}"'
    accuracy = f'ALERTS{{alertname="ModelAccuracyDegraded",namespace="{p["namespace"]}",model_name="{MODEL}"'
    try:
        with Prometheus(p["url"]) as prom:
            quiet_a = not prom.query(f"max_over_time({mine}}}[{a1 - a0 + 1:.0f}s])", at=a1)
            window = f"[{b1 - b0 + 1:.0f}s]"
            fired_b = bool(prom.query(f'max_over_time({mine},alertstate="firing"}}{window})', at=b1))
            acc_b = bool(prom.query(f'max_over_time({accuracy},alertstate="firing"}}{window})', at=b1))
            rule = prom.rules().get("ModelAccuracyDegraded", lambda f: not rules.in_file(f))
    except PrometheusError as exc:
        return [Check("the run's alerts, read from Prometheus", False, exc.message, exc.fix)]
    checks = [
        Check(
            "no drift alert on training-like traffic (Prometheus)",
            quiet_a and fired_b,
            f"{RULE_FILE} in Prometheus during phase A: {'inactive' if quiet_a else 'pending or firing'}"
            + ("" if fired_b or not quiet_a else " (cannot tell: your drift alert did not fire on phase B)"),
            f"your {RULE_FILE} held on training-like data: is its comparison the right way round (> 0.2)? does "
            "drift.py give ~0 on data like the training data?"
            if not quiet_a
            else "make your drift alert fire on the shifted stream first (drift.py and " + RULE_FILE + ")",
        ),
        Check(
            "drift and accuracy alerts fire on the shifted stream (Prometheus)",
            fired_b and acc_b,
            f"ALERTS in Prometheus during phase B: your ModelFeatureDrift {'fired' if fired_b else 'did not fire'}, "
            f"the role's ModelAccuracyDegraded {'fired' if acc_b else 'did not fire'}",
            f"ModelFeatureDrift is your {RULE_FILE} on your psi() gauges: " + HINTS[4],
        ),
    ]
    cluster, here = threshold((rule or {}).get("query", "")), accuracy_min()
    checks.append(
        Check(
            "the cluster's accuracy alert uses this host's monitoring_accuracy_min",
            cluster is not None and abs(cluster - here) < 1e-9,
            f"ModelAccuracyDegraded in Prometheus: {(rule or {}).get('query', 'not loaded')}; MLLAB_ALERT_ACCURACY_MIN "
            f"gives {here:g}",
            "the monitoring and labs layers disagree: rerun the platform playbook (make site), which sets both "
            "from monitoring_accuracy_min",
        )
    )
    return checks


def probe_rule(path: Path) -> list[Check]:
    """Grade the learner's drift rule: it loads, reads the PSI gauge, fires on a lasting drift, stays
    silent below the threshold and waits for its `for` (promtool test rules, where installed)."""
    from mllab.alerts import RuleError, parse_promql, promtool, promtool_check, rule_fires
    from mllab.exercise import ExerciseError

    tool = promtool()
    engine = "promtool test rules" if tool else "the lab's evaluator: promtool is not installed"
    try:
        rule = learner_rule(path)
        if tool:
            ok, out = promtool_check(path)
            if not ok:
                lines = [
                    x.strip() for x in out.splitlines() if x.strip() and not x.startswith(("Checking", "  FAILED"))
                ]
                raise RuleError("promtool check rules: " + " ".join(lines)[-400:])
        else:
            parse_promql(rule.expr)
    except (ExerciseError, RuleError) as exc:
        return [
            Check(
                f"{RULE_FILE} is a rule file with the ModelFeatureDrift alert",
                False,
                str(exc),
                f"a Prometheus rule file: groups: [{{name: ..., rules: [{{alert: ModelFeatureDrift, expr: ..., "
                f"for: 5m}}]}}]; fix {path}",
            )
        ]
    checks = [
        Check(
            f"{RULE_FILE} is a rule file with the ModelFeatureDrift alert",
            True,
            f"expr: {rule.expr}; for: {rule.for_s:g}s" + (" (promtool check rules: SUCCESS)" if tool else ""),
        )
    ]
    reads = re.search(r"(?<![A-Za-z0-9_:])model_feature_psi(?![A-Za-z0-9_:])", rule.expr) is not None
    checks.append(
        Check(
            "the drift rule reads the server's PSI gauge (model_feature_psi)",
            reads,
            f"expr: {rule.expr}",
            "the model server exports the drift as model_feature_psi{model_name, feature} (one gauge per pixel, "
            "your psi()): the rule must compare that gauge with the threshold",
        )
    )
    try:
        drifting = rule_fires(path, rule, DRIFTING, 600)
        moderate = rule_fires(path, rule, MODERATE, 600)
        early = rule_fires(path, rule, DRIFTING, 240)
    except RuleError as exc:
        checks.append(Check("the drift rule can be evaluated", False, str(exc), f"fix the `expr:` of {path}"))
        return checks
    wrong_way = moderate and not drifting and reads
    never = "cannot tell: your rule fires in none of the cases"
    checks.append(
        Check(
            "the drift alert fires when PSI stays above 0.2",
            drifting,
            f"PSI 0.30 and 0.45 on two pixels for 10 minutes: {'firing' if drifting else 'not firing'} ({engine})",
            "the comparison is the wrong way round: it fires at PSI 0.15 and not at 0.3; drift is PSI > 0.2"
            if wrong_way
            else "the rule does not read model_feature_psi: compare that gauge with 0.2"
            if not reads
            else f"`for: {rule.for_s:g}s` is longer than 10 minutes of drift: use for: 5m"
            if rule.for_s > 570
            else "fire when model_feature_psi is above 0.2: max by (model_name, feature) (model_feature_psi) > 0.2",
        )
    )
    checks.append(
        Check(
            "the drift alert stays silent below the threshold",
            drifting and not moderate,
            f"PSI 0.15 (moderate) with model_accuracy at 0.5, 10 minutes: {'firing' if moderate else 'silent'}"
            if drifting or moderate
            else never,
            "the comparison is the wrong way round: `< 0.2` fires on every calm feature; drift is PSI > 0.2"
            if wrong_way
            else "it fires on moderate PSI or on another metric: compare model_feature_psi with the threshold 0.2 "
            "(monitoring_drift_psi_max), with > and without `bool`"
            if moderate
            else "make the rule fire on PSI above 0.2 first",
        )
    )
    checks.append(
        Check(
            "the drift alert waits 5m before firing (for:)",
            drifting and not early,
            (f"4 minutes into the drift: {'firing' if early else 'pending'} (for: {rule.for_s:g}s)")
            if drifting
            else never,
            "a drift is a move that lasts: `for: 5m` (the role's monitoring_alert_for) keeps a blip from paging"
            if early
            else "make the rule fire on PSI above 0.2 first",
        )
    )
    return checks


def run(ctx: LabContext) -> dict[str, Any]:
    import numpy as np

    from mllab.alerts import Scrape, evaluate
    from mllab.data import load_digits_split, shift, to_images
    from mllab.drift import PSI_DRIFT, ks_per_feature, psi_per_feature
    from mllab.exercise import call
    from mllab.labs.lab06_serving import train_versions
    from mllab.model import load_model_dir, predict_proba
    from mllab.plots import drift_histograms
    from mllab.prometheus import Prometheus
    from mllab.serving.client import Client

    ctx.backend.tracking_uri()  # the retraining job logs to MLflow: fail early if it is unreachable
    code = ctx.learner("drift", "psi")
    rule_file = rule_path(ctx)
    rule = learner_rule(rule_file)
    s = load_digits_split()
    n = 200 if ctx.quick else 300
    X_a, y_a = s.X_test[:n], s.y_test[:n]
    X_b, y_b = shift(s.X_test[-n:], seed=3), s.y_test[-n:]
    # The learner's code fails here, with its file and line, before a model is trained or a server started.
    call(code, "psi", s.X_train[:, 20], X_a[:, 20])
    drift_alert(rule_file, rule, Scrape())
    dirs = train_versions(ctx, {"v1": 6 if ctx.quick else 10})
    out: dict[str, Any] = {"stream": n, "rule": {"expr": rule.expr, "for_s": rule.for_s}}
    spec = ServeSpec("monitored", {MODEL: dirs["v1"]}, workdir=ctx.rundir, monitor=True, rules=rule_file)
    phases: dict[str, list[Any]] = {}
    with (
        ctx.backend.serve(spec) as ep,
        Client(ep.url) as c,
        # on a cluster its Prometheus evaluates the rules; the local backend has none
        Prometheus(ep.rules.url) if ep.rules else nullcontext() as prom,
    ):
        if prom is not None:
            out["prometheus"] = {**ep.rules.to_dict(), "phases": {}}
        s0 = Scrape.parse(c.metrics_text())
        before, sent = s0, 0
        for phase, key, (X_p, y_p), text in (
            ("A (training-like)", "A", (X_a, y_a), "requests like the training data"),
            ("B (shifted)", "B", (X_b, y_b), "requests from the new scanner"),
        ):
            t0 = time.time()
            with ctx.console.status(f"phase {key}: {n} {text}"):
                stream(c, X_p, y_p, key.lower())
            sent += len(X_p)
            after = Scrape.parse(c.metrics_text())
            # The role's accuracy and latency conditions; the drift alert is the learner's rule.
            role = [a for a in evaluate(before, after, MODEL) if a.name != rule.alert]
            if prom is None:
                phases[phase] = [*role, drift_alert(rule_file, rule, after)]
            else:
                phases[phase] = prometheus_phase(ctx, prom, ep.rules, rule, sent, role, key == "B")
                out["prometheus"]["phases"][key] = [t0, time.time()]
            before = after
        s2 = after
    out["alerts"] = {k: [a.to_dict() for a in v] for k, v in phases.items()}
    for phase, alerts in phases.items():
        text = ", ".join(
            f"{a.name}={'FIRING' if a.firing else a.labels.get('state', 'ok').replace('inactive', 'ok')} "
            f"({a.value:.3g} vs {a.threshold})"
            for a in alerts
        )
        drift = alerts[-1]
        if drift.firing and drift.labels.get("features"):
            text += f"; your rule raised {drift.labels['alerts']} alert(s): {drift.labels['features']}..."
        ctx.console.print(f"phase {phase}: {text}")
    if "prometheus" in out:
        ctx.console.print(
            f"  (as the cluster's Prometheus at {out['prometheus']['url']} evaluated them: ModelFeatureDrift is your "
            f"{RULE_FILE}, with its `for: {rule.for_s:g}s`; the others are the monitoring role's rules)"
        )
    else:
        ctx.console.print(
            f"  (ModelFeatureDrift is your {RULE_FILE}, evaluated on each scrape as if it had held for its "
            f"`for: {rule.for_s:g}s`; the others are the monitoring role's conditions)"
        )
    gauge = {lab["feature"]: v for lab, v in s2.get("model_feature_psi")}
    from mllab.serving.server import WINDOW

    ref = np.load(dirs["v1"] / "reference.npy")
    live = np.concatenate([X_a, X_b])[-WINDOW:]  # exactly the server's drift window
    psi_live = psi_per_feature(ref, live, code=code)
    psi_a, psi_b = psi_per_feature(ref, X_a, code=code), psi_per_feature(ref, X_b, code=code)
    ks_a, p_a = ks_per_feature(ref, X_a)
    ks_b, p_b = ks_per_feature(ref, X_b)
    gaps = [abs(gauge[f"pixel_{j}"] - float(psi_live[j])) if f"pixel_{j}" in gauge else math.inf for j in range(64)]
    out["offline"] = {
        "psi_max": {"A": float(psi_a.max()), "B": float(psi_b.max())},
        "psi_features_over": {"A": int((psi_a > PSI_DRIFT).sum()), "B": int((psi_b > PSI_DRIFT).sum())},
        "ks_median": {"A": float(np.median(ks_a)), "B": float(np.median(ks_b))},
        "ks_features_p_below_0.01": {"A": int((p_a < 0.01).sum()), "B": int((p_b < 0.01).sum())},
        # inf when a gauge or your psi is inf or nan (nan would hide from max())
        "server_vs_offline_psi_max_gap": max(gaps) if all(math.isfinite(g) for g in gaps) else math.inf,
    }
    ctx.console.print(
        f"offline drift (your psi): PSI max A {psi_a.max():.3f} / B {psi_b.max():.3f}; features with KS p<0.01: "
        f"A {out['offline']['ks_features_p_below_0.01']['A']} / B "
        f"{out['offline']['ks_features_p_below_0.01']['B']} of 64"
    )
    top = [int(j) for j in np.argsort(np.nan_to_num(psi_b, nan=-1.0))[::-1][:3]]
    drift_histograms(ref, X_b, top, [float(psi_b[j]) for j in top], ctx.rundir / "drift_histograms.png")
    old_model = load_model_dir(dirs["v1"])[0]
    old_acc = float((predict_proba(old_model, to_images(X_b)).argmax(1) == y_b).mean())
    drift = phases["B (shifted)"][-1].firing
    out["retrained"] = None
    if not drift:
        ctx.console.print(f"no drift alert on the shifted stream: no retraining (your {RULE_FILE} and drift.py decide)")
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
    if ctx.exercise is not None:  # the learner's drift.py and drift_alert.yaml, property by property
        checks += probe_psi(ctx.learner("drift", "psi"))
        checks += probe_rule(rule_path(ctx))
    model_dir = ctx.rundir / result["model_dir"]
    if not (model_dir / "reference.npy").exists():
        return [
            *checks,
            Check("monitored model exists", False, f"{model_dir} has no model", "run the lab: mllab run 7"),
        ]
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
            HINTS[5],
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
    psis = [v for _, v in scrape.get("model_feature_psi")]
    psi_max = max((v for v in psis if math.isfinite(v)), default=0.0)
    checks.append(
        Check(
            "PSI gauge shows the shifted stream",
            psi_max > 0.2 and all(math.isfinite(v) for v in psis),
            f"max model_feature_psi {psi_max:.3f} with your psi(); "
            f"{sum(not math.isfinite(v) for v in psis)} of {len(psis)} gauges inf or nan",
            HINTS[2] if any(not math.isfinite(v) for v in psis) else HINTS[1],
        )
    )
    # on a cluster its Prometheus evaluated the alerts: read what it recorded
    checks += history_checks(ctx, result) if "prometheus" in result else local_alert_checks(result)
    return checks + offline_checks(ctx, result)


def local_alert_checks(result: dict[str, Any]) -> list[Check]:
    """The alerts the lab evaluated in process (local backend), from the run's result."""
    a, b = result["alerts"]["A (training-like)"], result["alerts"]["B (shifted)"]
    firing = lambda alerts, name: any(x["name"] == name and x["firing"] for x in alerts)  # noqa: E731
    quiet_a, fired_b = not firing(a, "ModelFeatureDrift"), firing(b, "ModelFeatureDrift")
    checks: list[Check] = []
    checks.append(
        Check(
            "no drift alert on training-like traffic",
            quiet_a and fired_b,
            f"phase A: {[(x['name'], x['firing']) for x in a]}"
            + ("" if fired_b or not quiet_a else " (cannot tell: your drift alert fired on neither phase)"),
            f"your {RULE_FILE} fired on phase A (max PSI {a[-1]['value']:.3f}): is its comparison the right way round "
            f"(> 0.2)? does drift.py give ~0 on data like the training data?"
            if not quiet_a
            else "make your drift alert fire on the shifted stream first (drift.py and " + RULE_FILE + ")",
        )
    )
    checks.append(
        Check(
            "drift and accuracy alerts fire on the shifted stream",
            firing(b, "ModelFeatureDrift") and firing(b, "ModelAccuracyDegraded"),
            f"phase B: {[(x['name'], x['firing'], round(x['value'], 3)) for x in b]}",
            f"ModelFeatureDrift is your {RULE_FILE} on your psi() gauges: " + HINTS[4],
        )
    )
    return checks


def offline_checks(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    """The offline statistics and the retraining the drift alert triggered."""
    checks: list[Check] = []
    off = result["offline"]
    checks.append(
        Check(
            "offline PSI and KS agree: drift in B, not in A",
            off["psi_features_over"]["A"] == 0
            and off["psi_features_over"]["B"] > 0
            and off["ks_features_p_below_0.01"]["B"] > off["ks_features_p_below_0.01"]["A"],
            json.dumps({k: off[k] for k in ("psi_max", "psi_features_over", "ks_features_p_below_0.01")}),
            HINTS[6] if off["psi_features_over"]["B"] > 0 else HINTS[1],
        )
    )
    gap = off["server_vs_offline_psi_max_gap"]
    checks.append(
        Check(
            "server PSI equals offline PSI",
            math.isfinite(gap) and gap < 1e-3 and off["psi_max"]["B"] > 0,
            f"largest gap {gap:.2e}"
            + ("" if off["psi_max"]["B"] > 0 else " (cannot tell: your psi() gave 0 everywhere)"),
            HINTS[2] if not math.isfinite(gap) else HINTS[1],
        )
    )
    re_ = result.get("retrained")
    if not re_:
        checks.append(
            Check(
                "drift triggered retraining",
                False,
                "no retraining recorded: the drift alert did not fire on the shifted stream",
                f"the retraining follows your drift alert: psi() in drift.py and the rule in {RULE_FILE}",
            )
        )
        return checks
    run = ctx.mlflow().MlflowClient().get_run(re_["run_id"])
    checks.append(
        Check(
            "retraining job is an MLflow run",
            run.info.status == "FINISHED",
            f"run {re_['run_id'][:8]} {run.info.status}, data={run.data.params.get('data')}",
            HINTS[7],
        )
    )
    checks.append(
        Check(
            "retrained model beats the old one on the new data",
            re_["new_accuracy_shifted"] > re_["old_accuracy_shifted"],
            f"{re_['old_accuracy_shifted']:.3f} -> {re_['new_accuracy_shifted']:.3f}",
            HINTS[7],
        )
    )
    return checks
