"""The labs layer rendered offline (playbooks/labs.yml with platform_common_render_dir) for a
few settings, then checked: the Kubernetes 1.34 OpenAPI schema (kubernetes-validate) of every
object and of JupyterLab's Deployment with the labs role's fields merged in, least privilege
(the learner is bound only to the namespaced lab-runner Role, which grants what the k8s
backend needs and no Secrets), the mllab-dist ConfigMap (a real wheel with its ranges, the
constraints file's exact pins beside it, every guide, under 1 MiB), /etc/profile.d/mllab.sh, and
JupyterLab's start hook run for real under `bash -eu` (guides copied without overwriting edits, the
wheel installed with pip at the constraints' pins, offline).
Bad settings and an oversized ConfigMap stop the run before anything is rendered."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness  # tests/unit/platform (conftest.py)
import pytest
import yaml

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "labs.yml"
WORK = Path(tempfile.mkdtemp(prefix="mllab-labs-render-"))
HOOK_HOME = WORK / "hook-home"  # the "custom" case's JupyterLab paths: the hook test runs there

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "custom": {
        "platform_common_namespaces": {
            "training": "lab-train",
            "serving": "lab-serve",
            "labs": "lab-notebooks",
            "mlflow": "lab-mlflow",
            "kserve": "kserve",
            "cert_manager": "cert-manager",
            "monitoring": "observability",
        },
        "labs_learner_account": "student",
        "labs_gpus": 2,
        "mllab_image": "registry.example.org/ml/mllab:0.1.0",
        "platform_common_ingress_host": "lab.example.org",
        "platform_common_ingress_tls_secret": "lab-tls",
        "labs_jupyter_extras": ["k8s"],
        "labs_pip_args": ["--no-index"],  # the hook test below must not need the network
        "labs_jupyter_python_base": str(HOOK_HOME / "work/.mllab/python"),
        "labs_jupyter_guides_dir": str(HOOK_HOME / "work/labs"),
        "monitoring_accuracy_min": 0.9,  # an instructor's stricter alert: lab 7's check must use it too
        "monitoring_latency_p95_max_seconds": 0.25,
    },
    "jupyter-off": {"labs_jupyter": False, "labs_host_tracking_uri": "http://10.0.0.5:5000/mlflow"},
}
BIG_GUIDES = WORK / "big-guides"
BAD_CASES: dict[str, dict[str, Any]] = {
    "bad": {
        "labs_venv": "opt/mllab",
        "labs_learner_account": "Learner_1",
        "labs_pip_extras": "labs,k8s",
        "mllab_image": "mllab.local/mllab",
        "labs_gpus": "many",
    },
    "too-big": {"labs_guides_source_dir": str(BIG_GUIDES)},
}


class Run:
    def __init__(self, name: str, settings: dict[str, Any], proc: subprocess.CompletedProcess) -> None:
        self.name, self.settings, self.rc, self.output = name, settings, proc.returncode, proc.stdout
        self.render = WORK / name / "render"
        self.artifacts = WORK / name / "artifacts"
        labs = self.render / "labs.yaml"
        self.objects = [d for d in yaml.safe_load_all(labs.read_text()) if d] if labs.is_file() else []
        patch = self.render / "labs-jupyter-patch.yaml"
        self.patch = yaml.safe_load(patch.read_text()) if patch.is_file() else None

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        for o in self.objects:
            md = o["metadata"]
            if o["kind"] == kind and name in (None, md["name"]) and namespace in (None, md.get("namespace")):
                return o
        raise KeyError(f"{kind} {namespace}/{name} not rendered")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


def _run(name: str, settings: dict[str, Any]) -> Run:
    base = WORK / name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    extra = dict(settings, platform_common_render_dir=str(base / "render"))
    (base / "vars.json").write_text(json.dumps(extra))
    env = dict(
        os.environ,
        MLLAB_ARTIFACTS_DIR=str(base / "artifacts"),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_LOCAL_TEMP=str(base / "tmp"),
    )
    proc = subprocess.run(
        [str(harness.ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", f"@{base / 'vars.json'}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    return Run(name, settings, proc)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    shutil.copytree(ROOT / "labs", BIG_GUIDES, dirs_exist_ok=True)
    (BIG_GUIDES / "09-big").mkdir(exist_ok=True)
    (BIG_GUIDES / "09-big" / "big.ipynb").write_text('{"cells": [], "x": "' + "a" * (1024 * 1024) + '"}')
    jobs = CASES | BAD_CASES
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {n: pool.submit(_run, n, s) for n, s in jobs.items()}
        out = {n: f.result() for n, f in futures.items()}
    yield out
    shutil.rmtree(WORK, ignore_errors=True)  # rendered tokens' Secrets have no data, but be tidy


@pytest.fixture(scope="module")
def good(runs) -> dict[str, Run]:
    failed = {n: runs[n].output[-3000:] for n in CASES if runs[n].rc != 0}
    assert not failed, f"render failed: {failed}"
    return {n: runs[n] for n in CASES}


# --- objects and schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_files_are_private_and_complete(good, case):
    run = good[case]
    kinds = sorted(o["kind"] for o in run.objects)
    expected = ["RoleBinding"] * 3 + ["Secret", "ServiceAccount"]
    if harness.flag(run.settings.get("labs_jupyter", True)):
        expected.append("ConfigMap")
    assert kinds == sorted(expected)
    for path in run.render.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize("case", list(CASES))
def test_objects_match_the_kubernetes_openapi_schema(good, case):
    import kubernetes_validate

    for obj in good[case].objects:
        try:
            kubernetes_validate.validate(obj, harness.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
        labels = obj["metadata"]["labels"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"} <= set(labels)


def _merge(base: Any, patch: Any, key: str = "") -> Any:
    """Server-side apply's merge for the lists the patch touches (keyed by name / mountPath)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        field = "mountPath" if key == "volumeMounts" else "name"
        out = [copy.deepcopy(x) for x in base]
        index = {x[field]: i for i, x in enumerate(out)}
        for item in patch:
            if item[field] in index:
                out[index[item[field]]] = _merge(out[index[item[field]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def test_jupyterlab_with_the_labs_fields_matches_the_schema_and_keeps_the_platforms(good):
    """The partial Deployment the labs role applies server-side, merged into the Deployment the
    jupyter role renders (platform render, defaults), is a valid Deployment that still has every
    volume, mount and variable of the jupyter role, plus mllab-dist and its start hook."""
    import kubernetes_validate

    platform = harness.render_matrix()["defaults"]
    assert platform.rc == 0, platform.output[-2000:]
    base = harness.strip_private(platform.get("Deployment", "jupyter", "ml-labs"))
    patch = good["defaults"].patch
    assert patch["metadata"] == {"name": "jupyter", "namespace": "ml-labs"}
    merged = _merge(base, patch)
    kubernetes_validate.validate(merged, harness.KUBERNETES_VERSION, strict=True)
    pod = merged["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    before = base["spec"]["template"]["spec"]
    assert {v["name"] for v in before["volumes"]} < {v["name"] for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert {m["mountPath"] for m in before["containers"][0]["volumeMounts"]} < set(mounts)
    hook = mounts["/usr/local/bin/before-notebook.d/40-mllab.sh"]
    assert hook["subPath"] == "before-notebook.sh" and hook["readOnly"] is True
    assert mounts["/opt/mllab-dist"]["readOnly"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "jupyter-token"
    assert env["MLLAB_IMAGE"]["value"] == "mllab.local/mllab:0.1.0"
    assert env["MLLAB_JOB_TRACKING_URI"]["value"] == env["MLFLOW_TRACKING_URI"]["value"]
    assert env["MLLAB_ALERT_ACCURACY_MIN"]["value"] == "0.85"  # monitoring_accuracy_min, for lab 7's check
    custom_env = {
        e["name"]: e["value"] for e in good["custom"].patch["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (
        custom_env["MLLAB_ALERT_ACCURACY_MIN"] == "0.9" and custom_env["MLLAB_ALERT_LATENCY_P95_MAX_SECONDS"] == "0.25"
    )
    checksum = merged["spec"]["template"]["metadata"]["annotations"]["mllab.io/dist-checksum"]
    assert checksum == good["defaults"].get("ConfigMap")["metadata"]["annotations"]["mllab.io/checksum"]
    # The patch names only what the labs role owns (server-side apply would take the rest).
    assert set(patch["spec"]) == {"template"} and set(patch["spec"]["template"]["spec"]) == {"containers", "volumes"}
    assert set(patch["spec"]["template"]["spec"]["containers"][0]) == {"name", "env", "volumeMounts"}


# --- least privilege ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_learner_is_bound_only_to_the_namespaced_lab_runner_role(good, case):
    run = good[case]
    ns = run.settings.get(
        "platform_common_namespaces", {"training": "ml-training", "serving": "ml-serving", "labs": "ml-labs"}
    )
    account = run.settings.get("labs_learner_account", "mllab-learner")
    assert not [o for o in run.objects if o["kind"] in ("Role", "ClusterRole", "ClusterRoleBinding")]
    sa = run.get("ServiceAccount", account, ns["labs"])
    assert sa["automountServiceAccountToken"] is False
    bindings = run.of_kind("RoleBinding")
    assert {b["metadata"]["namespace"] for b in bindings} == {ns["training"], ns["serving"], ns["labs"]}
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mllab-lab-runner"}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": ns["labs"]}]
    token = run.get("Secret", f"{account}-token", ns["labs"])
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": account}
    assert "data" not in token and "stringData" not in token


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


def test_the_lab_runner_role_grants_what_the_k8s_backend_needs_and_no_secrets():
    """The Role the learner (and JupyterLab) is bound to, as the training role renders it: the k8s
    backend's Jobs, fetch pods, headless Services, logs, model-server Deployments; no Secrets,
    no wildcard, no escalation (RBAC objects, pods/exec, impersonation)."""
    platform = harness.render_matrix()["defaults"]
    assert platform.rc == 0, platform.output[-2000:]
    for ns in ("ml-training", "ml-serving", "ml-labs"):
        grants = _grants(platform.get("Role", "mllab-lab-runner", ns))
        for verb in ("create", "delete", "get", "list", "watch"):
            assert ("batch", "jobs", verb) in grants
            assert ("", "pods", verb) in grants and ("", "services", verb) in grants
            assert ("apps", "deployments", verb) in grants
        assert {
            ("batch", "jobs/status", "get"),
            ("", "pods/log", "get"),
            ("apps", "deployments/status", "get"),
        } <= grants
        assert ("serving.kserve.io", "inferenceservices", "create") in grants
        # lab 7: its server's ServiceMonitor and the learner's drift rule, for the cluster's Prometheus
        for kind in ("servicemonitors", "prometheusrules"):
            assert {("monitoring.coreos.com", kind, v) for v in ("create", "delete", "get", "list")} <= grants
            assert ("monitoring.coreos.com", kind, "update") not in grants
        resources = {r for _, r, _ in grants}
        verbs = {v for _, _, v in grants}
        assert not resources & {
            "secrets",
            "*",
            "pods/exec",
            "pods/attach",
            "serviceaccounts/token",
            "roles",
            "rolebindings",
        }
        assert not verbs & {"*", "escalate", "bind", "impersonate"}
        assert ("", "pods", "patch") not in grants and ("", "services", "update") not in grants


# --- mllab-dist -----------------------------------------------------------------------------------


def test_mllab_dist_carries_the_wheel_with_its_pins_and_every_guide(good):
    cm = good["defaults"].get("ConfigMap", "mllab-dist", "ml-labs")
    (wheel_name,) = cm["binaryData"]
    assert wheel_name == cm["metadata"]["annotations"]["mllab.io/wheel"]
    wheel = base64.b64decode(cm["binaryData"][wheel_name])
    assert wheel == (good["defaults"].artifacts / "labs" / wheel_name).read_bytes()
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "mllab/__init__.py" in names and "mllab/backends/k8s.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("build/", "tests/"))]
    assert 'Requires-Dist: kubernetes<37,>=36.0.3; extra == "k8s"' in meta
    assert 'Requires-Dist: torch<3,>=2.15.0; extra == "labs"' in meta
    # the exact pins travel beside the wheel: the start hook installs with -c constraints.txt
    constraints = (ROOT / "requirements/constraints.txt").read_text()
    assert cm["data"]["constraints.txt"] == constraints
    assert (good["defaults"].artifacts / "labs" / "constraints.txt").read_text() == constraints
    guides = dict(line.split("\t") for line in cm["data"]["guides.tsv"].splitlines())
    expected = sorted(
        str(p.relative_to(ROOT / "labs")) for p in (ROOT / "labs").rglob("*") if p.suffix in (".md", ".ipynb")
    )
    assert sorted(guides.values()) == expected
    for key, rel in guides.items():
        assert cm["data"][key] == (ROOT / "labs" / rel).read_text(), rel
    size = sum(len(v.encode()) for v in cm["data"].values()) + len(wheel)
    assert size < 1024 * 1024


def test_the_wheel_is_reproducible(good):
    """Same sources, same bytes (SOURCE_DATE_EPOCH): a re-run changes neither the ConfigMap nor
    JupyterLab's pod template, so it restarts nothing."""
    a, b = (good[n].get("ConfigMap")["binaryData"] for n in ("defaults", "custom"))
    assert a == b


def test_oversized_guides_stop_the_run_before_anything_is_rendered(runs):
    run = runs["too-big"]
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert "ConfigMap mllab-dist would hold" in out and "over the 1048576 bytes (1 MiB)" in out
    assert not run.render.exists()


def test_bad_settings_are_named_before_anything_is_built(runs):
    run = runs["bad"]
    assert run.rc != 0
    out = " ".join(run.output.split())
    assert "Labs checks found 5 problem(s); nothing was applied" in out
    assert "labs_gpus = many must be auto or a number of GPUs" in out
    assert "labs_venv = 'opt/mllab' must be an absolute path" in out
    assert "labs_learner_account = 'Learner_1' is not a valid Kubernetes name" in out
    assert "labs_pip_extras = 'labs,k8s' must be a list of extras" in out
    assert "mllab_image = 'mllab.local/mllab' has no tag" in out
    assert not run.render.exists() and not (run.artifacts / "labs").exists()


# --- the control host's profile --------------------------------------------------------------------


def _profile(run: Run, home: str = "/nonexistent") -> dict[str, str]:
    out = subprocess.run(
        ["env", "-i", f"HOME={home}", "bash", "-euc", f". {run.render / 'labs-profile.sh'} && env -0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in out.stdout.split("\0") if "=" in line)


def test_profile_sets_up_the_k8s_backend(good, tmp_path):
    """Issue 12: the k8s backend only for a user with a kubeconfig (the others keep the local
    one), the guides for `mllab start N`, and MLLAB_GPUS (auto in render-only mode: no nodes)."""
    env = _profile(good["defaults"])
    assert "MLLAB_BACKEND" not in env  # no kubeconfig in this HOME: the local backend
    assert env["MLLAB_GUIDES"] == "/opt/mllab/guides" and env["MLLAB_GPUS"] == "auto"
    assert env["MLLAB_IMAGE"] == "mllab.local/mllab:0.1.0"
    assert env["MLLAB_TRAINING_NAMESPACE"] == "ml-training" and env["MLLAB_SERVING_NAMESPACE"] == "ml-serving"
    assert env["MLLAB_JOB_TRACKING_URI"] == "http://mlflow.mlflow.svc.cluster.local:5000/mlflow"
    assert "KUBECONFIG" not in env  # no learner kubeconfig in this HOME
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "mllab-learner").write_text("{}")
    with_kubeconfig = _profile(good["defaults"], str(tmp_path))
    assert with_kubeconfig["KUBECONFIG"] == f"{tmp_path}/.kube/mllab-learner"
    assert with_kubeconfig["MLLAB_BACKEND"] == "k8s"
    custom = _profile(good["custom"])
    assert custom["MLLAB_IMAGE"] == "registry.example.org/ml/mllab:0.1.0" and custom["MLLAB_GPUS"] == "2"
    assert custom["MLLAB_TRAINING_NAMESPACE"] == "lab-train"
    assert custom["MLLAB_JOB_TRACKING_URI"] == "http://mlflow.lab-mlflow.svc.cluster.local:5000/mlflow"
    assert custom["MLFLOW_TRACKING_URI"] == "https://lab.example.org/mlflow"
    # Issue 15: the monitoring layer's thresholds reach lab 7's check (the defaults, or the inventory's).
    assert (env["MLLAB_ALERT_ACCURACY_MIN"], env["MLLAB_ALERT_LATENCY_P95_MAX_SECONDS"]) == ("0.85", "1.0")
    assert (custom["MLLAB_ALERT_ACCURACY_MIN"], custom["MLLAB_ALERT_LATENCY_P95_MAX_SECONDS"]) == ("0.9", "0.25")
    assert _profile(good["jupyter-off"])["MLFLOW_TRACKING_URI"] == "http://10.0.0.5:5000/mlflow"


# --- JupyterLab's start hook, for real -------------------------------------------------------------


def _hook(dist: Path, python_dir: Path) -> subprocess.CompletedProcess:
    """Source the hook the way the image's start script does (bash -eu), then report what a kernel sees."""
    script = (
        f". {dist / 'before-notebook.sh'}\n"
        "echo PATH_OK=$(command -v mllab || true)\n"
        "exec python3 -c \"import os, site, sys; print('BASE=' + os.environ['PYTHONUSERBASE'])\"\n"
    )
    env = {"PATH": f"{python_dir}:/usr/bin:/bin", "HOME": str(HOOK_HOME), "MLLAB_DIST_DIR": str(dist)}
    return subprocess.run(["bash", "-euc", script], capture_output=True, text=True, env=env, timeout=120)


def _venv_python(tmp_path: Path) -> Path:
    """A folder whose python3 is this repository's venv (a wrapper: a symlink would lose the venv)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python3").write_text(f'#!/bin/sh\nexec {ROOT / ".venv" / "bin" / "python"} "$@"\n')
    (folder / "python3").chmod(0o755)
    return folder


def _wait_installed(base: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (base / "installed").is_file():
        log = (base / "install.log").read_text() if (base / "install.log").is_file() else ""
        assert "install FAILED" not in log, log[-2000:]
        assert time.monotonic() < deadline, f"the hook's pip install did not finish: {log[-2000:]}"
        time.sleep(1)


def test_start_hook_copies_guides_keeps_edits_and_installs_the_wheel(good, tmp_path):
    run = good["custom"]
    cm = run.get("ConfigMap")
    dist = tmp_path / "dist"
    dist.mkdir()
    for key, text in cm["data"].items():
        (dist / key).write_text(text)
    for key, b64 in cm["binaryData"].items():
        (dist / key).write_bytes(base64.b64decode(b64))
    # python3 = this repository's venv: a venv, so the hook takes its --prefix/PYTHONPATH path,
    # and every pin of the k8s extra is already there (labs_pip_args: --no-index, no network).
    python_dir = _venv_python(tmp_path)
    shutil.rmtree(HOOK_HOME, ignore_errors=True)
    base, guides = HOOK_HOME / "work/.mllab/python", HOOK_HOME / "work/labs"

    first = _hook(dist, python_dir)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "installing mllab-0.1.0-py3-none-any.whl" in first.stdout
    assert (guides / "02-training-job" / "README.md").read_text() == (
        ROOT / "labs/02-training-job/README.md"
    ).read_text()
    assert (guides / "06-serving" / "client.ipynb").is_file()
    _wait_installed(base)
    site = next(base.glob("lib/python3*/site-packages"))
    assert (site / "mllab" / "__init__.py").is_file()
    check = subprocess.run(
        [str(python_dir / "python3"), "-c", "import mllab, sys; print(mllab.__file__)"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert check.stdout.startswith(str(site)), check.stderr

    # A learner edits one guide; a new version of two guides ships (one edited, one not).
    edited, untouched = guides / "01-gpu" / "README.md", guides / "03-tracking-registry" / "README.md"
    edited.write_text("my notes\n")
    keys = {rel: key for key, rel in (line.split("\t") for line in cm["data"]["guides.tsv"].splitlines())}
    (dist / keys["01-gpu/README.md"]).write_text("guide v2\n")
    (dist / keys["03-tracking-registry/README.md"]).write_text("guide v2\n")
    second = _hook(dist, python_dir)
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stdout, "the same wheel was installed again"
    assert edited.read_text() == "my notes\n" and (guides / "01-gpu" / "README.md.new").read_text() == "guide v2\n"
    assert untouched.read_text() == "guide v2\n" and not Path(f"{untouched}.new").exists()
    assert f"BASE={base}" in second.stdout
    # The image's own Python (here: this repository's venv and its editable mllab) is untouched.
    own = subprocess.run(
        [str(python_dir / "python3"), "-c", "import mllab; print(mllab.__file__)"], capture_output=True, text=True
    )
    assert own.stdout.startswith(str(ROOT / "python" / "src")), own.stdout + own.stderr

    # New pins install again, and pip holds to them: one this offline venv cannot meet fails the install.
    pins = (dist / "constraints.txt").read_text()
    assert "kubernetes==36.0.3" in pins
    (dist / "constraints.txt").write_text(pins.replace("kubernetes==36.0.3", "kubernetes==36.0.2"))
    (base / "install.log").unlink()
    third = _hook(dist, python_dir)
    assert third.returncode == 0 and "installing" in third.stdout, third.stderr + third.stdout
    deadline, log = time.monotonic() + 300, ""
    while "install FAILED" not in log:
        assert "mllab: installed" not in log, "the install did not take the new constraints"
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(1)
        log = (base / "install.log").read_text() if (base / "install.log").is_file() else ""
    assert "kubernetes==36.0.2" in log, log[-2000:]


def test_start_hook_never_stops_the_server(good, tmp_path):
    """An empty dist folder (no wheel, no manifest) makes the hook say so; the start goes on."""
    hook = tmp_path / "dist"
    hook.mkdir()
    (hook / "before-notebook.sh").write_text(good["custom"].get("ConfigMap")["data"]["before-notebook.sh"])
    python_dir = _venv_python(tmp_path)
    res = _hook(hook, python_dir)
    assert res.returncode == 0, res.stderr
    assert "JupyterLab starts anyway" in res.stdout and "BASE=" in res.stdout
