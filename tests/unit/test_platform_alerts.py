"""The ML alert rules of roles/monitoring, as rendered for the default settings, checked
with promtool: `promtool check rules` and `promtool test rules` with unit tests that fire
and do not fire each alert (tests/unit/platform/alerts.test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import harness  # tests/unit/platform (conftest.py)
import pytest
import yaml
from needs import missing  # tests/unit/needs.py: skips here, fails under CI=true

ALERTS = {"ModelAccuracyDegraded", "ModelLatencyHigh", "ModelFeatureDrift", "TrainingJobFailed"}
TESTS = Path(__file__).parent / "platform" / "alerts.test.yml"
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        missing("promtool is not installed (Debian: apt-get install prometheus)")
    return path


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    run = harness.render_matrix()["defaults"]
    assert run.rc == 0, run.output[-2000:]
    rule = run.get("PrometheusRule", "mllab-ml-alerts")
    folder = tmp_path_factory.mktemp("promtool")
    (folder / "rules.yml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(TESTS, folder / "alerts.test.yml")
    return folder


def test_every_alert_of_the_issue_is_defined(rules_dir):
    spec = yaml.safe_load((rules_dir / "rules.yml").read_text())
    names = {r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r}
    assert names == ALERTS


def test_promtool_check_rules(promtool, rules_dir):
    res = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=rules_dir, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 4 rules found" in res.stdout + res.stderr


def test_promtool_unit_tests_fire_and_do_not_fire_each_alert(promtool, rules_dir):
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    silent = {t["alertname"] for case in tests for t in case["alert_rule_test"] if not t["exp_alerts"]}
    assert fired == ALERTS
    assert silent >= ALERTS - {"TrainingJobFailed"}  # its silent cases are series in the firing test
    res = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=rules_dir, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_promtool_unit_tests_can_fail(promtool, rules_dir, tmp_path):
    """The same tests against a rule with a different threshold must fail (the tests bite)."""
    spec = yaml.safe_load((rules_dir / "rules.yml").read_text())
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ModelAccuracyDegraded":
                rule["expr"] = rule["expr"].replace("< 0.85", "< 0.5")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(TESTS, tmp_path / "alerts.test.yml")
    res = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0
    assert "ModelAccuracyDegraded" in res.stdout + res.stderr
