"""The monitoring role's alert conditions, evaluated on the metrics a model server exports.

Mirrors roles/monitoring/templates/monitoring.yaml.j2 (PrometheusRule `mllab-ml-alerts`) and its
defaults (roles/monitoring/defaults/main.yml):

- ModelAccuracyDegraded: ``min by (model_name, model_version) (model_accuracy) < 0.85``
- ModelLatencyHigh: ``histogram_quantile(0.95, rate(model_prediction_latency_seconds_bucket[5m])) > 1.0``
- ModelFeatureDrift: ``max by (model_name, feature) (model_feature_psi) > 0.2``

The ``for: 5m`` clauses need a Prometheus; here we evaluate the conditions on scrapes.

Lab 7's learner writes the drift rule themselves (``drift_alert.yaml``, a Prometheus rule file):
`load_rule` reads it, `instant_alerts` evaluates its expression on a scrape (a small PromQL
subset: selectors, aggregations, comparisons), and `rule_fires` says whether it fires at a time on
synthetic series, with ``promtool test rules`` (Prometheus' own engine) where promtool is
installed, else with that subset and the rule's ``for``, evaluated every 30 s like Prometheus.
"""

from __future__ import annotations

import math
import operator
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllab.errors import MllabError

# The monitoring layer's defaults (roles/mllab_defaults: monitoring_accuracy_min,
# monitoring_latency_p95_max_seconds, monitoring_drift_psi_max). The labs layer hands an
# instructor's own values to the learners as MLLAB_ALERT_* (accuracy_min(), latency_p95_max()).
ACCURACY_MIN = 0.85
LATENCY_P95_MAX_SECONDS = 1.0
DRIFT_PSI_MAX = 0.2


class ThresholdError(MllabError, ValueError):
    """An MLLAB_ALERT_* variable that is not a usable threshold; the message names it, `fix` says what to do."""


def _threshold(var: str, default: float, setting: str, ok: Any, want: str) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        raise ThresholdError(
            f"{var}={raw!r} is not {want} (it carries the monitoring layer's {setting})",
            f"set {setting} in the inventory and rerun the labs layer, or unset {var} for the default {default:g}",
        )
    return value


def accuracy_min() -> float:
    """ModelAccuracyDegraded's threshold: the role's monitoring_accuracy_min, via MLLAB_ALERT_ACCURACY_MIN."""
    return _threshold(
        "MLLAB_ALERT_ACCURACY_MIN", ACCURACY_MIN, "monitoring_accuracy_min", lambda v: 0 < v <= 1, "a number in (0, 1]"
    )


def latency_p95_max() -> float:
    """ModelLatencyHigh's threshold in seconds: monitoring_latency_p95_max_seconds, via the environment."""
    return _threshold(
        "MLLAB_ALERT_LATENCY_P95_MAX_SECONDS",
        LATENCY_P95_MAX_SECONDS,
        "monitoring_latency_p95_max_seconds",
        lambda v: v > 0,
        "a number of seconds above 0",
    )


@dataclass
class Scrape:
    """Samples of one /metrics scrape: name -> list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
        return cls(out)

    def get(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(name, [])


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on cumulative (upper bound, count) buckets, +Inf included."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]):
        raise ValueError("buckets must end with the +Inf bucket")
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # the quantile lies above the highest finite bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return buckets[-2][0] if len(buckets) > 1 else math.nan


def latency_p95(before: Scrape, after: Scrape, model: str) -> float:
    """p95 of the requests between two scrapes (the `rate(...[window])` of the rule)."""

    def buckets(scrape: Scrape) -> dict[float, float]:
        return {
            float(labels["le"]): v
            for labels, v in scrape.get("model_prediction_latency_seconds_bucket")
            if labels.get("model_name") == model
        }

    b0, b1 = buckets(before), buckets(after)
    return histogram_quantile(0.95, [(le, b1[le] - b0.get(le, 0.0)) for le in b1])


@dataclass
class Alert:
    name: str
    firing: bool
    value: float
    threshold: float
    labels: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def evaluate(before: Scrape, after: Scrape, model: str) -> list[Alert]:
    """The role's alert conditions on two scrapes, with the thresholds the role uses (MLLAB_ALERT_*)."""
    alerts = []
    acc_min, p95_max = accuracy_min(), latency_p95_max()
    accs = [(lab, v) for lab, v in after.get("model_accuracy") if lab.get("model_name") == model]
    if accs:
        lab, v = min(accs, key=lambda x: x[1])
        alerts.append(Alert("ModelAccuracyDegraded", v < acc_min, v, acc_min, lab))
    p95 = latency_p95(before, after, model)
    if not math.isnan(p95):
        alerts.append(Alert("ModelLatencyHigh", p95 > p95_max, p95, p95_max, {"model_name": model}))
    psis = [(lab, v) for lab, v in after.get("model_feature_psi") if lab.get("model_name") == model]
    if psis:
        lab, v = max(psis, key=lambda x: x[1])
        n_drifting = sum(1 for _, x in psis if x > DRIFT_PSI_MAX)
        alerts.append(
            Alert(
                "ModelFeatureDrift",
                v > DRIFT_PSI_MAX,
                v,
                DRIFT_PSI_MAX,
                {**lab, "features_over_threshold": str(n_drifting)},
            )
        )
    return alerts


# --- an alerting rule from a Prometheus rule file (lab 7's drift_alert.yaml) -----------------------

DRIFT_ALERT = "ModelFeatureDrift"
ALERT_FOR_SECONDS = 300  # the role's monitoring_alert_for (5m)
EVALUATION_INTERVAL = 30  # seconds, the role's rule group interval
LOOKBACK = 300  # seconds: Prometheus' staleness window for an instant selector


class RuleError(ValueError):
    """A rule file or expression that cannot be evaluated; the message says why."""


@dataclass
class Rule:
    alert: str
    expr: str
    for_s: float
    labels: dict[str, str]


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: Any) -> float:
    """A Prometheus duration (`5m`, `1h30m`, `0s`, `0`) in seconds."""
    raw = str(text).strip()
    if raw == "0":
        return 0.0
    if not raw or _DURATION.sub("", raw):
        raise RuleError(f"'for: {text}' is not a Prometheus duration (e.g. 5m, 90s, 1h)")
    return float(sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(raw)))


def load_rule(path: Path, alert: str = DRIFT_ALERT) -> Rule:
    """The alerting rule `alert` of the Prometheus rule file `path` (``groups: [{rules: [...]}]``)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RuleError(f"{Path(path).name}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list):
        raise RuleError(f"{Path(path).name} has no `groups:` list (a Prometheus rule file's top level)")
    for group in groups:
        rules = group.get("rules") if isinstance(group, dict) else None
        for rule in rules if isinstance(rules, list) else []:
            if isinstance(rule, dict) and rule.get("alert") == alert:
                expr = rule.get("expr")
                if not isinstance(expr, str | int | float) or not str(expr).strip():
                    raise RuleError(f"the rule {alert} in {Path(path).name} has no `expr:`")
                labels = rule.get("labels") or {}
                if not isinstance(labels, dict):
                    raise RuleError(f"the `labels:` of {alert} in {Path(path).name} is not a mapping")
                return Rule(
                    alert, str(expr), parse_duration(rule.get("for", 0)), {str(k): str(v) for k, v in labels.items()}
                )
    raise RuleError(f"{Path(path).name} has no alerting rule `alert: {alert}`")


# --- a PromQL subset: instant selectors, aggregations, comparisons --------------------------------

SUPPORTED = (
    'instant selectors (metric{label="v"}, =, !=, =~, !~), sum/min/max/avg/count/group with '
    "by (...) or without (...), comparisons (> < >= <= == !=, with or without bool) and vector(N)"
)
_TOKEN = re.compile(
    r"""\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op>=~|!~|==|!=|>=|<=|>|<|=|\(|\)|\{|\}|,|\[|\]|\+|-|\*|/|%|\^|@)
    |(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*))""",
    re.X,
)
_CMP = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_AGG = {"sum", "min", "max", "avg", "count", "group"}
Labels = dict[str, str]
Vector = list[tuple[Labels, float]]
Samples = dict[str, list[tuple[Labels, float]]]  # a scrape's: metric name -> (labels, value)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = expr.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise RuleError(f"cannot read the expression at {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, expr: str) -> None:
        self.toks = _tokens(expr)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise RuleError(f"expected {value!r}, found {tok[1] or 'the end'!r}")
        self.i += 1
        return tok

    def parse(self) -> tuple:
        node = self.expr()
        if self.peek()[0] != "end":
            raise self.unsupported(self.peek()[1])
        return node

    def unsupported(self, what: str) -> RuleError:
        return RuleError(f"{what!r} is outside what the lab evaluates itself ({SUPPORTED})")

    def expr(self) -> tuple:
        node = self.operand()
        while True:
            kind, value = self.peek()
            if value in _CMP and kind == "op":
                self.take()
                use_bool = self.peek() == ("id", "bool")
                if use_bool:
                    self.take()
                if self.peek()[1] in ("on", "ignoring", "group_left", "group_right"):
                    raise self.unsupported(self.peek()[1])
                node = ("cmp", value, use_bool, node, self.operand())
            elif (kind == "id" and value in ("and", "or", "unless")) or (kind == "op" and value in "+-*/%^"):
                raise self.unsupported(value)
            else:
                return node

    def labels_list(self) -> list[str]:
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            kind, value = self.take()
            if kind != "id":
                raise RuleError(f"expected a label name in by/without (...), found {value!r}")
            names.append(value)
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return names

    def operand(self) -> tuple:
        kind, value = self.peek()
        if value == "(" and kind == "op":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind == "num" or (kind == "id" and value.lower() in ("inf", "nan")):
            self.take()
            return ("num", float(value))
        if value == "-" and kind == "op":
            self.take()
            k2, v2 = self.take()
            if k2 != "num" and v2.lower() != "inf":
                raise self.unsupported("-")
            return ("num", -float(v2))
        if kind == "id" and value in _AGG:
            self.take()
            mode, names = None, []
            if self.peek()[1] in ("by", "without"):
                mode, names = self.take()[1], []
                names = self.labels_list()
            self.take("(")
            child = self.expr()
            self.take(")")
            if self.peek()[1] in ("by", "without"):
                if mode is not None:
                    raise RuleError(f"{value}: by/without given twice")
                mode = self.take()[1]
                names = self.labels_list()
            return ("agg", value, mode, names, child)
        if kind == "id" and value == "vector":
            self.take()
            self.take("(")
            arg = self.expr()
            self.take(")")
            if arg[0] != "num":
                raise self.unsupported("vector(...) of a non-number")
            return ("vector", arg[1])
        if kind == "id" or value == "{":
            name = None
            if kind == "id":
                self.take()
                name = value
                if self.peek()[1] == "(":
                    raise self.unsupported(f"{value}(...)")
            matchers = []
            if self.peek()[1] == "{":
                self.take()
                while self.peek()[1] != "}":
                    lk, label = self.take()
                    if lk != "id":
                        raise RuleError(f"expected a label name in {{...}}, found {label!r}")
                    op = self.take()[1]
                    if op not in ("=", "!=", "=~", "!~"):
                        raise RuleError(f"expected =, !=, =~ or !~ after {label}, found {op!r}")
                    sk, text = self.take()
                    if sk != "str":
                        raise RuleError(f"the value of {label}{op} must be a quoted string, found {text!r}")
                    matchers.append((label, op, text[1:-1].encode().decode("unicode_escape")))
                    if self.peek()[1] == ",":
                        self.take()
                self.take("}")
            if self.peek()[1] in ("[", "offset", "@"):
                raise self.unsupported(self.peek()[1] + " (range vectors and time shifts need a Prometheus)")
            if name is None and not matchers:
                raise RuleError("an empty selector {}")
            return ("sel", name, matchers)
        raise RuleError(f"unexpected {value or 'end of the expression'!r}")


def parse_promql(expr: str) -> tuple:
    """The expression's syntax tree; RuleError for a syntax error or what the subset lacks."""
    return _Parser(expr).parse()


def _match(labels: Labels, matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, want in matchers:
        have = labels.get(label, "")
        ok = have == want if op in ("=", "!=") else re.fullmatch(want, have) is not None
        if ok != (op in ("=", "=~")):
            return False
    return True


def _no_name(labels: Labels) -> Labels:
    return {k: v for k, v in labels.items() if k != "__name__"}


def _eval(node: tuple, samples: Samples) -> float | Vector:
    kind = node[0]
    if kind == "num":
        return float(node[1])
    if kind == "vector":
        return [({}, float(node[1]))]
    if kind == "sel":
        _, name, matchers = node
        out: Vector = []
        for metric, rows in samples.items():
            if name is not None and metric != name:
                continue
            for labels, value in rows:
                full = {**labels, "__name__": metric}
                if _match(full, matchers):
                    out.append((full, float(value)))
        return out
    if kind == "agg":
        _, op, mode, names, child = node
        vec = _eval(child, samples)
        if not isinstance(vec, list):
            raise RuleError(f"{op}(...) needs a vector, got a number")
        groups: dict[tuple, tuple[Labels, list[float]]] = {}
        for labels, value in vec:
            if mode == "by":
                key_labels = {k: labels[k] for k in names if k in labels}
            elif mode == "without":
                key_labels = {k: v for k, v in _no_name(labels).items() if k not in names}
            else:
                key_labels = {}
            key = tuple(sorted(key_labels.items()))
            groups.setdefault(key, (key_labels, []))[1].append(value)
        fn = {
            "sum": sum,
            "min": lambda v: min((x for x in v if not math.isnan(x)), default=math.nan),  # NaN loses, as in Prometheus
            "max": lambda v: max((x for x in v if not math.isnan(x)), default=math.nan),
            "avg": lambda v: sum(v) / len(v),
            "count": len,
            "group": lambda v: 1.0,
        }[op]
        return [(labels, float(fn(values))) for labels, values in groups.values()]
    assert kind == "cmp"
    _, op, use_bool, left_node, right_node = node
    fn = _CMP[op]
    left, right = _eval(left_node, samples), _eval(right_node, samples)
    if not isinstance(left, list) and not isinstance(right, list):
        if not use_bool:
            raise RuleError(f"comparisons between two numbers need bool ({left} {op} bool {right})")
        return float(fn(left, right))
    out = []
    if isinstance(left, list) and isinstance(right, list):  # one-to-one, on every label but the name
        rhs = {tuple(sorted(_no_name(lab).items())): v for lab, v in right}
        for labels, value in left:
            other = rhs.get(tuple(sorted(_no_name(labels).items())))
            if other is None:
                continue
            if use_bool:
                out.append((_no_name(labels), float(fn(value, other))))
            elif fn(value, other):
                out.append((labels, value))
        return out
    vec, scalar, swap = (left, right, False) if isinstance(left, list) else (right, left, True)
    assert isinstance(vec, list) and not isinstance(scalar, list)
    for labels, value in vec:
        keep = fn(scalar, value) if swap else fn(value, scalar)
        if use_bool:
            out.append((_no_name(labels), float(keep)))
        elif keep:
            out.append((labels, value))  # a filter keeps the vector's value, whichever side it is on
    return out


def instant_alerts(rule: Rule, samples: Samples) -> list[tuple[Labels, float]]:
    """The alerts `rule`'s condition raises on one scrape's `samples` (its `for` aside): each
    element's labels (the rule's and `alertname` added) and value."""
    result = _eval(parse_promql(rule.expr), samples)
    if not isinstance(result, list):
        raise RuleError(f"the expression {rule.expr!r} returns a number; an alert needs a vector")
    return [({**_no_name(labels), **rule.labels, "alertname": rule.alert}, value) for labels, value in result]


# --- does a rule fire at a time, on synthetic series? (promtool, else the subset above) ----------

Series = tuple[str, Labels, list[float]]  # metric, labels, one value per minute from t=0


def promtool() -> str | None:
    return shutil.which("promtool")


def promtool_check(rule_file: Path) -> tuple[bool, str]:
    """`promtool check rules`: (ok, its output)."""
    tool = promtool()
    assert tool, "promtool is not installed"
    res = subprocess.run([tool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    return res.returncode == 0, (res.stdout + res.stderr).strip()


def _series_text(metric: str, labels: Labels) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def simulate(rule: Rule, series: list[Series], at_s: int, interval_s: int = 60) -> list[Labels]:
    """The alerts of `rule` that are firing at `at_s` on `series`, as Prometheus would evaluate
    them every EVALUATION_INTERVAL seconds: an alert fires once its condition has held `for`."""
    parsed = parse_promql(rule.expr)
    active: dict[tuple, tuple[float, Labels]] = {}
    for t in range(0, at_s + 1, EVALUATION_INTERVAL):
        samples: Samples = {}
        for metric, labels, values in series:
            idx = min(t // interval_s, len(values) - 1)
            if t - idx * interval_s <= LOOKBACK and not math.isnan(values[idx]):
                samples.setdefault(metric, []).append((labels, values[idx]))
        result = _eval(parsed, samples)
        if not isinstance(result, list):
            raise RuleError(f"the expression {rule.expr!r} returns a number; an alert needs a vector")
        now = {tuple(sorted(_no_name(lab).items())): _no_name(lab) for lab, _ in result}
        active = {k: active.get(k, (t, lab)) for k, lab in now.items()}
    return [
        {**lab, **rule.labels, "alertname": rule.alert} for since, lab in active.values() if at_s - since >= rule.for_s
    ]


def rule_fires(rule_file: Path, rule: Rule, series: list[Series], at_s: int, use_promtool: bool = True) -> bool:
    """Whether `rule` (from `rule_file`) is firing at `at_s` on `series`: `promtool test rules` with a
    test that expects no alert (it fails exactly when one fires), or `simulate` without promtool."""
    tool = promtool() if use_promtool else None
    if tool is None:
        return bool(simulate(rule, series, at_s))
    import yaml

    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{EVALUATION_INTERVAL}s",
        "tests": [
            {
                "name": "synthetic",
                "interval": "1m",
                "input_series": [
                    {"series": _series_text(m, lab), "values": " ".join(repr(float(v)) for v in values)}
                    for m, lab, values in series
                ],
                "alert_rule_test": [{"eval_time": f"{at_s}s", "alertname": rule.alert, "exp_alerts": []}],
            }
        ],
    }
    with tempfile.TemporaryDirectory(prefix="mllab-promtool-") as tmp:
        shutil.copyfile(rule_file, Path(tmp) / "rules.yml")
        (Path(tmp) / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
        res = subprocess.run([tool, "test", "rules", "test.yml"], cwd=tmp, capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    if res.returncode == 0:
        return False
    if "got:[" in out.replace(" ", "") and "Labels:{" in out:
        return True
    raise RuleError(f"promtool test rules failed: {out.strip()[-600:]}")


def scrape_alerts(rule_file: Path, rule: Rule, samples: Samples) -> tuple[bool, list[Labels]]:
    """Whether `rule` fires on one scrape's `samples`, held steady for as long as its `for` asks,
    and its alerts' labels. The lab's evaluator first; an expression outside its subset goes to
    promtool where it is installed (which says only whether the rule fires: no labels)."""
    try:
        found = instant_alerts(rule, samples)
        return bool(found), [labels for labels, _ in found]
    except RuleError:
        if promtool() is None:
            raise
    ok, out = promtool_check(rule_file)
    if not ok:
        raise RuleError(out)
    at = int(math.ceil((rule.for_s + 60) / EVALUATION_INTERVAL) * EVALUATION_INTERVAL)
    series = [(m, labels, [v] * (at // 60 + 2)) for m, rows in samples.items() for labels, v in rows]
    return rule_fires(rule_file, rule, series, at), []
