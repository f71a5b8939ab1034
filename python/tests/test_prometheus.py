"""mllab.prometheus against a real Prometheus (Debian's `prometheus` 2.42, the package that ships
promtool; CI installs it): a metrics endpoint served by prometheus_client, a rule file deployed as
lab 7 deploys the learner's (prometheus_rule: the server label added to every rule), in a file
named as prometheus-operator names a PrometheusRule's (<namespace>-<name>-<uid>.yaml,
pkg/operator/rules.go v0.85.0), scraped and evaluated every second. The tests read the rule's state
and the ALERTS history the way lab 7's run and check do. The operator and Prometheus 3.5 on a
cluster: tests/e2e/labs.sh (lab 7)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import missing  # skips here, fails under CI=true (tests/unit/needs.py)
from mllab.procs import free_port, wait_http
from mllab.prometheus import (
    SERVER_LABEL,
    Prometheus,
    PrometheusError,
    RuleSet,
    _rfc3339,
    evaluated_since,
    prometheus_rule,
    threshold,
)

RULE = {
    "groups": [
        {
            "name": "lab7",
            "rules": [
                {
                    "alert": "ModelFeatureDrift",
                    "expr": "max by (model_name, feature) (model_feature_psi) > 0.2",
                    "for": "3s",
                    "labels": {"severity": "warning"},
                }
            ],
        }
    ]
}


def test_prometheus_rule_keeps_the_file_and_labels_every_rule(tmp_path: Path) -> None:
    path = tmp_path / "drift_alert.yaml"
    path.write_text(yaml.safe_dump(RULE))
    body = prometheus_rule(path, "mllab-monitored-ab12", {"release": "kube-prom-stack"}, "mllab-monitored-ab12")
    assert body["kind"] == "PrometheusRule" and body["metadata"]["labels"] == {"release": "kube-prom-stack"}
    (rule,) = body["spec"]["groups"][0]["rules"]
    assert rule["expr"] == RULE["groups"][0]["rules"][0]["expr"] and rule["for"] == "3s"
    assert rule["labels"] == {"severity": "warning", SERVER_LABEL: "mllab-monitored-ab12"}


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("min by (namespace, model_name, model_version) (model_accuracy) < 0.9", 0.9),
        ("max by (feature) (model_feature_psi) > bool 2e-1", 0.2),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 1", 1.0),
        ("up == 0", None),
    ],
)
def test_threshold_reads_the_comparison_at_the_end(query: str, want: float | None) -> None:
    assert threshold(query) == want


def test_rfc3339_timestamps() -> None:
    assert _rfc3339("1970-01-01T00:01:00Z") == 60
    assert _rfc3339("1970-01-01T00:01:00.5+00:00") == 60.5
    assert _rfc3339("") == 0 and not evaluated_since({"lastEvaluation": "0001-01-01T00:00:00Z"}, 0)


def test_an_unreachable_prometheus_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Prometheus(url, timeout=2) as prom, pytest.raises(PrometheusError) as err:
        prom.query("up")
    assert url in err.value.message and "MLLAB_PROMETHEUS_URL" in err.value.fix


@pytest.fixture
def cluster_like(tmp_path: Path) -> Iterator[tuple[Prometheus, RuleSet, object]]:
    """A metrics endpoint, its rule file as the operator would write it, and a Prometheus on both."""
    binary = shutil.which("prometheus")
    if not binary:
        missing("prometheus is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    psi = Gauge("model_feature_psi", "PSI", ["model_name", "feature"], registry=registry)
    psi.labels("digits", "pixel_3").set(0.05)
    exporter_port = free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    rules = RuleSet(url="", namespace="ml-serving", name="mllab-monitored-ab12", server="mllab-monitored-ab12")
    src = tmp_path / "drift_alert.yaml"
    src.write_text(yaml.safe_dump(RULE))
    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    body = prometheus_rule(src, rules.name, {}, rules.server)
    (rule_dir / f"{rules.namespace}-{rules.name}-0b7e.yaml").write_text(yaml.safe_dump(body["spec"]))
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_dir / "*.yaml")],
        "scrape_configs": [{"job_name": "server", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
    )
    rules.url = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(rules.url + "/-/ready", 60), (tmp_path / "prometheus.log").read_text()[-2000:]
        with Prometheus(rules.url) as prom:
            yield prom, rules, psi
    finally:
        proc.terminate()
        proc.wait(20)
        server.shutdown()


def test_the_rule_state_and_the_alerts_history_as_lab_7_reads_them(cluster_like) -> None:
    prom, rules, psi = cluster_like
    mine = rules.in_file

    def drift() -> dict | None:
        return prom.rules().get("ModelFeatureDrift", mine)

    loaded = prom.wait("rule not loaded", drift, 30, every=0.5)
    assert loaded["labels"][SERVER_LABEL] == rules.server and loaded["health"] in ("ok", "unknown")
    assert prom.rules().get("ModelFeatureDrift", lambda f: "/another-ns-" in f) is None

    # calm: scraped, evaluated after the scrape, inactive
    t_calm = prom.wait("gauge not scraped", lambda: prom.query("model_feature_psi") and time.time(), 30, every=0.5)
    calm = prom.wait("not evaluated", lambda: (r := drift()) and evaluated_since(r, t_calm) and r, 30)
    assert calm["state"] == "inactive" and calm["alerts"] == []
    a1 = time.time()

    # drift: pending first (its `for: 3s`), then firing, with the server label and the feature
    b0 = time.time()
    psi.labels("digits", "pixel_3").set(0.4)
    pending = prom.wait("never pending", lambda: (r := drift())["state"] != "inactive" and r, 30, 0.2)
    assert pending["state"] == "pending", pending
    firing = prom.wait("never firing", lambda: (r := drift())["state"] == "firing" and r, 30)
    (alert,) = firing["alerts"]
    assert alert["labels"] == {
        "alertname": "ModelFeatureDrift",
        "model_name": "digits",
        "feature": "pixel_3",
        "severity": "warning",
        SERVER_LABEL: rules.server,
    }
    assert float(alert["value"]) == pytest.approx(0.4)
    b1 = time.time()

    # the history check 7 reads: nothing during the calm phase, firing during the drift
    sel = f'ALERTS{{alertname="ModelFeatureDrift",{SERVER_LABEL}="{rules.server}"'
    assert prom.query(f"max_over_time({sel}}}[{a1 - t_calm + 1:.0f}s])", at=a1) == []
    fired = prom.query(f'max_over_time({sel},alertstate="firing"}}[{b1 - b0 + 1:.0f}s])', at=b1)
    assert [labels["feature"] for labels, _ in fired] == ["pixel_3"]
