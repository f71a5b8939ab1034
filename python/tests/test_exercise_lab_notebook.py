"""The lab notebook (`lab.ipynb`, written by `mllab start N`) executed for real in a Jupyter kernel
(ipykernel, driven by nbclient, as JupyterLab runs a notebook top to bottom): the learner's path from
the notebook, on the same files as the CLI. Lab 1, the quickest lab: the untouched starter's check
cell says "not yet" and names what is missing; with the reference in the workspace, it says PASS."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # the kernel's `!` cells get rich's terminal colours


def _execute(folder: Path) -> list[str]:
    """Run every cell of folder/lab.ipynb in a python3 kernel; the text each code cell printed."""
    import nbclient
    import nbformat

    nb = nbformat.read(folder / "lab.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    out = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            text = ANSI.sub("", "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"))
            out.append(text)
    return out


@pytest.mark.timeout(600)
def test_lab_notebook_runs_and_grades_the_learners_files_in_a_kernel(
    home: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mllab import exercise
    from mllab.labs import get_lab
    from mllab.runner import start_lab

    # the notebook's `!mllab ...` cells find the command the learner's JupyterLab has on its PATH
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLLAB_BACKEND", "local")
    monkeypatch.setenv("COLUMNS", "200")
    lab = get_lab(1)
    folder = start_lab(lab).folder
    assert (folder / exercise.NOTEBOOK).is_file()

    todo, ran, check, hint = _execute(folder)
    assert "TODO" in todo and "job.yaml" in todo
    assert "Lab 1 ran in" in ran, ran[-2000:]  # the end: a progress spinner's frames come first
    assert "Lab 1: not yet" in check, check[-4000:]
    assert "job.yaml requests a GPU in the container's limits" in check and "FAIL" in check, check[-4000:]
    assert "Hint 1 of" in hint, hint

    for f in exercise.solution_dir(lab).iterdir():
        shutil.copyfile(f, folder / f.name)
    todo, ran, check, hint = _execute(folder)
    assert "TODO" not in todo, todo
    assert "Lab 1 ran in" in ran, ran[-2000:]  # the end: a progress spinner's frames come first
    assert "Lab 1: PASS" in check and "FAIL" not in check, check[-4000:]
