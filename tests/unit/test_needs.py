"""tests/unit/needs.py: a missing tool skips on a developer's machine and fails in CI."""

from __future__ import annotations

import pytest
from needs import imported, missing


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_a_missing_tool_fails_under_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"promtool is not installed .*CI=true"):
        missing("promtool is not installed")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_a_missing_tool_skips_elsewhere(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="promtool is not installed"):
        missing("promtool is not installed")


def test_a_present_module_is_imported(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert imported("json", "json is missing").dumps([]) == "[]"


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_module_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=r"the k8s extra is not installed \(No module named 'no_such_module_mllab'\)"):
        imported("no_such_module_mllab", "the k8s extra is not installed")
