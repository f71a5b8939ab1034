"""tests/infra/promql.py: the metric names of PromQL expressions and the dashboards' queries with
Grafana's variables filled in, checked on hand-written expressions and on the kit's dashboards
(the expected names below were read off the JSON by hand), and by promtool: every filled-in
dashboard query parses as PromQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "infra"))
import promql  # noqa: E402
from needs import missing  # noqa: E402  (tests/unit/needs.py: skips here, fails under CI=true)

BOARDS = ROOT / "roles" / "monitoring" / "files" / "dashboards"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (namespace, model_name) (rate(request_predict_seconds_count{namespace=~".*"}[5m]))',
            {"request_predict_seconds_count"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(model_prediction_latency_seconds_bucket[5m])))",
            {"model_prediction_latency_seconds_bucket"},
        ),
        ("min by (namespace, model_name, model_version) (model_accuracy) < 0.85", {"model_accuracy"}),
        ('a / on (pod) group_left (node) b{x="y"} or vector(0)', {"a", "b"}),
        (
            'count(model_feature_psi > 0.2) and bool sum(ALERTS{alertstate="firing", team="ml"})',
            {"model_feature_psi", "ALERTS"},
        ),
        ('{__name__="kube_job_failed", condition="true"} offset 5m', {"kube_job_failed"}),
        ('label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}),
        (
            "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > Inf",
            {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"},
        ),
    ],
)
def test_metric_names(expr, names):
    assert promql.metric_names(expr) == names


def test_grafana_variables_are_filled_in():
    expr = 'rate(x{namespace=~"$namespace", pod=~"${pod}", job=~"[[job]]"}[$__rate_interval])'
    assert promql.fill_grafana_variables(expr, {"pod": "p-1"}) == 'rate(x{namespace=~".*", pod=~"p-1", job=~".*"}[1m])'


def test_the_kits_dashboards_read_these_metrics():
    names = {
        board.stem: set().union(*(promql.metric_names(e) for _, e in promql.dashboard_expressions(board.read_text())))
        for board in sorted(BOARDS.glob("*.json"))
    }
    assert names == {
        "gpu": {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
                "DCGM_FI_DEV_POWER_USAGE"},
        "ml-drift": {"model_feature_psi", "model_accuracy"},
        "ml-serving": {"request_predict_seconds_count", "model_predictions_total", "request_predict_seconds_bucket",
                       "model_prediction_latency_seconds_bucket", "model_prediction_errors_total",
                       "kube_pod_container_status_restarts_total", "model_accuracy", "ALERTS"},
    }  # fmt: skip


def test_every_filled_in_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule's expression (an unfilled $variable fails)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (apt-get install prometheus)")
    exprs = [e for board in sorted(BOARDS.glob("*.json")) for _, e in promql.dashboard_expressions(board.read_text())]
    assert len(exprs) >= 20
    rules = {
        "groups": [{"name": "dashboards", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]
    }
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps(rules))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(exprs)} rules found" in out.stdout
