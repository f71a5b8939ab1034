"""Class decisions for ML Lab Kit: the roster (mllab_learners) normalized into one record per
learner, and every problem with it, found before anything is applied. Pure functions, used
as Ansible filters by roles/preflight and roles/classroom, unit tested in
tests/unit/test_class_filters.py.

A roster entry is a learner name ("alice") or a mapping {name, gpus, quota}: `gpus` caps the
learner's GPUs (requests.nvidia.com/gpu of their ResourceQuota), `quota` overrides keys of the
class's ResourceQuota for that learner only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENTRY_KEYS = {"name", "gpus", "quota"}
# Names no learner namespace may take: Kubernetes' own namespaces (and any kube- prefix, which
# the API server reserves), plus the platform's, passed in by the caller.
_RESERVED = {"default", "kube-system", "kube-public", "kube-node-lease"}
GPU_KEY = "requests.nvidia.com/gpu"


def _entry_name(entry: Any) -> Any:
    return entry.get("name") if isinstance(entry, Mapping) else entry


def mllab_class_problems(
    learners: Any,
    prefix: str = "learner-",
    reserved: Iterable[str] = (),
    var: str = "mllab_learners",
) -> list[str]:
    """Every problem of the roster `learners` with the namespace prefix `prefix`; `reserved` are
    names no learner namespace may have (the platform's namespaces). Each problem names the
    entry and how to fix it."""
    if learners is None:
        return []
    if not isinstance(learners, list):
        return [f"{var} = {learners!r} must be a list of learner names (or of {{name, gpus, quota}} mappings)"]
    problems: list[str] = []
    if not isinstance(prefix, str) or (prefix and not re.match(r"^[a-z0-9][-a-z0-9]*$", prefix)):
        problems.append(
            f"mllab_learners_prefix = {prefix!r} must be lowercase letters, digits and '-', "
            "starting alphanumeric (e.g. learner-)"
        )
        prefix = "x"
    taken = _RESERVED | {str(r) for r in reserved}
    seen: dict[str, int] = {}
    for i, entry in enumerate(learners):
        where = f"{var}[{i}]"
        name = _entry_name(entry)
        if isinstance(entry, Mapping):
            unknown = sorted(set(map(str, entry)) - _ENTRY_KEYS)
            if unknown:
                problems.append(f"{where} has unknown key(s) {', '.join(unknown)}: use name, gpus or quota")
            gpus = entry.get("gpus")
            if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
                problems.append(f"{where}.gpus = {gpus!r} must be a whole number of GPUs (0, 1, ...)")
            quota = entry.get("quota")
            if quota is not None and not isinstance(quota, Mapping):
                problems.append(f"{where}.quota = {quota!r} must be a mapping of ResourceQuota keys (pods: '10')")
        elif not isinstance(entry, str):
            problems.append(f"{where} = {entry!r} must be a learner name or a mapping with a name")
            continue
        if not isinstance(name, str) or not name:
            problems.append(f"{where} has no name: give each learner a name (e.g. alice)")
            continue
        if not _DNS_LABEL_RE.match(name):
            problems.append(
                f"{where} = {name!r} is not a valid learner name: use lowercase letters, digits and '-', "
                "starting and ending alphanumeric (it names their namespace and their account)"
            )
            continue
        namespace = f"{prefix}{name}"
        if len(namespace) > 63:
            problems.append(
                f"{where} = {name!r} is too long: its namespace {namespace!r} has {len(namespace)} characters, "
                f"at most 63 are allowed: use a name of at most {63 - len(prefix)} characters or a shorter "
                "mllab_learners_prefix"
            )
        if name in seen:
            problems.append(f"{where} = {name!r} is already {var}[{seen[name]}]: each learner appears once")
        else:
            seen[name] = i
        clash = sorted({name, namespace} & taken) or ([namespace] if namespace.startswith("kube-") else [])
        if clash:
            problems.append(
                f"{where} = {name!r} is reserved ({clash[0]} is a namespace of Kubernetes or of the platform): "
                "pick another name or another mllab_learners_prefix"
            )
    return problems


def mllab_learners(
    learners: Any,
    prefix: str = "learner-",
    gpus: int = 0,
    quota: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One record per learner: {name, namespace, gpus, quota} with the class's defaults filled in
    (quota: the class quota, the learner's overrides, and requests.nvidia.com/gpu = gpus).
    Call after mllab_class_problems found nothing."""
    out = []
    for entry in learners or []:
        item = entry if isinstance(entry, Mapping) else {"name": entry}
        own_gpus = item.get("gpus")
        n_gpus = int(gpus if own_gpus is None else own_gpus)
        hard = {str(k): str(v) for k, v in {**(quota or {}), **(item.get("quota") or {})}.items()}
        hard[GPU_KEY] = str(n_gpus)
        out.append({"name": item["name"], "namespace": f"{prefix}{item['name']}", "gpus": n_gpus, "quota": hard})
    return out


def mllab_class_removed(namespaces: Iterable[Mapping[str, Any]], learners: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of learner namespaces on the cluster (k8s_info resources labelled
    mllab.io/namespace-role=learner) whose learner is no longer on the roster."""
    kept = {item["namespace"] for item in learners}
    return sorted(ns["metadata"]["name"] for ns in namespaces or [] if ns.get("metadata", {}).get("name") not in kept)


def mllab_namespace_list_problems(values: Any, var: str) -> list[str]:
    """A list of namespace names (e.g. classroom_ingress_namespaces): each a DNS-1123 label."""
    if not isinstance(values, list):
        return [f"{var} = {values!r} must be a list of namespace names"]
    return [
        f"{var}[{i}] = {v!r} is not a namespace name: use lowercase letters, digits and '-' (at most 63)"
        for i, v in enumerate(values)
        if not isinstance(v, str) or len(v) > 63 or not _DNS_LABEL_RE.match(v)
    ]


class FilterModule:
    def filters(self):
        return {
            "mllab_class_problems": mllab_class_problems,
            "mllab_learners": mllab_learners,
            "mllab_class_removed": mllab_class_removed,
            "mllab_namespace_list_problems": mllab_namespace_list_problems,
        }
