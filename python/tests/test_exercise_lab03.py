"""Lab 3's exercise (registry.py: log params, metrics and the model; register it; move `champion`
only to a more accurate model): the three cases on the local backend with a real MLflow server,
then promote()'s grading case by case, on the same server."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

KEEPS = "promote() keeps the champion when the new model is less accurate"
MOVES = "promote() moves champion to a more accurate model"
FIRST = "promote() makes the first version champion"
CHALLENGER = "promote() makes a model that is not promoted the challenger"
ONLY_BETTER = "the champion alias moved only to more accurate models"
ALWAYS_BETTER = "a more accurate model always took the champion alias"


pytestmark = pytest.mark.usefixtures("lab_tracking")


@pytest.mark.timeout(600)
def test_starter_fails_naming_the_metrics_the_model_the_registration_and_the_blind_promotion(
    home: Path, workspace: Path
) -> None:
    checks = run_case(3, "starter", workspace)
    bad = failing(checks)
    assert {
        "every run logged accuracy and f1_macro",
        "every run logged its model",
        "every logged model is a version of mllab-digits-classifier",
        KEEPS,
        CHALLENGER,
    } <= set(bad), bad
    assert_fails_naming(checks, "mlflow.log_metrics", "f1_score")
    assert_fails_naming(checks, "mlflow.sklearn.log_model", "model_uri")
    assert_fails_naming(checks, "mlflow.register_model")
    assert "every new version" in bad[KEEPS]
    assert "one finished MLflow run per candidate, with its params" not in bad  # the starter logs the params


@pytest.mark.timeout(600)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    checks = run_case(3, "solution", workspace)
    assert_passes(checks)
    assert {KEEPS, MOVES, FIRST, CHALLENGER, ONLY_BETTER, ALWAYS_BETTER} <= {c.name for c in checks}


@pytest.mark.timeout(600)
def test_a_reversed_comparison_fails_with_the_direction_hint(home: Path, workspace: Path) -> None:
    bad = failing(run_case(3, "wrong", workspace))
    for name in (KEEPS, MOVES):
        assert name in bad and "comparison is reversed" in bad[name], bad
    assert ALWAYS_BETTER in bad and "champion is the most accurate model" in bad
    assert FIRST not in bad and CHALLENGER not in bad
    assert not {"every run logged accuracy and f1_macro", "every run logged its model"} & set(bad)


# --- promote()'s grading: each plausible rule gets its own diagnosis ------------------------------
RULES = {
    "reference": None,
    "always": "True",
    "never": "champion is None",
    "f1": "champion is None or m(new)['f1_macro'] > m(champion)['f1_macro']",
    "reversed": "champion is None or m(new)['accuracy'] < m(champion)['accuracy']",
}
PROMOTE = """from mlflow.exceptions import MlflowException


def promote(client, name, version):
    def m(mv):
        return client.get_run(mv.run_id).data.metrics

    new = client.get_model_version(name, version)
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    if {rule}:
        client.set_registered_model_alias(name, "champion", version)
        return True
    client.set_registered_model_alias(name, "challenger", version)
    return False
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("rule", "failed", "words"),
    [
        ("reference", set(), ""),
        ("always", {KEEPS, CHALLENGER}, "every new version"),
        ("never", {MOVES}, "never moves an existing champion"),
        ("f1", {KEEPS, MOVES}, "follows f1_macro"),
        ("reversed", {KEEPS, MOVES}, "comparison is reversed"),
    ],
)
def test_probe_names_what_promote_compares(
    tmp_path: Path, mlflow_server: str, rule: str, failed: set[str], words: str
) -> None:
    import mlflow
    from mllab import exercise
    from mllab.labs import get_lab
    from mllab.labs.lab03_tracking_registry import probe_promote

    folder = exercise.solution_dir(get_lab(3)) if RULES[rule] is None else tmp_path
    if RULES[rule] is not None:
        (tmp_path / "registry.py").write_text(PROMOTE.format(rule=RULES[rule]))
    mlflow.set_tracking_uri(mlflow_server)
    checks = probe_promote(exercise.load(folder, "registry"), mlflow, "mllab-test-probe")
    bad = failing(checks)
    assert set(bad) == failed, bad
    assert all(words in why for why in bad.values())
    names = {m.name for m in mlflow.MlflowClient().search_registered_models()}
    assert not any(n.startswith("mllab-probe-promote-") for n in names), "the probe's scratch model is left behind"


def test_a_promote_that_raises_is_one_failing_check_naming_the_line(tmp_path: Path, mlflow_server: str) -> None:
    import mlflow
    from mllab import exercise
    from mllab.labs.lab03_tracking_registry import probe_promote

    (tmp_path / "registry.py").write_text(
        "def promote(client, name, version):\n"
        "    champion = client.get_model_version_by_alias(name, 'champion')\n"  # raises: no champion yet
        "    return False\n"
    )
    mlflow.set_tracking_uri(mlflow_server)
    checks = probe_promote(exercise.load(tmp_path, "registry"), mlflow, "mllab-test-probe")
    assert [c.name for c in checks] == ["registry.py's promote() runs"]
    assert "registry.py line 2" in checks[0].reason and not checks[0].passed
