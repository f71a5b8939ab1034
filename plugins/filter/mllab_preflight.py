"""Preflight decisions for ML Lab Kit: inventory topology, addon names, version formats,
resource needs. Pure functions, used as Ansible filters by roles/preflight and unit
tested in tests/unit/test_preflight_filters.py. Each returns a list of problems, each
naming the bad value and the fix; an empty list means the input is usable.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Core addon names of MicroK8s 1.36 (canonical/microk8s-core-addons@f6898115:addons.yaml, main).
# Community addons are accepted with an explicit "community/" prefix.
KNOWN_ADDONS = frozenset(
    [
        "dns",
        "rbac",
        "ingress",
        "hostpath-storage",
        "storage",
        "registry",
        "metrics-server",
        "nvidia",
        "gpu",
        "helm",
        "helm3",
        "metallb",
        "host-access",
        "ha-cluster",
        "mayastor",
        "prometheus",
        "observability",
        "community",
        "cert-manager",
        "kube-ovn",
        "minio",
        "cis-hardening",
        "rook-ceph",
    ]
)
# Core addons of older tracks only: `dashboard` is in addons.yaml of branches 1.30 to 1.35
# (canonical/microk8s-core-addons 1.30@955f4d73 ... 1.35@ec06cfb5) and was removed from main
# (1.36, commit 1824e87). Tracks before 1.30 were not checked; they are taken to have it too.
ADDONS_UNTIL = {"dashboard": (1, 35)}
# Addons that need a classic MicroK8s on amd64 (addons.yaml: confinement: classic,
# supported_architectures: [amd64]) and that `microk8s enable nvidia` (gpu_stack: operator) runs.
NVIDIA_ADDONS = ("nvidia", "gpu")
NVIDIA_ARCH = ("x86_64",)  # amd64 as Ansible's ansible_architecture names it
# Addons whose enable script prompts on stdin without an argument.
ADDONS_NEEDING_ARGS = {"metallb": "an address range, e.g. args: 10.64.140.43-10.64.140.49"}

VERSION_PATTERNS = {
    "snap_channel": (
        re.compile(r"^(latest|\d+\.\d+)(-strict|-eksd)?/(stable|candidate|beta|edge)(/[\w.-]+)?$"),
        "a snap channel <track>/<risk> such as 1.36/stable",
    ),
    "v_semver": (
        re.compile(r"^v\d+\.\d+\.\d+$"),
        "a version like v25.10.0 (with the leading v)",
    ),
    "semver": (
        re.compile(r"^\d+\.\d+\.\d+$"),
        "a version like 1.2.3",
    ),
}


def _hosts(groups: Mapping[str, Iterable[str]], name: str) -> list[str]:
    return list(groups.get(name) or [])


def mllab_topology_problems(groups: Mapping[str, Iterable[str]], manage_microk8s: bool = True) -> list[str]:
    """Check the inventory groups control_plane / workers / gpu for a workable cluster."""
    if not manage_microk8s:
        return []
    cps, workers, gpus = (_hosts(groups, g) for g in ("control_plane", "workers", "gpu"))
    problems = []
    if not cps:
        if workers:
            problems.append(
                f"workers {sorted(workers)} have no control plane to join: "
                "put at least one host in the control_plane group"
            )
        else:
            problems.append(
                "the control_plane group is empty: put the host(s) that run MicroK8s in it "
                "(see inventory/examples/cluster.yml), or set mllab_manage_microk8s: false "
                "to use an existing cluster"
            )
    if len(cps) > 1 and len(cps) % 2 == 0:
        problems.append(
            f"control_plane has {len(cps)} hosts ({', '.join(cps)}): high availability needs an "
            "odd number (3, 5, 7) so dqlite keeps a majority; use 1, 3 or 5, or move one to workers"
        )
    both = sorted(set(cps) & set(workers))
    if both:
        problems.append(f"hosts {both} are in both control_plane and workers: keep each host in one of them")
    strays = sorted(set(gpus) - set(cps) - set(workers))
    if strays:
        problems.append(
            f"gpu hosts {strays} are not in the cluster: add them to control_plane or workers, "
            "or remove them from the gpu group"
        )
    return problems


def _track(channel: object) -> tuple[int, int] | None:
    """(1, 35) for 1.35/stable or 1.35-strict/stable; None for latest/... or a malformed channel."""
    match = re.match(r"^(\d+)\.(\d+)", str(channel or ""))
    return (int(match[1]), int(match[2])) if match else None


def mllab_known_addons(channel: object = "") -> list[str]:
    """Core addon names offered by the MicroK8s track of `channel` (1.36's list without a track)."""
    track = _track(channel)
    extra = [name for name, last in ADDONS_UNTIL.items() if track is not None and track <= last]
    return sorted(KNOWN_ADDONS | set(extra))


def mllab_addon_problems(addons: object, known: Iterable[str] | None = None, channel: object = "") -> list[str]:
    """Check microk8s_addons: a mapping name -> {enabled: bool, args: str}.

    known: the core addon names; by default those of the track of `channel`
    (mllab_known_addons), e.g. `dashboard` is known on 1.35/stable, not on 1.36/stable.
    """
    if not isinstance(addons, Mapping):
        return [f"microk8s_addons must be a mapping of addon name to {{enabled: true|false}}, got {addons!r}"]
    known = set(mllab_known_addons(channel) if known is None else known)
    problems = []
    for name, spec in addons.items():
        bare = str(name).split("/", 1)[1] if str(name).startswith(("core/", "community/")) else str(name)
        if not str(name).startswith("community/") and bare not in known:
            close = difflib.get_close_matches(bare, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if bare in ADDONS_UNTIL:
                last = ".".join(map(str, ADDONS_UNTIL[bare]))
                hint = f" (MicroK8s offers it up to {last}, not on microk8s_channel = {channel!r})"
            problems.append(
                f"unknown MicroK8s addon {name!r}{hint}: core addons are {', '.join(sorted(known))}; "
                "community addons need the prefix community/"
            )
            continue
        if not isinstance(spec, Mapping) or not isinstance(spec.get("enabled"), bool):
            problems.append(f"microk8s_addons[{name!r}] must be {{enabled: true|false, args: ...}}, got {spec!r}")
            continue
        unknown_keys = set(spec) - {"enabled", "args"}
        if unknown_keys:
            problems.append(f"microk8s_addons[{name!r}] has unknown keys {sorted(unknown_keys)}: use enabled and args")
        args = spec.get("args") or ""
        if not isinstance(args, str):
            problems.append(f"microk8s_addons[{name!r}].args must be a string, got {args!r}")
        elif spec["enabled"] and bare in ADDONS_NEEDING_ARGS and not args.strip():
            problems.append(
                f"addon {name!r} is enabled without args: it would wait for input; give {ADDONS_NEEDING_ARGS[bare]}"
            )
    return problems


def mllab_version_problems(values: Mapping[str, list]) -> list[str]:
    """values: {variable name: [value, kind]} with kind a key of VERSION_PATTERNS."""
    problems = []
    for var, (value, kind) in values.items():
        pattern, expected = VERSION_PATTERNS[kind]
        if not isinstance(value, str) or not pattern.match(value):
            problems.append(f"{var} = {value!r} is malformed: expected {expected}")
    return problems


def mllab_channel_problems(channel: object, gpu: bool = False) -> list[str]:
    """Problems of microk8s_channel beyond its format: strict confinement.

    A `-strict` track (e.g. 1.36-strict/stable) is a strictly confined snap: it installs
    without --classic and its users are in the group snap_microk8s, not microk8s
    (canonical/microk8s microk8s-resources/actions/common/utils.sh, get_microk8s_or_cis_group),
    and the nvidia addon is classic-only (microk8s-core-addons addons.yaml). This kit installs
    the classic snap (roles/microk8s: snap install --classic) and gives users the microk8s
    group, so strict channels are refused. gpu: GPU features are on (named in the message).
    """
    value = str(channel or "")
    track = value.split("/", 1)[0]
    if not track.endswith("-strict"):
        return []
    classic = track.removesuffix("-strict") + "/" + (value.split("/", 1)[1] if "/" in value else "stable")
    why = "the nvidia addon of the GPU layer is classic-only, and " if gpu else ""
    return [
        f"microk8s_channel = {value!r} is a strictly confined MicroK8s: {why}this kit installs the classic snap "
        "(snap install --classic, users in the microk8s group; strict MicroK8s uses the group snap_microk8s): "
        f"use the classic channel microk8s_channel: {classic}"
    ]


def _installed_track(installed: Mapping) -> tuple[int, int] | None:
    """The minor an installed MicroK8s runs: its Tracking column (1.35/stable), or for a snap
    installed from a file (Tracking "-") its Version column (v1.35.4)."""
    tracking = str(installed.get("tracking") or "-")
    return _track(tracking) if tracking != "-" else _track(str(installed.get("version", "")).lstrip("v"))


def _full_channel(channel: str) -> str:
    """snap shows <track>/stable for a channel given as <track>."""
    return channel if "/" in channel else f"{channel}/stable"


def _same_channel(tracking: str, channel: str) -> bool:
    return _full_channel(tracking) == _full_channel(channel)


def mllab_channel_change_problems(installed: Mapping | None, channel: object, host: str = "this host") -> list[str]:
    """A channel change on an installed MicroK8s, refused before anything runs.

    installed: the microk8s row of `snap list microk8s` (mllab_microk8s_snap_list), or None
    when it is not installed. community.general.snap with state=present and a channel runs
    `snap refresh --channel` on a mismatch (plugins/modules/snap.py), and an explicit refresh
    ignores the refresh hold (https://snapcraft.io/docs/managing-updates): every node would
    change Kubernetes minor at once. site.yml installs only; playbooks/upgrade.yml changes the
    channel, one node and one minor at a time. A snap installed from a file (Tracking "-")
    tracks no channel and is left as it is.
    """
    if not installed:
        return []
    tracking, wanted = str(installed.get("tracking") or "-"), str(channel or "")
    if tracking == "-" or _same_channel(tracking, wanted):
        return []
    return [
        f"MicroK8s on {host} tracks {tracking} but microk8s_channel is {wanted}: site.yml does not change "
        "the channel of an installed MicroK8s (a refresh would move every node to another Kubernetes "
        f"version at once). Upgrade one node at a time with `ansible-playbook playbooks/upgrade.yml "
        f"-e microk8s_channel={wanted}`, or keep the installed one with microk8s_channel: {tracking}"
    ]


def mllab_upgrade_problems(installed: Mapping | None, channel: object, host: str = "this host") -> list[str]:
    """Why playbooks/upgrade.yml must not move `host` to `channel` (empty: it may, or it is there).

    Kubernetes supports upgrading one minor at a time (kubernetes.io version-skew policy), as
    MicroK8s' upgrade docs repeat: from 1.34 to 1.36 is two upgrades. Downgrades are refused
    (`snap revert microk8s` is the way back), as are channels with no minor (latest/...).
    """
    wanted = str(channel or "")
    if not installed:
        return [f"MicroK8s is not installed on {host}: install it with site.yml, not upgrade.yml"]
    target, current = _track(wanted), _installed_track(installed)
    if target is None or not re.match(r"^\d+\.\d+/(stable|candidate|beta|edge)$", wanted):
        return [f"microk8s_channel = {wanted!r} names no classic minor: upgrade to a <major>.<minor>/<risk> channel"]
    if current is None:
        return [f"cannot tell which Kubernetes minor {host} runs (snap list: {dict(installed)})"]
    if target < current:
        return [
            f"{host} runs {current[0]}.{current[1]} and microk8s_channel {wanted} is older: a downgrade is not "
            "an upgrade; roll back with `snap revert microk8s` on each node"
        ]
    if target[0] != current[0] or target[1] - current[1] > 1:
        steps = [f"{current[0]}.{m}/stable" for m in range(current[1] + 1, target[1] + 1)]
        return [
            f"{host} runs {current[0]}.{current[1]}: Kubernetes upgrades one minor at a time, so "
            f"{wanted} is {len(steps)} upgrades: run upgrade.yml with microk8s_channel = " + ", then ".join(steps)
        ]
    return []


def mllab_upgrade_needed(installed: Mapping | None, channel: object) -> bool:
    """True when the installed MicroK8s does not track `channel` yet."""
    return bool(installed) and not _same_channel(str(installed.get("tracking") or "-"), str(channel or ""))


def mllab_spec_types_only(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A role's argument spec options (meta/argument_specs.yml) without `required`: preflight
    checks the type and choices of what the inventory sets, for every layer at once; whether
    a setting is missing is each role's own check when it runs (its defaults fill most)."""

    def strip(options: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, opt in (options or {}).items():
            opt = {k: v for k, v in dict(opt).items() if k != "required"}
            if isinstance(opt.get("options"), Mapping):
                opt["options"] = strip(opt["options"])
            out[name] = opt
        return out

    return strip(spec)


def mllab_argument_problems(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems from a loop of validate_argument_spec over roles' spec files (item: the path).
    The task runs with failed_when: false (all roles are checked), which clears `failed`: a
    result with argument_errors failed."""
    problems = []
    for res in results or []:
        if not (res.get("argument_errors") or res.get("failed")):
            continue
        role = str(res.get("item", "")).split("/meta/")[0].rsplit("/", 1)[-1]
        errors = res.get("argument_errors") or [res.get("msg", "failed")]
        problems += [f"{err} (a setting of roles/{role}: see its meta/argument_specs.yml and README)" for err in errors]
    return problems


def mllab_labs_python_problems(answer: Mapping[str, Any] | None, python: str, host: str) -> list[str]:
    """labs_python on the control host must be Python >= 3.11 with venv (the mllab package's floor).

    answer: the registered result of `<python> -c "import sys, venv; print(...version...)"`."""
    answer = answer or {}
    if answer.get("skipped"):
        return []
    out = str(answer.get("stdout") or "").strip()
    fix = (
        "install python3.11 and python3.11-venv (apt; Ubuntu 22.04 has them in universe) and set labs_python: "
        "python3.11, or set labs_control_host_install: false"
    )
    if answer.get("rc") != 0 or not re.match(r"^\d+\.\d+$", out):
        err = str(answer.get("stderr") or answer.get("msg") or out).strip()[:160]
        return [f"labs_python = {python} does not run on {host} with venv ({err}): {fix}"]
    major, minor = (int(x) for x in out.split("."))
    if (major, minor) < (3, 11):
        return [f"labs_python = {python} on {host} is Python {out}; the labs need 3.11 or newer: {fix}"]
    return []


def mllab_enabled_addons(addons: Mapping[str, Mapping]) -> list[str]:
    """Names of the addons switched on, without repository prefix."""
    return [str(n).split("/")[-1] for n, s in (addons or {}).items() if isinstance(s, Mapping) and s.get("enabled")]


def mllab_required_mb(enabled: Iterable[str], base: int, per_item: Mapping[str, int]) -> int:
    """Base need plus the extra need of each enabled item (addon or component) that has one."""
    return int(base) + sum(int(per_item.get(name, 0)) for name in enabled)


def mllab_offline_problems(files: Mapping, channel: str) -> list[str]:
    """files: snap, assert (controller paths, "" when unset), snap_exists, assert_exists."""
    snap, assertion = files.get("snap") or "", files.get("assert") or ""
    if not snap and not assertion:
        return []
    download = f"`snap download microk8s --channel={channel}` on a machine that reaches the snap store"
    problems = []
    if not (snap and assertion):
        problems.append(
            "set both microk8s_snap_file and microk8s_assert_file, not only one: " + download + " gives both"
        )
    if snap and not files.get("snap_exists"):
        problems.append(f"microk8s_snap_file = {snap} does not exist on the controller: get it with {download}")
    elif snap and not snap.endswith(".snap"):
        problems.append(f"microk8s_snap_file = {snap} is not a .snap file: point it at microk8s_<rev>.snap")
    if assertion and not files.get("assert_exists"):
        problems.append(f"microk8s_assert_file = {assertion} does not exist on the controller: get it with {download}")
    elif assertion and not assertion.endswith(".assert"):
        problems.append(f"microk8s_assert_file = {assertion} is not an .assert file: point it at microk8s_<rev>.assert")
    return problems


def mllab_mount_for(mounts: Iterable[Mapping], path: str) -> Mapping:
    """The mount (from ansible_mounts) that holds path: the longest mount point prefixing it."""
    best: Mapping = {}
    for m in mounts or []:
        point = str(m.get("mount", ""))
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(str(best.get("mount", ""))):
            best = m
    return best


def mllab_host_problems(host: Mapping, settings: Mapping) -> list[str]:
    """Problems of one host from its facts.

    host: distribution, version (e.g. 24.04 or 12.11), major_version (12), arch, memtotal_mb,
          mounts (ansible_mounts), in_gpu_group, snap_store (None when not probed, else the uri result: status, msg),
          runs_nvidia_addon (this host is the first control-plane node and GPU features need the nvidia addon).
    settings: supported_os, supported_arch, gpu_arch, addons (enabled names),
              base_memory_mb, addon_memory_mb, base_disk_mb, addon_disk_mb, disk_path,
              snap_store_url, channel.
    """
    problems = []
    dist, version, arch = host["distribution"], str(host["version"]), host["arch"]
    supported = settings["supported_os"]
    allowed = [str(v) for v in supported.get(dist, [])]
    # Ubuntu is listed by full version (24.04), Debian by major version (12 for 12.11).
    if version not in allowed and str(host.get("major_version", "")) not in allowed:
        choices = "; ".join(f"{d} {', '.join(map(str, vs))}" for d, vs in supported.items())
        problems.append(f"{dist} {version} is not supported: use {choices}")
    if arch not in settings["supported_arch"]:
        problems.append(f"architecture {arch} is not supported: use {' or '.join(settings['supported_arch'])}")
    if host.get("in_gpu_group") and arch not in settings["gpu_arch"]:
        problems.append(
            f"host is in the gpu group but is {arch}: the NVIDIA GPU stack needs "
            f"{' or '.join(settings['gpu_arch'])}; remove it from the gpu group"
        )
    if host.get("runs_nvidia_addon") and arch not in NVIDIA_ARCH:
        problems.append(
            f"this host is the first control-plane node, which runs `microk8s enable nvidia` (gpu_stack: operator "
            f"with GPU hosts), but it is {arch}: the nvidia addon is amd64-only (microk8s-core-addons addons.yaml, "
            "supported_architectures). Put an x86_64 host first in control_plane, or set gpu_stack: device-plugin"
        )
    addons = list(settings.get("addons", []))
    need_mb = mllab_required_mb(addons, settings["base_memory_mb"], settings["addon_memory_mb"])
    if int(host["memtotal_mb"]) < need_mb:
        problems.append(
            f"memory {host['memtotal_mb']} MiB is below the {need_mb} MiB needed for MicroK8s with addons "
            f"{', '.join(addons) or '(none)'}: add memory or switch addons off in microk8s_addons"
        )
    need_disk = mllab_required_mb(addons, settings["base_disk_mb"], settings["addon_disk_mb"])
    mount = mllab_mount_for(host.get("mounts", []), settings["disk_path"])
    free_mb = int(mount.get("size_available", 0)) // 1048576
    # No mount at all holds the path only where facts list no root mount (some containers):
    # then there is nothing to measure, rather than 0 MiB free.
    if mount and free_mb < need_disk:
        problems.append(
            f"free disk on {mount.get('mount', '?')} is {free_mb} MiB, below the {need_disk} MiB needed under "
            f"{settings['disk_path']}: free space or switch addons off in microk8s_addons"
        )
    probe = host.get("snap_store")
    if probe is not None and int(probe.get("status", -1)) <= 0:
        reason = str(probe.get("msg") or "no answer")[:160]
        problems.append(
            f"the snap store ({settings['snap_store_url']}) is unreachable from this host ({reason}): "
            "allow HTTPS to api.snapcraft.io and *.snapcraftcontent.com (or set a proxy), or install "
            f"offline: run `snap download microk8s --channel={settings['channel']}` where the store is "
            "reachable, then set microk8s_snap_file and microk8s_assert_file to the two files"
        )
    return problems


class FilterModule:
    def filters(self):
        return {
            "mllab_topology_problems": mllab_topology_problems,
            "mllab_addon_problems": mllab_addon_problems,
            "mllab_known_addons": mllab_known_addons,
            "mllab_channel_problems": mllab_channel_problems,
            "mllab_channel_change_problems": mllab_channel_change_problems,
            "mllab_upgrade_problems": mllab_upgrade_problems,
            "mllab_upgrade_needed": mllab_upgrade_needed,
            "mllab_spec_types_only": mllab_spec_types_only,
            "mllab_argument_problems": mllab_argument_problems,
            "mllab_labs_python_problems": mllab_labs_python_problems,
            "mllab_version_problems": mllab_version_problems,
            "mllab_enabled_addons": mllab_enabled_addons,
            "mllab_required_mb": mllab_required_mb,
            "mllab_mount_for": mllab_mount_for,
            "mllab_offline_problems": mllab_offline_problems,
            "mllab_host_problems": mllab_host_problems,
        }
