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


def run_indexed(tmp_path, calls, index):
    log = tmp_path / "termination-log"
    env = {
        "MLLAB_CALLS": json.dumps(calls),
        "JOB_COMPLETION_INDEX": index,
        "MLLAB_TERMINATION_LOG": str(log),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mllab.backends.k8s_call"], env=env, capture_output=True, text=True, timeout=60
    )
    return proc, log.read_text()


def test_a_trial_pod_runs_the_call_at_its_completion_index(tmp_path):
    calls = [{"fn": "os.path:join", "args": ["a", str(i)], "kwargs": {}} for i in range(3)]
    for i in range(3):
        proc, msg = run_indexed(tmp_path, calls, str(i))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(msg) == {"result": f"a/{i}"}


def test_an_index_outside_the_calls_is_named(tmp_path):
    proc, msg = run_indexed(tmp_path, [{"fn": "os.path:join", "args": ["a"]}], "3")
    assert proc.returncode == 1 and "JOB_COMPLETION_INDEX '3' names none of the 1 calls" in msg
