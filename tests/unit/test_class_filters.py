"""plugins/filter/mllab_class.py: the roster normalized into one record per learner, what is
wrong with a roster (each problem naming the entry and the fix), and which learners left."""

from __future__ import annotations

import mllab_class as mc  # plugins/filter (conftest.py)
import pytest

QUOTA = {"requests.cpu": "4", "pods": "20"}


def test_learners_get_the_class_defaults_and_their_own_overrides():
    out = mc.mllab_learners(["ann", {"name": "bo", "gpus": 2, "quota": {"pods": 5}}], "lab-", 1, QUOTA)
    assert out == [
        {
            "name": "ann",
            "namespace": "lab-ann",
            "gpus": 1,
            "quota": {"requests.cpu": "4", "pods": "20", "requests.nvidia.com/gpu": "1"},
        },
        {
            "name": "bo",
            "namespace": "lab-bo",
            "gpus": 2,
            "quota": {"requests.cpu": "4", "pods": "5", "requests.nvidia.com/gpu": "2"},
        },
    ]
    assert QUOTA == {"requests.cpu": "4", "pods": "20"}  # the class quota itself is untouched
    # gpus: 0 on an entry is an override, not "unset"
    assert mc.mllab_learners([{"name": "cy", "gpus": 0}], gpus=3)[0]["quota"]["requests.nvidia.com/gpu"] == "0"


def test_a_good_roster_has_no_problem():
    assert mc.mllab_class_problems(["a", "b-2", {"name": "c", "gpus": 1, "quota": {}}], "learner-", ["ml-labs"]) == []
    assert mc.mllab_class_problems([], "learner-") == [] and mc.mllab_class_problems(None) == []


@pytest.mark.parametrize(
    ("roster", "prefix", "expected"),
    [
        ("alice", "learner-", "mllab_learners = 'alice' must be a list"),
        (["a_b"], "learner-", "mllab_learners[0] = 'a_b' is not a valid learner name"),
        (["-a"], "learner-", "is not a valid learner name"),
        ([7], "learner-", "mllab_learners[0] = 7 must be a learner name or a mapping"),
        (["a", "a"], "learner-", "mllab_learners[1] = 'a' is already mllab_learners[0]"),
        (["kube-system"], "", "is reserved (kube-system"),
        (["lab"], "kube-", "is reserved (kube-lab"),
        (["labs"], "ml-", "is reserved (ml-labs"),
        (["z" * 56], "learner-", "its namespace 'learner-" + "z" * 56 + "' has 64 characters"),
        ([{"name": "a", "gpus": True}], "learner-", "mllab_learners[0].gpus = True must be a whole number"),
        ([{"name": "a", "quota": "big"}], "learner-", "mllab_learners[0].quota = 'big' must be a mapping"),
        ([{"nom": "a"}], "learner-", "mllab_learners[0] has unknown key(s) nom"),
        (["a"], "Learner_", "mllab_learners_prefix = 'Learner_' must be lowercase"),
    ],
)
def test_each_roster_problem_is_named(roster, prefix, expected):
    problems = mc.mllab_class_problems(roster, prefix, ["ml-labs"])
    assert any(expected in p for p in problems), problems


def test_removed_learners_are_the_namespaces_not_on_the_roster():
    found = [{"metadata": {"name": n}} for n in ["learner-a", "learner-gone", "learner-b"]]
    roster = mc.mllab_learners(["a", "b", "new"])
    assert mc.mllab_class_removed(found, roster) == ["learner-gone"]
    assert mc.mllab_class_removed([], roster) == []


def test_namespace_lists():
    assert mc.mllab_namespace_list_problems(["observability", "ml-labs"], "v") == []
    assert mc.mllab_namespace_list_problems("ml-labs", "v") == ["v = 'ml-labs' must be a list of namespace names"]
    assert mc.mllab_namespace_list_problems(["ok", "Not_OK"], "v")[0].startswith("v[1] = 'Not_OK'")
