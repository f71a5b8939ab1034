"""The kserve role in the setting of an air-gapped cluster without cert-manager, as the e2e
tier runs it (tests/e2e/platform.sh): charts from a folder (kserve_chart_source: dir),
webhook certificates made by the role (kserve_webhook_certs: self-signed), and the smoke
InferenceService on the mllab-fastserve ClusterServingRuntime with its model written to
the models PVC by a Job. Rendered offline, then checked: schemas (Kubernetes OpenAPI, the
KServe CRDs), the certificate chain, the Helm post-renderer on the release's own webhook
manifests, and the runtime's command line run for real (python -m mllab.fastserve, then the
role's smoke request, V1 and V2). Bad values of the new knobs stop the run, naming them."""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness  # tests/unit/platform (conftest.py)
import pytest
import yaml
from needs import missing  # tests/unit/needs.py: skips here, fails under CI=true

ROOT = Path(__file__).resolve().parents[2]
SMOKE_REQUEST = ROOT / "roles" / "kserve" / "files" / "smoke_request.py"
CHARTS = ("kserve-crd", "kserve-resources", "kserve-runtime-configs")
pytestmark = pytest.mark.timeout(900)


def _chart_dir() -> Path:
    """A chart folder as kserve_chart_source: dir wants it (each chart's Chart.yaml from the
    pinned release; render mode reads nothing else). Empty Chart.yaml files without Go."""
    folder = harness._WORKDIR / "kserve-charts"
    for chart in CHARTS:
        (folder / chart).mkdir(parents=True, exist_ok=True)
        try:
            text = harness.upstream_file(harness.KSERVE_MODULE, f"charts/{chart}/Chart.yaml")
        except harness.UpstreamUnavailable:
            text = f"name: {chart}\n"
        (folder / chart / "Chart.yaml").write_text(text)
    return folder


def settings() -> dict[str, Any]:
    return {
        "mllab_manage_microk8s": "false",
        "platform_common_storage_class": "local-path",
        "mllab_image": "mllab.local/e2e/mllab:0.1.0",
        "kserve_chart_source": "dir",
        "kserve_chart_dir": str(_chart_dir()),
        "kserve_webhook_certs": "self-signed",
        "kserve_smoke_runtime": "mllab-fastserve",
    }


BAD = {
    "kserve_chart_source": "dir",
    "kserve_chart_dir": "/nonexistent/kserve-charts",
    "kserve_webhook_certs": "vault",
    "kserve_smoke_runtime": "mllab-fastserve",
    "kserve_fastserve_enabled": False,
    "kserve_smoke_model_path": "../etc",
}


@functools.cache
def render() -> harness.Run:
    """The e2e setting rendered twice (the second run must change nothing), and the bad one."""
    runs = harness.run_playbooks({"kserve-fastserve": (settings(), True), "kserve-bad": (BAD, True)})
    first = runs["kserve-fastserve"]
    second = harness.run_playbooks({"kserve-fastserve": (settings(), True)}, fresh=False)["kserve-fastserve"]
    first.settings = {"second": second, "bad": runs["kserve-bad"]}
    return first


@pytest.fixture(scope="module")
def run() -> harness.Run:
    result = render()
    assert result.rc == 0, result.output[-3000:]
    return result


def _kserve(run: harness.Run) -> list[dict[str, Any]]:
    return [o for o in run.objects if o["_bundle"] == "kserve"]


def _model_job(run: harness.Run) -> str:
    (job,) = run.of_kind("Job")
    return job["metadata"]["name"]


def test_the_objects_and_their_order(run):
    kinds = [(o["kind"], o["metadata"]["name"]) for o in _kserve(run)]
    assert kinds == [
        ("Namespace", "kserve"),
        ("Secret", "kserve-webhook-server-cert"),
        ("ClusterServingRuntime", "mllab-fastserve"),
        ("Job", _model_job(run)),
        ("InferenceService", "sklearn-iris"),
    ]


def test_a_second_run_changes_nothing(run):
    second = run.settings["second"]
    assert second.rc == 0, second.output[-3000:]
    recap = [line for line in second.output.splitlines() if line.startswith("localhost ")]
    assert recap and "changed=0 " in recap[-1], recap
    secret = "kserve-webhook-server-cert"
    assert second.get("Secret", secret)["data"] == run.get("Secret", secret)["data"], "the certificate must be reused"


def test_core_objects_match_the_kubernetes_openapi_schema(run):
    import kubernetes_validate

    for obj in _kserve(run):
        if obj["kind"] in ("Namespace", "Secret", "Job"):
            kubernetes_validate.validate(harness.strip_private(obj), harness.KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kind", ["ClusterServingRuntime", "InferenceService"])
def test_custom_resources_match_the_kserve_crds(run, kind):
    import jsonschema

    try:
        schema = harness.crd_schema("serving.kserve.io", kind)
    except harness.UpstreamUnavailable as exc:
        missing(str(exc))
    (obj,) = [o for o in _kserve(run) if o["kind"] == kind]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(harness.strip_private(obj)))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


def test_the_runtime_is_the_issues_contract(run):
    spec = run.get("ClusterServingRuntime", "mllab-fastserve")["spec"]
    assert spec["supportedModelFormats"] == [{"name": "mllab-onnx", "version": "1", "autoSelect": True}]
    assert spec["protocolVersions"] == ["v1", "v2"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "mllab.local/e2e/mllab:0.1.0"  # kserve_fastserve_image = mllab_image
    assert container["args"] == [
        "python", "-m", "mllab.fastserve", "serve", "/mnt/models", "--name", "{{.Name}}", "--port", "8080",
        "--host", "0.0.0.0",  # the server binds 127.0.0.1 unless told: the pod's Service needs 0.0.0.0
    ]  # fmt: skip
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0 and sc["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_the_model_job_is_named_after_what_it_runs(run):
    """A Job's template is immutable: a new lab image must make a new Job, not a refused update (seen
    on the e2e cluster when the platform was applied again with a rebuilt lab image)."""
    import hashlib

    name = _model_job(run)
    job = run.get("Job", name)["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    ran = [
        container["image"],
        "smoke/iris",
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        str(pod["securityContext"]["runAsUser"]),
    ]
    assert name == "sklearn-iris-model-" + hashlib.sha1("|".join(ran).encode()).hexdigest()[:8]
    assert job["ttlSecondsAfterFinished"] == 3600


def test_the_model_job_writes_where_the_inference_service_reads(run):
    isvc = run.get("InferenceService", "sklearn-iris")["spec"]["predictor"]["model"]
    assert isvc["runtime"] == "mllab-fastserve"
    assert isvc["modelFormat"] == {"name": "mllab-onnx", "version": "1"}
    assert isvc["storageUri"] == "pvc://models/smoke/iris"
    job = run.get("Job", _model_job(run))["spec"]["template"]["spec"]
    (container,) = job["containers"]
    (mount,) = container["volumeMounts"]
    (volume,) = job["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == "models"
    assert "subPath" not in mount  # the kubelet would make a subPath folder owned by root
    assert container["args"] == ["python", "-m", "mllab.fastserve", "smoke-model", f"{mount['mountPath']}/smoke/iris"]
    assert job["restartPolicy"] == "Never"
    assert job["securityContext"]["runAsNonRoot"] is True and job["securityContext"]["runAsUser"] > 0
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_the_webhook_certificate_is_signed_by_the_ca_for_the_webhook_service(run):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = {k: base64.b64decode(v) for k, v in run.get("Secret", "kserve-webhook-server-cert")["data"].items()}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    key = serialization.load_pem_private_key(data["tls.key"], password=None)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "kserve-webhook-server-service.kserve.svc" in names
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.PEM
    assert key.public_key().public_bytes(enc, pub) == cert.public_key().public_bytes(enc, pub)
    for name in ("kserve-webhook-ca.key", "kserve-webhook-tls.key"):
        assert (run.artifacts_dir / "secrets" / name).stat().st_mode & 0o077 == 0, f"{name} must be 0600"


def test_the_releases_come_from_the_chart_folder_without_cert_manager(run):
    base = settings()["kserve_chart_dir"]
    assert "cert-manager" not in run.helm  # an existing cluster, but no cert-manager needed
    for release, chart in (("kserve-crd", "kserve-crd"), ("kserve", "kserve-resources")):
        assert run.helm[release]["chart_ref"] == f"{base}/{chart}"
    assert run.helm["kserve-runtime-configs"]["chart_ref"] == f"{base}/kserve-runtime-configs"
    assert Path(run.helm["kserve"]["post_renderer"]).is_file()
    assert "post_renderer" not in run.helm["kserve-crd"]


def test_the_post_renderer_on_the_release_webhook_manifests(run):
    """The post-renderer the role wrote, run as Helm runs it (manifests on stdin) on the
    kserve-resources chart's own base manifests of the pinned release."""
    try:
        text = harness.upstream_file(harness.KSERVE_MODULE, "charts/kserve-resources/files/kserve/resources.yaml")
    except harness.UpstreamUnavailable as exc:
        missing(str(exc))
    before = [d for d in yaml.safe_load_all(text) if d]
    res = subprocess.run([run.helm["kserve"]["post_renderer"]], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    after = [d for d in yaml.safe_load_all(res.stdout) if d]
    ca = (run.artifacts_dir / "secrets" / "kserve-webhook-ca.crt").read_text()
    bundle = base64.b64encode(ca.encode()).decode()
    assert {d["kind"] for d in before} - {d["kind"] for d in after} == {"Certificate"}
    hooks = [h for d in after if d["kind"].endswith("WebhookConfiguration") for h in d["webhooks"]]
    assert len(hooks) >= 6 and all(h["clientConfig"]["caBundle"] == bundle for h in hooks)
    assert not [d for d in after if "cert-manager.io/inject-ca-from" in (d["metadata"].get("annotations") or {})]
    others = [d for d in before if not d["kind"].endswith("WebhookConfiguration") and d["kind"] != "Certificate"]
    assert others == [d for d in after if not d["kind"].endswith("WebhookConfiguration")]


def test_the_post_renderer_refuses_a_missing_ca():
    script = ROOT / "roles" / "kserve" / "files" / "webhook_post_render.py"
    res = subprocess.run([sys.executable, str(script), "/nonexistent/ca.crt"], input="", capture_output=True, text=True)
    assert res.returncode == 1 and "cannot read the CA certificate" in res.stderr


def test_bad_settings_stop_the_run_naming_each_value(run):
    bad = run.settings["bad"]
    assert bad.rc != 0 and not bad.objects
    for needle in (
        "kserve_webhook_certs = 'vault' is not supported",
        "/nonexistent/kserve-charts/kserve-crd/Chart.yaml is missing",
        "kserve_smoke_runtime = mllab-fastserve needs the runtime: set kserve_fastserve_enabled: true",
        'kserve_smoke_model_path = "../etc" is not a relative path',
    ):
        assert needle in bad.output, needle


# --- the runtime's command line, run for real -----------------------------------------------


@pytest.fixture(scope="module")
def fastserve(run, tmp_path_factory):
    """The smoke model Job's command, then the runtime's container command with {{.Name}}
    filled in as KServe does, with /mnt/... mapped to a temporary folder."""
    if importlib.util.find_spec("mllab") is None or importlib.util.find_spec("onnxruntime") is None:
        missing(
            "the mllab package with its labs extra is not installed here"
            " (pip install -c requirements/constraints.txt -e 'python[labs]')"
        )
    work = tmp_path_factory.mktemp("fastserve")
    job = run.get("Job", _model_job(run))["spec"]["template"]["spec"]["containers"][0]
    mount = job["volumeMounts"][0]["mountPath"]
    args = [a.replace(mount, str(work / "pvc")) for a in job["args"]]
    assert args[0] == "python"
    res = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    model_dir = work / "pvc" / "smoke" / "iris"  # pvc://models/smoke/iris, mounted at /mnt/models
    assert (model_dir / "model.onnx").is_file()
    runtime = run.get("ClusterServingRuntime", "mllab-fastserve")["spec"]["containers"][0]
    port = harness.free_port()
    args = [a.replace("{{.Name}}", "sklearn-iris").replace("/mnt/models", str(model_dir)) for a in runtime["args"]]
    args[args.index("--port") + 1] = str(port)
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, *args[1:]], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work
    )
    base = f"http://127.0.0.1:{port}"
    probe = base + runtime["readinessProbe"]["httpGet"]["path"]
    harness.wait_until_serving(lambda: harness.http_200(probe), proc, log, work / "serve.log", "fastserve")
    yield base
    harness.stop_server(proc, log)


def test_the_smoke_request_passes_against_the_runtime(fastserve):
    """roles/kserve/files/smoke_request.py as the role runs it inside the predictor."""
    command = f"python3 -c {shlex.quote(SMOKE_REQUEST.read_text())} sklearn-iris {shlex.quote(fastserve)}"
    argv = shlex.split(command)
    argv[0] = sys.executable
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    verdict = json.loads(res.stdout)
    assert verdict["v1"] == {"status": 200, "predictions": [1, 1]}
    assert verdict["v2"] == {"status": 200, "outputs": [[1, 1]]}
