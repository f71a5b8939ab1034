"""Prometheus's HTTP API (v1), as lab 7 reads it on a cluster.

On the k8s backend the lab's model server is scraped by the cluster's Prometheus (a ServiceMonitor)
and the learner's drift rule is evaluated by it (a PrometheusRule, see `prometheus_rule`): the lab
reads the alerts' states from ``/api/v1/rules`` while it runs, and `mllab check 7` reads their
history afterwards from the ``ALERTS`` series Prometheus records at every evaluation. The local
backend has no Prometheus and keeps the in-process evaluation (mllab.alerts).

Prometheus' API: https://prometheus.io/docs/prometheus/latest/querying/api/ (``/api/v1/query``,
``/api/v1/rules``; an alerting rule's ``state`` is inactive, pending or firing, ``alerts`` its
active alerts; ``ALERTS{alertname, alertstate}`` the series of every pending or firing alert).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllab.errors import MllabError

# The label the lab adds to each rule it deploys for a server (as prometheus-operator's
# enforcedNamespaceLabel adds one): the alerts Prometheus raises from them carry it, so the
# ALERTS history tells this server's alerts from every other one's.
SERVER_LABEL = "mllab_server"


class PrometheusError(MllabError):
    """Prometheus cannot be reached or refused a request; the message names the URL."""


@dataclass
class RuleSet:
    """Where a server's rules are evaluated: the Prometheus URL, the PrometheusRule that holds them
    (namespace/name), the value of SERVER_LABEL on their alerts, and the alerts it defines."""

    url: str
    namespace: str
    name: str
    server: str
    alerts: list[str] = field(default_factory=list)

    def in_file(self, path: str) -> bool:
        """Whether a rule file Prometheus loaded is this PrometheusRule's: prometheus-operator writes
        each one to <namespace>-<name>-<uid>.yaml (pkg/operator/rules.go)."""
        return f"/{self.namespace}-{self.name}-" in path

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def prometheus_rule(rule_file: Path, name: str, labels: dict[str, str], server: str) -> dict[str, Any]:
    """A PrometheusRule holding the groups of a Prometheus rule file (lab 7's drift_alert.yaml,
    already validated by mllab.alerts.load_rule), each rule labelled SERVER_LABEL=server."""
    import yaml

    doc = yaml.safe_load(Path(rule_file).read_text())
    groups = []
    for group in doc["groups"]:  # already checked by mllab.alerts.load_rule
        rules = [{**r, "labels": {**(r.get("labels") or {}), SERVER_LABEL: server}} for r in group.get("rules") or []]
        groups.append({**group, "rules": rules})
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": labels},
        "spec": {"groups": groups},
    }


def _rfc3339(text: str) -> float:
    """Prometheus' timestamps (``2026-12-03T14:02:03.123456789Z``) as Unix seconds."""
    from datetime import datetime

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return 0.0
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + float(m.group(2) or 0)


class Prometheus:
    def __init__(self, url: str, timeout: float = 15.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            r = self.http.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(
                f"Prometheus at {self.url} does not answer: {exc}",
                "set MLLAB_PROMETHEUS_URL to its address (e.g. http://<service IP>:9090), or check the monitoring "
                "layer (kubectl -n observability get pods)",
            ) from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(
                f"Prometheus at {self.url} refused {path}: HTTP {r.status_code} "
                f"{body.get('errorType', '')}: {body.get('error', r.text[:200])}",
                "is MLLAB_PROMETHEUS_URL the address of a Prometheus (its API is under /api/v1)?",
            )
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) for each series of the result vector."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def rules(self) -> Rules:
        """Every alerting rule Prometheus has loaded (one request)."""
        return Rules(self._get("/api/v1/rules", {"type": "alert"})["groups"])

    def wait(self, what: str, ready: Callable[[], Any], timeout: float, every: float = 2.0, fix: str = "") -> Any:
        """Poll `ready()` (procs.wait_for) until it returns something truthy, and return that;
        PrometheusError after `timeout` s."""
        from mllab.procs import wait_for

        got = None

        def check() -> bool:
            nonlocal got
            got = ready()
            return bool(got)

        if not wait_for(check, timeout, interval=every):
            raise PrometheusError(f"Prometheus at {self.url}: {what} after {timeout:.0f} s", fix)
        return got


@dataclass
class Rules:
    """The groups of ``/api/v1/rules``, read once."""

    groups: list[dict[str, Any]]

    def get(self, alert: str, in_file: Callable[[str], bool]) -> dict[str, Any] | None:
        """The alerting rule `alert` of a rule file `in_file` accepts (its group's `lastEvaluation`
        copied in), or None when Prometheus has not loaded it."""
        for group in self.groups:
            if in_file(group.get("file", "")):
                for rule in group.get("rules", []):
                    if rule.get("name") == alert:
                        return {**rule, "groupLastEvaluation": group.get("lastEvaluation", "")}
        return None


def evaluated_since(rule: dict[str, Any], t: float) -> bool:
    """Whether the rule's group has been evaluated after Unix time `t`."""
    return _rfc3339(rule.get("lastEvaluation") or rule.get("groupLastEvaluation") or "") > t


def threshold(query: str) -> float | None:
    """The number a rule's expression compares with at its end (``... < 0.85``), else None."""
    m = re.search(r"(?:<|>|<=|>=)\s*(?:bool\s+)?([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*$", query.strip())
    return float(m.group(1)) if m else None
