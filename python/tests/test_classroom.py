"""Class results: a learner's check recorded in their namespace, and `mllab class` reading them.

The Kubernetes API is behind `core` (a CoreV1Api); FakeCore keeps ConfigMaps in memory with the
API server's semantics for what is used here (a merge patch merges keys, a create of an existing
object is 409, anything in a forbidden namespace is 403). The kubeconfig and connection paths
use the real client. The real cluster is the e2e tier's."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import imported  # skips here, fails under CI=true (tests/unit/needs.py)
from mllab import __version__, classroom, cli
from mllab.labs.base import Check

ApiException = imported("kubernetes.client", "the kubernetes client is not installed (the k8s extra)").ApiException


def api_error(status: int, reason: str, message: str = "") -> Exception:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message or reason})
    return exc


class FakeCore:
    """The CoreV1Api calls the module makes. No read-modify-replace call exists here: a caller
    that tried one would fail with AttributeError."""

    def __init__(self, namespaces: dict[str, dict[str, str]] | None = None) -> None:
        self.namespaces = namespaces or {}  # name -> labels
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.forbidden: set[str] = set()  # namespaces this account may not touch
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.before_create: Any = None  # a hook: another check racing this one

    def _guard(self, namespace: str) -> None:
        if namespace in self.forbidden:
            raise api_error(403, "Forbidden", f'configmaps is forbidden in the namespace "{namespace}"')
        if namespace not in self.namespaces:
            raise api_error(404, "Not Found", f'namespaces "{namespace}" not found')

    def patch_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any], **kw: Any) -> None:
        self.calls.append(("patch", namespace, kw))
        assert kw.get("_content_type") == "application/merge-patch+json", kw  # the client's default is json-patch
        self._guard(namespace)
        cm = self.configmaps.get((namespace, name))
        if cm is None:
            raise api_error(404, "Not Found", f'configmaps "{name}" not found')
        cm["metadata"].setdefault("labels", {}).update(body.get("metadata", {}).get("labels", {}))
        cm.setdefault("data", {}).update(body.get("data", {}))

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any], **kw: Any) -> None:
        self.calls.append(("create", namespace, kw))
        if self.before_create:
            hook, self.before_create = self.before_create, None
            hook()
        self._guard(namespace)
        key = (namespace, body["metadata"]["name"])
        if key in self.configmaps:
            raise api_error(409, "Conflict", "already exists")
        self.configmaps[key] = copy.deepcopy(body)

    def read_namespaced_config_map(self, name: str, namespace: str, **kw: Any) -> Any:
        self._guard(namespace)
        cm = self.configmaps.get((namespace, name))
        if cm is None:
            raise api_error(404, "Not Found", f'configmaps "{name}" not found')
        return SimpleNamespace(data=copy.deepcopy(cm.get("data")), metadata=SimpleNamespace(**cm["metadata"]))

    def list_namespace(self, label_selector: str = "", **kw: Any) -> Any:
        assert label_selector == classroom.LEARNER_LABEL
        items = [
            SimpleNamespace(metadata=SimpleNamespace(name=n, labels=labels))
            for n, labels in self.namespaces.items()
            if classroom.LEARNER_LABEL in labels
        ]
        return SimpleNamespace(items=items)


def learner_ns(*names: str) -> dict[str, dict[str, str]]:
    return {f"learner-{n}": {classroom.LEARNER_LABEL: n, "mllab.io/namespace-role": "learner"} for n in names}


def record(lab: int, passed: bool, at: str = "2026-05-12T14:03:00Z", failed: list[str] | None = None) -> dict:
    checks = [Check("a", True, "ok"), *(Check(f, False, "no") for f in (failed or []))]
    if not passed and not failed:
        checks.append(Check("b", False, "no"))
    return classroom.result_record(lab, checks, "k8s", checked_at=at)


# --- the record -------------------------------------------------------------------------------
def test_a_record_says_what_the_check_found() -> None:
    checks = [Check("job ran", True, "ok"), Check("resumed", False, "no"), Check("gpu", True, "", skipped=True)]
    rec = classroom.result_record(2, checks, "k8s")
    assert rec["lab"] == 2 and rec["passed"] is False and rec["failed"] == ["resumed"] and rec["checks"] == 3
    assert rec["backend"] == "k8s" and rec["graded"] == "yours" and rec["mllab_version"] == __version__
    assert rec["checked_at"].endswith("Z") and classroom._when(rec["checked_at"]) is not None
    assert classroom.parse_record(2, json.dumps(rec))["status"] == "failed"


def test_first_check_creates_the_configmap_and_later_checks_merge_their_key_only() -> None:
    core = FakeCore(learner_ns("alice"))
    ns = "learner-alice"
    assert classroom.record_result(core, ns, "alice", record(2, False)) == "created"
    assert classroom.record_result(core, ns, "alice", record(3, True)) == "patched"
    assert classroom.record_result(core, ns, "alice", record(2, True, at="2026-05-13T09:00:00Z")) == "patched"
    cm = core.configmaps[(ns, "mllab-results")]
    assert cm["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mllab", "mllab.io/learner": "alice"}
    assert set(cm["data"]) == {"lab-02", "lab-03"}
    assert json.loads(cm["data"]["lab-02"])["passed"] is True  # the newer check of lab 2 replaced its key
    assert json.loads(cm["data"]["lab-03"])["lab"] == 3
    assert all(kw.get("_request_timeout") for _, _, kw in core.calls)  # never hangs a check


def test_a_create_that_loses_the_race_merges_into_the_other_checks_configmap() -> None:
    core = FakeCore(learner_ns("alice"))
    ns = "learner-alice"
    # lab 5's check creates the ConfigMap between this check's 404 and its create
    core.before_create = lambda: classroom.record_result(core, ns, "alice", record(5, True))
    assert classroom.record_result(core, ns, "alice", record(4, False)) == "patched"
    assert set(core.configmaps[(ns, "mllab-results")]["data"]) == {"lab-04", "lab-05"}


def test_forbidden_namespace_is_one_warning_naming_it_and_why() -> None:
    core = FakeCore(learner_ns("alice"))
    core.forbidden.add("learner-alice")
    warnings: list[str] = []
    env = {"MLLAB_LEARNER": "alice", "MLLAB_TRAINING_NAMESPACE": "learner-alice"}
    assert classroom.record_check(record(2, True), env, core, warnings.append) is False
    assert len(warnings) == 1
    (w,) = warnings
    assert "learner-alice" in w and "mllab-results" in w and "403" in w
    assert "may not create or patch ConfigMaps in learner-alice" in w and "unchanged" in w


def test_missing_namespace_and_missing_variable_are_warnings_too() -> None:
    core = FakeCore({})
    warnings: list[str] = []
    env = {"MLLAB_LEARNER": "alice", "MLLAB_TRAINING_NAMESPACE": "learner-alice"}
    assert classroom.record_check(record(2, True), env, core, warnings.append) is False
    assert "namespace learner-alice does not exist" in warnings[-1]
    assert classroom.record_check(record(2, True), {"MLLAB_LEARNER": "alice"}, core, warnings.append) is False
    assert "MLLAB_TRAINING_NAMESPACE" in warnings[-1] and len(warnings) == 2
    assert core.calls[-1][0] == "create"  # nothing was tried without a namespace


def test_no_learner_records_nothing() -> None:
    core = FakeCore(learner_ns("alice"))
    warnings: list[str] = []
    env = {"MLLAB_TRAINING_NAMESPACE": "learner-alice"}
    assert classroom.record_check(record(2, True), env, core, warnings.append) is False
    assert core.calls == [] and warnings == []


# --- the check command --------------------------------------------------------------------------
@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch, home: Path) -> dict[str, Any]:
    """`mllab check` with check_lab replaced (what it returns is `state["checks"]`) and the
    cluster a FakeCore, for as long as classroom.core_api is not restored."""
    import mllab.runner as runner

    state: dict[str, Any] = {"checks": [Check("a", True, "ok")], "core": FakeCore(learner_ns("alice")), "made": 0}
    monkeypatch.setattr(runner, "check_lab", lambda lab, **kw: state["checks"])

    def core_api(api_client: Any = None) -> FakeCore:
        state["made"] += 1
        return state["core"]

    monkeypatch.setattr(classroom, "core_api", core_api)
    monkeypatch.delenv("MLLAB_LEARNER", raising=False)
    monkeypatch.delenv("MLLAB_TRAINING_NAMESPACE", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return state


def test_a_learners_check_is_recorded_in_their_namespace(checked: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import mllab.runner as runner

    monkeypatch.setenv("MLLAB_LEARNER", "alice")
    monkeypatch.setenv("MLLAB_TRAINING_NAMESPACE", "learner-alice")
    monkeypatch.setattr(runner, "load_result", lambda lab: {"meta": {"backend": "k8s", "solution": True}})
    checked["checks"] = [Check("a", True, "ok"), Check("b", False, "no")]
    assert cli.main(["check", "2"]) == 1
    rec = json.loads(checked["core"].configmaps[("learner-alice", "mllab-results")]["data"]["lab-02"])
    assert rec["passed"] is False and rec["failed"] == ["b"] and rec["checks"] == 2
    assert rec["backend"] == "k8s" and rec["graded"] == "reference"  # a pass of --solution is no pass of theirs


def test_a_local_check_records_nothing(checked: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "2"]) == 0
    assert checked["made"] == 0 and checked["core"].calls == []
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("passed", [True, False])
def test_a_403_warns_and_leaves_the_exit_code_and_json_alone(
    checked: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], passed: bool
) -> None:
    monkeypatch.setenv("MLLAB_LEARNER", "alice")
    monkeypatch.setenv("MLLAB_TRAINING_NAMESPACE", "learner-alice")
    checked["core"].forbidden.add("learner-alice")
    checked["checks"] = [Check("a", passed, "why")]
    assert cli.main(["check", "2", "--json"]) == (0 if passed else 1)
    out = capsys.readouterr()
    assert json.loads(out.out)["passed"] is passed  # stdout is still the check's JSON alone
    warnings = [ln for ln in out.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "learner-alice" in warnings[0] and "403" in warnings[0]


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """KUBECONFIG=path, also for the client, which reads the variable once, when it is imported."""
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def refused_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server refuses connections (the discard port on this machine)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_no_kubeconfig_and_no_cluster_are_warnings_with_the_real_client(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import mllab.runner as runner

    monkeypatch.setattr(runner, "check_lab", lambda lab, **kw: [Check("a", True, "ok")])
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("MLLAB_LEARNER", "alice")
    monkeypatch.setenv("MLLAB_TRAINING_NAMESPACE", "learner-alice")
    use_kubeconfig(monkeypatch, tmp_path / "absent")
    assert cli.main(["check", "2"]) == 0
    err = capsys.readouterr().err
    assert "learner-alice" in err and "no usable kubeconfig" in err
    use_kubeconfig(monkeypatch, refused_kubeconfig(tmp_path / "kubeconfig"))
    assert cli.main(["check", "2"]) == 0
    err = capsys.readouterr().err
    assert "learner-alice" in err and "cannot reach the cluster" in err and "unchanged" in err


# --- the class view -----------------------------------------------------------------------------
@pytest.fixture
def cls() -> FakeCore:
    """alice: lab 2 passed, lab 3 failed twice over, lab 4 hand-written garbage; bob: nothing yet;
    carol: a lab-01 that is JSON but no record, a markup-laden check name, keys that are no lab."""
    core = FakeCore({**learner_ns("alice", "bob", "carol"), "ml-training": {}})
    classroom.record_result(core, "learner-alice", "alice", record(2, True, at="2026-05-12T10:00:00Z"))
    classroom.record_result(core, "learner-alice", "alice", record(3, False, "2026-05-12T11:00:00Z", ["x", "y"]))
    classroom.record_result(core, "learner-carol", "carol", record(5, False, "2026-05-12T09:00:00Z", ["[red]boom"]))
    core.configmaps[("learner-alice", "mllab-results")]["data"]["lab-04"] = "{not json"
    data = core.configmaps[("learner-carol", "mllab-results")]["data"]
    data.update(
        {"lab-01": "[1, 2]", "lab-99": json.dumps({"lab": 99}), "notes": "hi", "lab-06": json.dumps({"lab": 7})}
    )
    return core


def test_class_report_marks_every_lab_and_never_crashes_on_garbage(cls: FakeCore) -> None:
    report = classroom.class_report(cls)
    assert report["schema"] == 1 and report["labs"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [e["learner"] for e in report["learners"]] == ["alice", "bob", "carol"]  # not ml-training
    alice, bob, carol = report["learners"]
    assert alice["namespace"] == "learner-alice" and alice["error"] is None
    assert alice["labs"]["2"]["status"] == "passed" and alice["labs"]["2"]["checked_at"] == "2026-05-12T10:00:00Z"
    assert alice["labs"]["3"]["status"] == "failed" and alice["labs"]["3"]["failed"] == ["x", "y"]
    assert alice["labs"]["4"]["status"] == "unreadable" and "not JSON" in alice["labs"]["4"]["error"]
    assert bob["labs"] == {} and bob["error"] is None  # no ConfigMap: not attempted
    assert set(carol["labs"]) == {"1", "5", "6"}  # lab-99 and notes are no lab of the kit
    assert carol["labs"]["1"]["status"] == "unreadable" and "not a JSON object" in carol["labs"]["1"]["error"]
    assert carol["labs"]["6"]["status"] == "unreadable" and "not 6" in carol["labs"]["6"]["error"]
    assert classroom.last_failure(alice) == "lab 3: x (+1 more)"


@pytest.mark.parametrize(
    "raw, why",
    [
        ("null", "not a JSON object"),
        (json.dumps({"lab": True, "passed": True, "checked_at": "2026-01-01T00:00:00Z"}), "records lab"),
        (json.dumps({"lab": 2, "passed": "yes", "checked_at": "2026-01-01T00:00:00Z"}), "'passed'"),
        (json.dumps({"lab": 2, "passed": True, "checked_at": "yesterday"}), "ISO-8601"),
        (json.dumps({"lab": 2, "passed": True, "checked_at": 5}), "'checked_at'"),
        (json.dumps({"lab": 2, "passed": False, "checked_at": "2026-01-01T00:00:00Z", "failed": [1]}), "'failed'"),
        (b"\xff", "not JSON"),
    ],
)
def test_malformed_values_are_unreadable(raw: Any, why: str) -> None:
    entry = classroom.parse_record(2, raw)
    assert entry["status"] == "unreadable" and why in entry["error"], entry


def test_learner_written_text_is_made_printable() -> None:
    raw = json.dumps(
        {"lab": 2, "passed": False, "checked_at": "2026-01-01T00:00:00Z", "failed": ["\x1b[2Jgone" + "z" * 500]}
    )
    (name,) = classroom.parse_record(2, raw)["failed"]
    assert "\x1b" not in name and len(name) <= 200


def test_class_table_shows_pass_fail_unreadable_and_not_attempted(cls: FakeCore) -> None:
    from rich.console import Console

    console = Console(record=True, width=220, color_system=None)
    console.print(classroom.render_table(classroom.class_report(cls)))
    text = console.export_text()
    lines = [[c.strip() for c in ln.split("│")[1:-1]] for ln in text.splitlines() if ln.count("│") > 3]
    rows = {cells[0]: (cells, lines[i + 1]) for i, cells in enumerate(lines) if cells[0] in ("alice", "bob", "carol")}
    assert set(rows) == {"alice", "bob", "carol"}
    alice, when = rows["alice"]
    assert alice[1:5] == ["-", "pass", "FAIL", "unreadable"] and alice[-1] == "lab 3: x (+1 more)"
    assert when[:4] == ["learner-alice", "", "05-12 10:00", "05-12 11:00"]
    assert rows["bob"][0][1:-1] == ["-"] * 8  # not attempted, every lab
    assert "[red]boom" in text  # a learner's markup is printed, not interpreted


def test_class_json_and_csv_from_the_cli(
    cls: FakeCore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(classroom, "core_api", lambda api_client=None: cls)
    assert cli.main(["class", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(classroom.render_json(classroom.class_report(cls)))
    lab2 = report["learners"][0]["labs"]["2"]
    assert lab2 == {
        "status": "passed",
        "passed": True,
        "checked_at": "2026-05-12T10:00:00Z",
        "failed": [],
        "checks": 1,
        "backend": "k8s",
        "graded": "yours",
        "mllab_version": __version__,
        "error": None,
    }
    assert all(set(e) == set(classroom.ENTRY_FIELDS) for ln in report["learners"] for e in ln["labs"].values())
    assert cli.main(["class", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["learner"], r["lab"], r["status"]) for r in rows] == [
        ("alice", "2", "passed"),
        ("alice", "3", "failed"),
        ("alice", "4", "unreadable"),
        ("carol", "1", "unreadable"),
        ("carol", "5", "failed"),
        ("carol", "6", "unreadable"),
    ]
    assert rows[1]["failed"] == "x; y" and rows[1]["passed"] == "false" and rows[0]["checked_at"].startswith("2026")
    assert cli.main(["class"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "carol" in out and "the learner's own claim" in out


def test_csv_cells_are_no_spreadsheet_formulas() -> None:
    report = {
        "learners": [
            {"learner": "a", "namespace": "learner-a", "labs": {"2": {"status": "failed", "failed": ["=cmd()"]}}}
        ]
    }
    (row,) = list(csv.DictReader(io.StringIO(classroom.render_csv(report))))
    assert row["failed"] == "'=cmd()"


@pytest.mark.parametrize("status, why", [(403, "may not list namespaces"), (401, "did not accept")])
def test_class_without_admin_credentials_says_it_needs_the_admin_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], status: int, why: str
) -> None:
    core = FakeCore()

    def refuse(**kw: Any) -> None:
        raise api_error(status, "Forbidden" if status == 403 else "Unauthorized")

    core.list_namespace = refuse  # type: ignore[method-assign]
    monkeypatch.setattr(classroom, "core_api", lambda api_client=None: core)
    assert cli.main(["class"]) == 3
    err = capsys.readouterr().err
    assert why in err and "admin kubeconfig" in err and "error:" in err and "Traceback" not in err


def test_class_without_a_kubeconfig_or_a_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    use_kubeconfig(monkeypatch, tmp_path / "absent")
    assert cli.main(["class", "--json"]) == 3
    out = capsys.readouterr()
    assert out.out == "" and "admin kubeconfig" in out.err and "no usable kubeconfig" in out.err
    use_kubeconfig(monkeypatch, refused_kubeconfig(tmp_path / "kubeconfig"))
    assert cli.main(["class"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the cluster" in err and "admin kubeconfig" in err and "Traceback" not in err


def test_no_learner_namespaces(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(classroom, "core_api", lambda api_client=None: FakeCore({"ml-training": {}}))
    assert cli.main(["class"]) == 0
    assert "No learner namespaces" in capsys.readouterr().out
    assert cli.main(["class", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["learners"] == []
