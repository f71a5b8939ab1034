"""scripts/skip-report: the skips of every pytest run of `make test`, counted by tier and reason."""

from __future__ import annotations

import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "skip-report"
_spec = spec_from_loader("skip_report", SourceFileLoader("skip_report", str(SCRIPT)))
skip_report = module_from_spec(_spec)
_spec.loader.exec_module(skip_report)

# What pytest's --junitxml writes (xunit2): a skip's reason in `message`, its location in the text.
UNIT_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="0" skipped="4" tests="6">
<testcase classname="tests.unit.test_a" name="test_ok" time="0.001" />
<testcase classname="tests.unit.test_a" name="test_rules[1]" time="0.001">
  <skipped type="pytest.skip" message="promtool is not installed">tests/unit/test_a.py:9: promtool is \
not installed</skipped>
</testcase>
<testcase classname="tests.unit.test_a" name="test_rules[2]" time="0.001">
  <skipped type="pytest.skip" message="promtool is not installed">tests/unit/test_a.py:9: promtool is \
not installed</skipped>
</testcase>
<testcase classname="tests.unit.test_b" name="test_go" time="0.001">
  <skipped type="pytest.skip" message="go is not installed">tests/unit/test_b.py:3: go is not installed</skipped>
</testcase>
<testcase classname="tests.unit.test_b" name="test_known" time="0.001">
  <skipped type="pytest.xfail" message="upstream bug 42" />
</testcase>
<testcase classname="tests.unit.test_b" name="test_ok" time="0.001" />
</testsuite></testsuites>
"""
MOLECULE_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" skipped="1" tests="2">
<testcase classname="test_cluster" name="test_nodes[ansible://h]" time="0.1">
  <skipped type="pytest.skip" message="cluster layer is not deployed on this host">x</skipped>
</testcase>
<testcase classname="test_host" name="test_users[ansible://h]" time="0.1" />
</testsuite></testsuites>
"""


def test_counts_each_reason_per_tier(tmp_path):
    (tmp_path / "unit.xml").write_text(UNIT_XML)
    (tmp_path / "molecule-base-default-bookworm.xml").write_text(MOLECULE_XML)

    skipped, xfailed = skip_report.skips(tmp_path / "unit.xml")
    assert skipped == {"promtool is not installed": 2, "go is not installed": 1}
    assert xfailed == {"upstream bug 42": 1}

    lines = skip_report.report(tmp_path).splitlines()
    assert lines[0] == "=== skips: 4 skipped in 2 pytest runs"
    assert lines[1:] == [
        "  molecule-base-default-bookworm: 1 skipped",
        "       1  cluster layer is not deployed on this host",
        "  unit: 3 skipped",
        "       2  promtool is not installed",
        "       1  go is not installed",
        "  1 xfailed",
        "       1  unit: upstream bug 42",
    ]


def test_no_skips_and_an_unreadable_file(tmp_path):
    no_skips = MOLECULE_XML.replace("<skipped", "<x").replace("</skipped>", "</x>")
    (tmp_path / "labs-test-package.xml").write_text(no_skips)
    (tmp_path / "molecule-gpu-default-bookworm.xml").write_text("<testsuites><testsu")  # a run killed mid-write
    lines = skip_report.report(tmp_path).splitlines()
    assert lines[0] == "=== skips: 0 skipped in 2 pytest runs"
    assert lines[1].startswith("  not read: molecule-gpu-default-bookworm.xml (")


def test_reads_what_pytest_writes(tmp_path):
    """The format is pytest's own, not the sample's idea of it: a real run's --junitxml."""
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_a():\n    pytest.skip('no GPU on this host')\n"
        "@pytest.mark.skip(reason='no GPU on this host')\ndef test_b():\n    pass\n"
        "@pytest.mark.skipif(True, reason='snap store unreachable')\ndef test_c():\n    pass\n"
        "def test_d():\n    pass\n"
    )
    junit = tmp_path / "junit"
    junit.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}/unit.xml",
            "test_sample.py",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    out = subprocess.run([sys.executable, str(SCRIPT), str(junit)], check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == [
        "=== skips: 3 skipped in 1 pytest run",
        "  unit: 3 skipped",
        "       2  no GPU on this host",
        "       1  snap store unreachable",
    ]
