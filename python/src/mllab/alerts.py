"""The monitoring role's alert conditions, evaluated on the metrics a model server exports.

Mirrors roles/monitoring/templates/monitoring.yaml.j2 (PrometheusRule `mllab-ml-alerts`) and its
defaults (roles/monitoring/defaults/main.yml):

- ModelAccuracyDegraded: ``min by (model_name, model_version) (model_accuracy) < 0.85``
- ModelLatencyHigh: ``histogram_quantile(0.95, rate(model_prediction_latency_seconds_bucket[5m])) > 1.0``
- ModelFeatureDrift: ``max by (model_name, feature) (model_feature_psi) > 0.2``

The ``for: 5m`` clauses need a Prometheus; here we evaluate the conditions on scrapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ACCURACY_MIN = 0.85
LATENCY_P95_MAX_SECONDS = 1.0
DRIFT_PSI_MAX = 0.2


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
    alerts = []
    accs = [(lab, v) for lab, v in after.get("model_accuracy") if lab.get("model_name") == model]
    if accs:
        lab, v = min(accs, key=lambda x: x[1])
        alerts.append(Alert("ModelAccuracyDegraded", v < ACCURACY_MIN, v, ACCURACY_MIN, lab))
    p95 = latency_p95(before, after, model)
    if not math.isnan(p95):
        alerts.append(
            Alert(
                "ModelLatencyHigh", p95 > LATENCY_P95_MAX_SECONDS, p95, LATENCY_P95_MAX_SECONDS, {"model_name": model}
            )
        )
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
