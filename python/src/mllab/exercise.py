"""The learner's side of a lab: starter files to complete, the code `mllab run N` executes, and the
reference to compare with at the end.

Every lab ships two folders of plain files in this package, ``exercises/NN-slug/starter`` and
``exercises/NN-slug/solution``, with the same file names. `mllab start N` copies the starter into
the learner's workspace (``$MLLAB_WORKSPACE/NN-slug``, default ``~/mllab-labs/NN-slug``: their
JupyterLab home on the cluster), never over their edits. `mllab run N` snapshots the workspace
(or, with ``--solution``, the reference) into the run's folder and runs *that* code: in this
process, in the local backend's jobs (``MLLAB_EXERCISE`` names the folder), and in the cluster's
pods (a ConfigMap built from the folder, mounted read-only at ``EXERCISE_MOUNT``). `mllab check N`
grades the snapshot that ran, so later edits never change a past grade.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mllab.errors import MllabError, UsageError

if TYPE_CHECKING:
    from mllab.labs import LabInfo

EXERCISES = Path(__file__).resolve().parent / "exercises"
EXERCISE_ENV = "MLLAB_EXERCISE"  # the folder of the code a job or server runs
EXERCISE_MOUNT = "/opt/mllab/exercise"  # where the cluster's pods see it (a ConfigMap)
NOTEBOOK = "lab.ipynb"
MAX_FILE_BYTES = 256 * 1024  # a learner file larger than this is not a lab exercise (and would not fit a ConfigMap)
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # a ConfigMap key


class ExerciseError(MllabError):
    """The learner's code cannot be used: a missing file or function, a syntax error, an exception."""

    exit_code = 8


def starter_dir(lab: LabInfo) -> Path:
    return EXERCISES / lab.dirname / "starter"


def solution_dir(lab: LabInfo) -> Path:
    return EXERCISES / lab.dirname / "solution"


def file_names(lab: LabInfo) -> list[str]:
    """The exercise's files (the starter's and the solution's names are the same)."""
    base = starter_dir(lab)
    return sorted(p.name for p in base.iterdir() if p.is_file()) if base.is_dir() else []


def workspace_root() -> Path:
    return Path(os.environ.get("MLLAB_WORKSPACE") or Path.home() / "mllab-labs").expanduser()


def workspace(lab: LabInfo) -> Path:
    return workspace_root() / lab.dirname


def todos(path: Path) -> list[str]:
    """The TODO lines of a file, as `name:line: text`."""
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if text.startswith("#") and "TODO" in text:  # a TODO comment (Python or YAML)
            out.append(f"{path.name}:{i}: {text.lstrip('#').strip()}")
    return out


@dataclass
class StartReport:
    folder: Path
    copied: list[str] = field(default_factory=list)  # new files
    kept: list[str] = field(default_factory=list)  # the learner's files, left as they are
    replaced: list[str] = field(default_factory=list)  # with --reset-files: edited files put back to the starter


def start_files(lab: LabInfo, reset: bool = False) -> StartReport:
    """Copy the starter files into the workspace; a file already there is kept (the learner's edits),
    unless `reset`, which puts back the starter of every file that differs from it."""
    folder = workspace(lab)
    report = StartReport(folder)
    names = file_names(lab)
    if not names:
        return report
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the lab's workspace {folder}: {exc.strerror or exc}",
            "set MLLAB_WORKSPACE to a writable directory",
        ) from None
    for name in names:
        src, dest = starter_dir(lab) / name, folder / name
        if dest.exists():
            if reset and dest.read_bytes() != src.read_bytes():
                shutil.copyfile(src, dest)
                report.replaced.append(name)
            else:
                report.kept.append(name)
            continue
        shutil.copyfile(src, dest)
        report.copied.append(name)
    nb = folder / NOTEBOOK
    if nb.exists() and not reset:
        report.kept.append(NOTEBOOK)
    else:
        (report.replaced if nb.exists() else report.copied).append(NOTEBOOK)
        write_notebook(lab, nb)
    return report


def changed_files(lab: LabInfo) -> list[str]:
    """The workspace files that differ from the starter (what `--reset-files` would replace)."""
    folder = workspace(lab)
    return [
        n
        for n in file_names(lab)
        if (folder / n).exists() and (folder / n).read_bytes() != (starter_dir(lab) / n).read_bytes()
    ]


def source(lab: LabInfo, solution: bool = False) -> Path | None:
    """The folder whose files `mllab run N` runs: the reference with `solution`, else the workspace.
    None for a lab without exercise files."""
    names = file_names(lab)
    if not names:
        return None
    if solution:
        return solution_dir(lab)
    folder = workspace(lab)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise UsageError(
            f"lab {lab.number}'s exercise files are not in {folder} (missing: {', '.join(missing)})",
            f"run `mllab start {lab.number}` to get the starter files, complete the TODOs, then "
            f"`mllab run {lab.number}` (or `mllab run {lab.number} --solution` to run the reference)",
        )
    for n in names:
        size = (folder / n).stat().st_size
        if size > MAX_FILE_BYTES:
            raise UsageError(
                f"{folder / n} is {size} bytes; an exercise file holds at most {MAX_FILE_BYTES}",
                "keep data and models out of the exercise folder (the lab writes its outputs elsewhere)",
            )
    return folder


def snapshot(lab: LabInfo, src: Path, dest: Path) -> dict[str, str]:
    """Copy the exercise files from `src` to `dest`; their SHA-256, by name."""
    dest.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name in file_names(lab):
        data = (src / name).read_bytes()
        (dest / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def configmap_data(folder: Path) -> dict[str, str]:
    """The exercise folder as a ConfigMap's data (flat: one key per file)."""
    data = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name == NOTEBOOK:
            continue
        if not _KEY.match(p.name):
            raise UsageError(f"exercise file name {p.name!r} cannot travel to the cluster", "use letters, digits, -._")
        data[p.name] = p.read_text()
    return data


def load(folder: Path, name: str, *, required: tuple[str, ...] = ()) -> ModuleType:
    """Import `folder/name.py` (the learner's file) as a fresh module; ExerciseError naming the file,
    the line and the fix when it cannot be imported or lacks one of `required`."""
    path = folder / f"{name}.py"
    if not path.is_file():
        raise ExerciseError(f"{path} does not exist", "run `mllab start N` to get the starter files")
    mod_name = f"mllab_exercise_{name}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[mod_name] = module  # dataclasses and pickling look the module up
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise ExerciseError(
            f"{path.name} line {exc.lineno}: syntax error: {exc.msg}", f"fix line {exc.lineno} of {path}"
        ) from None
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise ExerciseError(f"importing {path.name} failed: {where(exc, path)}", f"fix {path}") from None
    lacking = [f for f in required if not callable(getattr(module, f, None))]
    if lacking:
        raise ExerciseError(
            f"{path.name} defines no {', '.join(f + '()' for f in lacking)}",
            f"keep the functions of the starter file (mllab start N --reset-files puts it back): {path}",
        )
    return module


def from_env(name: str, *, required: tuple[str, ...] = (), default_lab: int | None = None) -> ModuleType | None:
    """In a job or server process: the learner's module `name` from $MLLAB_EXERCISE. Where that is
    unset or has no `name.py` (another lab's folder, a benchmark): lab `default_lab`'s reference
    solution, or None."""
    folder = os.environ.get(EXERCISE_ENV)
    if folder and (Path(folder) / f"{name}.py").is_file():
        return load(Path(folder), name, required=required)
    if default_lab is None:
        return None
    from mllab.labs import get_lab

    return load(solution_dir(get_lab(default_lab)), name, required=required)


def where(exc: BaseException, path: Path | None = None) -> str:
    """`Type: message` and, when the traceback passes through the learner's file, its line."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if path is None or Path(f.filename).name == path.name]
    if path is not None and mine:
        f = mine[-1]
        text += f" (at {Path(f.filename).name} line {f.lineno}: {(f.line or '').strip()})"
    return text


def call(module: ModuleType, func: str, *args: Any, **kwargs: Any) -> Any:
    """Call the learner's `func`; ExerciseError naming the file, line and error if it raises."""
    path = Path(module.__file__ or f"{func}.py")
    try:
        return getattr(module, func)(*args, **kwargs)
    except NotImplementedError as exc:
        raise ExerciseError(
            f"{path.name}: {func}() is not written yet ({exc})", f"complete the TODO in {path}"
        ) from None
    except Exception as exc:
        raise ExerciseError(f"{path.name}: {func}() raised {where(exc, path)}", f"fix {path}") from None


def diff(lab: LabInfo) -> str:
    """A unified diff from the learner's files to the reference (empty when they are equal or absent)."""
    out: list[str] = []
    folder = workspace(lab)
    for name in file_names(lab):
        mine = folder / name
        if not mine.is_file():
            continue
        out += difflib.unified_diff(
            mine.read_text().splitlines(keepends=True),
            (solution_dir(lab) / name).read_text().splitlines(keepends=True),
            fromfile=f"yours/{name}",
            tofile=f"solution/{name}",
        )
    return "".join(out)


def write_notebook(lab: LabInfo, path: Path) -> None:
    """A Jupyter notebook (nbformat 4) for the lab on the same files: what to complete (the TODOs),
    then cells that run and check the learner's code."""
    import json

    names = [n for n in file_names(lab) if n != NOTEBOOK]

    def md(text: str) -> dict[str, Any]:
        return {"cell_type": "markdown", "metadata": {}, "source": text}

    def code(text: str) -> dict[str, Any]:
        return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": text}

    cells = [
        md(
            f"# Lab {lab.number}: {lab.title}\n\n{lab.summary}\n\n"
            f"Complete the TODOs in {', '.join(f'[{n}]({n})' for n in names)} (open them from the file browser), "
            "then run the cells below. `mllab hint` gives one hint at a time; `mllab solution` shows the "
            "reference and a diff against your files at the end."
        ),
        md("## What is left to do"),
        code(f"!grep -n TODO {' '.join(names)}"),
        md("## Run your code\n\nOn the cluster the backend is Kubernetes (set for you in JupyterLab)."),
        code(f"!mllab run {lab.number} --quick"),
        md("## Grade it"),
        code(f"!mllab check {lab.number}"),
        md("## Stuck?"),
        code(f"!mllab hint {lab.number}"),
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"mllab-{lab.number:02d}-{i}"
    path.write_text(json.dumps(nb, indent=1) + "\n")
