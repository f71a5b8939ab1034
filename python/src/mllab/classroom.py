"""Class results: each learner's `mllab check N` recorded in their namespace, and the instructor's
view of the whole class (`mllab class`).

The contract with the classroom role: a learner's namespace is labelled `mllab.io/learner:
<learner>`; inside their environment MLLAB_LEARNER is their name and MLLAB_TRAINING_NAMESPACE
their namespace, where their account may create, patch and get ConfigMaps.

- A learner's check writes one key, `lab-NN`, of the ConfigMap `mllab-results` in that
  namespace: a merge patch of that key alone (created on first use), so checks of different labs
  never lose each other's keys. `record_result(core, ...)` is the call; `record_check` wraps it
  for the CLI, where any failure is one warning and never changes the check's result.
- `class_report(core)` (admin credentials) lists the learner namespaces and reads each one's
  results; a value a learner wrote by hand that is not a record is "unreadable", never a crash.
  `render_table`, `render_json` and `render_csv` present it.

Everything that talks to the cluster takes a `core` object (a kubernetes CoreV1Api), so the e2e
tier drives the same functions with a real client and the unit tests with a fake one. A recorded
pass is a claim by the learner's account (it may write this ConfigMap), not a proof: see the
guide's "Class results".
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mllab import INSTALL_K8S, __version__
from mllab.errors import BackendUnavailable

RESULTS_CONFIGMAP = "mllab-results"
LEARNER_LABEL = "mllab.io/learner"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mllab"}
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = (5, 15)  # seconds to connect, to read: a check never hangs on an unreachable cluster
SCHEMA = 1  # the "schema" of `mllab class --json`
_KEY = re.compile(r"lab-(\d{2})")
_UNCHANGED = "your check result is unchanged"
_TEXT_MAX = 200  # characters kept of any string a learner could have written


def lab_key(lab: int) -> str:
    return f"lab-{lab:02d}"


def result_record(
    lab: int,
    checks: Iterable[Any],
    backend: str | None,
    graded: str = "yours",
    checked_at: str | None = None,
) -> dict[str, Any]:
    """The `lab-NN` value for a finished check (`checks`: mllab.labs.base.Check objects)."""
    checks = list(checks)
    return {
        "lab": lab,
        "passed": all(c.passed for c in checks),
        "checked_at": checked_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "failed": [c.name for c in checks if not c.passed],
        "checks": len(checks),
        "backend": backend,
        "graded": graded,  # "reference": the check graded `mllab run N --solution`, not the learner's code
        "mllab_version": __version__,
    }


# --- recording (the learner's side) -----------------------------------------------------------
def record_result(core: Any, namespace: str, learner: str, record: Mapping[str, Any]) -> str:
    """Write `record` as key lab-NN of ConfigMap mllab-results in `namespace`: a merge patch of
    that key (and the labels) when the ConfigMap exists, else a create; a create that loses a race
    with another check (409) patches instead. Returns "patched" or "created"; raises the client's
    ApiException (403, 404, ...) and connection errors."""
    from kubernetes.client import ApiException

    labels = {**MANAGED_BY, LEARNER_LABEL: learner}
    data = {lab_key(int(record["lab"])): json.dumps(record, sort_keys=True)}
    patch = {"metadata": {"labels": labels}, "data": data}

    def merge() -> None:
        core.patch_namespaced_config_map(
            RESULTS_CONFIGMAP, namespace, patch, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT
        )

    try:
        merge()
        return "patched"
    except ApiException as exc:
        if exc.status != 404:
            raise
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": RESULTS_CONFIGMAP, "labels": labels},
        "data": data,
    }
    try:
        core.create_namespaced_config_map(namespace, body, _request_timeout=TIMEOUT)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    merge()  # another check created it meanwhile: merge into theirs
    return "patched"


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", ""))[:300]
    except Exception:
        return str(exc.body or "")[:300]


def _why(exc: BaseException, namespace: str) -> str:
    """One phrase saying why recording in `namespace` failed."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:  # kubernetes.client.ApiException
        detail = _api_message(exc)
        what = {
            401: "the cluster did not accept your credentials",
            403: f"your account may not create or patch ConfigMaps in {namespace}",
            404: f"namespace {namespace} does not exist",
        }.get(status, "the API server refused it")
        return f"{what} ({status} {getattr(exc, 'reason', '')}{': ' + detail if detail else ''})"
    return f"cannot reach the cluster ({type(exc).__name__}: {str(exc)[:300]})"


def core_api(api_client: Any = None) -> Any:
    """A CoreV1Api: on `api_client`, else from the kubeconfig as the k8s backend loads it (in a pod:
    its service account; elsewhere KUBECONFIG or ~/.kube/config; BackendUnavailable if none)."""
    from kubernetes import client

    if api_client is None:
        from mllab.backends.k8s import load_kube_config

        load_kube_config()
    return client.CoreV1Api(api_client)


def record_check(
    record: Mapping[str, Any],
    env: Mapping[str, str],
    core: Any = None,
    warn: Callable[[str], None] | None = None,
) -> bool:
    """Record a finished check in the learner's namespace when MLLAB_LEARNER is set (else nothing,
    False). Never raises: any failure is one warning naming the namespace and why (the check's
    result and exit code are the caller's, unchanged). True when recorded."""
    if warn is None:
        from mllab.state import warn
    learner = env.get("MLLAB_LEARNER", "").strip()
    if not learner:
        return False
    namespace = env.get("MLLAB_TRAINING_NAMESPACE", "").strip()
    where = f"lab {record.get('lab')}'s result was not recorded for learner {learner}"
    if not namespace:
        warn(f"{where}: MLLAB_LEARNER is set but MLLAB_TRAINING_NAMESPACE (your namespace) is not; {_UNCHANGED}")
        return False
    where += f" in namespace {namespace} (ConfigMap {RESULTS_CONFIGMAP})"
    try:
        if core is None:
            core = core_api()
        record_result(core, namespace, learner, record)
        return True
    except ImportError as exc:
        why = f"the kubernetes client is not installed ({exc}; {INSTALL_K8S})"
    except BackendUnavailable as exc:
        why = exc.message
    except Exception as exc:  # 403, 404, no cluster, or anything else: never the check's business
        why = _why(exc, namespace)
    warn(f"{where}: {why}; {_UNCHANGED}")
    return False


# --- the class view (the instructor's side) ---------------------------------------------------
def needs_admin(why: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"`mllab class` cannot list the learner namespaces: {why}",
        "`mllab class` needs the instructor's admin kubeconfig: set KUBECONFIG to it "
        "(make site writes artifacts/kubeconfig); a learner's profile may not list namespaces",
    )


def _clean(value: Any) -> str:
    """A string a learner may have written, safe to print: no control characters, bounded length."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


# The keys of every lab's entry in the class report (`mllab class --json`), whatever its status.
ENTRY_FIELDS = ("status", "passed", "checked_at", "failed", "checks", "backend", "graded", "mllab_version", "error")


def parse_record(lab: int, raw: Any) -> dict[str, Any]:
    """One lab's entry in the class report from the ConfigMap value `raw`. Anything that is not a
    record for this lab is {"status": "unreadable", "error": why}; never raises."""

    def unreadable(why: str) -> dict[str, Any]:
        return {**dict.fromkeys(ENTRY_FIELDS), "status": "unreadable", "failed": [], "error": why}

    try:
        rec = json.loads(raw)
    except (TypeError, ValueError) as exc:
        return unreadable(f"not JSON: {_clean(exc)}")
    if not isinstance(rec, dict):
        return unreadable(f"not a JSON object but {type(rec).__name__}")
    if rec.get("lab") != lab or isinstance(rec.get("lab"), bool):
        return unreadable(f"records lab {_clean(rec.get('lab'))!r}, not {lab}")
    passed, at, failed = rec.get("passed"), rec.get("checked_at"), rec.get("failed", [])
    if not isinstance(passed, bool):
        return unreadable("'passed' is not true or false")
    if not isinstance(at, str):
        return unreadable("'checked_at' is not a string")
    if _when(at) is None:
        return unreadable(f"'checked_at' {_clean(at)!r} is not an ISO-8601 time")
    if not isinstance(failed, list) or not all(isinstance(f, str) for f in failed):
        return unreadable("'failed' is not a list of check names")
    checks = rec.get("checks")
    out: dict[str, Any] = {
        "status": "passed" if passed else "failed",
        "passed": passed,
        "checked_at": _clean(at),
        "failed": [_clean(f) for f in failed[:50]],
        "checks": checks if isinstance(checks, int) and not isinstance(checks, bool) else None,
        "error": None,
    }
    for field in ("backend", "graded", "mllab_version"):
        value = rec.get(field)
        out[field] = _clean(value) if isinstance(value, str) else None
    return out


def learner_labs(data: Mapping[str, Any] | None, labs: Iterable[int]) -> dict[str, dict[str, Any]]:
    """The labs a results ConfigMap's `data` records, keyed by lab number as a string; keys that
    are not lab-NN of a known lab are ignored."""
    known = set(labs)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(data or {}):
        m = _KEY.fullmatch(str(key))
        if m and int(m.group(1)) in known:
            out[str(int(m.group(1)))] = parse_record(int(m.group(1)), data[key])  # type: ignore[index]
    return out


def _known_labs() -> list[int]:
    from mllab.labs import LABS

    return [lab.number for lab in LABS]


def class_report(core: Any, labs: Iterable[int] | None = None) -> dict[str, Any]:
    """Every learner namespace (label mllab.io/learner) and what its mllab-results records:
    {"schema": 1, "learners": [{"learner", "namespace", "error", "labs": {"N": entry}}]}, sorted by
    learner. Raises BackendUnavailable (admin kubeconfig needed) when the namespaces cannot be listed."""
    from kubernetes.client import ApiException

    labs = list(_known_labs() if labs is None else labs)
    try:
        namespaces = core.list_namespace(label_selector=LEARNER_LABEL, _request_timeout=TIMEOUT).items
    except ApiException as exc:
        why = {401: "the cluster did not accept the credentials", 403: "this account may not list namespaces"}.get(
            exc.status, "the API server refused it"
        )
        raise needs_admin(f"{why} ({exc.status} {exc.reason}: {_api_message(exc)})") from None
    except Exception as exc:  # connection refused, DNS, TLS: no cluster here
        raise needs_admin(f"cannot reach the cluster ({type(exc).__name__}: {str(exc)[:300]})") from None
    learners = []
    for ns in namespaces:
        name = ns.metadata.name
        entry: dict[str, Any] = {
            "learner": _clean((ns.metadata.labels or {}).get(LEARNER_LABEL, "")),
            "namespace": name,
            "error": None,
            "labs": {},
        }
        try:
            cm = core.read_namespaced_config_map(RESULTS_CONFIGMAP, name, _request_timeout=TIMEOUT)
            entry["labs"] = learner_labs(cm.data, labs)
        except ApiException as exc:
            if exc.status != 404:  # 404: no check recorded yet, every lab not attempted
                entry["error"] = f"cannot read {RESULTS_CONFIGMAP}: {exc.status} {exc.reason}"
        except Exception as exc:
            entry["error"] = f"cannot read {RESULTS_CONFIGMAP}: {type(exc).__name__}: {str(exc)[:200]}"
        learners.append(entry)
    learners.sort(key=lambda e: (e["learner"], e["namespace"]))
    return {"schema": SCHEMA, "labs": labs, "learners": learners}


# --- rendering ----------------------------------------------------------------------------------
def _when(at: Any) -> datetime | None:
    """An ISO-8601 time as an aware datetime (one without a zone is taken as UTC); None if it is none."""
    try:
        when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _short_time(at: str | None) -> str:
    when = _when(at) if at else None
    return when.astimezone(UTC).strftime("%m-%d %H:%M") if when else (at or "")


def last_failure(entry: Mapping[str, Any]) -> str:
    """The most recent failed lab's first failed check, e.g. "lab 3: model registered (+1 more)"."""
    failed = [(_when(e["checked_at"]), int(n)) for n, e in entry["labs"].items() if e["status"] == "failed"]
    if not failed:
        return ""
    _, n = max(failed)
    e = entry["labs"][str(n)]
    names = e["failed"]
    if not names:
        return f"lab {n}"
    return f"lab {n}: {names[0]}" + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")


def render_table(report: Mapping[str, Any]) -> Any:
    """A rich Table: one row per learner, one column per lab (pass/FAIL and when, - not attempted)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"mllab class: {len(report['learners'])} learner(s)")
    table.add_column("learner")
    for n in report["labs"]:
        table.add_column(str(n), justify="center")
    table.add_column("last failed check")
    for entry in report["learners"]:
        cells = []
        for n in report["labs"]:
            e = entry["labs"].get(str(n))
            if e is None:
                cells.append("[dim]-[/]")
            elif e["status"] == "unreadable":
                cells.append("[yellow]unreadable[/]")
            else:
                mark = "[green]pass[/]" if e["passed"] else "[red]FAIL[/]"
                if e["passed"] and e.get("graded") == "reference":
                    mark = "[yellow]pass (ref)[/]"
                cells.append(f"{mark}\n[dim]{escape(_short_time(e['checked_at']))}[/]")
        note = escape(last_failure(entry))
        if entry["error"]:
            note = f"[yellow]{escape(entry['error'])}[/]" + (f"\n{note}" if note else "")
        who = f"{escape(entry['learner'])}\n[dim]{escape(entry['namespace'])}[/]"
        table.add_row(who, *cells, note)
    return table


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


CSV_FIELDS = ["learner", "namespace", "lab", *ENTRY_FIELDS]


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (learners write some of these strings)."""
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_csv(report: Mapping[str, Any]) -> str:
    """One row per learner and attempted lab (unreadable ones included); `failed` joined with "; "."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_FIELDS)
    for entry in report["learners"]:
        for n, e in sorted(entry["labs"].items(), key=lambda kv: int(kv[0])):
            row = {
                **{k: e.get(k) for k in CSV_FIELDS},
                "learner": entry["learner"],
                "namespace": entry["namespace"],
                "lab": n,
                "failed": "; ".join(e["failed"]),
            }
            out.writerow([_cell(row[k]) for k in CSV_FIELDS])
    return buf.getvalue()
