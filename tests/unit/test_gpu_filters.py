"""Unit tests of plugins/filter/mllab_gpu.py on `lspci -nn`, `nvidia-smi --query-gpu` (CSV) and
`nvidia-smi -L` samples (tests/unit/samples/gpu/, each file's `#~` header says where its format
comes from: captured on a real host, or reconstructed from nvidia-smi(1) and public output)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import samples  # tests/unit/samples (conftest.py puts tests/unit on the path)
import yaml

ROOT = Path(__file__).resolve().parents[2]

import mllab_gpu as g  # noqa: E402


def sample(name: str) -> str:
    return samples.sample("gpu", name)


def test_every_sample_names_its_source():
    assert samples.without_provenance("gpu") == []


def test_lspci_server_t4_only_nvidia():
    gpus = g.mllab_gpu_lspci(sample("lspci-t4-server.txt"))
    assert gpus == [
        {
            "slot": "af:00.0",
            "class": "0302",
            "device_id": "10de:1eb8",
            "name": "NVIDIA Corporation TU104GL [Tesla T4]",
            "reachable": True,
        }
    ]


def test_lspci_workstation_skips_audio_keeps_domains_flags_unreachable():
    gpus = g.mllab_gpu_lspci(sample("lspci-workstation.txt"))
    assert [(x["slot"], x["class"], x["reachable"]) for x in gpus] == [
        ("01:00.0", "0300", True),
        ("61f0:00:00.0", "0302", True),
        ("17:00.0", "0302", False),
    ]
    assert all(x["device_id"].startswith("10de:") for x in gpus)


def test_lspci_no_gpu_and_empty():
    assert g.mllab_gpu_lspci(sample("lspci-no-gpu.txt")) == []
    assert g.mllab_gpu_lspci("") == []  # a container without PCI devices


def test_lspci_without_numeric_ids_is_an_error():
    with pytest.raises(g.GpuOutputError, match="Run lspci with -nn"):
        g.mllab_gpu_lspci(sample("lspci-without-nn-malformed.txt"))


def test_smi_list_mig_and_plain():
    gpus = g.mllab_gpu_smi_list(sample("nvidia-smi-L-a100-mig.txt"))
    assert [(x["index"], x["name"]) for x in gpus] == [(0, "NVIDIA A100-SXM4-40GB"), (1, "NVIDIA A100-SXM4-40GB")]
    assert gpus[0]["uuid"] == "GPU-838f60d9-651f-9166-ea42-f9da674a6947"
    assert [(x["index"], x["profile"]) for x in gpus[0]["mig"]] == [(0, "1g.5gb"), (1, "1g.5gb")]
    assert gpus[1]["mig"] == []
    old = g.mllab_gpu_smi_list(sample("nvidia-smi-L-old-mig.txt"))
    assert old[0]["mig"] == [{"index": 0, "profile": "", "uuid": "MIG-GPU-838f60d9-651f-9166-ea42-f9da674a6947/1/0"}]


def test_smi_list_on_output_captured_from_a_real_h200():
    (gpu,) = g.mllab_gpu_smi_list(sample("nvidia-smi-L-h200-captured.txt"))
    assert gpu == {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-79dd2938-9268-585b-ac13-8f39457ab715", "mig": []}
    summary = g.mllab_gpu_summary("", smi("nvidia-smi-query-gpu-h200.txt"))
    assert summary["present"] and summary["driver"] == "loaded" and summary["names"] == ["NVIDIA H200"]
    assert summary["gpus"][0]["uuid"] == gpu["uuid"]  # the reconstructed query agrees with the capture


def test_smi_list_error_text_is_malformed():
    with pytest.raises(g.GpuOutputError, match=re.escape("expected 'GPU <n>: <name> (UUID: GPU-...)'")):
        g.mllab_gpu_smi_list(sample("nvidia-smi-failed-malformed.txt"))


def smi(name: str, rc: int = 0) -> dict:
    """A registered `nvidia-smi --query-gpu` result as the role hands it to the filter."""
    return {"rc": rc, "stdout": sample(name), "stderr": ""}


def test_summary_cases():
    none = g.mllab_gpu_summary(sample("lspci-no-gpu.txt"), None)
    assert none["present"] is False and none["count"] == 0 and none["driver"] == "absent"
    assert none["reason"].startswith("no NVIDIA GPU on this host")

    skipped = {"skipped": True, "changed": False}
    no_driver = g.mllab_gpu_summary(sample("lspci-t4-server.txt"), skipped, skipped)
    assert (no_driver["present"], no_driver["count"], no_driver["driver"]) == (True, 1, "absent")

    loaded = g.mllab_gpu_summary(
        sample("lspci-t4-server.txt"), smi("nvidia-smi-query-gpu-t4.txt"), smi("nvidia-smi-query-mig-t4.txt")
    )
    assert loaded["driver"] == "loaded" and loaded["names"] == ["Tesla T4"]
    assert loaded["reason"] == "1 NVIDIA GPU(s): Tesla T4"
    assert loaded["driver_version"] == "535.183.01" and loaded["mig"] is False
    assert loaded["gpus"][0]["memory_mib"] is None and loaded["gpus"][0]["mig"] is None  # [N/A], [N/A]

    failing = g.mllab_gpu_summary(
        sample("lspci-t4-server.txt"), {"rc": 9, "stdout": sample("nvidia-smi-failed-malformed.txt"), "stderr": ""}
    )
    assert failing["driver"] == "failing" and "nvidia-smi fails (rc 9)" in failing["reason"]

    workstation = g.mllab_gpu_summary(sample("lspci-workstation.txt"), {})
    assert workstation["unreachable"] == ["17:00.0"]

    # lspci empty (e.g. in a VM passthrough view); MIG read from the mig.mode.current query
    mig = g.mllab_gpu_summary("", smi("nvidia-smi-query-gpu-a100-warning.txt"), smi("nvidia-smi-query-mig-a100.txt"))
    assert mig["count"] == 2 and mig["mig"] is True
    assert [x["mig"] for x in mig["gpus"]] == [True, False]


def test_summary_reads_the_query_csv_and_skips_unknown_lines():
    """Regression (issue 12, item 7): the layer read `nvidia-smi -L`, and any line it did not
    know (a MIG compute-instance line, a warning) aborted it. It now reads
    `nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version --format=csv,noheader`
    (nvidia-smi(1): ", " between fields, MiB units, [N/A]) and keeps unknown lines aside."""
    summary = g.mllab_gpu_summary(
        "", smi("nvidia-smi-query-gpu-a100-warning.txt"), smi("nvidia-smi-query-mig-a100.txt")
    )
    assert summary["driver"] == "loaded" and summary["count"] == 2
    assert summary["ignored"] == ["WARNING: infoROM is corrupted at gpu 0000:07:00.0"]
    assert summary["gpus"][0] == {
        "index": 0,
        "name": "NVIDIA A100-SXM4-40GB",
        "uuid": "GPU-838f60d9-651f-9166-ea42-f9da674a6947",
        "memory_mib": 40960,
        "driver_version": "535.104.05",
        "mig": True,
    }
    h200 = g.mllab_gpu_summary("", smi("nvidia-smi-query-gpu-h200.txt"), smi("nvidia-smi-query-mig-h200.txt"))
    assert h200["names"] == ["NVIDIA H200"] and h200["gpus"][0]["memory_mib"] == 143771
    assert h200["driver_version"] == "580.159.04" and h200["mig"] is False
    # a driver too old for mig.mode.current: the MIG query fails, detection goes on
    old = g.mllab_gpu_summary(
        "",
        smi("nvidia-smi-query-gpu-h200.txt"),
        {"rc": 2, "stdout": 'Field "mig.mode.current" is not a valid field to query.', "stderr": ""},
    )
    assert old["driver"] == "loaded" and old["mig"] is False and old["gpus"][0]["mig"] is None
    # nothing but noise on stdout with rc 0: the driver answered without GPUs
    noise = g.mllab_gpu_summary("", {"rc": 0, "stdout": "No devices were found\n"})
    assert (noise["driver"], noise["count"], noise["ignored"]) == ("no-devices", 0, ["No devices were found"])


def test_smi_list_mig_compute_instance_line_does_not_abort():
    """Regression (issue 12, item 7): `MIG 1c.3g.20gb Device 0: ...` (a compute instance)
    aborted the -L parser, which check-gpu-host.sh still uses on captures."""
    (gpu,) = g.mllab_gpu_smi_list(sample("nvidia-smi-L-a100-mig-compute-instance.txt"))
    assert [(x["index"], x["profile"]) for x in gpu["mig"]] == [(0, "1c.3g.20gb"), (1, "1c.3g.20gb")]
    assert g.mllab_gpu_smi_list(sample("nvidia-smi-L-t4.txt") + "    some future detail line\n")[0]["mig"] == []


def test_smi_mig_modes():
    assert g.mllab_gpu_smi_mig(sample("nvidia-smi-query-mig-a100.txt")) == {0: True, 1: False}
    assert g.mllab_gpu_smi_mig(sample("nvidia-smi-query-mig-t4.txt")) == {0: None}
    assert g.mllab_gpu_smi_mig("WARNING: something\n") == {}


def test_detect_tasks_run_the_parsed_queries():
    """roles/gpu runs exactly the commands the parsers read (no `nvidia-smi -L` left)."""
    for name in ("detect.yml", "driver.yml"):
        tasks = yaml.safe_load((ROOT / "roles/gpu/tasks" / name).read_text(encoding="utf-8"))
        argvs = [t["ansible.builtin.command"].get("argv") for t in tasks if "ansible.builtin.command" in t]
        cmds = [t["ansible.builtin.command"].get("cmd", "") for t in tasks if "ansible.builtin.command" in t]
        assert g.SMI_QUERY_ARGV in argvs, name
        assert not any("nvidia-smi -L" in c for c in cmds), name
    detect = yaml.safe_load((ROOT / "roles/gpu/tasks/detect.yml").read_text(encoding="utf-8"))
    detect_argvs = [t["ansible.builtin.command"].get("argv") for t in detect if "ansible.builtin.command" in t]
    assert g.SMI_MIG_ARGV in detect_argvs


def test_device_plugin_config_defaults_and_time_slicing():
    assert g.mllab_gpu_device_plugin_config({}) == {"version": "v1", "flags": {"migStrategy": "none"}}
    cfg = g.mllab_gpu_device_plugin_config({"time_slicing_replicas": 4, "mig_strategy": "mixed"})
    assert cfg["flags"]["migStrategy"] == "mixed"
    assert cfg["sharing"]["timeSlicing"] == {
        "renameByDefault": False,
        "failRequestsGreaterThanOne": False,
        "resources": [{"name": "nvidia.com/gpu", "replicas": 4}],
    }


@pytest.mark.parametrize(
    ("sharing", "message"),
    [
        ({"mig_strategy": "all"}, "mig_strategy = 'all' is not one of none, single, mixed"),
        ({"time_slicing_replicas": 0}, "time_slicing_replicas = 0 must be an integer >= 1"),
        ({"time_slicing_replicas": "4"}, "time_slicing_replicas = '4'"),
        ({"time_slicing_replicas": True}, "time_slicing_replicas = True"),
    ],
)
def test_device_plugin_config_bad_values(sharing, message):
    with pytest.raises(g.GpuOutputError, match="gpu_sharing") as err:
        g.mllab_gpu_device_plugin_config(sharing)
    assert message in str(err.value)


def test_resource_name():
    assert g.mllab_gpu_resource_name({}) == "nvidia.com/gpu"
    assert g.mllab_gpu_resource_name({"rename_by_default": True}) == "nvidia.com/gpu"  # no time-slicing: no rename
    assert g.mllab_gpu_resource_name({"rename_by_default": True, "time_slicing_replicas": 2}) == "nvidia.com/gpu.shared"
    with pytest.raises(g.GpuOutputError, match="mig_strategy"):
        g.mllab_gpu_resource_name({"mig_strategy": "x"})


def test_operator_values():
    values = g.mllab_gpu_operator_values({"time_slicing_replicas": 2}, monitoring=True)
    cfg = values["devicePlugin"]["config"]
    assert (cfg["create"], cfg["name"], cfg["default"]) == (True, "mllab-device-plugin-config", "default")
    # the plugin reads the key as a YAML file
    assert yaml.safe_load(cfg["data"]["default"])["sharing"]["timeSlicing"]["resources"][0]["replicas"] == 2
    assert values["dcgmExporter"]["serviceMonitor"] == {
        "enabled": True,
        "additionalLabels": {"release": "kube-prom-stack"},
    }
    assert values["mig"] == {"strategy": "none"}
    off = g.mllab_gpu_operator_values({"mig_strategy": "single"}, monitoring=False)
    assert off["dcgmExporter"]["serviceMonitor"] == {"enabled": False}
    assert off["mig"] == {"strategy": "single"}
    json.dumps(values)  # plain data, writable with to_nice_yaml


@pytest.mark.parametrize("strategy", ["none", "single", "mixed"])
def test_operator_values_always_name_the_mig_strategy(strategy):
    """Regression (issue 12, item 13): with mig_strategy none the values left `mig` out, so the
    chart default won: `mig.strategy: single` (NVIDIA/gpu-operator@6f3d599d = v25.10.0, the
    MicroK8s default, deployments/gpu-operator/values.yaml), and the nvidia addon sets no MIG
    value itself (canonical/microk8s-core-addons@f6898115:addons/nvidia/enable). The chosen
    strategy is now always passed; ClusterPolicy accepts none|single|mixed
    (api/nvidia/v1/clusterpolicy_types.go)."""
    values = g.mllab_gpu_operator_values({"mig_strategy": strategy}, monitoring=False)
    assert values["mig"] == {"strategy": strategy}
    assert g.mllab_gpu_operator_values({}, monitoring=False)["mig"] == {"strategy": "none"}  # role default


def test_operator_argv():
    argv = g.mllab_gpu_operator_argv(
        "v25.10.0", "host", "/tmp/v.yaml", {"toolkit.enabled": "true"}, "/snap/bin/microk8s"
    )
    assert argv == [
        "/snap/bin/microk8s",
        "enable",
        "nvidia",
        "--gpu-operator-version",
        "v25.10.0",
        "--gpu-operator-driver",
        "host",
        "--gpu-operator-values",
        "/tmp/v.yaml",
        "--gpu-operator-set",
        "toolkit.enabled=true",
    ]
    for bad in ("none", "auto"):  # auto: the addon would decide on the wrong node (issue 12, defect 2)
        with pytest.raises(g.GpuOutputError, match=re.escape(f"gpu_driver = {bad!r}: the operator stack is given")):
            g.mllab_gpu_operator_argv("v25.10.0", bad)
    with pytest.raises(g.GpuOutputError, match=re.escape("gpu_operator_version = '25.10' must look like v25.10.0")):
        g.mllab_gpu_operator_argv("25.10", "host")


# --- defect 2 of issue 12: the driver mode is decided from every GPU node ------------------------
def _detected(name: str, smi_rc: int | None = 0) -> str:
    """The driver state mllab_gpu_summary detects on a T4 host from the real samples."""
    smi = {} if smi_rc is None else {"rc": smi_rc, "stdout": sample(name) if smi_rc == 0 else "", "stderr": ""}
    return g.mllab_gpu_summary(sample("lspci-t4-server.txt"), smi)["driver"]


def test_auto_uses_the_host_driver_only_when_every_gpu_node_has_one():
    loaded, absent = _detected("nvidia-smi-query-gpu-t4.txt"), _detected("", None)
    assert (loaded, absent) == ("loaded", "absent")
    nodes = [{"host": "gpu1", "driver": loaded}, {"host": "gpu2", "driver": loaded}]
    assert g.mllab_gpu_driver_mode("auto", nodes) == {"mode": "host", "problems": []}
    nodes = [{"host": "gpu1", "driver": absent}, {"host": "gpu2", "driver": absent}]
    assert g.mllab_gpu_driver_mode("auto", nodes) == {"mode": "operator", "problems": []}


def test_auto_refuses_a_mixed_or_broken_cluster_by_name():
    """The example inventory: GPUs on workers only. The addon's own auto would have looked at the
    first control-plane node (no GPU, so no driver) and put driver containers on workers whose
    host driver is loaded."""
    mixed = [{"host": "gpu1", "driver": "loaded"}, {"host": "gpu2", "driver": "absent"}]
    [msg] = g.mllab_gpu_driver_mode("auto", mixed)["problems"]
    assert "a host driver on gpu1 but none on gpu2" in msg and "gpu_driver: host" in msg
    failing = [{"host": "gpu1", "driver": _detected("", 9)}]
    [msg] = g.mllab_gpu_driver_mode("auto", failing)["problems"]
    assert "cannot decide for gpu1: nvidia-smi fails there" in msg
    assert g.mllab_gpu_driver_mode("operator", mixed) == {"mode": "operator", "problems": []}
    assert "must be auto, host or operator" in g.mllab_gpu_driver_mode("cuda", mixed)["problems"][0]


def test_allocatable_from_node_list():
    nodes = (ROOT / "tests/unit/samples/microk8s/nodes-ha.txt").read_text(encoding="utf-8")
    nodes = "\n".join(ln for ln in nodes.splitlines() if not ln.startswith("#~"))
    assert g.mllab_gpu_allocatable(nodes) == {"lab-cp1": 0, "lab-cp2": 0, "lab-cp3": 0, "lab-gpu1": 4}
    with pytest.raises(g.GpuOutputError, match="is not an integer"):
        g.mllab_gpu_allocatable(
            {"items": [{"metadata": {"name": "n"}, "status": {"allocatable": {"nvidia.com/gpu": "x"}}}]}
        )
    with pytest.raises(g.GpuOutputError, match="not JSON"):
        g.mllab_gpu_allocatable("error: You must be logged in to the server (Unauthorized)")


# --- defect 3 of issue 12: the operator's Helm release must be deployed ---------------------------
def releases(name: str) -> list:
    """A helm list sample, parsed by the cluster layer's filter (the one the gpu role uses)."""
    import mllab_microk8s as mk

    return mk.mllab_microk8s_helm_releases(sample(name))


@pytest.mark.parametrize(
    ("name", "version", "changed", "action", "fragment"),
    [
        ("helm-list-empty.json", "v25.10.0", False, "enable", "no gpu-operator release"),
        ("helm-list-deployed.json", "v25.10.0", False, "none", "deployed from gpu-operator-v25.10.0"),
        ("helm-list-deployed.json", "v25.10.0", True, "upgrade", "the values changed"),
        ("helm-list-deployed.json", "v26.3.0", False, "upgrade", "gpu-operator-v25.10.0 -> gpu-operator-v26.3.0"),
        ("helm-list-failed-upgrade.json", "v26.3.0", False, "upgrade", "revision 3 failed"),
        ("helm-list-pending-upgrade.json", "v26.3.0", False, "rollback", "stuck in pending-upgrade"),
        ("helm-list-failed-install.json", "v25.10.0", False, "reinstall", "the first install is failed"),
        ("helm-list-pending-install.json", "v25.10.0", False, "reinstall", "is pending-install"),
        ("helm-list-uninstalling.json", "v25.10.0", False, "wait", "being uninstalled"),
    ],
)
def test_release_plan_repairs_what_the_addon_leaves(name, version, changed, action, fragment):
    plan = g.mllab_gpu_release_plan(releases(name), version, changed)
    assert plan["action"] == action and fragment in plan["reason"]


def test_a_failed_release_is_never_taken_for_installed():
    """Today's check (a release named gpu-operator exists) passed on a failed first install."""
    failed = json.loads(sample("helm-list-failed-install.json"))
    assert [r["name"] for r in failed] == ["gpu-operator"]
    assert g.mllab_gpu_release_plan(releases("helm-list-failed-install.json"), "v25.10.0")["action"] != "none"


@pytest.mark.parametrize(
    "text",
    [
        "Error: Kubernetes cluster unreachable",
        '{"name": "gpu-operator"}',
        '[{"name": "gpu-operator", "revision": "x", "status": "deployed"}]',
    ],
)
def test_release_plan_names_bad_helm_output(text):
    """The parse (the cluster layer's helm filter) or the plan names what is wrong."""
    import mllab_microk8s as mk

    with pytest.raises((g.GpuOutputError, mk.MicroK8sOutputError), match="helm list"):
        g.mllab_gpu_release_plan(mk.mllab_microk8s_helm_releases(text), "v25.10.0")
    with pytest.raises(g.GpuOutputError, match="parsed"):
        g.mllab_gpu_release_plan(text, "v25.10.0")
