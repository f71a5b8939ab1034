"""Test harness of the platform layer (L1 of the test ladder, no cluster):

- render_matrix(): runs playbooks/platform.yml in render-only mode
  (platform_common_render_dir) for every case of CASES, in parallel, once per test
  session, and returns the objects, Helm releases and generated secrets of each case;
- run_playbook(): one run with given settings (for the bad-settings tests);
- upstream_file(): a file of a pinned upstream release, read from its Go module zip
  (`go mod download`, cached under ~/.cache/mllab-unit/gomod) - CRDs and Helm chart values;
- crd_schema(): the openAPIV3Schema of a CRD version, made strict (unknown fields are
  errors, as a typo in a custom resource would be silently pruned by the API server).

Loaded by the test modules with importlib (the folder name `platform` would shadow the
standard library module if it were imported as a package).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# Downloads (Go modules, CRD schemas) are kept outside the checkout, so a clean clone (CI) reuses
# them and a test run leaves the checkout as it found it (scripts/clean-check).
CACHE = Path(
    os.environ.get("MLLAB_UNIT_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mllab-unit"
)
PLAYBOOK = ROOT / "playbooks" / "platform.yml"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

# Kubernetes version the manifests are validated against: the e2e tier's cluster runs
# v1.34 (tests/e2e), MicroK8s 1.36 serves a superset of these APIs.
KUBERNETES_VERSION = "1.34.0"

# Upstream releases whose files the tests read (module@version on the Go module proxy).
KSERVE_MODULE = "github.com/kserve/kserve@v0.20.0"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
CERT_MANAGER_MODULE = "github.com/cert-manager/cert-manager@v1.21.2"

# (module, path in the module, CRD version) of each custom resource kind we render.
CRDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("serving.kserve.io", "InferenceService"): (
        KSERVE_MODULE,
        "config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "v1beta1",
    ),
    ("serving.kserve.io", "ServingRuntime"): (
        KSERVE_MODULE,
        "config/crd/full/serving.kserve.io_servingruntimes.yaml",
        "v1alpha1",
    ),
    ("serving.kserve.io", "ClusterServingRuntime"): (
        KSERVE_MODULE,
        "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
        "v1alpha1",
    ),
    ("monitoring.coreos.com", "ServiceMonitor"): (
        PROMETHEUS_OPERATOR_MODULE,
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "v1",
    ),
    ("monitoring.coreos.com", "PodMonitor"): (
        PROMETHEUS_OPERATOR_MODULE,
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "v1",
    ),
    ("monitoring.coreos.com", "PrometheusRule"): (
        PROMETHEUS_OPERATOR_MODULE,
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        "v1",
    ),
}

S3_KEY_ID = "AKIAMLLABTESTKEY0001"
S3_SECRET = "mllabTestS3SecretValue0123456789"

# The settings matrix of the issue: defaults, GPU on, PostgreSQL, auth, existing
# cluster, ingress off (each case also varies a few neighbouring knobs). MLflow runs without
# its login only where there is no Ingress (postgresql, ingress-off): behind one it is refused.
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu": {"jupyter_gpu_count": 1, "jupyter_gpu_runtime_class": "nvidia"},
    "postgresql": {
        "mlflow_backend": "postgresql",
        "mlflow_artifacts": "s3",
        "mlflow_s3_destination": "s3://mllab-artifacts/mlflow",
        "mlflow_s3_endpoint_url": "http://minio.minio.svc.cluster.local:9000",
        "mlflow_s3_access_key_id": S3_KEY_ID,
        "mlflow_s3_secret_access_key": S3_SECRET,
        "mlflow_auth_enabled": False,  # its user store is a file on a PVC: this case has none
        "platform_common_ingress_enabled": False,  # so no Ingress: MLflow without a login is refused behind one
    },
    "auth": {
        "mlflow_auth_enabled": True,
        "platform_common_ingress_host": "lab.example.org",
        "platform_common_ingress_tls_secret": "lab-tls",
        "platform_common_ingress_max_body_size": "512m",
        "jupyter_pip_packages": ["mllab==0.1.0"],
    },
    # Booleans given as strings here, as `-e name=false` on the command line gives them.
    "existing-cluster": {
        "mllab_manage_microk8s": "false",
        "platform_common_storage_class": "local-path",
        "platform_common_ingress_class": "nginx",
    },
    "ingress-off": {
        "platform_common_ingress_enabled": "false",
        "mlflow_auth_enabled": "false",  # auth is on by default: this case runs without it
        "mlflow_ingress_path": "/",
        "jupyter_ingress_path": "/",
    },
}


@dataclass
class Run:
    """One ansible-playbook run of the platform layer."""

    rc: int
    output: str
    render_dir: Path
    artifacts_dir: Path
    settings: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)  # each with "_bundle"
    helm: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def secrets(self) -> dict[str, str]:
        folder = self.artifacts_dir / "secrets"
        if not folder.is_dir():
            return {}
        return {p.name: p.read_text().strip() for p in folder.iterdir()}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        for o in self.of_kind(kind):
            md = o["metadata"]
            if md["name"] == name and (namespace is None or md.get("namespace") == namespace):
                return o
        raise KeyError(f"{kind} {namespace}/{name} not rendered")


_WORKDIR = Path(tempfile.mkdtemp(prefix="mllab-platform-render-"))
atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)  # rendered Secrets and generated passwords


def _start(
    name: str, settings: dict[str, Any], render: bool = True, fresh: bool = True, playbook: Path = PLAYBOOK
) -> tuple[subprocess.Popen, Path, Path]:
    base = _WORKDIR / name
    if fresh:
        shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    render_dir, artifacts = base / "render", base / "artifacts"
    extra = dict(settings)
    if render:
        extra["platform_common_render_dir"] = str(render_dir)
    (base / "vars.json").write_text(json.dumps(extra))
    env = dict(os.environ)
    env.update(
        MLLAB_ARTIFACTS_DIR=str(artifacts),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_LOCAL_TEMP=str(base / "tmp"),
    )
    cmd = [str(ANSIBLE_PLAYBOOK), str(playbook), "-e", f"@{base / 'vars.json'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, render_dir, artifacts


def _finish(proc: subprocess.Popen, render_dir: Path, artifacts: Path, settings: dict[str, Any]) -> Run:
    import yaml

    output, _ = proc.communicate(timeout=600)
    run = Run(proc.returncode, output, render_dir, artifacts, settings)
    if render_dir.is_dir():
        for path in sorted(render_dir.glob("*.yaml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            if path.name.startswith("helm-"):
                run.helm |= {doc["name"]: doc for doc in docs}
            else:
                for doc in docs:
                    doc["_bundle"] = path.stem
                    run.objects.append(doc)
    return run


def render_playbook(playbook: Path, cases: dict[str, dict[str, Any]]) -> dict[str, Run]:
    """Render `playbook` (render-only mode) for each case {name: settings}, in parallel."""
    started = {name: (_start(name, s, True, True, playbook), s) for name, s in cases.items()}
    return {name: _finish(*proc_dirs, s) for name, (proc_dirs, s) in started.items()}


def run_playbooks(cases: dict[str, tuple[dict[str, Any], bool]], fresh: bool = True) -> dict[str, Run]:
    """Run several cases in parallel: {name: (settings, render_only)}. fresh=False keeps
    the case's artifacts folder (generated secrets) from an earlier run."""
    started = {name: (_start(name, s, render, fresh), s) for name, (s, render) in cases.items()}
    return {name: _finish(*proc_dirs, s) for name, (proc_dirs, s) in started.items()}


# Runs that must stop before anything is rendered or applied: bad values (render mode),
# and a missing kubeconfig (apply mode: the check comes before any cluster contact).
BAD_CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "bad-render": (
        {
            "mlflow_backend": "mongodb",
            "jupyter_image": "quay.io/jupyter/scipy-notebook",
            "mlflow_image": "ghcr.io/MLflow/mlflow:v3.17.2",
            "training_quotas": {"labs": {"requests.cpu": "100m", "requests.memory": "16Gi"}},
            "platform_common_ingress_max_body_size": "64MB",
            "mlflow_auth_enabled": False,  # with the Ingress on (the default): MLflow without a login
            "jupyter_env": {"JUPYTER_TOKEN": ""},
        },
        True,
    ),
    "missing-kubeconfig": (
        {"mllab_manage_microk8s": False, "mllab_kubeconfig": "/nonexistent/mllab/kubeconfig"},
        False,
    ),
}
# A well-formed kubeconfig whose API server does not answer (nothing listens on port 1).
UNREACHABLE_KUBECONFIG = _WORKDIR / "unreachable.kubeconfig"
UNREACHABLE_KUBECONFIG.write_text(
    json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "gone", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
            "current-context": "gone",
        }
    )
)
BAD_CASES["unreachable-cluster"] = (
    {"mllab_manage_microk8s": False, "mllab_kubeconfig": str(UNREACHABLE_KUBECONFIG)},
    False,
)
RERUN = "defaults-rerun"


@functools.cache
def render_matrix() -> dict[str, Run]:
    """Every case of CASES and BAD_CASES, once per session, all in parallel; then RERUN:
    the defaults case rendered again in its own artifacts folder (settings hold
    "secrets_first", the secrets of the first run, and "rc_first")."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str, settings: dict[str, Any], render: bool) -> Run:
        return _finish(*_start(name, settings, render), settings)

    jobs = {name: (settings, True) for name, settings in CASES.items()} | BAD_CASES
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(one, name, s, render) for name, (s, render) in jobs.items()}
        runs = {name: f.result() for name, f in futures.items()}
    first = runs["defaults"]
    secrets_first = dict(first.secrets)  # read before the second run can touch the files
    again = _finish(*_start("defaults", {}, True, fresh=False), {})
    again.settings = {"secrets_first": secrets_first, "rc_first": first.rc}
    runs[RERUN] = again
    return runs


def free_port() -> int:
    """A TCP port nothing listens on now, for the servers the platform tests start (mllab.procs')."""
    from mllab.procs import free_port

    return free_port()


def wait_until_serving(
    ready: Callable[[], bool], proc: subprocess.Popen, log: Any, log_path: Path, what: str, timeout: float = 120
) -> None:
    """Poll `ready()` (connection errors count as not ready: mllab.procs.wait_for) until it is true;
    fail with the server's last log lines when the process exits or `timeout` passes."""
    import pytest
    from mllab.procs import wait_for

    if not wait_for(ready, timeout, interval=0.5, proc=proc):
        log.flush()
        pytest.fail(f"{what} did not start: " + log_path.read_text()[-3000:])


def http_200(url: str) -> bool:
    """GET `url` answers 2xx (mllab.procs.http_ok)."""
    from mllab.procs import http_ok

    return http_ok(url, timeout=5)


def stop_server(proc: subprocess.Popen, log: Any) -> None:
    """Stop a server started in its own session (start_new_session=True): TERM, then KILL after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def flag(value: Any) -> bool:
    """A setting's truth as Ansible's bool filter reads it ("false" from -e is False)."""
    return str(value).strip().lower() in ("true", "yes", "on", "1")


def strip_private(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


# --- upstream files from Go module zips ------------------------------------------------------


class UpstreamUnavailable(RuntimeError):
    """The Go toolchain or the module proxy cannot be reached."""


@functools.cache
def module_zip(module: str) -> Path:
    """The zip of module@version from the Go module proxy, cached under CACHE/gomod."""
    path, version = module.split("@")
    cached = CACHE / "gomod" / "gopath" / "pkg" / "mod" / "cache" / "download" / path.lower() / "@v" / f"{version}.zip"
    if cached.is_file():
        return cached
    go = shutil.which("go")
    if not go:
        raise UpstreamUnavailable(f"`go` is not installed, so {module} cannot be fetched from the Go module proxy")
    env = dict(os.environ, GOPATH=str(CACHE / "gomod" / "gopath"), GOFLAGS="-modcacherw", GO111MODULE="on")
    res = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    info = json.loads(res.stdout or "{}") if res.stdout.strip().startswith("{") else {}
    if res.returncode != 0 or not info.get("Zip"):
        reason = info.get("Error") or res.stderr.strip()[-300:]
        raise UpstreamUnavailable(f"cannot download {module} from the Go module proxy: {reason}")
    return Path(info["Zip"])


@functools.cache
def upstream_file(module: str, path: str) -> str:
    """Text of `path` inside module@version (e.g. a CRD or a chart's values.yaml)."""
    with zipfile.ZipFile(module_zip(module)) as zf:
        return zf.read(f"{module}/{path}").decode()


def _strict(schema: Any) -> Any:
    """Copy of an openAPIV3 schema where objects with declared properties reject unknown ones."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(group: str, kind: str) -> dict[str, Any]:
    import yaml

    module, path, version = CRDS[(group, kind)]
    cache = CACHE / "platform-schemas" / module.replace("/", "_") / f"{kind}.{version}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    crd = next(
        d for d in yaml.safe_load_all(upstream_file(module, path)) if d and d.get("kind") == "CustomResourceDefinition"
    )
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    schema = served[version]["schema"]["openAPIV3Schema"]
    schema = _strict(schema)
    # metadata is validated by the API server itself; keep it loose like the CRD does.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(schema))
    return schema
