"""mllab.backends.k8s_call: what a k8s trial pod runs (here as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys


def run_call(tmp_path, call):
    log = tmp_path / "termination-log"
    env = {"MLLAB_CALL": json.dumps(call), "MLLAB_TERMINATION_LOG": str(log), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "mllab.backends.k8s_call"], env=env, capture_output=True, text=True, timeout=60
    )
    return proc, log.read_text()


def test_result_goes_to_the_termination_message(tmp_path):
    proc, msg = run_call(tmp_path, {"fn": "os.path:join", "args": ["a", "b"], "kwargs": {}})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(msg) == {"result": "a/b"}


def test_an_error_fails_the_pod_with_its_message(tmp_path):
    proc, msg = run_call(tmp_path, {"fn": "math:sqrt", "args": [-1], "kwargs": {}})
    assert proc.returncode == 1
    assert msg.startswith("ValueError") and "math domain error" in msg


def test_a_bad_reference_is_named(tmp_path):
    proc, msg = run_call(tmp_path, {"fn": "no_colon_here", "args": []})
    assert proc.returncode == 1 and "'no_colon_here' is not 'module:qualname'" in msg
