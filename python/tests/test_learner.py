"""mllab.learner: in a class (MLLAB_LEARNER set) a learner's MLflow experiments and registered
models are their own, and everything the k8s backend creates carries their name, in its labels
(what `mllab reset N` selects) and in its pods' environment (so the pods use the same names)."""

from __future__ import annotations

import pytest
from mllab.backends import k8s_objects as obj
from mllab.errors import UsageError
from mllab.learner import learner, per_learner


def test_outside_a_class_names_are_unchanged(monkeypatch):
    monkeypatch.delenv("MLLAB_LEARNER", raising=False)
    assert learner() == "" and per_learner("mllab-02-training-job") == "mllab-02-training-job"
    assert "mllab.io/learner" not in obj.labels(2, "train", "r1")
    c = obj.container(obj.K8sConfig(), ["true"], {})
    assert "MLLAB_LEARNER" not in {e["name"] for e in c["env"]}


def test_a_learner_has_their_own_names_labels_and_pod_environment(monkeypatch):
    monkeypatch.setenv("MLLAB_LEARNER", "ana")
    assert per_learner("mllab-02-training-job") == "mllab-02-training-job-ana"
    monkeypatch.setenv("MLLAB_LEARNER", "ben")
    assert per_learner("mllab-02-training-job") == "mllab-02-training-job-ben"
    assert obj.labels(2, "train", "r1")["mllab.io/learner"] == "ben"
    c = obj.container(obj.K8sConfig(), ["true"], {})
    assert {"name": "MLLAB_LEARNER", "value": "ben"} in c["env"]


@pytest.mark.parametrize("bad", ["Ana", "ana_b", "-ana", "a" * 64])
def test_a_malformed_learner_name_is_named(monkeypatch, bad):
    monkeypatch.setenv("MLLAB_LEARNER", bad)
    with pytest.raises(UsageError, match="is not a learner name"):
        learner()
