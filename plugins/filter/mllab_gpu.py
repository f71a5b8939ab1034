"""GPU decisions for the gpu layer (roles/gpu): detect NVIDIA GPUs from `lspci -nn` and
`nvidia-smi -L`, and build the NVIDIA device plugin / GPU operator settings. Pure
functions, used as Ansible filters and unit tested in tests/unit/test_gpu_filters.py on
output samples under tests/unit/samples/gpu/.

Facts used (shared/reference/FACTS.md §3, with their upstream sources):
- lspci -nn: `<slot> <class name> [<class>]: <vendor> <device> [<vendor id>:<device id>]`;
  NVIDIA is vendor 10de; GPUs are class 0300 (VGA) or 0302 (3D controller); other 10de
  functions (HDMI audio 0403, USB, bridges) are not GPUs; `(rev ff)` = device unreachable.
- nvidia-smi -L: `GPU <i>: <name> (UUID: GPU-...)`, MIG lines indented below their GPU.
- Device plugin config v1 (NVIDIA/k8s-device-plugin api/config/v1): flags.migStrategy
  none|single|mixed; sharing.timeSlicing.resources[{name, replicas}].
- GPU operator chart values: devicePlugin.config.{create,name,default,data},
  mig.strategy, dcgmExporter.serviceMonitor.{enabled,additionalLabels}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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
_SMI_MIG = re.compile(
    r"^\s+MIG\s+(?:(?P<profile>\d+g\.\d+gb(?:\+me)?)\s+)?Device\s+(?P<index>\d+):\s+\(UUID: (?P<uuid>MIG-[^)]+)\)\s*$"
)


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
    """Parse `nvidia-smi -L` -> [{index, name, uuid, mig: [{index, profile, uuid}]}]."""
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
        else:
            raise GpuOutputError(
                f"nvidia-smi -L line {lineno}: expected 'GPU <n>: <name> (UUID: GPU-...)' or an indented MIG line, "
                f"got {line!r}"
            )
    return gpus


def mllab_gpu_summary(lspci_output: Any, smi: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the node has: {present, count, names, driver, reachable, reason}.

    smi: the registered result of `nvidia-smi -L` ({rc, stdout, stderr}), or None/{} when
    nvidia-smi is not installed. A driver is "loaded" when nvidia-smi answers with GPUs.
    """
    pci = mllab_gpu_lspci(lspci_output)
    smi = smi or {}
    driver = "absent"
    smi_gpus: list[dict[str, Any]] = []
    if smi.get("rc") is not None and not smi.get("skipped"):
        if int(smi["rc"]) == 0:
            smi_gpus = mllab_gpu_smi_list(smi.get("stdout", ""))
            driver = "loaded" if smi_gpus else "no-devices"
        else:
            driver = "failing"
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
    return {
        "present": count > 0,
        "count": count,
        "names": [g["name"] for g in (smi_gpus or pci)],
        "driver": driver,
        "unreachable": unreachable,
        "mig": any(g["mig"] for g in smi_gpus),
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
    if mig != "none":
        values["mig"] = {"strategy": mig}
    return values


def mllab_gpu_operator_argv(
    version: str, driver: str, values_file: str = "", extra_set: Mapping[str, Any] | None = None
) -> list[str]:
    """argv of `microk8s enable nvidia` with a pinned operator version and driver mode."""
    if driver not in ("auto", "host", "operator"):
        raise GpuOutputError(f"gpu_driver = {driver!r} must be auto, host or operator for the operator stack")
    if not re.match(r"^v\d+\.\d+\.\d+$", str(version)):
        raise GpuOutputError(f"gpu_operator_version = {version!r} must look like v25.10.0")
    argv = ["microk8s", "enable", "nvidia", "--gpu-operator-version", version, "--gpu-operator-driver", driver]
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


class FilterModule:
    def filters(self):
        return {
            "mllab_gpu_lspci": mllab_gpu_lspci,
            "mllab_gpu_smi_list": mllab_gpu_smi_list,
            "mllab_gpu_summary": mllab_gpu_summary,
            "mllab_gpu_device_plugin_config": mllab_gpu_device_plugin_config,
            "mllab_gpu_operator_values": mllab_gpu_operator_values,
            "mllab_gpu_resource_name": mllab_gpu_resource_name,
            "mllab_gpu_operator_argv": mllab_gpu_operator_argv,
            "mllab_gpu_allocatable": mllab_gpu_allocatable,
        }
