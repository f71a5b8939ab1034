"""The three fixed cases every lab's exercise is tested with (issue: "exercises learners do"):

- the untouched starter, as `mllab start N` leaves it, fails `mllab check N`, with a failing check
  whose reason or hint names what is missing;
- the reference solution, copied into the learner's workspace, passes every check;
- a plausible wrong solution (tests/exercises/NN-slug/wrong/) fails with its targeted hint.

Each case runs the learner's path for real: `start_lab`, the files in $MLLAB_WORKSPACE, `run_lab`
(the learner's code, not `--solution`), `check_lab`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

WRONG = Path(__file__).parent / "exercises"


def run_case(number: int, case: str, workspace: Path, quick: bool = True) -> list:
    """Start lab `number` in `workspace`, put the case's files there (starter: as started; solution:
    the reference; wrong: tests/exercises/<lab>/wrong/), run it and check it; the checks."""
    from mllab import exercise
    from mllab.labs import get_lab
    from mllab.runner import check_lab, run_lab, start_lab

    lab = get_lab(number)
    report = start_lab(lab)
    assert report.folder == workspace / lab.dirname, report
    assert report.copied, f"lab {number} has no starter files"
    if case == "solution":
        src = exercise.solution_dir(lab)
    elif case == "wrong":
        src = WRONG / lab.dirname / "wrong"
    else:
        assert case == "starter", case
        src = None
    if src is not None:
        for f in src.iterdir():
            shutil.copyfile(f, report.folder / f.name)
    console = Console(width=140, force_terminal=False)
    run_lab(lab, quick=quick, console=console)
    return check_lab(lab, console=console)


def failing(checks: list) -> dict[str, str]:
    """name -> reason + hint of every failing check."""
    return {c.name: f"{c.reason} | {c.hint}" for c in checks if not c.passed}


def assert_fails_naming(checks: list, *words: str) -> None:
    """At least one check fails, and some failing check's name, reason or hint has every one of `words`."""
    bad = failing(checks)
    assert bad, "every check passed"
    text = [f"{name} | {why}".lower() for name, why in bad.items()]
    assert any(all(w.lower() in t for w in words) for t in text), f"no failing check names {words}: {bad}"


def assert_passes(checks: list) -> None:
    bad = failing(checks)
    assert not bad, bad
    assert len(checks) >= 2
