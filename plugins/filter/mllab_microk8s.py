"""MicroK8s decisions for the cluster layer (roles/microk8s): parse what the MicroK8s CLI
prints and decide what to change. Pure functions, used as Ansible filters and unit tested
in tests/unit/test_microk8s_filters.py on output samples under tests/unit/samples/microk8s/.

Formats (checked against the upstream code that prints them, see the samples' headers):
- `microk8s status --format yaml`: printed line by line by scripts/wrappers/status.py
  (`print_yaml`), not by a YAML emitter, so a description with ": " in it is not valid
  YAML. It is parsed line by line here for that reason.
- `microk8s add-node --format json`: `json.dumps({"token": "<token>/<check>", "urls":
  ["<ip>:<port>/<token>/<check>", ...]}, indent=2)` (scripts/wrappers/add_token.py).
- `microk8s kubectl get nodes -o json`: a Kubernetes NodeList.
- `snap list microk8s`: the table Name Version Rev Tracking Publisher Notes.

Malformed input raises MicroK8sOutputError with what was expected and what came.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

try:  # inside Ansible the error is shown as a task failure with this message
    from ansible.errors import AnsibleFilterError as _FilterError
except ImportError:  # pragma: no cover - only without ansible-core installed
    _FilterError = ValueError  # type: ignore[assignment,misc]


class MicroK8sOutputError(_FilterError):  # type: ignore[misc,valid-type]
    """The MicroK8s CLI printed something this kit cannot read."""


# Status lines that replace the YAML (microk8s-status.wrapper, common/utils.py).
WORKER_MARK = "acting as a node in a cluster"
STOPPED_MARK = "microk8s is not running, try microk8s start"
NO_PERMISSION_MARK = "Insufficient permissions to access MicroK8s"
NOT_RUNNING_MARK = "microk8s is not running"

# Deprecated names MicroK8s still accepts, and the addon they stand for.
ADDON_ALIASES = {"storage": "hostpath-storage", "gpu": "nvidia"}
# Enable order: dependencies first (helm3 before chart-based addons, dns before most).
# Disable runs in the reverse order. Unlisted addons go last, alphabetically.
ADDON_ORDER = [
    "community",
    "dns",
    "rbac",
    "hostpath-storage",
    "helm3",
    "helm",
    "metrics-server",
    "metallb",
    "ingress",
    "cert-manager",
    "registry",
    "host-access",
    "observability",
    "prometheus",
]
# Cluster-internal ranges every proxy setting must bypass (pods, services; FACTS §1).
CLUSTER_NO_PROXY = ["10.1.0.0/16", "10.152.183.0/24", "127.0.0.1", "localhost", ".svc", ".cluster.local"]

_BOOL = {"true": True, "false": False}
_ADD_NODE_TOKEN = re.compile(r"^[^/\s]{32,}/[0-9a-f]{6,}$")


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise MicroK8sOutputError(f"{what}: expected the command's text output, got {type(value).__name__} {value!r}")
    return value


def _excerpt(text: str, limit: int = 300) -> str:
    text = text.strip()
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty output)")


def _bool(raw: str, where: str, text: str) -> bool:
    value = _BOOL.get(raw.strip().lower())
    if value is None:
        raise MicroK8sOutputError(f"{where}: expected True or False, got {raw.strip()!r} in: {_excerpt(text)}")
    return value


# --------------------------------------------------------------------------- status
def mllab_microk8s_status(output: Any) -> dict[str, Any]:
    """Parse `microk8s status --format yaml` (also its special one-line answers).

    Returns {state: running|not-running|worker|stopped, running: bool,
             ha: {enabled: bool, nodes: [{address, role}]},
             addons: {name: {status, repository, version}}}.
    """
    text = _text(output, "microk8s status")
    if NO_PERMISSION_MARK in text:
        raise MicroK8sOutputError(
            "microk8s status: "
            + NO_PERMISSION_MARK
            + " Run it as root (become: true) or as a user of the microk8s group."
        )
    result: dict[str, Any] = {"state": "", "running": False, "ha": {"enabled": False, "nodes": []}, "addons": {}}
    if WORKER_MARK in text:
        result["state"] = "worker"
        return result
    if STOPPED_MARK in text:
        result["state"] = "stopped"
        return result

    section = ""
    seen_running = False
    addon: dict[str, Any] | None = None
    node: dict[str, Any] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if not raw.startswith(" "):
            if not raw.rstrip().endswith(":"):
                raise MicroK8sOutputError(
                    f"microk8s status line {lineno}: expected a section such as 'microk8s:' or 'addons:', "
                    f"got {raw!r}. Was it run with --format yaml? Output: {_excerpt(text)}"
                )
            section = raw.strip()[:-1]
            continue
        key, sep, value = raw.strip().removeprefix("- ").partition(":")
        if not sep:
            raise MicroK8sOutputError(
                f"microk8s status line {lineno}: expected 'key: value' under {section or 'no section'}, "
                f"got {raw!r}. Output: {_excerpt(text)}"
            )
        value = value.strip()
        new_item = raw.strip().startswith("- ")
        if section == "microk8s":
            if key == "running":
                result["running"] = _bool(value, f"microk8s status line {lineno}", text)
                seen_running = True
        elif section in ("high-availability", "ha"):
            if key == "enabled":
                result["ha"]["enabled"] = _bool(value, f"microk8s status line {lineno}", text)
            elif key == "address":
                node = {"address": value, "role": ""}
                result["ha"]["nodes"].append(node)
            elif key == "role" and node is not None:
                node["role"] = value
        elif section == "addons":
            if new_item and key == "name":
                addon = {"status": "", "repository": "", "version": None}
                result["addons"][value] = addon
            elif addon is None:
                raise MicroK8sOutputError(
                    f"microk8s status line {lineno}: addon field {key!r} before any '- name:'. Output: {_excerpt(text)}"
                )
            elif key in ("status", "repository"):
                addon[key] = value
            elif key == "version":
                addon["version"] = value or None
    if not seen_running:
        raise MicroK8sOutputError(
            "microk8s status: no 'microk8s: running:' line; expected the output of "
            f"`microk8s status --format yaml`, got: {_excerpt(text)}"
        )
    for name, info in result["addons"].items():
        if info["status"] not in ("enabled", "disabled"):
            raise MicroK8sOutputError(
                f"microk8s status: addon {name!r} has status {info['status']!r}, expected enabled or disabled"
            )
    result["state"] = "running" if result["running"] else "not-running"
    if result["running"] and not result["addons"]:
        raise MicroK8sOutputError(f"microk8s status: running but no addons listed: {_excerpt(text)}")
    return result


def _as_status(status: Any) -> dict[str, Any]:
    return status if isinstance(status, Mapping) else mllab_microk8s_status(status)


def _bare(name: str) -> tuple[str, str]:
    """'core/dns' -> ('core', 'dns'); 'dns' -> ('', 'dns'); aliases resolved."""
    repo, _, bare = name.rpartition("/")
    return repo, ADDON_ALIASES.get(bare, bare)


def _order_key(name: str) -> tuple[int, str]:
    bare = _bare(name)[1]
    return (ADDON_ORDER.index(bare) if bare in ADDON_ORDER else len(ADDON_ORDER), bare)


def _enable_argv(cli: str, target: str, spec: Mapping[str, Any]) -> list[str]:
    args = str(spec.get("args") or "").strip()
    if args.startswith(":"):  # legacy form: dns:1.1.1.1
        return [cli, "enable", target + args]
    return [cli, "enable", target, *shlex.split(args)]


# The Helm releases a chart-based addon must leave deployed (microk8s-core-addons
# addons/<name>/enable; FACTS.md section 2). `microk8s status` reads an addon as enabled from
# one object (addons.yaml check_status), so an enable that failed half-way reads as enabled.
# name -> (namespace, releases always installed, (release, flag that leaves it out))
ADDON_RELEASES: dict[str, tuple[str, list[str], list[tuple[str, str]]]] = {
    "observability": ("observability", ["kube-prom-stack", "loki"], [("tempo", "--without-tempo")]),
    "cert-manager": ("cert-manager", ["cert-manager"], []),
}


def mllab_microk8s_helm_releases(output: Any) -> list[dict[str, Any]]:
    """Parse `microk8s helm3 list ... --output json` (helm cmd/helm/list.go releaseElement: name,
    namespace, revision as a string, updated, status, chart as <name>-<version>, app_version).
    A list of releases passes through (already parsed)."""
    import json

    if isinstance(output, list):
        rows: Any = output
    else:
        text = _text(output, "helm list")
        try:
            rows = json.loads(text)
        except ValueError:
            raise MicroK8sOutputError(f"helm list --output json: not JSON: {_excerpt(text)}") from None
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise MicroK8sOutputError(f"helm list --output json: expected a list of releases, got {_excerpt(str(rows))}")
    return [dict(r) for r in rows]


def mllab_microk8s_addon_partial(helm_list: Any, wanted: Mapping[str, Any], cli: str = "microk8s") -> list[dict]:
    """The chart-based addons of `wanted` (microk8s_addons) switched on whose Helm releases are
    missing or not deployed, from `microk8s helm3 list --all-namespaces --all --output json`.
    Each: {name, reason, argv: [disable argv, enable argv]}: disable, then enable again (an
    enable on an addon that reads enabled does nothing)."""
    rows = mllab_microk8s_helm_releases(helm_list)
    status = {(str(r.get("namespace")), str(r.get("name"))): str(r.get("status")) for r in rows}
    partial = []
    for name, spec in (wanted or {}).items():
        repo, bare = _bare(str(name))
        if bare not in ADDON_RELEASES or not isinstance(spec, Mapping) or not spec.get("enabled"):
            continue
        namespace, always, optional = ADDON_RELEASES[bare]
        args = str(spec.get("args") or "")
        needed = always + [rel for rel, flag in optional if flag not in args.split()]
        bad = [
            f"{rel} {status.get((namespace, rel), 'missing')}"
            for rel in needed
            if status.get((namespace, rel)) != "deployed"
        ]
        if bad:
            target = str(name) if repo else bare
            partial.append(
                {
                    "name": bare,
                    "reason": f"{bare} reads enabled but its Helm releases in {namespace} are not all deployed: "
                    + ", ".join(bad),
                    "argv": [[cli, "disable", target], _enable_argv(cli, target, spec)],
                }
            )
    return partial


def mllab_microk8s_addon_plan(
    status: Any, wanted: Mapping[str, Any], skip: Iterable[str] = ("nvidia",), cli: str = "microk8s"
) -> list[dict[str, Any]]:
    """What to enable/disable so the cluster matches `wanted` (microk8s_addons).

    status: parsed (mllab_microk8s_status) or raw `microk8s status --format yaml` text.
    wanted: {name: {enabled: bool, args: str}}; names may carry core/ or community/.
    skip: addons another role manages (nvidia: the gpu role).
    cli: the program argv starts with (the roles pass /snap/bin/microk8s, mllab_microk8s_cli).
    Returns [{name, action: enable|disable, argv: [...]}]: enables first (dependencies
    first), then disables (reverse order). Empty when nothing differs.
    An addon already enabled is left alone even if its args differ: MicroK8s cannot
    report the args an addon was enabled with (disable and re-enable it to change them).
    """
    state = _as_status(status)
    if state["state"] != "running":
        raise MicroK8sOutputError(
            f"cannot plan addons: MicroK8s state is {state['state']!r}, not running; "
            "run this on a control-plane node once `microk8s status --wait-ready` succeeds"
        )
    current: dict[str, Any] = {}
    for cname, cinfo in state["addons"].items():  # old names (storage, gpu) count as the new ones
        current.setdefault(ADDON_ALIASES.get(cname, cname), cinfo)
    community_on = current.get("community", {}).get("status") == "enabled"
    if not isinstance(wanted, Mapping):
        raise MicroK8sOutputError(f"microk8s_addons must be a mapping name -> {{enabled, args}}, got {wanted!r}")
    skipped = {_bare(s)[1] for s in skip}
    enabling_community = any(
        _bare(n)[1] == "community" and (s or {}).get("enabled") for n, s in wanted.items() if isinstance(s, Mapping)
    )
    enables, disables = [], []
    for name, spec in wanted.items():
        name = str(name)
        repo, bare = _bare(name)
        if bare in skipped:
            continue
        if not isinstance(spec, Mapping) or not isinstance(spec.get("enabled"), bool):
            raise MicroK8sOutputError(
                f"microk8s_addons[{name!r}] must be {{enabled: true|false, args: ...}}, got {spec!r}"
            )
        info = current.get(bare)
        if info is not None and repo and info.get("repository") and info["repository"] != repo:
            info = None
        if info is None:
            if repo == "community" and enabling_community and not community_on:
                info = {"status": "disabled"}  # the community repository appears once enabled
            elif repo == "community" and spec["enabled"]:
                raise MicroK8sOutputError(
                    f"addon {name!r} is not offered yet: enable the community repository first "
                    "(add `community: {enabled: true}` to microk8s_addons)"
                )
            else:
                offered = ", ".join(sorted(current)) or "(none)"
                raise MicroK8sOutputError(
                    f"addon {name!r} is not offered by this MicroK8s (microk8s_channel); it offers: {offered}. "
                    "Remove it from microk8s_addons or pick a channel that has it"
                )
        is_on = info["status"] == "enabled"
        target = name if repo else bare
        if spec["enabled"] and not is_on:
            enables.append({"name": bare, "action": "enable", "argv": _enable_argv(cli, target, spec)})
        elif not spec["enabled"] and is_on:
            disables.append({"name": bare, "action": "disable", "argv": [cli, "disable", target]})
    enables.sort(key=lambda a: _order_key(a["name"]))
    disables.sort(key=lambda a: _order_key(a["name"]), reverse=True)
    return enables + disables


# --------------------------------------------------------------------------- joining
def mllab_microk8s_join_info(output: Any) -> dict[str, Any]:
    """Parse `microk8s add-node --format json` -> {token, urls: [{address, port, url}]}."""
    text = _text(output, "microk8s add-node")
    try:
        data = json.loads(text)
    except ValueError as err:
        raise MicroK8sOutputError(
            f"microk8s add-node: expected JSON from `--format json` ({err}); got: {_excerpt(text)}"
        ) from None
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("token"), str)
        or not isinstance(data.get("urls"), list)
    ):
        raise MicroK8sOutputError(
            "microk8s add-node: expected an object with 'token' (string) and 'urls' (list), got keys "
            f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}"
        )
    token = data["token"]
    if not _ADD_NODE_TOKEN.match(token):
        raise MicroK8sOutputError(
            "microk8s add-node: the token is not <token of 32+ characters>/<hex fingerprint> "
            f"(got one of {len(token)} characters)"
        )
    urls = []
    for url in data["urls"]:
        hostport, sep, rest = str(url).partition("/")
        address, _, port = hostport.rpartition(":")
        if not sep or rest != token or not port.isdigit():
            raise MicroK8sOutputError(
                f"microk8s add-node: url {url!r} is not <ip>:<port>/<token>/<fingerprint> with the printed token"
            )
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise MicroK8sOutputError(f"microk8s add-node: url {url!r} does not start with an IP address") from None
        urls.append({"address": address, "port": int(port), "url": str(url)})
    if not urls:
        raise MicroK8sOutputError(
            "microk8s add-node printed no join URL: the control-plane node has no usable IP address "
            "(see `hostname -I` on it)"
        )
    return {"token": token, "urls": urls}


def mllab_microk8s_join_url(info: Any, prefer: str | None = None) -> str:
    """The join URL to use: the one on address `prefer` when present, else the first IPv4 one.

    `microk8s join` only takes an IPv4 literal ("Invalid master IP" otherwise).
    """
    parsed = info if isinstance(info, Mapping) else mllab_microk8s_join_info(info)
    urls = parsed["urls"]
    for url in urls:
        if prefer and url["address"] == prefer:
            return url["url"]
    ipv4 = [u for u in urls if ipaddress.ip_address(u["address"]).version == 4]
    if not ipv4:
        raise MicroK8sOutputError(
            f"microk8s add-node offered only {[u['address'] for u in urls]}; `microk8s join` needs an IPv4 address"
        )
    return ipv4[0]["url"]


def mllab_microk8s_join_argv(url: str, worker: bool = False, cli: str = "microk8s") -> list[str]:
    """argv of `microk8s join <url> [--worker]` (`cli`: the program, as in addon_plan)."""
    if not isinstance(url, str) or url.count("/") < 1 or ":" not in url.split("/", 1)[0]:
        raise MicroK8sOutputError(f"join URL {url!r} is not <ip>:<port>/<token>[/<fingerprint>]")
    return [cli, "join", url, *(["--worker"] if worker else [])]


def mllab_microk8s_nodes(output: Any) -> list[dict[str, Any]]:
    """Parse `microk8s kubectl get nodes -o json` -> [{name, ready, addresses, role}]."""
    if isinstance(output, Mapping):
        data = output
    else:
        text = _text(output, "kubectl get nodes")
        try:
            data = json.loads(text)
        except ValueError as err:
            raise MicroK8sOutputError(f"kubectl get nodes -o json: not JSON ({err}): {_excerpt(text)}") from None
    kind = data.get("kind") if isinstance(data, Mapping) else type(data).__name__
    if kind not in ("List", "NodeList"):
        raise MicroK8sOutputError(f"kubectl get nodes -o json: expected kind List or NodeList, got {kind!r}")
    nodes = []
    for item in data.get("items") or []:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        if not meta.get("name"):
            raise MicroK8sOutputError("kubectl get nodes -o json: an item has no metadata.name")
        labels = meta.get("labels") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        worker = "node.kubernetes.io/microk8s-worker" in labels
        nodes.append(
            {
                "name": meta["name"],
                "ready": ready,
                "addresses": [a.get("address") for a in status.get("addresses") or [] if a.get("address")],
                "role": "worker" if worker else "control-plane",
                "labels": dict(labels),
            }
        )
    return nodes


def _flag(value: Any) -> bool:
    """A boolean that may have come through a template as text ('False' is false)."""
    return _BOOL.get(value.strip().lower(), False) if isinstance(value, str) else bool(value)


def mllab_microk8s_member(status: Any, clustered_lock: bool = False) -> bool:
    """Whether this node's own MicroK8s says it is part of a multi-node cluster.

    status: the registered result of `microk8s status --format yaml` run on the node
    ({rc, stdout}; skipped or failed = unknown = False), or its stdout text.
    clustered_lock: var/lock/clustered.lock exists (written by `microk8s join --worker`).
    A worker (status answers "acting as a node in a cluster") is a member; a control-plane
    node is one when its dqlite cluster lists 2 or more nodes: `status` prints
    high-availability.nodes from dqlite's own `.cluster` answer
    (canonical/microk8s@d099c907:scripts/wrappers/common/utils.py get_dqlite_info,
    scripts/wrappers/status.py print_yaml). A fresh single node lists only itself.
    """
    if clustered_lock:
        return True
    if isinstance(status, Mapping):
        if status.get("skipped") or status.get("rc") not in (0, "0"):
            return False
        status = status.get("stdout", "")
    text = _text(status, "microk8s status")
    if WORKER_MARK in text:
        return True
    if NO_PERMISSION_MARK in text or STOPPED_MARK in text or not text.strip():
        return False
    return len(mllab_microk8s_status(text)["ha"]["nodes"]) >= 2


def mllab_microk8s_join_plan(
    nodes: Any, hosts: Iterable[Mapping[str, Any]], first_node_name: str = ""
) -> list[dict[str, Any]]:
    """Hosts of the inventory that are not in the cluster yet.

    nodes: parsed (mllab_microk8s_nodes) or raw `kubectl get nodes -o json` read on the
    first control-plane node.
    hosts: [{host, node_name, worker, member}] for every host except the first
    control-plane node. node_name is the name MicroK8s registers the node under: the
    host name, lowercased (`socket.gethostname().lower()` in
    canonical/microk8s@d099c907:scripts/wrappers/join.py, sent as "hostname" on join and
    used in the kubelet certificate CN system:node:<name>); Ansible's ansible_nodename |
    lower. member: the host's own MicroK8s says it is clustered (mllab_microk8s_member).
    A host is in the cluster when a node has its name, or when it is a member. Addresses
    are not compared: hosts may share one (VirtualBox NAT 10.0.2.15, some clouds).
    first_node_name: the first control-plane node's name, which no other host may share.
    Returns the missing ones, in the given order, with their join role. Two hosts with
    the same node name raise: Kubernetes would see one node.
    """
    known = nodes if isinstance(nodes, list) else mllab_microk8s_nodes(nodes)
    names = {n["name"].lower() for n in known}
    hosts = list(hosts)
    seen: dict[str, str] = {}
    if first_node_name:
        seen[str(first_node_name).lower()] = "the first control-plane node"
    for host in hosts:
        name = str(host.get("node_name") or "").lower()
        if not name:
            raise MicroK8sOutputError(
                f"host {host.get('host')!r} has no node name (ansible_nodename): gather facts before the join"
            )
        if name in seen:
            raise MicroK8sOutputError(
                f"hosts {seen[name]} and {host.get('host')!r} both have the node name {name!r}: MicroK8s names a "
                "node after its host name, so only one of them could be in the cluster. Give each host a unique "
                "host name (hostnamectl set-hostname <name>) and run again"
            )
        seen[name] = repr(host.get("host"))
    plan = []
    for host in hosts:
        name = str(host.get("node_name")).lower()
        if name in names or _flag(host.get("member")):
            continue
        plan.append({"host": host["host"], "node_name": name, "worker": _flag(host.get("worker"))})
    return plan


# --------------------------------------------------------------------------- snap
def mllab_microk8s_snap_list(output: Any) -> dict[str, dict[str, Any]]:
    """Parse `snap list [names]` -> {name: {version, rev, tracking, publisher, notes: [...]}}."""
    text = _text(output, "snap list")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].split()[:4] != ["Name", "Version", "Rev", "Tracking"]:
        raise MicroK8sOutputError(
            f"snap list: expected a table starting 'Name Version Rev Tracking', got: {_excerpt(text)}"
        )
    snaps = {}
    for line in lines[1:]:
        cols = line.split()
        if len(cols) < 5:
            raise MicroK8sOutputError(f"snap list: row {line!r} has {len(cols)} columns, expected 6")
        notes = cols[5] if len(cols) > 5 else "-"
        snaps[cols[0]] = {
            "version": cols[1],
            "rev": cols[2],
            "tracking": cols[3],
            "publisher": cols[4],
            "notes": [] if notes == "-" else notes.split(","),
        }
    return snaps


# --------------------------------------------------------------------------- network config
def mllab_microk8s_proxy_env(proxy: Mapping[str, Any] | None) -> dict[str, str]:
    """Proxy environment variables (upper and lower case) from {http, https, no_proxy}: for
    containerd-env and for `microk8s enable`. {} when no proxy is set. NO_PROXY always gets the
    cluster's own ranges; HTTPS_PROXY falls back to the http one."""
    proxy = proxy or {}
    http, https = str(proxy.get("http") or ""), str(proxy.get("https") or "")
    if not http and not https:
        return {}
    for key, url in (("http", http), ("https", https)):
        if url and not re.match(r"^(https?|socks5h?)://[^\s'\"]+$", url):
            raise MicroK8sOutputError(
                f"microk8s_proxy.{key} = {url!r} is not a proxy URL: use e.g. http://proxy.example.com:3128"
            )
    extra = proxy.get("no_proxy") or []
    if isinstance(extra, str):
        extra = [x for x in re.split(r"[,\s]+", extra) if x]
    no_proxy = ",".join(dict.fromkeys([*CLUSTER_NO_PROXY, *map(str, extra)]))
    env: dict[str, str] = {}
    for var, val in (("HTTP_PROXY", http), ("HTTPS_PROXY", https or http), ("NO_PROXY", no_proxy)):
        if val:
            env[var], env[var.lower()] = val, val
    return env


def mllab_microk8s_containerd_env(proxy: Mapping[str, Any] | None) -> str:
    """Lines for MicroK8s' containerd-env (sourced shell) from {http, https, no_proxy}.

    Empty string when no proxy is set. NO_PROXY always gets the cluster's own ranges.
    """
    return "\n".join(f"{var}={shlex.quote(val)}" for var, val in mllab_microk8s_proxy_env(proxy).items())


def mllab_microk8s_snapd_proxy(proxy: Mapping[str, Any] | None) -> dict[str, str]:
    """snapd's system options for the proxy (https://snapcraft.io/docs/system-options:
    proxy.http, proxy.https), so that `snap install` goes through it. {} without a proxy."""
    env = mllab_microk8s_proxy_env(proxy)
    return (
        {
            "proxy.http": env["HTTP_PROXY"] if "HTTP_PROXY" in env else env["HTTPS_PROXY"],
            "proxy.https": env["HTTPS_PROXY"],
        }
        if env
        else {}
    )


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def mllab_microk8s_hosts_toml(registry: str, spec: Any) -> str:
    """containerd hosts.toml for `registry` (e.g. docker.io) pulling through mirrors first.

    spec: a list of mirror URLs or of {url, skip_verify, ca, capabilities}, or a mapping
    {server: <upstream>, mirrors: [...]}.
    """
    if not re.match(r"^[A-Za-z0-9.-]+(:\d+)?$", str(registry)):
        raise MicroK8sOutputError(f"registry name {registry!r} is not a host[:port] such as docker.io or quay.io")
    server = "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
    mirrors = spec
    if isinstance(spec, Mapping):
        server = str(spec.get("server") or server)
        mirrors = spec.get("mirrors") or []
    if not isinstance(mirrors, list) or not mirrors:
        raise MicroK8sOutputError(
            f"microk8s_registry_mirrors[{registry!r}] must list at least one mirror URL, got {spec!r}"
        )
    out = [f"server = {_toml_str(server)}", ""]
    for mirror in mirrors:
        entry = {"url": mirror} if isinstance(mirror, str) else dict(mirror)
        url = str(entry.get("url") or "")
        if not re.match(r"^https?://[^\s\"]+$", url):
            raise MicroK8sOutputError(
                f"mirror {url!r} for {registry} is not an http(s) URL: use e.g. https://mirror.example.com:5000"
            )
        caps = entry.get("capabilities") or ["pull", "resolve"]
        bad = set(caps) - {"pull", "resolve", "push"}
        if bad:
            raise MicroK8sOutputError(f"mirror {url}: unknown capabilities {sorted(bad)}; use pull, resolve, push")
        out.append(f"[host.{_toml_str(url)}]")
        out.append("  capabilities = [" + ", ".join(_toml_str(c) for c in caps) + "]")
        if entry.get("skip_verify"):
            out.append("  skip_verify = true")
        if entry.get("ca"):
            out.append(f"  ca = {_toml_str(str(entry['ca']))}")
        out.append("")
    return "\n".join(out)


class FilterModule:
    def filters(self):
        return {
            "mllab_microk8s_status": mllab_microk8s_status,
            "mllab_microk8s_addon_plan": mllab_microk8s_addon_plan,
            "mllab_microk8s_addon_partial": mllab_microk8s_addon_partial,
            "mllab_microk8s_helm_releases": mllab_microk8s_helm_releases,
            "mllab_microk8s_join_info": mllab_microk8s_join_info,
            "mllab_microk8s_join_url": mllab_microk8s_join_url,
            "mllab_microk8s_join_argv": mllab_microk8s_join_argv,
            "mllab_microk8s_nodes": mllab_microk8s_nodes,
            "mllab_microk8s_member": mllab_microk8s_member,
            "mllab_microk8s_join_plan": mllab_microk8s_join_plan,
            "mllab_microk8s_snap_list": mllab_microk8s_snap_list,
            "mllab_microk8s_containerd_env": mllab_microk8s_containerd_env,
            "mllab_microk8s_proxy_env": mllab_microk8s_proxy_env,
            "mllab_microk8s_snapd_proxy": mllab_microk8s_snapd_proxy,
            "mllab_microk8s_hosts_toml": mllab_microk8s_hosts_toml,
        }
