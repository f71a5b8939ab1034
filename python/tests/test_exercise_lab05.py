"""Lab 5's exercise (ddp.py: the process group, each rank's share of the data, the rank-0-only save),
the three cases on the local backend with real torchrun processes (1 and 2 ranks, gloo) and a real
MLflow server."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

pytestmark = pytest.mark.usefixtures("lab_tracking")


@pytest.mark.timeout(900)
def test_starter_fails_naming_the_backend_the_rank_the_sampler_and_the_rank_0_save(home: Path, workspace: Path) -> None:
    checks = run_case(5, "starter", workspace)
    bad = failing(checks)
    assert "init_distributed picks the backend from the device (gloo on CPU, nccl on CUDA)" in bad
    assert_fails_naming(checks, "rank and world size", "dist.get_rank()")
    assert_fails_naming(checks, "own share", "DistributedSampler")
    assert_fails_naming(checks, "rank 1 writes nothing", "only rank 0")
    assert_fails_naming(checks, "barrier", "called 0 time(s)")
    # End to end: each rank believed it was alone, so the 2 "ranks" both trained on everything.
    assert "2 processes really ran as 2 ranks" in bad and "(0, 1), (0, 1)" in bad["2 processes really ran as 2 ranks"]
    assert "2 ranks together train on the dataset once per epoch" in bad


@pytest.mark.timeout(900)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    checks = run_case(5, "solution", workspace)
    assert_passes(checks)
    assert len(checks) >= 12


@pytest.mark.timeout(900)
def test_ddp_without_the_distributed_sampler_fails_with_the_sampler_hint(home: Path, workspace: Path) -> None:
    checks = run_case(5, "wrong", workspace)
    bad = failing(checks)
    weights = "2 processes reach the weights of 1 process"
    assert weights in bad and "whole dataset" in bad[weights] and "DistributedSampler" in bad[weights]
    assert "each rank trains on its own share of the data" in bad
    assert "2 ranks together train on the dataset once per epoch" in bad
    # What this wrong solution does right is not blamed.
    for ok in (
        "init_distributed returns torchrun's rank and world size",
        "rank 1 writes nothing",
        "every rank waits at the barrier after rank 0 has written",
        "2 processes really ran as 2 ranks",
    ):
        assert ok not in bad, bad[ok]
