"""GPU decisions for the gpu layer (roles/gpu): detect NVIDIA GPUs from `lspci -nn` and
`nvidia-smi --query-gpu=...` (CSV), and build the NVIDIA device plugin / GPU operator settings. Pure
functions, used as Ansible filters and unit tested in tests/unit/test_gpu_filters.py on
output samples under tests/unit/samples/gpu/.

Facts used (shared/reference/FACTS.md §3, with their upstream sources):
- lspci -nn: `<slot> <class name> [<class>]: <vendor> <device> [<vendor id>:<device id>]`;
  NVIDIA is vendor 10de; GPUs are class 0300 (VGA) or 0302 (3D controller); other 10de
  functions (HDMI audio 0403, USB, bridges) are not GPUs; `(rev ff)` = device unreachable.
- nvidia-smi -L: `GPU <i>: <name> (UUID: GPU-...)`, MIG lines indented below their GPU
  (no formal spec: kept for captures only, the role does not scrape it).
- nvidia-smi --query-gpu=<fields> --format=csv,noheader (nvidia-smi(1), "--format"): one
  line per GPU, fields joined by ", ", values with their unit (`40960 MiB`), `[N/A]` or
  `[Not Supported]` when the GPU has no such value; mig.mode.current is Enabled/Disabled,
  `[N/A]` on GPUs without MIG. Warnings (e.g. a corrupted infoROM) can share stdout.
- Device plugin config v1 (NVIDIA/k8s-device-plugin api/config/v1): flags.migStrategy
  none|single|mixed; sharing.timeSlicing.resources[{name, replicas}].
- GPU operator chart values: devicePlugin.config.{create,name,default,data},
  mig.strategy, dcgmExporter.serviceMonitor.{enabled,additionalLabels}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError as _FilterError
except ImportError:  # pragma: no cover
    _FilterError = ValueError  # type: ignore[assignment,misc]


class GpuOutputError(_FilterError):  # type: ignore[misc,valid-type]
    """A GPU tool printed something this kit cannot read, or a GPU setting is invalid."""


NVIDIA_VENDOR = "10de"
GPU_CLASSES = {"0300", "0302"}
MIG_STRATEGIES = ("none", "single", "mixed")
GPU_RESOURCE = "nvidia.com/gpu"

_LSPCI = re.compile(
    r"^(?P<slot>(?:[0-9a-fA-F]{4,}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<class_name>.*?)\s+\[(?P<class>[0-9a-fA-F]{4})\]:\s+"
    r"(?P<desc>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]"
    r"(?:\s+\(rev (?P<rev>[0-9a-fA-F]{2})\))?"
)
_SMI_GPU = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>GPU-[0-9a-fA-F-]+)\)\s*$")
# MIG profile: GPU instance (1g.5gb, 1g.10gb+me) or compute instance inside one (1c.3g.20gb).
_SMI_MIG = re.compile(
    r"^\s+MIG\s+(?:(?P<profile>[0-9a-z.+]+)\s+)?Device\s+(?P<index>\d+):\s+\(UUID: (?P<uuid>MIG-[^)]+)\)\s*$"
)
# The commands the role runs (roles/gpu/tasks/detect.yml, driver.yml run exactly these argv;
# tests/unit/test_gpu_filters.py checks that).
SMI_QUERY_FIELDS = ("index", "name", "uuid", "memory.total", "driver_version")
SMI_QUERY_ARGV = ["nvidia-smi", "--query-gpu=" + ",".join(SMI_QUERY_FIELDS), "--format=csv,noheader"]
SMI_MIG_ARGV = ["nvidia-smi", "--query-gpu=index,mig.mode.current", "--format=csv,noheader"]
_SMI_MISSING = ("[N/A]", "[Not Supported]", "N/A", "")
_SMI_MIB = re.compile(r"^(?P<n>\d+)\s*MiB$")


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise GpuOutputError(f"{what}: expected the command's text output, got {type(value).__name__}")
    return value


def mllab_gpu_lspci(output: Any) -> list[dict[str, Any]]:
    """NVIDIA GPUs in `lspci -nn` output: [{slot, class, device_id, name, reachable}].

    Lines that are not PCI devices raise (the wrong command or flags were used);
    non-NVIDIA devices and NVIDIA functions that are not GPUs are left out.
    """
    text = _text(output, "lspci -nn")
    gpus = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LSPCI.match(line.strip())
        if not match:
            raise GpuOutputError(
                f"lspci -nn line {lineno}: expected '<slot> <class> [cccc]: <device> [vvvv:dddd]', got {line!r}. "
                "Run lspci with -nn (numeric ids)."
            )
        if match["vendor"].lower() != NVIDIA_VENDOR or match["class"] not in GPU_CLASSES:
            continue
        gpus.append(
            {
                "slot": match["slot"],
                "class": match["class"],
                "device_id": f"{match['vendor'].lower()}:{match['device'].lower()}",
                "name": match["desc"],
                "reachable": (match["rev"] or "").lower() != "ff",
            }
        )
    return gpus


def mllab_gpu_smi_list(output: Any) -> list[dict[str, Any]]:
    """Parse `nvidia-smi -L` -> [{index, name, uuid, mig: [{index, profile, uuid}]}].

    For captures and checks only: the role reads `--query-gpu` CSV (mllab_gpu_smi_query),
    since `-L` has no formal spec. Indented lines below a GPU that are not MIG devices are
    skipped; a top-level line that is not a GPU raises (the wrong command ran).
    """
    text = _text(output, "nvidia-smi -L")
    gpus: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        gpu, mig = _SMI_GPU.match(line), _SMI_MIG.match(line)
        if gpu:
            gpus.append({"index": int(gpu["index"]), "name": gpu["name"], "uuid": gpu["uuid"], "mig": []})
        elif mig and gpus:
            gpus[-1]["mig"].append({"index": int(mig["index"]), "profile": mig["profile"] or "", "uuid": mig["uuid"]})
        elif gpus and line[:1].isspace():
            continue  # a detail line of the GPU above that this kit does not need
        else:
            raise GpuOutputError(
                f"nvidia-smi -L line {lineno}: expected 'GPU <n>: <name> (UUID: GPU-...)' or an indented MIG line, "
                f"got {line!r}"
            )
    return gpus


def _smi_value(raw: str) -> str | None:
    raw = raw.strip()
    return None if raw in _SMI_MISSING else raw


def mllab_gpu_smi_query(output: Any) -> dict[str, Any]:
    """Parse `nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version
    --format=csv,noheader` -> {gpus: [{index, name, uuid, memory_mib, driver_version}],
    ignored: [lines that are not GPU rows]}.

    A line counts as a GPU row when it has the 5 fields, an integer index and a GPU-
    UUID; anything else (warnings printed on stdout, lines of a newer nvidia-smi) is
    kept in `ignored` and never aborts. `[N/A]`/`[Not Supported]` values become None.
    """
    text = _text(output, "nvidia-smi --query-gpu")
    gpus: list[dict[str, Any]] = []
    ignored: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < len(SMI_QUERY_FIELDS) or not parts[0].isdigit() or not parts[-3].startswith("GPU-"):
            ignored.append(line.strip())
            continue
        memory = _SMI_MIB.match(parts[-2])
        gpus.append(
            {
                "index": int(parts[0]),
                "name": ", ".join(parts[1:-3]),  # a name with a comma in it stays whole
                "uuid": parts[-3],
                "memory_mib": int(memory["n"]) if memory else None,
                "driver_version": _smi_value(parts[-1]),
            }
        )
    return {"gpus": gpus, "ignored": ignored}


def mllab_gpu_smi_mig(output: Any) -> dict[int, bool | None]:
    """Parse `nvidia-smi --query-gpu=index,mig.mode.current --format=csv,noheader`
    -> {gpu index: True (Enabled) | False (Disabled) | None ([N/A]: no MIG on this GPU)}.
    Other lines are skipped."""
    text = _text(output, "nvidia-smi --query-gpu=index,mig.mode.current")
    modes: dict[int, bool | None] = {}
    for line in text.splitlines():
        index, sep, mode = line.partition(",")
        if not sep or not index.strip().isdigit():
            continue
        modes[int(index)] = {"enabled": True, "disabled": False}.get(mode.strip().lower())
    return modes


def _answered(result: Mapping[str, Any] | None) -> bool:
    """A registered command result that ran and exited 0."""
    return bool(result) and not result.get("skipped") and result.get("rc") is not None and int(result["rc"]) == 0


def mllab_gpu_summary(
    lspci_output: Any, smi: Mapping[str, Any] | None = None, smi_mig: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the node has: {present, count, names, gpus, driver, driver_version, unreachable,
    mig, ignored, reason}.

    smi: the registered result of `nvidia-smi --query-gpu=index,name,uuid,memory.total,
    driver_version --format=csv,noheader` ({rc, stdout, stderr}), or None/{} when
    nvidia-smi is not installed. A driver is "loaded" when nvidia-smi answers with GPUs.
    smi_mig: the registered result of `nvidia-smi --query-gpu=index,mig.mode.current
    --format=csv,noheader` (optional; a failure, e.g. a driver without the field, means
    MIG is unknown and counted as off).
    """
    pci = mllab_gpu_lspci(lspci_output)
    smi = smi or {}
    driver = "absent"
    smi_gpus: list[dict[str, Any]] = []
    ignored: list[str] = []
    if smi.get("rc") is not None and not smi.get("skipped"):
        if int(smi["rc"]) == 0:
            parsed = mllab_gpu_smi_query(smi.get("stdout", ""))
            smi_gpus, ignored = parsed["gpus"], parsed["ignored"]
            driver = "loaded" if smi_gpus else "no-devices"
        else:
            driver = "failing"
    modes = mllab_gpu_smi_mig(smi_mig.get("stdout", "")) if _answered(smi_mig) else {}
    for gpu in smi_gpus:
        gpu["mig"] = modes.get(gpu["index"])
    unreachable = [g["slot"] for g in pci if not g["reachable"]]
    count = max(len(pci), len(smi_gpus))
    if not count:
        reason = "no NVIDIA GPU on this host (lspci lists no vendor 10de display or 3D controller)"
    elif driver == "failing":
        reason = (
            f"{count} NVIDIA GPU(s), but nvidia-smi fails (rc {smi.get('rc')}): "
            f"{str(smi.get('stderr') or smi.get('stdout') or '').strip()[:200]}"
        )
    else:
        reason = f"{count} NVIDIA GPU(s): {', '.join(sorted({g['name'] for g in (smi_gpus or pci)}))}"
    versions = sorted({g["driver_version"] for g in smi_gpus if g["driver_version"]})
    return {
        "present": count > 0,
        "count": count,
        "names": [g["name"] for g in (smi_gpus or pci)],
        "gpus": smi_gpus,
        "driver": driver,
        "driver_version": versions[0] if versions else None,
        "unreachable": unreachable,
        "mig": any(g["mig"] for g in smi_gpus),
        "ignored": ignored,
        "reason": reason,
    }


def mllab_gpu_device_plugin_config(sharing: Mapping[str, Any] | None) -> dict[str, Any]:
    """Device plugin config (version v1) from gpu_sharing {mig_strategy, time_slicing_replicas,
    rename_by_default, fail_requests_greater_than_one}."""
    sharing = dict(sharing or {})
    mig = sharing.get("mig_strategy", "none")
    if mig not in MIG_STRATEGIES:
        raise GpuOutputError(f"gpu_sharing.mig_strategy = {mig!r} is not one of {', '.join(MIG_STRATEGIES)}")
    replicas = sharing.get("time_slicing_replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise GpuOutputError(
            f"gpu_sharing.time_slicing_replicas = {replicas!r} must be an integer >= 1 (1 = no time-slicing)"
        )
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": mig}}
    if replicas > 1:
        config["sharing"] = {
            "timeSlicing": {
                "renameByDefault": bool(sharing.get("rename_by_default", False)),
                "failRequestsGreaterThanOne": bool(sharing.get("fail_requests_greater_than_one", False)),
                "resources": [{"name": GPU_RESOURCE, "replicas": replicas}],
            }
        }
    return config


def mllab_gpu_resource_name(sharing: Mapping[str, Any] | None) -> str:
    """The extended resource a pod asks for to get one GPU under these sharing settings:
    nvidia.com/gpu, or nvidia.com/gpu.shared when time-slicing renames it. (With MIG
    mixed, GPUs are advertised per profile, e.g. nvidia.com/mig-1g.5gb: set the smoke
    resource explicitly then.)"""
    plugin = mllab_gpu_device_plugin_config(sharing)
    slicing = plugin.get("sharing", {}).get("timeSlicing", {})
    return f"{GPU_RESOURCE}.shared" if slicing.get("renameByDefault") else GPU_RESOURCE


def mllab_gpu_operator_values(
    sharing: Mapping[str, Any] | None,
    monitoring: bool,
    config_name: str = "mllab-device-plugin-config",
    release_label: str = "kube-prom-stack",
) -> dict[str, Any]:
    """Helm values for the GPU operator chart (passed to `microk8s enable nvidia
    --gpu-operator-values FILE`): device plugin config, MIG strategy, DCGM ServiceMonitor."""
    plugin = mllab_gpu_device_plugin_config(sharing)
    mig = plugin["flags"]["migStrategy"]
    values: dict[str, Any] = {
        "devicePlugin": {
            "config": {
                "create": True,
                "name": config_name,
                "default": "default",
                # the chart stores each key as a file the plugin reads: YAML text
                "data": {"default": json.dumps(plugin, indent=2)},
            }
        },
        "dcgmExporter": {
            "serviceMonitor": {
                "enabled": bool(monitoring),
                **({"additionalLabels": {"release": release_label}} if monitoring else {}),
            }
        },
    }
    # Always explicit: the chart's own default is `single` (NVIDIA/gpu-operator
    # deployments/gpu-operator/values.yaml, v25.10.0@6f3d599d and main@a22dbf67) and the
    # nvidia addon sets no mig value (canonical/microk8s-core-addons@f6898115
    # addons/nvidia/enable, deploy_gpu_operator), so leaving it out meant `single`, not
    # `none`. ClusterPolicy accepts none|single|mixed (api/nvidia/v1/clusterpolicy_types.go).
    values["mig"] = {"strategy": mig}
    return values


def mllab_gpu_operator_argv(
    version: str,
    driver: str,
    values_file: str = "",
    extra_set: Mapping[str, Any] | None = None,
    cli: str = "microk8s",
) -> list[str]:
    """argv of `microk8s enable nvidia` with a pinned operator version and driver mode (`cli`: the
    program; the gpu role passes /snap/bin/microk8s, mllab_microk8s_cli)."""
    if driver not in ("host", "operator"):  # auto is decided by the role (mllab_gpu_driver_mode)
        raise GpuOutputError(f"gpu_driver = {driver!r}: the operator stack is given host or operator")
    if not re.match(r"^v\d+\.\d+\.\d+$", str(version)):
        raise GpuOutputError(f"gpu_operator_version = {version!r} must look like v25.10.0")
    argv = [cli, "enable", "nvidia", "--gpu-operator-version", version, "--gpu-operator-driver", driver]
    if values_file:
        argv += ["--gpu-operator-values", values_file]
    for key, val in (extra_set or {}).items():
        argv += ["--gpu-operator-set", f"{key}={val}"]
    return argv


def mllab_gpu_allocatable(nodes: Any, resource: str = GPU_RESOURCE) -> dict[str, int]:
    """{node name: allocatable count of `resource`} from `kubectl get nodes -o json` (text or dict)."""
    data = nodes
    if not isinstance(nodes, Mapping):
        try:
            data = json.loads(_text(nodes, "kubectl get nodes -o json"))
        except ValueError as err:
            raise GpuOutputError(f"kubectl get nodes -o json: not JSON ({err})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
        raise GpuOutputError("kubectl get nodes -o json: expected an object with an 'items' list")
    result = {}
    for item in data["items"]:
        name = (item.get("metadata") or {}).get("name")
        raw = ((item.get("status") or {}).get("allocatable") or {}).get(resource, "0")
        try:
            result[name] = int(str(raw))
        except ValueError:
            raise GpuOutputError(f"node {name}: allocatable {resource} = {raw!r} is not an integer") from None
    return result


def mllab_gpu_driver_mode(setting: str, nodes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The operator's driver mode (host or operator) for the whole cluster: {mode, problems}.

    setting: gpu_driver (auto, host or operator). nodes: [{host, driver}] for every GPU node,
    driver as mllab_gpu_summary detected it (loaded, absent, failing, no-devices).
    `microk8s enable nvidia --gpu-operator-driver auto` decides by running `nvidia-smi -L` on
    the node that runs the command (the first control-plane node; microk8s-core-addons
    addons/nvidia/enable), which says nothing of GPU workers: the role decides from what every
    GPU node has instead, and never passes auto. Driver containers on a node whose host driver
    is loaded fail (the operator's driver container needs the kernel module free).
    """
    nodes = list(nodes or [])
    if setting in ("host", "operator"):
        return {"mode": setting, "problems": []}
    if setting != "auto":
        return {"mode": "", "problems": [f"gpu_driver = {setting!r} must be auto, host or operator"]}
    by_state: dict[str, list[str]] = {}
    for node in nodes:
        by_state.setdefault(str(node.get("driver", "absent")), []).append(str(node.get("host")))
    problems = []
    for state, why in (
        ("failing", "nvidia-smi fails there (a broken or mismatched driver)"),
        ("no-devices", "nvidia-smi answers but lists no GPU"),
    ):
        if by_state.get(state):
            problems.append(
                f"gpu_driver: auto cannot decide for {', '.join(by_state[state])}: {why}. Repair the host "
                "driver (nvidia-smi must list the GPUs), or remove it and set gpu_driver: operator"
            )
    loaded, absent = by_state.get("loaded", []), by_state.get("absent", [])
    if loaded and absent:
        problems.append(
            f"gpu_driver: auto found a host driver on {', '.join(loaded)} but none on {', '.join(absent)}: one "
            "driver mode serves the whole cluster. Install the driver on every GPU node (gpu_driver: host "
            "installs it) or remove it from every one (gpu_driver: operator)"
        )
    if problems:
        return {"mode": "", "problems": problems}
    return {"mode": "host" if loaded else "operator", "problems": []}


def mllab_gpu_node_driver(hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """{host, driver} of one node's hostvars (inventory_hostname, gpu_info from detect.yml)."""
    return {"host": hostvars.get("inventory_hostname"), "driver": (hostvars.get("gpu_info") or {}).get("driver")}


def mllab_gpu_release_plan(
    releases: Any, version: str, values_changed: bool = False, release: str = "gpu-operator"
) -> dict[str, Any]:
    """What to do with the operator's Helm release, from `helm list --all --output json` parsed by
    mllab_microk8s_helm_releases (the cluster layer's filters).

    `helm list` without --all shows deployed and failed releases only (a pending one looks
    absent), and the nvidia addon does not check `helm install`'s result, so a release can be
    failed or stuck while the addon reads "enabled". Returns {action, status, revision, chart,
    reason}, action one of:
    - enable: no release; the addon installs it (disabled first if it reads enabled)
    - none: deployed from chart gpu-operator-<version> and the values did not change
    - upgrade: deployed from another chart version or with other values, or a failed upgrade
      (revision > 1: helm upgrades over a failed revision)
    - rollback: pending-upgrade or pending-rollback (a killed helm): back to the last deployed
      revision, then upgrade
    - reinstall: a failed or pending first install (revision 1: nothing to roll back to):
      uninstall, then the addon installs it again
    - wait: uninstalling: fail, naming the release, until helm is done
    """
    if not isinstance(releases, list) or not all(isinstance(r, Mapping) for r in releases):
        raise GpuOutputError(
            f"mllab_gpu_release_plan wants helm's releases, parsed (| mllab_microk8s_helm_releases): {releases!r:.200}"
        )
    found = [r for r in releases if r.get("name") == release]
    if not found:
        return {"action": "enable", "status": "", "revision": 0, "chart": "", "reason": f"no {release} release"}
    row = found[0]
    status, chart = str(row.get("status", "")), str(row.get("chart", ""))
    try:
        revision = int(row.get("revision", 0))
    except (TypeError, ValueError):
        raise GpuOutputError(f"helm list: release {release} has revision {row.get('revision')!r}") from None
    plan = {"status": status, "revision": revision, "chart": chart}
    wanted = f"{release}-{version}"
    if status == "deployed":
        if chart == wanted and not values_changed:
            return {**plan, "action": "none", "reason": f"deployed from {chart}"}
        why = f"chart {chart} -> {wanted}" if chart != wanted else "the values changed"
        return {**plan, "action": "upgrade", "reason": why}
    if status == "failed" and revision > 1:
        return {**plan, "action": "upgrade", "reason": f"revision {revision} failed: upgrade again to {wanted}"}
    if status in ("pending-upgrade", "pending-rollback"):
        return {**plan, "action": "rollback", "reason": f"revision {revision} is stuck in {status}"}
    if status in ("failed", "pending-install"):
        return {**plan, "action": "reinstall", "reason": f"the first install is {status}"}
    if status == "uninstalling":
        return {**plan, "action": "wait", "reason": f"{release} is being uninstalled"}
    raise GpuOutputError(f"helm list: release {release} has status {status!r}, which this role does not handle")


SPEC_ANNOTATION = "mllab.io/spec-sha256"


def mllab_gpu_smoke_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The smoke Job with the SHA-256 of its spec as an annotation, so that a rerun can tell
    whether the Job in the cluster was made from the same spec (a Job's pod template is
    immutable: the API server refuses to apply a changed one, field is immutable)."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(job.get("spec", {}), sort_keys=True).encode()).hexdigest()
    meta = dict(job.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), SPEC_ANNOTATION: digest}
    return {**job, "metadata": meta}


def mllab_gpu_smoke_replace_reason(existing: Any, wanted: Mapping[str, Any]) -> str:
    """Why the smoke Job in the cluster must be deleted before `wanted` is applied ("" = keep it).

    existing: k8s_info's resources (a list, empty when there is no Job) or one Job.
    wanted: mllab_gpu_smoke_job(...) of the desired manifest.
    """
    jobs = existing if isinstance(existing, list) else [existing] if existing else []
    if not jobs:
        return ""
    job = jobs[0]
    conditions = (job.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions):
        return "it failed: it runs again"
    have = ((job.get("metadata") or {}).get("annotations") or {}).get(SPEC_ANNOTATION)
    want = wanted["metadata"]["annotations"][SPEC_ANNOTATION]
    if have != want:
        return "its spec changed (gpu_smoke_image or GPU sharing): a Job's template is immutable, so it is replaced"
    return ""


class FilterModule:
    def filters(self):
        return {
            "mllab_gpu_lspci": mllab_gpu_lspci,
            "mllab_gpu_smi_list": mllab_gpu_smi_list,
            "mllab_gpu_smi_query": mllab_gpu_smi_query,
            "mllab_gpu_smi_mig": mllab_gpu_smi_mig,
            "mllab_gpu_summary": mllab_gpu_summary,
            "mllab_gpu_device_plugin_config": mllab_gpu_device_plugin_config,
            "mllab_gpu_operator_values": mllab_gpu_operator_values,
            "mllab_gpu_resource_name": mllab_gpu_resource_name,
            "mllab_gpu_operator_argv": mllab_gpu_operator_argv,
            "mllab_gpu_allocatable": mllab_gpu_allocatable,
            "mllab_gpu_smoke_job": mllab_gpu_smoke_job,
            "mllab_gpu_release_plan": mllab_gpu_release_plan,
            "mllab_gpu_driver_mode": mllab_gpu_driver_mode,
            "mllab_gpu_node_driver": mllab_gpu_node_driver,
            "mllab_gpu_smoke_replace_reason": mllab_gpu_smoke_replace_reason,
        }
