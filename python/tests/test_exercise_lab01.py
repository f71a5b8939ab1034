"""Lab 1's exercise (job.yaml: a Job that requests a GPU, safely; device.py: pick the device at run
time and move the work there): the three cases on the local backend, then the grading of the
learner's files without a run (the manifest's rules, the GPU branch of the check, the job's errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

GPU_LIMIT = "job.yaml requests a GPU in the container's limits"
RESTART = "job.yaml sets restartPolicy Never or OnFailure"
NON_ROOT = "job.yaml runs as a non-root user"
PICK_CUDA = "pick_device() picks cuda when CUDA is available"
PICK_CPU = "pick_device() picks cpu when CUDA is not available"
MOVES = "to_device() moves the model and every tensor to the device it is given"


@pytest.mark.timeout(300)
def test_starter_fails_naming_the_gpu_limit_the_pod_rules_and_the_hard_coded_cpu(home: Path, workspace: Path) -> None:
    checks = run_case(1, "starter", workspace)
    bad = failing(checks)
    assert {GPU_LIMIT, RESTART, NON_ROOT, PICK_CUDA, MOVES} <= set(bad), bad
    assert_fails_naming(checks, "nvidia.com/gpu", "limits")
    assert_fails_naming(checks, "restartPolicy", "Never")
    assert_fails_naming(checks, "runAsNonRoot")
    assert_fails_naming(checks, "pick_device", "torch.cuda.is_available() is True", "cuda")
    assert_fails_naming(checks, "to_device", "hard-coded 'cpu'")
    assert PICK_CPU not in bad  # the starter's cpu is right where there is no GPU
    assert "job.yaml is a batch/v1 Job with a container" not in bad


@pytest.mark.timeout(300)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    import torch

    checks = run_case(1, "solution", workspace)
    assert_passes(checks)
    assert {GPU_LIMIT, RESTART, NON_ROOT, PICK_CUDA, PICK_CPU, MOVES} <= {c.name for c in checks}
    skipped = [c.name for c in checks if c.skipped]
    assert skipped == ([] if torch.cuda.is_available() else ["GPU speed-up"])


@pytest.mark.timeout(300)
def test_gpu_in_requests_and_tensors_left_behind_fail_with_their_hints(home: Path, workspace: Path) -> None:
    bad = failing(run_case(1, "wrong", workspace))
    assert GPU_LIMIT in bad and "requests only" in bad[GPU_LIMIT] and "GPUs go in limits" in bad[GPU_LIMIT]
    assert MOVES in bad and "the tensors stay behind" in bad[MOVES] and "model is on meta" in bad[MOVES]
    assert not {RESTART, NON_ROOT, PICK_CUDA, PICK_CPU} & set(bad), bad  # this wrong solution gets those right


# --- the manifest's rules, one broken at a time -------------------------------------------------
def _manifest(tmp_path: Path, old: str = "", new: str = "") -> Path:
    from mllab import exercise
    from mllab.labs import get_lab

    text = (exercise.solution_dir(get_lab(1)) / "job.yaml").read_text()
    assert old in text
    path = tmp_path / "job.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "check", "words"),
    [
        ("nvidia.com/gpu: 1  #", 'nvidia.com/gpu: "0.5"  #', GPU_LIMIT, "not a whole number"),
        ("memory: 512Mi\n", "memory: 512Mi\n              nvidia.com/gpu: 2\n", GPU_LIMIT, "differs from limits"),
        ("restartPolicy: Never", "restartPolicy: Always", RESTART, "'Always'"),
        ("runAsUser: 1000", "runAsUser: 0", NON_ROOT, "runAsUser 0 is root"),
        ("allowPrivilegeEscalation: false", "privileged: true", NON_ROOT, "privileged"),
        ("kind: Job", "kind: Pod", "job.yaml is a batch/v1 Job with a container", "kind 'Pod'"),
        ("kind: Job", "kind: [Job", "job.yaml parses", "not valid YAML (line"),
    ],
)
def test_a_broken_manifest_fails_its_own_check_only(tmp_path: Path, old: str, new: str, check: str, words: str) -> None:
    from mllab.labs.lab01_gpu import validate_manifest

    bad = {c.name: c.reason for c in validate_manifest(_manifest(tmp_path, old, new)) if not c.passed}
    assert list(bad) == [check], bad
    assert words in bad[check]


def test_the_gpu_count_the_run_requests_comes_from_the_manifests_limits(tmp_path: Path) -> None:
    from mllab.labs.lab01_gpu import manifest_gpus

    assert manifest_gpus(_manifest(tmp_path)) == 1
    assert manifest_gpus(_manifest(tmp_path, "nvidia.com/gpu: 1  #", 'nvidia.com/gpu: "2"  #')) == 2
    assert manifest_gpus(_manifest(tmp_path, "nvidia.com/gpu: 1  #", "#")) == 0
    (tmp_path / "job.yaml").write_text("kind: [")
    assert manifest_gpus(tmp_path / "job.yaml") == 0


# --- the check's GPU branch, from a recorded result (no GPU needed) ------------------------------
def _gpu_result(picked: str, work: list[str]) -> dict:
    cpu = {"matmul_s": 0.2, "train_step_s": 0.1, "work_device": ["cpu"]}
    out = {"gpu": True, "device_name": "NVIDIA H200", "device_count": 1, "picked_device": picked, "cpu": cpu}
    if picked == "cuda":
        out["gpu_bench"] = {"matmul_s": 0.001, "train_step_s": 0.01, "work_device": work}
        out["speedup_matmul"], out["speedup_train_step"] = 200.0, 10.0
    return out


@pytest.mark.parametrize(
    ("picked", "work", "failed"),
    [
        ("cuda", ["cuda"], set()),
        ("cpu", [], {"device.py picked the GPU the job sees", "GPU speed-up"}),
        ("cuda", ["cpu"], {"the GPU benchmark's work ran on the GPU"}),
    ],
)
def test_on_a_gpu_the_check_grades_the_device_the_job_picked(picked: str, work: list[str], failed: set[str]) -> None:
    from mllab.labs.base import LabContext
    from mllab.labs.lab01_gpu import check

    ctx = LabContext(lab=None, backend=None, rundir=Path("."))  # type: ignore[arg-type]
    checks = check(ctx, _gpu_result(picked, work))
    assert {c.name for c in checks if not c.passed} == failed
    assert not any(c.skipped for c in checks)


# --- the job with a broken device.py: a one-line error naming the file, not a traceback -----------
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("def to_device(device, model, *tensors):\n    return model.to(device)\n", "return (model, *tensors)"),
        ("def to_device(device, model, *tensors):\n    raise ValueError('oops')\n", "device.py: to_device() raised"),
    ],
)
def test_the_benchmark_job_names_a_broken_device_py(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], body: str, words: str
) -> None:
    from mllab import gpu_bench
    from mllab.exercise import EXERCISE_ENV

    (tmp_path / "device.py").write_text("import torch\n\ndef pick_device():\n    return torch.device('cpu')\n\n" + body)
    monkeypatch.setenv(EXERCISE_ENV, str(tmp_path))
    out = tmp_path / "bench.json"
    assert gpu_bench.main(["--out", str(out), "--size", "64", "--repeats", "1", "--batch", "2"]) == 8
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and words in err and "Traceback" not in err
    assert not out.exists()


def test_the_benchmark_records_the_pick_and_where_the_work_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mllab import gpu_bench
    from mllab.exercise import EXERCISE_ENV

    monkeypatch.delenv(EXERCISE_ENV, raising=False)  # lab 1's reference device.py
    out = tmp_path / "bench.json"
    assert gpu_bench.main(["--out", str(out), "--size", "64", "--repeats", "1", "--batch", "2"]) == 0
    info = json.loads(out.read_text())
    assert info["picked_device"] == ("cuda" if info["gpu"] else "cpu")
    assert info["cpu"]["work_device"] == ["cpu"]
    assert ("gpu_bench" in info) == info["gpu"]
    if info["gpu"]:
        assert info["gpu_bench"]["work_device"] == ["cuda"]
