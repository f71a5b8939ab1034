"""roles/lab_image/files/lab_image.py, the lab image's planning, on a real wheel of this checkout's
python/ (pip wheel, as the labs role builds it): which requirements go into the dependency layer
(the base install's and the image's extras' ranges, markers kept for the image's Python) and with
which exact pins (requirements/constraints.txt, -c), the content-addressed tags (a code change moves
the image's tag and keeps the dependency layer; a change of a range or of a pin moves both), and the
console scripts pointed at the image's python3. The build and push themselves run against a
real registry in the e2e tier (tests/e2e/platform.sh lab-image, then the labs' pods pull it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/lab_image/files/lab_image.py"
CONSTRAINTS = ROOT / "requirements/constraints.txt"


def _load():
    spec = importlib.util.spec_from_file_location("lab_image", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


li = _load()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "src"):
        (shutil.copytree if (ROOT / "python" / name).is_dir() else shutil.copy)(ROOT / "python" / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )
    (found,) = out.glob("mllab-*.whl")
    return found


def _rewrite(wheel: Path, dest: Path, member_suffix: str, edit) -> Path:
    """A copy of the wheel with one member edited (a code change, or a changed METADATA)."""
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(dest, "w") as zout:
        hits = 0
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(member_suffix):
                data, hits = edit(data), hits + 1
            zout.writestr(item, data)
    assert hits == 1, member_suffix
    return dest


def _args(wheel: Path, **over: str):
    argv = ["ref", "--wheel", str(wheel), "--base", "docker.io/library/python:3.12.12-slim-bookworm"]
    argv += ["--constraints", over.get("constraints", str(CONSTRAINTS))]
    argv += ["--python-version", over.get("python", "3.12"), "--registry", "localhost:32000"]
    if "push" in over:
        argv += ["--push-registry", over["push"]]
    return li.parse(argv)


def test_the_dependency_layer_takes_the_base_install_and_the_labs_extra_with_markers_for_the_image(wheel: Path):
    _, version, requires = li.wheel_metadata(wheel)
    reqs = li._extras_requirements(requires, ["labs"]).splitlines()
    assert version == "0.1.0"
    assert "rich<16,>=15.0.0" in reqs and "torch<3,>=2.15.0" in reqs and "onnxruntime<2,>=1.32.0" in reqs
    assert not any("==" in r for r in reqs), reqs  # ranges: the exact pins are the constraints file's
    assert not any("kubernetes" in r or "pytest" in r for r in reqs), reqs  # the k8s and test extras
    assert not any("extra" in r for r in reqs), reqs
    assert "kubernetes<37,>=36.0.3" in li._extras_requirements(requires, ["labs", "k8s"]).splitlines()


def test_the_dependency_layer_installs_at_the_constraints_pins(wheel: Path, tmp_path: Path, monkeypatch):
    """uv gets the extras' ranges (-r) and the constraints file (-c), whose pins keep their
    python_version markers for uv to choose for the image's Python (scipy, numpy)."""
    seen: list[list[str]] = []
    monkeypatch.setattr(li, "uv_install", lambda args, target, what, no_deps: seen.append(what))
    monkeypatch.setattr(li, "base_accounts", lambda args: {"etc/passwd": b"root:x:0:0\n", "etc/group": b"root:x:0:\n"})
    monkeypatch.setattr(li, "crane", lambda args, *argv, check=True: "")
    args = _args(wheel)
    li.build_deps(args, li.plan(args), tmp_path)
    ((r, reqs, c, constraints),) = seen
    assert (r, c, constraints) == ("-r", "-c", str(CONSTRAINTS))
    assert "torch<3,>=2.15.0" in Path(reqs).read_text().splitlines()
    pins = CONSTRAINTS.read_text().splitlines()
    assert 'scipy==1.18.1 ; python_version >= "3.12"' in pins and 'scipy==1.17.1 ; python_version < "3.12"' in pins
    with pytest.raises(li.BuildError, match=r"no constraints file at .*nothing\.txt"):
        li.plan(_args(wheel, constraints=str(tmp_path / "nothing.txt")))


def test_tags_are_content_addressed(wheel: Path, tmp_path: Path):
    one, again = li.plan(_args(wheel)), li.plan(_args(wheel))
    assert one == again  # the same inputs: nothing to push
    assert one["ref"].startswith("localhost:32000/mllab:0.1.0-") and one["push"] == one["ref"]
    assert one["deps_push"].startswith("localhost:32000/mllab-deps:deps-")

    code = _rewrite(wheel, tmp_path / wheel.name, "mllab/cli.py", lambda b: b + b"\n# changed\n")
    changed = li.plan(_args(code))
    assert changed["ref"] != one["ref"] and changed["deps_push"] == one["deps_push"]  # deps layer reused

    (tmp_path / "pins").mkdir()
    pins = _rewrite(
        wheel,
        tmp_path / "pins" / wheel.name,
        ".dist-info/METADATA",
        lambda b: b.replace(b"optuna<6,>=5.0.0", b"optuna<6,>=4.9.0"),
    )
    moved = li.plan(_args(pins))
    assert moved["deps_push"] != one["deps_push"] and moved["ref"] != one["ref"]
    # a new exact pin (the constraints file) rebuilds the dependency layer too, with the same wheel
    other = tmp_path / "constraints.txt"
    other.write_text(CONSTRAINTS.read_text().replace("optuna==5.0.0", "optuna==5.0.1"))
    repinned = li.plan(_args(wheel, constraints=str(other)))
    assert repinned["deps_push"] != one["deps_push"] and repinned["ref"] != one["ref"]
    assert li.plan(_args(wheel, python="3.11"))["deps_push"] != one["deps_push"]  # another Python


def test_the_push_address_can_differ_from_the_one_the_nodes_pull(wheel: Path):
    p = li.plan(_args(wheel, push="10.0.0.5:32000"))
    assert p["push"].startswith("10.0.0.5:32000/mllab:") and p["ref"].startswith("localhost:32000/mllab:")
    assert p["push"].split(":")[-1] == p["ref"].split(":")[-1]


def test_a_missing_wheel_is_named(tmp_path: Path):
    with pytest.raises(li.BuildError, match=r"no wheel at .*nothing\.whl"):
        li.plan(_args(tmp_path / "nothing.whl"))


def test_console_scripts_are_pointed_at_the_images_python(tmp_path: Path):
    lib_bin = tmp_path / li.IMAGE_LIB / "bin"
    lib_bin.mkdir(parents=True)
    (lib_bin / "mllab").write_text("#!/home/me/lab/.venv/bin/python3.12\nimport sys\nfrom mllab.cli import main\n")
    (lib_bin / "helper.sh").write_text("#!/bin/sh\necho hi\n")
    li.scripts_to_bin(tmp_path)
    out = tmp_path / li.IMAGE_BIN
    assert (out / "mllab").read_text().splitlines()[:2] == ["#!/usr/bin/env python3", "import sys"]
    assert (out / "helper.sh").read_text().startswith("#!/bin/sh\n")
    assert (out / "mllab").stat().st_mode & 0o111 and not lib_bin.exists()
