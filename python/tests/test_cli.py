"""The CLI: light start-up, JSON output, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_mllab as run
from mllab.procs import free_port

HEAVY = ("numpy", "torch", "mlflow", "kserve", "sklearn", "scipy", "matplotlib")

PROBE = f"""
import json, sys
from mllab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""


def probe(*args: str, env_home: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        # A bare environment, but the same mllab (a checkout on PYTHONPATH, if that is how the tests run).
        env={
            "MLLAB_HOME": str(env_home),
            "MLLAB_WORKSPACE": str(env_home.parent / "workspace"),
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
        check=False,
    )
    return json.loads(out.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("list",),
        ("list", "--json"),
        ("progress", "--json"),
        ("hint", "2"),
        ("start", "2"),
        ("serve", "--help"),
    ],
)
def test_light_commands_do_not_import_heavy_packages(args: tuple[str, ...], home: Path) -> None:
    result = probe(*args, env_home=home)
    assert result["code"] in (0, None)
    assert result["heavy"] == [], f"`mllab {' '.join(args)}` imported {result['heavy']}"


def test_list_json(home: Path) -> None:
    out = run("list", "--json")
    assert out.returncode == 0
    labs = json.loads(out.stdout)
    assert [lab["number"] for lab in labs] == list(range(1, 9))
    assert all(lab["status"] == "new" and lab["title"] for lab in labs)


def test_unknown_lab_names_the_value_and_the_fix(home: Path) -> None:
    out = run("run", "99")
    assert out.returncode == 2
    assert "unknown lab '99'" in out.stderr and "mllab list" in out.stderr
    assert not (home / "labs").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "2", "--backend", "nope"), "nope"),
        (("serve", "x", "--port", "99999"), "99999"),
        (("check",), "lab"),
        (("frobnicate",), "frobnicate"),
    ],
)
def test_bad_flags_exit_2_with_a_message(args: tuple[str, ...], needle: str, home: Path) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert needle in out.stderr


def test_k8s_backend_without_a_cluster_says_what_to_set(home: Path, tmp_path: Path) -> None:
    """No kubeconfig: exit 3 naming KUBECONFIG, before anything is written. (The k8s backend's real
    runs are in the e2e tier: tests/e2e/labs.sh.)"""
    missing = tmp_path / "no-such-kubeconfig"
    out = run("run", "2", "--backend", "k8s", env={"KUBECONFIG": str(missing), "KUBERNETES_SERVICE_HOST": ""})
    assert out.returncode == 3, out.stderr
    assert "no usable kubeconfig" in out.stderr and "KUBECONFIG" in out.stderr
    assert not (home / "labs").exists(), "nothing may be written when the backend is refused"


def test_k8s_backend_names_a_bad_namespace(home: Path) -> None:
    out = run("run", "2", "--backend", "k8s", env={"MLLAB_TRAINING_NAMESPACE": "Bad_NS"})
    assert out.returncode == 2, out.stderr
    assert "MLLAB_TRAINING_NAMESPACE='Bad_NS'" in out.stderr and "lowercase" in out.stderr


def test_serve_rejects_a_directory_without_a_model(home: Path, tmp_path: Path) -> None:
    out = run("serve", str(tmp_path), "--port", "8089")
    assert out.returncode == 2
    assert "not a model directory" in out.stderr and "mllab run 6" in out.stderr


def test_mlflow_unreachable_is_a_clear_error_and_nothing_is_written(home: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    out = run("run", "3", "--solution", env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 4
    assert "unreachable" in out.stderr and uri in out.stderr and "unset MLFLOW_TRACKING_URI" in out.stderr
    assert not (home / "labs" / "03-tracking-registry" / "run").exists()
    progress = json.loads((home / "progress.json").read_text()) if (home / "progress.json").exists() else {}
    assert "last_run" not in progress.get("03", {})
    assert not (home / "mlflow").exists(), "the local MLflow store must not be created when the URI is given"


def test_check_before_run_fails_with_a_hint_and_records_progress(home: Path) -> None:
    out = run("check", "3", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["passed"] is False
    assert "mllab run 3" in report["checks"][0]["hint"]
    progress = json.loads(run("progress", "--json").stdout)
    assert progress["03"]["last_check"]["passed"] is False
    hint = run("hint", "3")
    assert "mllab run 3" in hint.stdout
    assert run("reset", "3").returncode == 0
    assert "03" not in json.loads(run("progress", "--json").stdout)


def test_start_shows_the_guide_and_puts_the_starter_in_the_workspace(home: Path) -> None:
    out = run("start", "2")
    assert out.returncode == 0
    assert "Lab 2" in out.stdout or "Training job" in out.stdout
    assert (home / "labs" / "02-training-job").is_dir()
    mine = home.parent / "workspace" / "02-training-job"
    assert "TODO" in (mine / "checkpoint.py").read_text()
    assert "checkpoint.py" in out.stdout and "To do" in out.stdout
    nb = json.loads((mine / "lab.ipynb").read_text())
    assert nb["nbformat"] == 4 and any("mllab check 2" in "".join(c["source"]) for c in nb["cells"])


def test_start_never_overwrites_edits_and_reset_files_says_what_it_replaces(home: Path) -> None:
    mine = home.parent / "workspace" / "02-training-job" / "checkpoint.py"
    assert run("start", "2").returncode == 0
    mine.write_text("# my work\n")
    out = run("start", "2")
    assert out.returncode == 0 and "kept (your edits)" in out.stdout
    assert mine.read_text() == "# my work\n"
    out = run("start", "2", "--reset-files")
    assert out.returncode == 0
    assert "--reset-files puts the starter back over your edits of: checkpoint.py" in out.stdout
    assert "TODO" in mine.read_text()


def test_run_before_start_names_the_missing_files_and_the_command(home: Path) -> None:
    out = run("run", "2")
    assert out.returncode == 2, out.stderr
    assert "checkpoint.py" in out.stderr and "mllab start 2" in out.stderr and "--solution" in out.stderr
    assert not (home / "labs" / "02-training-job" / "run").exists()


def test_a_broken_learner_file_is_named_with_its_line(home: Path) -> None:
    from mllab import exercise

    folder = home.parent / "broken"
    folder.mkdir(parents=True)
    (folder / "checkpoint.py").write_text("def save_checkpoint(:\n")
    with pytest.raises(exercise.ExerciseError) as exc:
        exercise.load(folder, "checkpoint")
    assert "checkpoint.py line 1: syntax error" in str(exc.value)
    (folder / "checkpoint.py").write_text("def save_checkpoint(path):\n    raise ValueError('nope')\n")
    mod = exercise.load(folder, "checkpoint")
    with pytest.raises(exercise.ExerciseError) as exc:
        exercise.call(mod, "save_checkpoint", "x")
    assert "ValueError: nope" in str(exc.value) and "checkpoint.py line 2" in str(exc.value)
    with pytest.raises(exercise.ExerciseError, match=r"defines no load_checkpoint\(\)"):
        exercise.load(folder, "checkpoint", required=("save_checkpoint", "load_checkpoint"))


def test_hints_come_one_at_a_time(home: Path) -> None:
    first = run("hint", "2")
    assert first.returncode == 0 and "Hint 1 of" in first.stdout and "again for the next one" in first.stdout
    second = run("hint", "2")
    assert "Hint 2 of" in second.stdout and "Hint 1 of" not in second.stdout
    both = run("hint", "2", "--all")
    assert "Hint 1 of" in both.stdout and "Hint 2 of" in both.stdout


def test_solution_shows_the_reference_and_a_diff_against_the_learners_files(home: Path) -> None:
    assert run("start", "2").returncode == 0
    out = run("solution", "2", "--diff")
    assert out.returncode == 0
    assert "yours/checkpoint.py" in out.stdout and "optimizer.load_state_dict" in out.stdout
    full = run("solution", "2")
    assert "solution/checkpoint.py" in full.stdout and "os.replace" in full.stdout


def test_doctor_json(home: Path) -> None:
    out = run("doctor", "--json")
    items = {i["component"]: i for i in json.loads(out.stdout)}
    assert {"python", "lab packages", "mlflow", "cluster", "gpu"} <= set(items)
    assert items["lab packages"]["status"] == "ok"
    assert out.returncode == 0


def test_run_and_check_hand_the_labs_a_real_rich_console(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI makes its Console lazily; the labs get the Console itself: rich's Live (a lab's
    progress bar) enters it with `with console:`, which a stand-in object cannot do."""
    import mllab.runner as runner
    from mllab import cli
    from rich.console import Console
    from rich.progress import Progress

    seen: list[object] = []

    def run_lab(lab, **kw):  # the CLI's side of run_lab: what a lab's run() does with the console
        seen.append(kw["console"])
        with Progress(console=kw["console"]) as bar:
            bar.update(bar.add_task("trials", total=1), advance=1)
        return {"meta": {"wall_s": 0.0}}

    def check_lab(lab, **kw):
        seen.append(kw["console"])
        with Progress(console=kw["console"]) as bar:
            bar.add_task("checks", total=1)
        return []

    monkeypatch.setattr(runner, "run_lab", run_lab)
    monkeypatch.setattr(runner, "check_lab", check_lab)
    assert cli.main(["run", "4"]) == 0
    assert cli.main(["check", "4"]) == 0
    assert cli.main(["check", "4", "--json"]) == 0
    assert len(seen) == 3 and all(isinstance(c, Console) for c in seen), seen
