"""The PromQL the monitoring role ships, as Prometheus must evaluate it: every expression of the
Grafana dashboards (with Grafana's template variables filled in) and of the alert rules, and the
metric names each one reads (to tell a query that can never return data from one that has none
yet). Pure functions: unit-tested in tests/unit/test_promql.py, used by tests/infra on a cluster."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

# Grafana's built-in variables, as a query sent straight to Prometheus must spell them.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "atan2",
}  # fmt: skip

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?")


def fill_grafana_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """`expr` with Grafana's variables replaced: the built-ins by durations, a dashboard variable by
    its value in `values`, else by `.*` (every variable of these dashboards is used in a regex matcher,
    `=~"$namespace"`, where `.*` means "all", as Grafana's "All" option does)."""
    values = values or {}

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return GRAFANA_BUILTINS.get(name, values.get(name, ".*"))

    return _VAR.sub(sub, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, keywords, label names or
    grouping labels). Also `{__name__="x"}` selectors."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub("", bare)
    bare = _RANGE.sub("", bare)
    bare = _GROUPING.sub("", bare)
    for name, call in _NAME.findall(bare):
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a row's collapsed panels


def dashboard_expressions(dashboard: dict[str, Any] | str) -> list[tuple[str, str]]:
    """(where, expr) for every Prometheus target of a Grafana dashboard (JSON text or parsed),
    with the variables filled in; `where` names the dashboard, the panel and the target."""
    board = json.loads(dashboard) if isinstance(dashboard, str) else dashboard
    found = []
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = (
                    f"dashboard {board.get('title')!r}, panel {panel.get('title')!r}, target {target.get('refId', '?')}"
                )
                found.append((where, fill_grafana_variables(target["expr"])))
    return found


def rule_expressions(rule: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every rule of a PrometheusRule object."""
    name = rule.get("metadata", {}).get("name", "?")
    return [
        (f"PrometheusRule {name}, group {g['name']!r}, {r.get('alert') or r.get('record')}", r["expr"])
        for g in rule.get("spec", {}).get("groups", [])
        for r in g.get("rules", [])
    ]
