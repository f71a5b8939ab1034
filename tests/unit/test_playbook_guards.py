"""Playbooks that stop, naming the setting to fix, before they touch anything (run for real with
ansible-playbook on localhost): the lab image on an existing cluster without a registry, and a reset
with an unknown scope. What they do when the settings are right runs in the e2e tier
(tests/e2e/platform.sh lab-image and reset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _playbook(playbook: str, tmp_path: Path, **extra: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), MLLAB_ARTIFACTS_DIR=str(tmp_path / "artifacts"))
    env["ANSIBLE_FACT_CACHING"] = "memory"
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory/localhost.yml", playbook]
    cmd += ["-e", json.dumps(extra)] if extra else []
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_the_lab_image_on_an_existing_cluster_without_a_registry_stops_naming_the_setting(tmp_path: Path):
    proc = _playbook("playbooks/lab-image.yml", tmp_path, mllab_manage_microk8s=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "lab_image_registry is empty" in out and "lab_image_build: false" in out, out[-3000:]
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").rglob("*.whl"))  # nothing built


def test_a_reset_with_an_unknown_scope_stops_naming_the_scopes(tmp_path: Path):
    proc = _playbook("playbooks/reset.yml", tmp_path, mllab_reset_scope="nodes", mllab_manage_microk8s=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "mllab_reset_scope = nodes is not a scope" in out and "RESET=platform" in out, out[-3000:]
    assert "Reset | remove the platform layer" not in out  # stopped before the platform play


def test_a_reset_without_a_scope_is_the_cluster_reset_and_leaves_the_platform_alone(tmp_path: Path):
    # mllab_manage_microk8s false: the cluster plays skip too, so nothing is touched here
    proc = _playbook("playbooks/reset.yml", tmp_path, mllab_manage_microk8s=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "failed=0" in out and "Reset | remove the platform layer" in out, out[-3000:]
    assert "Platform common | reset:" not in out  # its tasks were not included
