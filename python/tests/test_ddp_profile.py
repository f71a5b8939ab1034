"""`python -m mllab.ddp_train --profile` (make bench's "where the time goes" for lab 5's job): a real
2-process torchrun on gloo; the phases it reports must add up and be of the right size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(240)
def test_the_step_profile_of_a_two_process_run_adds_up(tmp_path: Path) -> None:
    from mllab.model import DigitsCNN

    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "-m", "mllab.ddp_train", "--out-dir", str(tmp_path), "--epochs", "2", "--global-batch", "128",
            "--dtype", "float32", "--profile"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["dtype"] == "float32" and result["threads_per_process"] == 1
    assert result["per_rank_batch"] == 64, "a global batch of 128 on 2 processes is 64 rows per process"
    profiles = result["profile_ms_per_step"]
    assert len(profiles) == 2, "one profile per rank"
    n_params = sum(p.numel() for p in DigitsCNN().parameters())
    for rank, p in enumerate(profiles):
        assert p["gradient_bytes"] == 4 * n_params, (rank, p)  # float32: the whole model's gradients
        assert p["compute"] > 0 and p["all_reduce"] > 0 and p["outside_steps"] >= 0, (rank, p)
        assert p["compute"] + p["all_reduce"] == pytest.approx(p["step"]), (rank, p)
        assert 0 < p["all_reduce_wire"] <= p["all_reduce"], (rank, p)
        assert p["waiting"] == pytest.approx(p["all_reduce"] - p["all_reduce_wire"]), (rank, p)
        assert p["step"] < 1000, f"rank {rank}: a step of {p['step']:.0f} ms is not a 64-row CNN step"


def test_without_profile_the_result_has_no_profile(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
            "-m", "mllab.ddp_train", "--out-dir", str(tmp_path), "--epochs", "1", "--global-batch", "64"]  # fmt: skip
    done = subprocess.run(argv, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=200, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert "profile_ms_per_step" not in result and result["dtype"] == "float64"
