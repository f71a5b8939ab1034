"""Lab 6's exercise (digits_model.py: a kserve.Model answering V1 and V2; inferenceservice.yaml: the
InferenceService with its canary), the three cases on the local backend with real KServe model
servers running the learner's class; then the manifest's checks on a few hand-written variants."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from exercise_cases import assert_fails_naming, assert_passes, failing, run_case

VERSION_CHECK = "V2: the response names the model_version that answered and echoes the request id"
MANIFEST_CHECK = "inferenceservice.yaml is a KServe InferenceService (v1beta1, Standard mode)"
SOLUTION = Path(__file__).parents[1] / "src/mllab/exercises/06-serving/solution/inferenceservice.yaml"


@pytest.mark.timeout(600)
def test_starter_fails_naming_labels_the_v2_tensors_the_400s_and_the_missing_canary(
    home: Path, workspace: Path
) -> None:
    checks = run_case(6, "starter", workspace)
    bad = failing(checks)
    assert_fails_naming(checks, "V1: one class label", "(probabilities), not class labels")
    v2 = bad["V2: outputs predictions INT64 [n] and probabilities FP32 [n, 10]"]
    assert "predictions is FP32 [3, 10], not INT64 [3]" in v2 and "no output 'probabilities'" in v2
    assert "model_version None" in bad[VERSION_CHECK]
    assert_fails_naming(checks, "malformed requests raise InvalidInput", "V2 shape [1, 3]", "HTTP 500")
    assert_fails_naming(checks, "spec.canary", "there is no spec.canary")
    assert "canary split 10% observed" in bad and "each V2 answer comes from the version it names" in bad
    assert "the stable predictor serves v1" not in bad  # the starter's predictor is right
    assert "V2 server ready" not in bad


@pytest.mark.timeout(600)
def test_reference_solution_in_the_workspace_passes(home: Path, workspace: Path) -> None:
    checks = run_case(6, "solution", workspace)
    assert_passes(checks)
    assert len(checks) >= 12


@pytest.mark.timeout(600)
def test_flat_probabilities_and_a_canary_the_wrong_way_round_fail_with_their_hints(home: Path, workspace: Path) -> None:
    checks = run_case(6, "wrong", workspace)
    bad = failing(checks)
    v2 = bad["V2: outputs predictions INT64 [n] and probabilities FP32 [n, 10]"]
    assert "probabilities is FP32 [30], not FP32 [3, 10] (the shape is the tensor's" in v2
    assert "probabilities FP32 [n, 10]" in v2  # the hint
    assert "the wrong way round" in bad["the canary takes 10% of the traffic"]
    assert "canary split 10% observed" in bad  # v2 really answered ~90% of the requests
    for fine in (
        "V1: one class label per instance",
        "malformed requests raise InvalidInput (HTTP 400)",
        "the InferenceService rolls v2 out as a canary (spec.canary)",
        "each V2 answer comes from the version it names",
        "V1 predict answers with the served model's predictions",
    ):
        assert fine not in bad, bad.get(fine)


def _checks(doc: dict, target: int = 10) -> dict:
    from mllab.labs.lab06_serving import manifest_checks

    return {c.name: c for c in manifest_checks(doc, target)}


def test_the_reference_manifest_passes_and_plans_v1_with_a_10_percent_v2_canary() -> None:
    from mllab.labs.lab06_serving import Plan, serve_plan

    doc = yaml.safe_load(SOLUTION.read_text())
    assert all(c.passed for c in _checks(doc).values())
    assert serve_plan(doc) == Plan("v1", "v2", 10)
    assert not _checks(doc, target=20)["the canary takes 20% of the traffic"].passed


def test_the_serverless_canary_field_in_standard_mode_is_named_as_ignored() -> None:
    from mllab.labs.lab06_serving import Plan, serve_plan

    doc = yaml.safe_load(SOLUTION.read_text())
    del doc["spec"]["canary"]
    doc["spec"]["predictor"]["canaryTrafficPercent"] = 10
    c = _checks(doc)["the InferenceService rolls v2 out as a canary (spec.canary)"]
    assert not c.passed and "ignores it in Standard mode" in c.reason
    assert serve_plan(doc) == Plan("v1")  # what KServe does with it in Standard mode: nothing


def test_versions_swapped_mode_missing_and_unknown_models_are_named() -> None:
    from mllab.exercise import ExerciseError
    from mllab.labs.lab06_serving import serve_plan

    doc = yaml.safe_load(SOLUTION.read_text())
    env = lambda p: p["containers"][0]["env"][0]  # noqa: E731
    env(doc["spec"]["predictor"])["value"] = "pvc://models/digits/v2"
    env(doc["spec"]["canary"][0]["predictor"])["value"] = "pvc://models/digits/v1"
    del doc["metadata"]["annotations"]
    checks = _checks(doc)
    assert not checks["the stable predictor serves v1"].passed
    assert "(v1), not v2" in checks["the InferenceService rolls v2 out as a canary (spec.canary)"].reason
    assert (
        "not 'Standard'" in checks["inferenceservice.yaml is a KServe InferenceService (v1beta1, Standard mode)"].reason
    )
    env(doc["spec"]["canary"][0]["predictor"])["value"] = "pvc://models/digits/v3"
    with pytest.raises(ExerciseError, match="'v3'"):
        serve_plan(doc)


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    from mllab.exercise import ExerciseError
    from mllab.labs.lab06_serving import read_manifest

    bad = tmp_path / "inferenceservice.yaml"
    bad.write_text("apiVersion: serving.kserve.io/v1beta1\nspec:\n  predictor: [\n")
    with pytest.raises(ExerciseError, match="line 4"):
        read_manifest(bad)
