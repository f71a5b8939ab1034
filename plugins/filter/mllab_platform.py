"""Platform-layer decisions for ML Lab Kit: image references, Kubernetes quantities and
names, quotas against the workloads that must fit in them, kubeconfig sanity, MLflow's
allowed Host headers, the Ingresses' request-size cap and login. Pure functions, used as
Ansible filters by roles/platform_common, the platform roles, jupyterhub and preflight,
unit tested in tests/unit/test_platform_filters.py.

Every *_problems function returns a list of problems, each naming the bad value and the
fix; an empty list means the input is usable. The roles collect the problems of every
role first and fail once, before anything is applied to the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# Docker/OCI image reference (distribution/reference grammar, simplified): optional
# registry host[:port], lowercase path components, then a tag and/or a sha256 digest.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    r"^(?:(?P<registry>(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?|localhost(?::[0-9]+)?)/(?=.))?"
    rf"(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_MOVING_TAGS = frozenset({"latest", "main", "master", "nightly", "edge", "stable"})

# Kubernetes resource.Quantity: <number><suffix>, decimal SI, binary SI or exponent.
_QUANTITY_RE = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Private address patterns MLflow allows by default (mlflow/server/security_utils.py,
# get_private_ip_patterns); --allowed-hosts replaces the defaults, so they are repeated.
_PRIVATE_IP_PATTERNS = ["10.*", "192.168.*", *[f"172.{n}.*" for n in range(16, 32)]]


def mllab_image_problems(images: Mapping[str, Any]) -> list[str]:
    """images: {variable name: image reference}. A reference must be pinned: a tag that
    is not a moving one (latest, main, ...) or a sha256 digest."""
    problems = []
    for var, ref in images.items():
        example = "ghcr.io/mlflow/mlflow:v3.17.2-full"
        if not isinstance(ref, str) or not ref.strip():
            problems.append(f"{var} = {ref!r} is empty: give an image reference such as {example}")
            continue
        match = _IMAGE_RE.match(ref)
        if not match:
            problems.append(
                f"{var} = {ref!r} is malformed: expected [registry/]name:tag or name@sha256:<64 hex>, "
                f"lowercase, e.g. {example}"
            )
            continue
        tag, digest = match.group("tag"), match.group("digest")
        if not tag and not digest:
            problems.append(f"{var} = {ref!r} has no tag: pin a version, e.g. {ref}:<version> or @sha256:<digest>")
        elif tag in _MOVING_TAGS and not digest:
            problems.append(f"{var} = {ref!r} uses the moving tag {tag!r}: pin a release tag or a sha256 digest")
    return problems


def mllab_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", "1.5", 4) as a Decimal (cores, bytes, units).
    Raises ValueError naming the value when it is not a quantity."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    match = _QUANTITY_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi, 512Mi)")
    suffix = match.group("suffix") or ""
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX[suffix]


def mllab_quantity_problems(values: Mapping[str, Any]) -> list[str]:
    """values: {label: quantity}; the label names the variable (and key) holding it."""
    problems = []
    for label, value in values.items():
        try:
            if mllab_quantity(value) < 0:
                problems.append(f"{label} = {value!r} is negative: use a positive quantity")
        except ValueError as exc:
            problems.append(f"{label} = {exc}")
    return problems


def mllab_resources_problems(resources: Mapping[str, Any], var: str) -> list[str]:
    """A container's resources {requests: {...}, limits: {...}}: both present, every value a
    quantity, each request at most its limit (Kubernetes rejects request > limit)."""
    if not isinstance(resources, Mapping):
        return [f"{var} = {resources!r} must be a mapping with requests and limits"]
    problems = []
    for part in ("requests", "limits"):
        section = resources.get(part)
        if not isinstance(section, Mapping) or not {"cpu", "memory"} <= set(section):
            problems.append(
                f"{var}.{part} = {section!r} must set cpu and memory (every workload declares requests and limits)"
            )
            continue
        problems += mllab_quantity_problems({f"{var}.{part}.{k}": v for k, v in section.items()})
    if problems:
        return problems
    for key, request in resources["requests"].items():
        limit = resources["limits"].get(key)
        if limit is not None and mllab_quantity(request) > mllab_quantity(limit):
            problems.append(
                f"{var}.requests.{key} = {request} is above {var}.limits.{key} = {limit}: "
                "a request cannot exceed its limit; raise the limit or lower the request"
            )
    return problems


def mllab_choice_problems(values: Mapping[str, list]) -> list[str]:
    """values: {variable name: [value, allowed values]}."""
    problems = []
    for var, (value, allowed) in values.items():
        if value not in allowed:
            problems.append(f"{var} = {value!r} is not supported: use one of {', '.join(map(str, allowed))}")
    return problems


def mllab_name_problems(values: Mapping[str, Any], kind: str = "label", prefix: str = "") -> list[str]:
    """values: {variable name: Kubernetes name}. kind: label (namespaces, services: DNS-1123
    label, 63 chars) or subdomain (most object names and host names, 253 chars).
    prefix is put before each variable name (for the keys of a dict variable)."""
    pattern, limit = (_DNS_LABEL_RE, 63) if kind == "label" else (_DNS_SUBDOMAIN_RE, 253)
    problems = []
    for key, value in values.items():
        var = f"{prefix}{key}"
        if not isinstance(value, str) or len(value) > limit or not pattern.match(value):
            problems.append(
                f"{var} = {value!r} is not a valid Kubernetes name: use at most {limit} lowercase letters, "
                "digits and '-'" + (" or '.'" if kind != "label" else "") + ", starting and ending alphanumeric"
            )
    return problems


def mllab_path_problems(values: Mapping[str, Any]) -> list[str]:
    """values: {variable name: URL path prefix}. "/" or /segment[/segment...] without a
    trailing slash (it becomes Jupyter's base_url and MLflow's --static-prefix)."""
    problems = []
    for var, value in values.items():
        ok = isinstance(value, str) and (value == "/" or re.match(r"^(/[A-Za-z0-9._~-]+)+$", value))
        if not ok:
            problems.append(f"{var} = {value!r} is not a URL path prefix: use / or a path like /mlflow (no trailing /)")
    return problems


# nginx size (client_max_body_size, which ingress-nginx's proxy-body-size annotation sets):
# digits, then k, m or g (either case) for KiB, MiB, GiB; no suffix = bytes.
_NGINX_SIZE_RE = re.compile(r"^(?P<num>[0-9]+)(?P<unit>[kKmMgG]?)$")
_NGINX_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
# The smallest request-size cap accepted: under 1 MiB, ordinary MLflow and JupyterLab requests
# (a notebook save, a batch of metrics, a small model file) would be refused with 413.
_MIN_BODY_SIZE = 2**20


def mllab_body_size_problems(values: Mapping[str, Any]) -> list[str]:
    """values: {variable name: nginx size}. A request-size cap for the Ingresses: an nginx size
    (^[0-9]+[kmgKMG]?$) of at least 1m; 0 (nginx's "no limit") is refused."""
    problems = []
    for var, value in values.items():
        text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        match = _NGINX_SIZE_RE.match(text)
        if not match:
            problems.append(
                f"{var} = {value!r} is not an nginx size: give digits followed by k, m or g"
                " (^[0-9]+[kmgKMG]?$), e.g. 64m"
            )
            continue
        size = int(match["num"]) * _NGINX_UNITS[match["unit"].lower()]
        if size == 0:
            problems.append(
                f"{var} = {value!r} means no limit to nginx, and every Ingress of the kit caps the size"
                " of a request: give a size such as 64m"
            )
        elif size < _MIN_BODY_SIZE:
            problems.append(
                f"{var} = {value!r} is below 1m (no suffix = bytes): MLflow and JupyterLab requests would be"
                " refused; give at least 1m, e.g. 64m"
            )
    return problems


def mllab_ingress_login_problems(settings: Mapping[str, Any]) -> list[str]:
    """settings: ingress, mlflow, mlflow_auth (booleans: platform_common_ingress_enabled,
    mlflow_enabled, mlflow_auth_enabled) and mlflow_namespace. No Ingress of the kit fronts a
    service without a login: MLflow's needs its basic-auth app (JupyterLab's token and the hub's
    login are checked by their roles)."""
    if settings.get("ingress") and settings.get("mlflow", True) and not settings.get("mlflow_auth"):
        namespace = settings.get("mlflow_namespace") or "mlflow"
        return [
            "mlflow_auth_enabled: false together with platform_common_ingress_enabled: true would publish MLflow"
            " on the Ingress with no login (whoever reaches the host reads and changes every experiment and"
            " model). Either keep mlflow_auth_enabled: true (the default), or set"
            " platform_common_ingress_enabled: false and reach MLflow by port-forward"
            f" (kubectl port-forward -n {namespace} svc/mlflow 5000:5000)"
        ]
    return []


def _sum(values: Iterable[Any]) -> Decimal:
    return sum((mllab_quantity(v) for v in values), Decimal(0))


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ResourceQuota key -> (section of a workload, resource name).
_QUOTA_KEYS = {
    "requests.cpu": ("requests", "cpu"),
    "cpu": ("requests", "cpu"),
    "requests.memory": ("requests", "memory"),
    "memory": ("requests", "memory"),
    "limits.cpu": ("limits", "cpu"),
    "limits.memory": ("limits", "memory"),
    "requests.nvidia.com/gpu": ("requests", "nvidia.com/gpu"),
    "requests.storage": ("storage", "storage"),
}


def mllab_quota_problems(quotas: Mapping[str, Mapping[str, Any]], workloads: Iterable[Mapping]) -> list[str]:
    """Check that what the platform itself runs fits in each namespace's ResourceQuota.

    quotas: {namespace: {ResourceQuota hard key: quantity}} (training_quotas).
    workloads: [{name, namespace, var, requests: {...}, limits: {...}, storage: quantity}]
      where var names the variable to lower (e.g. jupyter_resources).
    A namespace without a quota entry is not limited.
    """
    problems = []
    for namespace, hard in (quotas or {}).items():
        if not isinstance(hard, Mapping):
            problems.append(f"training_quotas[{namespace!r}] = {hard!r} must be a mapping of quota keys to quantities")
            continue
        bad = mllab_quantity_problems({f"training_quotas[{namespace!r}][{k!r}]": v for k, v in hard.items()})
        if bad:
            problems += bad
            continue
        inside = [w for w in workloads if w.get("namespace") == namespace]
        for key, limit in hard.items():
            if key not in _QUOTA_KEYS:
                continue
            section, resource = _QUOTA_KEYS[key]
            if section == "storage":
                demands = [(w, w.get("storage")) for w in inside if w.get("storage")]
            else:
                demands = [(w, (w.get(section) or {}).get(resource)) for w in inside]
                demands = [(w, v) for w, v in demands if v not in (None, "", 0, "0")]
            if not demands:
                continue
            need = _sum(v for _, v in demands)
            if need > mllab_quantity(limit):
                who = ", ".join(f"{w['name']} {v} ({w.get('var', '?')})" for w, v in demands)
                problems.append(
                    f"training_quotas[{namespace!r}][{key!r}] = {limit} is below the {_fmt(need)} that the "
                    f"platform's own workloads in {namespace} need ({who}): raise the quota or lower those values"
                )
    return problems


def mllab_pvc_problems(pvcs: Any, var: str, namespace_keys: Iterable[str]) -> list[str]:
    """pvcs: [{name, namespace (a key of platform_common_namespaces), size, access_modes}]."""
    if not isinstance(pvcs, list):
        return [f"{var} = {pvcs!r} must be a list of {{name, namespace, size, access_modes}}"]
    keys = list(namespace_keys)
    modes = {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"}
    problems = []
    for i, pvc in enumerate(pvcs):
        if not isinstance(pvc, Mapping):
            problems.append(f"{var}[{i}] = {pvc!r} must be a mapping {{name, namespace, size, access_modes}}")
            continue
        label = f"{var}[{i}] ({pvc.get('name')})"
        problems += mllab_name_problems({f"{label}.name": pvc.get("name")}, kind="subdomain")
        if pvc.get("namespace") not in keys:
            problems.append(f"{label}.namespace = {pvc.get('namespace')!r} is not one of {', '.join(keys)}")
        problems += mllab_quantity_problems({f"{label}.size": pvc.get("size")})
        bad_modes = sorted(set(pvc.get("access_modes") or []) - modes)
        if not pvc.get("access_modes") or bad_modes:
            problems.append(f"{label}.access_modes = {pvc.get('access_modes')!r}: use one or more of {sorted(modes)}")
    return problems


def mllab_pvc_workloads(pvcs: Iterable[Mapping], var: str) -> list[dict]:
    """PVCs as workloads for mllab_quota_problems (they count against requests.storage)."""
    return [
        {"name": f"PVC {p.get('name')}", "namespace": p.get("namespace"), "var": var, "storage": p.get("size")}
        for p in pvcs or []
        if isinstance(p, Mapping)
    ]


def mllab_limit_range_problems(limit_range: Any, var: str) -> list[str]:
    """A LimitRange's container part: {default, defaultRequest, max}: quantities, and the
    default request at most the default limit, the default limit at most the max."""
    if not isinstance(limit_range, Mapping):
        return [f"{var} = {limit_range!r} must be a mapping with default, defaultRequest and max"]
    problems = []
    for part in ("default", "defaultRequest", "max"):
        section = limit_range.get(part) or {}
        problems += mllab_quantity_problems({f"{var}.{part}.{k}": v for k, v in section.items()})
    if problems:
        return problems
    order = [("defaultRequest", "default"), ("default", "max"), ("defaultRequest", "max")]
    for low, high in order:
        for key, value in (limit_range.get(low) or {}).items():
            top = (limit_range.get(high) or {}).get(key)
            if top is not None and mllab_quantity(value) > mllab_quantity(top):
                problems.append(f"{var}.{low}.{key} = {value} is above {var}.{high}.{key} = {top}: lower it")
    return problems


def mllab_max_problems(values: Mapping[str, Any], maximum: Mapping[str, Any], var: str, max_var: str) -> list[str]:
    """values (e.g. a container's limits) against maximum (e.g. a LimitRange's max): each key of
    both at most its maximum. Call after the quantities were checked."""
    problems = []
    for key, value in (values or {}).items():
        top = (maximum or {}).get(key)
        if top is not None and mllab_quantity(value) > mllab_quantity(top):
            problems.append(
                f"{var}.{key} = {value} is above {max_var}.{key} = {top} (the namespace would refuse the pod): "
                f"lower it or raise {max_var}.{key}"
            )
    return problems


def mllab_kubeconfig_problems(info: Mapping[str, Any]) -> list[str]:
    """info: path, exists, readable, content (the file's text, or None), context (the
    context asked for, "" = the file's current-context)."""
    path = info.get("path") or ""
    fix = (
        "run the cluster layer first (it writes this file), or for an existing cluster set "
        "mllab_manage_microk8s: false and mllab_kubeconfig to its kubeconfig"
    )
    if not path:
        return [f"mllab_kubeconfig is empty: {fix}"]
    if not info.get("exists"):
        return [f"mllab_kubeconfig = {path} does not exist on the controller: {fix}"]
    if not info.get("readable") or info.get("content") is None:
        return [f"mllab_kubeconfig = {path} is not readable by this user: fix its permissions (chmod 600, owner you)"]
    import yaml

    try:
        data = yaml.safe_load(info["content"])
    except yaml.YAMLError as exc:
        return [f"mllab_kubeconfig = {path} is not valid YAML ({str(exc).splitlines()[0]}): {fix}"]
    if not isinstance(data, Mapping) or data.get("kind", "Config") != "Config" or not data.get("clusters"):
        return [f"mllab_kubeconfig = {path} is not a kubeconfig (no clusters): {fix}"]
    contexts = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, Mapping)]
    wanted = info.get("context") or data.get("current-context")
    if not wanted:
        return [
            f"mllab_kubeconfig = {path} has no current-context: set platform_common_kube_context to one of {contexts}"
        ]
    if wanted not in contexts:
        return [f"context {wanted!r} is not in mllab_kubeconfig = {path}: use one of {contexts}"]
    return []


def mllab_allowed_hosts(
    service: str, namespace: str, hosts: Iterable[str] = (), cluster_domain: str = "cluster.local"
) -> list[str]:
    """Host header patterns for MLflow's --allowed-hosts: the Service's DNS names, the
    ingress host(s), localhost (port-forward) and the private ranges MLflow allows by
    default. MLflow compares the Host header with its port, so each name also gets name:*.
    """
    names = [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]
    names += [h for h in hosts if h]
    names += ["localhost", "127.0.0.1"]
    out: list[str] = []
    for name in names:
        for pattern in (name, f"{name}:*"):
            if pattern not in out:
                out.append(pattern)
    return out + [p for p in _PRIVATE_IP_PATTERNS if p not in out]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def mllab_apply_batches(objects: Iterable[Mapping], wait_kinds: Iterable[str] = WORKLOAD_KINDS) -> list[dict]:
    """The objects, in order, as the k8s calls that apply them: each run of objects that are not
    waited for in one call ({"objects": [...], "wait": False}), each workload in a call of its own
    that waits for it ({"objects": [obj], "wait": True}). The order is kept exactly: what comes
    after a workload is applied once it is ready (an InferenceService after its webhook's
    Deployment), and a ConfigMap or account before the Deployment that mounts it. One call per
    object costs a module start each (about a second): for a class of 30 the hub's ~60 RBAC
    objects took minutes."""
    wait_kinds = set(wait_kinds)
    batches: list[dict] = []
    for obj in objects:
        if obj.get("kind") in wait_kinds:
            batches.append({"objects": [obj], "wait": True})
        elif batches and not batches[-1]["wait"]:
            batches[-1]["objects"].append(obj)
        else:
            batches.append({"objects": [obj], "wait": False})
    return batches


def mllab_batch_label(batch: Mapping) -> str:
    """What a batch of mllab_apply_batches holds, for a loop label: 'Deployment ns/name' for one
    object, 'N objects: 3 Role, 2 Service' for more."""
    objs = batch["objects"]
    if len(objs) == 1:
        md = objs[0].get("metadata", {})
        return f"{objs[0].get('kind')} {md.get('namespace', '-')}/{md.get('name')}"
    kinds: dict[str, int] = {}
    for obj in objs:
        kinds[obj.get("kind", "?")] = kinds.get(obj.get("kind", "?"), 0) + 1
    return f"{len(objs)} objects: " + ", ".join(f"{n} {k}" for k, n in kinds.items())


class FilterModule:
    def filters(self):
        return {
            "mllab_image_problems": mllab_image_problems,
            "mllab_quantity": lambda v: float(mllab_quantity(v)),
            "mllab_quantity_problems": mllab_quantity_problems,
            "mllab_resources_problems": mllab_resources_problems,
            "mllab_choice_problems": mllab_choice_problems,
            "mllab_name_problems": mllab_name_problems,
            "mllab_path_problems": mllab_path_problems,
            "mllab_body_size_problems": mllab_body_size_problems,
            "mllab_ingress_login_problems": mllab_ingress_login_problems,
            "mllab_quota_problems": mllab_quota_problems,
            "mllab_pvc_problems": mllab_pvc_problems,
            "mllab_pvc_workloads": mllab_pvc_workloads,
            "mllab_limit_range_problems": mllab_limit_range_problems,
            "mllab_max_problems": mllab_max_problems,
            "mllab_kubeconfig_problems": mllab_kubeconfig_problems,
            "mllab_allowed_hosts": mllab_allowed_hosts,
            "mllab_apply_batches": mllab_apply_batches,
            "mllab_batch_label": mllab_batch_label,
        }
