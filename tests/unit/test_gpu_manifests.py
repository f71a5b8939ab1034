"""L1 for the gpu role: render its Kubernetes objects and operator values with Ansible
itself (roles/gpu/tasks/manifests.yml, the same task file the role runs) for a matrix of
settings, then validate every object against the Kubernetes 1.36 schemas (MicroK8s 1.36)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.36"

MATRIX = {
    "defaults": {},
    "time-slicing-mixed": {
        "gpu_sharing": {"mig_strategy": "mixed", "time_slicing_replicas": 4, "rename_by_default": True},
        "gpu_device_plugin_namespace": "gpu-plugin",
        "gpu_smoke_namespace": "lab",
        "gpu_monitoring": True,
    },
    "no-monitoring": {"gpu_monitoring": False, "gpu_node_label": "example.com/accelerator"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """One ansible-playbook run that renders every matrix entry to <out>/<name>.json."""
    out = tmp_path_factory.mktemp("gpu-render")
    plays = []
    for name, overrides in MATRIX.items():
        plays.append(
            {
                "name": f"render {name}",
                "hosts": "localhost",
                "gather_facts": False,
                "vars": overrides,
                "tasks": [
                    {"ansible.builtin.include_role": {"name": "gpu", "tasks_from": "manifests.yml"}},
                    {
                        "ansible.builtin.copy": {
                            "dest": str(out / f"{name}.json"),
                            "mode": "0644",
                            "content": "{{ {'plugin': gpu_device_plugin_manifests, 'smoke': gpu_smoke_manifests,"
                            " 'values': gpu_operator_values} | to_json }}",
                        }
                    },
                ],
            }
        )
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    ansible = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [
            ansible,
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {name: json.loads((out / f"{name}.json").read_text()) for name in MATRIX}


@pytest.mark.parametrize("name", list(MATRIX))
def test_objects_validate_against_kubernetes_schema(rendered, name):
    import kubernetes_validate

    objects = rendered[name]["plugin"] + rendered[name]["smoke"]
    assert [o["kind"] for o in objects] == ["Namespace", "RuntimeClass", "ConfigMap", "DaemonSet", "Job"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_device_plugin_reads_the_rendered_config(rendered):
    objs = {o["kind"]: o for o in rendered["time-slicing-mixed"]["plugin"]}
    config = yaml.safe_load(objs["ConfigMap"]["data"]["config.yaml"])
    assert config["version"] == "v1"
    assert config["flags"]["migStrategy"] == "mixed"
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert config["sharing"]["timeSlicing"]["renameByDefault"] is True
    ds = objs["DaemonSet"]
    assert ds["metadata"]["namespace"] == "gpu-plugin" == objs["ConfigMap"]["metadata"]["namespace"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == objs["RuntimeClass"]["metadata"]["name"] == objs["RuntimeClass"]["handler"]
    mount = next(v for v in pod["volumes"] if v["name"] == "device-plugin")
    assert mount["hostPath"]["path"] == "/var/snap/microk8s/common/var/lib/kubelet/device-plugins"
    assert pod["containers"][0]["image"].startswith("nvcr.io/nvidia/k8s-device-plugin:v")
    # a different sharing config gives a different pod template (pods restart to read it)
    default_ds = next(o for o in rendered["defaults"]["plugin"] if o["kind"] == "DaemonSet")
    key = "mllab.io/config-hash"
    assert (
        ds["spec"]["template"]["metadata"]["annotations"][key]
        != (default_ds["spec"]["template"]["metadata"]["annotations"][key])
    )


def test_default_config_has_no_sharing(rendered):
    cm = next(o for o in rendered["defaults"]["plugin"] if o["kind"] == "ConfigMap")
    assert yaml.safe_load(cm["data"]["config.yaml"]) == {"version": "v1", "flags": {"migStrategy": "none"}}


def test_smoke_job_asks_for_one_gpu_under_its_sharing_name(rendered):
    job = rendered["time-slicing-mixed"]["smoke"][0]
    assert job["metadata"]["namespace"] == "lab"
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["nvidia-smi"]
    # time-slicing with rename_by_default: the renamed resource
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu.shared": 1}
    assert pod["restartPolicy"] == "Never"
    # defaults: no sharing, the plain resource
    plain = rendered["defaults"]["smoke"][0]["spec"]["template"]["spec"]["containers"][0]
    assert plain["resources"]["limits"] == {"nvidia.com/gpu": 1}
    custom = rendered["no-monitoring"]["smoke"][0]["spec"]["template"]["spec"]
    assert custom["nodeSelector"] == {"example.com/accelerator": "true"}


def test_operator_values_follow_monitoring(rendered):
    on = rendered["time-slicing-mixed"]["values"]
    assert on["dcgmExporter"]["serviceMonitor"] == {"enabled": True, "additionalLabels": {"release": "kube-prom-stack"}}
    assert on["mig"] == {"strategy": "mixed"}
    # none is passed too: left out, the chart's default `single` would win (issue 12, item 13)
    assert rendered["defaults"]["values"]["mig"] == {"strategy": "none"}
    off = rendered["no-monitoring"]["values"]
    assert off["dcgmExporter"]["serviceMonitor"] == {"enabled": False}
    # defaults: monitoring follows the observability addon, which mllab_defaults enables
    assert rendered["defaults"]["values"]["dcgmExporter"]["serviceMonitor"]["enabled"] is True


def test_a_smoke_job_from_another_spec_is_replaced(rendered):
    """Issue 12, defect 10: a Job's pod template is immutable, so a rerun after gpu_smoke_image or
    the sharing settings changed must delete the Job first; the same spec is kept, a failed one
    runs again. The Jobs are the role's own renders (two settings of the matrix)."""
    import mllab_gpu as g

    plain = g.mllab_gpu_smoke_job(rendered["defaults"]["smoke"][0])
    shared = g.mllab_gpu_smoke_job(rendered["time-slicing-mixed"]["smoke"][0])
    import kubernetes_validate

    kubernetes_validate.validate(plain, K8S_VERSION, strict=True)
    digest = plain["metadata"]["annotations"][g.SPEC_ANNOTATION]
    assert len(digest) == 64 and digest != shared["metadata"]["annotations"][g.SPEC_ANNOTATION]
    in_cluster = {**plain, "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}}
    assert g.mllab_gpu_smoke_replace_reason([], plain) == ""
    assert g.mllab_gpu_smoke_replace_reason([in_cluster], plain) == ""
    assert "immutable" in g.mllab_gpu_smoke_replace_reason([in_cluster], shared)
    before = rendered["defaults"]["smoke"][0]  # a Job made before the annotation existed
    assert "immutable" in g.mllab_gpu_smoke_replace_reason([before], plain)
    failed = {**plain, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    assert "failed" in g.mllab_gpu_smoke_replace_reason([failed], plain)
