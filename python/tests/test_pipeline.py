"""mllab.pipeline's remote steps (lab 8 on the cluster is a chain of step Jobs) and
mllab.pipeline_step, the entry point each step's Job runs (here as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mllab.pipeline import Step, run_pipeline


def step_a(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    (out / "a.txt").write_text(str(params["n"]))
    return {"n": params["n"]}


def step_b(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    n = int((inputs["a"] / "a.txt").read_text())
    (out / "b.txt").write_text(str(2 * n))
    return {"double": 2 * n}


def step_c(inputs: dict[str, Path], params: dict[str, Any], out: Path) -> dict[str, Any]:
    return {"seen": int((inputs["b"] / "b.txt").read_text())}


@pytest.fixture
def mlflow(tmp_path: Path) -> Any:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Artifacts under tmp_path too: a sqlite store's default artifact root is ./mlruns.
    mlflow.create_experiment("pipeline-test", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("pipeline-test")
    yield mlflow
    mlflow.set_tracking_uri("")


def steps(n: int) -> list[Step]:
    return [
        Step("a", step_a, params={"n": n}, remote=True),
        Step("b", step_b, ["a"], remote=True),
        Step("c", step_c, ["b"], cache=False),
    ]


def test_remote_steps_go_through_the_backend_keyed_by_their_outputs(tmp_path: Path, mlflow: Any) -> None:
    calls: list[tuple[str, str, dict[str, str]]] = []

    def run_step(fn, inputs, params, out, key, input_keys):  # a spy: records, then runs the step here
        calls.append((fn.__name__, key, input_keys))
        return fn(inputs, params, out)

    _, results = run_pipeline(steps(3), tmp_path / "w1", tmp_path / "cache", mlflow, "p1", run_step=run_step)
    assert [(r.name, r.status) for r in results] == [("a", "Succeeded"), ("b", "Succeeded"), ("c", "Succeeded")]
    assert [c[0] for c in calls] == ["step_a", "step_b"]  # c is not remote: it ran in this process
    (_, key_a, _), (_, key_b, inputs_b) = calls
    assert inputs_b == {"a": key_a}  # b's Job is told where a's output lives
    assert (results[0].output.name, results[1].output.name) == (key_a, key_b)  # the key names the cached output
    assert results[2].metrics == {"seen": 6}
    calls.clear()
    _, again = run_pipeline(steps(3), tmp_path / "w2", tmp_path / "cache", mlflow, "p2", run_step=run_step)
    assert [r.status for r in again] == ["Cached", "Cached", "Succeeded"] and calls == []
    _, changed = run_pipeline(steps(4), tmp_path / "w3", tmp_path / "cache", mlflow, "p3", run_step=run_step)
    assert [c[0] for c in calls] == ["step_a", "step_b"] and changed[2].metrics == {"seen": 8}
    assert calls[0][1] != key_a  # new parameters, new output key


def test_a_remote_step_cannot_read_an_in_process_step(tmp_path: Path, mlflow: Any) -> None:
    bad = [Step("a", step_a, params={"n": 1}), Step("b", step_b, ["a"], remote=True)]
    with pytest.raises(ValueError, match=r"remote step 'b' reads outputs of in-process steps \['a'\]"):
        run_pipeline(bad, tmp_path / "w", tmp_path / "cache", mlflow, "p", run_step=lambda *a: {})


def run_step_entry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mllab.pipeline_step", *args], capture_output=True, text=True, timeout=120
    )


def test_the_step_entry_point_runs_a_lab_step_into_its_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from a failed attempt")
    (out / ".attempts").write_text("2\n")
    proc = run_step_entry(
        "--fn", "mllab.labs.lab08_pipeline:preprocess", "--params", '{"test_size": 0.25}', "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"n_train": 1347, "n_test": 450} and json.loads(proc.stdout.splitlines()[-1]) == metrics
    assert sorted(p.name for p in out.iterdir()) == [".attempts", "digits.npz", "metrics.json"]


def test_the_step_entry_point_names_a_missing_input(tmp_path: Path) -> None:
    proc = run_step_entry(
        "--fn", "mllab.labs.lab08_pipeline:evaluate_step", "--out", str(tmp_path / "o"),
        "--input", f"preprocess={tmp_path / 'nowhere'}",
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"input 'preprocess' is missing at {tmp_path / 'nowhere'}" in proc.stderr
    proc = run_step_entry("--fn", "mllab.labs.lab08_pipeline:preprocess", "--out", str(tmp_path), "--input", "x")
    assert proc.returncode == 2 and "--input 'x' is not NAME=DIR" in proc.stderr


def test_lab8_an_overfit_config_aces_training_and_fails_the_held_out_test(tmp_path: Path) -> None:
    """The lab's overfit candidate: fit on 40 digits, training accuracy 1.0, held-out accuracy far
    below the gate's 0.9; a gate on the wrong metric would deploy it."""
    from mllab.labs.lab08_pipeline import CONFIGS, evaluate_step, preprocess, train_step

    pre, tr, ev = tmp_path / "pre", tmp_path / "train", tmp_path / "eval"
    for d in (pre, tr, ev):
        d.mkdir()
    preprocess({}, {"test_size": 0.25}, pre)
    metrics = train_step({"preprocess": pre}, {**CONFIGS["overfit-config"], "seed": 42, "version": "t"}, tr)
    assert metrics["train_samples"] == 40 and metrics["train_accuracy"] == 1.0
    assert sorted(p.name for p in (tr / "model").iterdir()) == ["meta.json", "model.pt", "reference.npy"]
    held_out = evaluate_step({"preprocess": pre, "train": tr}, {}, ev)
    assert held_out["n_test"] == 450 and held_out["accuracy"] < 0.85


def gate_failures(folder: Path) -> dict[str, str]:
    from mllab.exercise import load
    from mllab.labs.lab08_pipeline import probe_gate

    checks = probe_gate(load(folder, "gate"))
    assert len(checks) == 4
    return {c.name: f"{c.reason} | {c.hint}" for c in checks if not c.passed}


def test_lab8_gate_probe_passes_the_reference_and_names_what_the_others_lack() -> None:
    from mllab.exercise import solution_dir, starter_dir
    from mllab.labs import get_lab

    lab = get_lab(8)
    assert gate_failures(solution_dir(lab)) == {}
    starter = gate_failures(starter_dir(lab))
    assert len(starter) == 4  # it deploys everything: no check passes, not even "deploys a good candidate"
    assert "cannot tell" in starter["the gate deploys a good candidate when nothing is in production"]
    wrong = gate_failures(Path(__file__).parent / "exercises" / "08-pipeline" / "wrong")
    assert sorted(wrong) == [
        "the gate judges the evaluate step's accuracy, not the training accuracy",
        "the gate refuses a candidate below the threshold",
    ]
    assert "train_accuracy" in wrong["the gate judges the evaluate step's accuracy, not the training accuracy"]


def test_lab8_gate_that_returns_a_bare_bool_is_named(tmp_path: Path) -> None:
    (tmp_path / "gate.py").write_text("def should_deploy(candidate, champion, threshold):\n    return True\n")
    bad = gate_failures_raw(tmp_path)
    assert list(bad) == ["gate.py: should_deploy() runs and returns (deploy, reason)"]
    assert "returned True, not (deploy, reason)" in bad["gate.py: should_deploy() runs and returns (deploy, reason)"]


def gate_failures_raw(folder: Path) -> dict[str, str]:
    from mllab.exercise import load
    from mllab.labs.lab08_pipeline import probe_gate

    return {c.name: f"{c.reason} | {c.hint}" for c in probe_gate(load(folder, "gate")) if not c.passed}
