"""V1/V2 payload parsing (no server) and the monitoring role's alert conditions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mllab.alerts import DRIFT_PSI_MAX, Scrape, evaluate, histogram_quantile
from mllab.serving.protocol import BadRequest, parse_v1, parse_v2_input, v1_response


def test_v1_accepts_flat_and_8x8_instances() -> None:
    flat = list(range(64))
    X = parse_v1({"instances": [flat, np.arange(64).reshape(8, 8).tolist()]})
    assert X.shape == (2, 64) and X.dtype == np.float32
    assert np.array_equal(X[0], X[1])
    assert v1_response(np.array([3, 1])) == {"predictions": [3, 1]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "needs an 'instances' list"),
        ([1, 2], "needs an 'instances' list"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [[1, 2, 3]]}, "instance 0 has 3 values"),
        ({"instances": [list(range(64)), ["a"] * 64]}, "instance 1 contains a non-numeric"),
        ({"instances": [[float("nan")] * 64]}, "NaN"),
        ({"instances": [{"x": 1}]}, "is an object"),
    ],
)
def test_v1_errors_say_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_v1(body)


def test_v1_body_without_json_content_type() -> None:
    assert parse_v1(b'{"instances": [[0]]}'.replace(b"[0]", str([0] * 64).encode())).shape == (1, 64)
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_v1(b"instances=1")


def test_v2_input() -> None:
    X = parse_v2_input("pixels", "FP32", [2, 64], list(range(128)))
    assert X.shape == (2, 64) and X[1, 0] == 64
    with pytest.raises(BadRequest, match="datatype 'BYTES'"):
        parse_v2_input("pixels", "BYTES", [1, 64], ["a"] * 64)
    with pytest.raises(BadRequest, match=r"shape \[1, 63\]"):
        parse_v2_input("pixels", "FP32", [1, 63], [0] * 63)
    with pytest.raises(BadRequest, match="has 10 values but shape"):
        parse_v2_input("pixels", "FP32", [1, 64], [0] * 10)


def test_histogram_quantile_follows_prometheus() -> None:
    # 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1]
    b = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert histogram_quantile(0.95, b) == pytest.approx(0.75)  # 0.5 + 0.5 * (95 - 90) / 10
    assert histogram_quantile(0.25, b) == pytest.approx(0.05)
    # everything above the highest finite bound -> that bound, as Prometheus does
    assert histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 10.0)]) == pytest.approx(0.1)
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    with pytest.raises(ValueError, match="Inf"):
        histogram_quantile(0.5, [(0.1, 1.0)])


def scrape(acc: float, psi: float, buckets: dict[str, float]) -> Scrape:
    lines = [
        "# TYPE model_accuracy gauge",
        f'model_accuracy{{model_name="m",model_version="v1"}} {acc}',
        "# TYPE model_feature_psi gauge",
        f'model_feature_psi{{model_name="m",feature="pixel_0"}} {psi}',
        f'model_feature_psi{{model_name="m",feature="pixel_1"}} {psi / 10}',
        "# TYPE model_prediction_latency_seconds histogram",
    ]
    lines += [f'model_prediction_latency_seconds_bucket{{le="{le}",model_name="m"}} {v}' for le, v in buckets.items()]
    lines += [
        f'model_prediction_latency_seconds_count{{model_name="m"}} {buckets["+Inf"]}',
        'model_prediction_latency_seconds_sum{model_name="m"} 1.0',
    ]
    return Scrape.parse("\n".join(lines) + "\n")


def test_alert_conditions_on_exported_metrics() -> None:
    before = scrape(0.99, 0.0, {"0.5": 0, "1.0": 0, "2.5": 0, "+Inf": 0})
    calm = evaluate(before, scrape(0.95, 0.05, {"0.5": 100, "1.0": 100, "2.5": 100, "+Inf": 100}), "m")
    assert {a.name: a.firing for a in calm} == {
        "ModelAccuracyDegraded": False,
        "ModelLatencyHigh": False,
        "ModelFeatureDrift": False,
    }
    bad = evaluate(before, scrape(0.7, 0.9, {"0.5": 10, "1.0": 20, "2.5": 100, "+Inf": 100}), "m")
    by = {a.name: a for a in bad}
    assert all(a.firing for a in bad)
    assert by["ModelAccuracyDegraded"].value == pytest.approx(0.7)
    assert by["ModelLatencyHigh"].value == pytest.approx(1.0 + 1.5 * (95 - 20) / 80)
    assert by["ModelFeatureDrift"].labels["feature"] == "pixel_0"
    assert by["ModelFeatureDrift"].threshold == DRIFT_PSI_MAX


def test_alert_conditions_mirror_the_monitoring_role() -> None:
    """The lab's conditions use the same metric names and default thresholds as roles/monitoring."""
    from pathlib import Path

    import yaml
    from mllab.alerts import ACCURACY_MIN, LATENCY_P95_MAX_SECONDS

    role = Path(__file__).resolve().parents[2] / "roles" / "monitoring"
    if not (role / "defaults" / "main.yml").is_file():
        pytest.skip("roles/monitoring is not in this checkout (package installed on its own)")
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    assert defaults["monitoring_accuracy_min"] == ACCURACY_MIN
    assert defaults["monitoring_latency_p95_max_seconds"] == LATENCY_P95_MAX_SECONDS
    assert defaults["monitoring_drift_psi_max"] == DRIFT_PSI_MAX
    rules = (role / "templates" / "monitoring.yaml.j2").read_text()
    for metric in ("model_accuracy", "model_prediction_latency_seconds_bucket", "model_feature_psi"):
        assert metric in rules, f"{metric} is not used by the monitoring role's rules any more"
