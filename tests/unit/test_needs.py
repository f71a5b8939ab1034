"""tests/unit/needs.py: a missing tool skips on a developer's machine and fails in CI."""

from __future__ import annotations

import pytest
from needs import missing


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
