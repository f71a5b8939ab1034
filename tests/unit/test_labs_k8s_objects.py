"""The k8s backend's objects (mllab.backends.k8s_objects): valid against the Kubernetes 1.34
OpenAPI schema, least privilege, and the contract the backend relies on (labels for reset and
Ctrl-C, the work PVC, the rendezvous of distributed jobs). The real runs are in the e2e tier."""

from __future__ import annotations

import json

import pytest
from mllab.backends import k8s_objects as o
from mllab.errors import UsageError

K8S = "1.34.0"
CFG = o.K8sConfig(image="mllab.local/e2e/mllab:0.1.0", job_tracking_uri="http://mlflow.mlflow.svc:5000")


def validate(obj):
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


def pod_of(obj):
    return obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]


def test_training_job_is_a_retried_deadlined_job_on_the_work_pvc():
    lbl = o.labels(2, "crash-and-resume", "run1")
    job = o.job(CFG, "mllab-crash-abc123", lbl, ["python", "-m", "mllab.training"], {"RANDOM_SEED": "7"}, 2, 900, 1)
    validate(job)
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (2, 900, 86400)
    pod = pod_of(job)
    assert pod["restartPolicy"] == "Never"  # a killed pod is a failed attempt the Job replaces
    assert pod["volumes"] == [{"name": "work", "persistentVolumeClaim": {"claimName": "checkpoints"}}]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RANDOM_SEED"] == "7" and env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert job["metadata"]["labels"]["mllab.io/lab"] == "02"
    assert spec["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_no_gpu_requested_unless_asked():
    job = o.job(CFG, "j", o.labels(2, "a", "r"), ["true"], {}, 0, None)
    validate(job)
    assert "nvidia.com/gpu" not in pod_of(job)["containers"][0]["resources"]["limits"]
    assert "activeDeadlineSeconds" not in job["spec"]


def test_pods_run_non_root_without_privileges_or_api_token():
    job = o.job(CFG, "j", o.labels(4, "t", "r"), ["true"], {}, 0, None)
    pod = pod_of(job)
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "mllab-lab-runner"
    sec = pod["containers"][0]["securityContext"]
    assert sec == {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}}


def test_distributed_job_is_indexed_with_a_headless_service_for_rank_zero():
    svc, job = o.distributed_job(
        CFG, "mllab-ddp-2-abc", o.labels(5, "ddp-2", "r"), ["-m", "mllab.ddp_train"], {}, 2, 1, 900
    )
    validate(svc)
    validate(job)
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
    pod = pod_of(job)
    assert pod["subdomain"] == svc["metadata"]["name"] == "mllab-ddp-2-abc"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"job-name": "mllab-ddp-2-abc"}
    cmd = pod["containers"][0]["command"]
    assert "--master-addr=mllab-ddp-2-abc-0.mllab-ddp-2-abc" in cmd and "--nnodes=2" in cmd
    assert "--node-rank=$(NODE_RANK)" in cmd  # expanded by the kubelet from the completion index
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    with pytest.raises(ValueError, match="nproc"):
        o.distributed_job(CFG, "x", {}, [], {}, 0, 0, None)


def test_fetch_pod_streams_the_workdir_without_checkpoints():
    pod = o.fetch_pod(CFG, "mllab-fetch-x", o.labels(2, "x", "r"), "/mnt/work/mllab/r/x")
    validate(pod)
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "cd /mnt/work/mllab/r/x" in script and "--exclude=./checkpoints" in script and "base64" in script


@pytest.mark.parametrize(
    ("parts", "want"),
    [(("mllab", "Crash_and Resume"), "mllab-crash-and-resume"), (("a--b", "-c-"), "a-b-c"), (("x" * 80,), "x" * 63)],
)
def test_dns_label(parts, want):
    assert o.dns_label(*parts) == want


def test_unique_names_fit_and_differ():
    a, b = o.unique_name("mllab-" + "long" * 20), o.unique_name("mllab-" + "long" * 20)
    assert a != b and len(a) <= 52 and o.dns_label(a) == a


def test_config_from_env_names_the_bad_value():
    cfg = o.K8sConfig.from_env({"MLLAB_IMAGE": "reg/x:1", "MLFLOW_TRACKING_URI": "http://m:5000"})
    assert cfg.image == "reg/x:1" and cfg.job_tracking_uri == "http://m:5000" and cfg.namespace == "ml-training"
    with pytest.raises(UsageError, match="MLLAB_TRAINING_NAMESPACE='ML_Training'"):
        o.K8sConfig.from_env({"MLLAB_TRAINING_NAMESPACE": "ML_Training"})
    with pytest.raises(UsageError, match="MLLAB_GPUS='lots'"):
        o.K8sConfig.from_env({"MLLAB_GPUS": "lots"})


def _server(canary=True):
    argv = ["python", "-m", "mllab.serving", "--model", "digits=/tmp/models/digits"]
    if canary:
        argv += ["--canary", "digits=/tmp/models/digits-canary:10"]
    return o.server_pod(CFG, argv, "mllab-serve-abc-models")


def test_model_server_unpacks_its_models_and_serves_kserve_protocol():
    pod = _server()
    c = pod["containers"][0]
    assert c["name"] == "kserve-container" and c["ports"][0]["containerPort"] == 8080
    script = c["command"][-1]
    assert script.startswith("mkdir -p /tmp/models && tar -xzf /dist/models.tgz -C /tmp/models && exec python -m")
    assert "digits=/tmp/models/digits-canary:10" in script
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["volumes"] == [{"name": "dist", "configMap": {"name": "mllab-serve-abc-models"}}]


def test_without_kserve_the_server_is_a_deployment_and_service():
    lbl = o.labels(6, "serve-v1", "r")
    dep, svc = o.deployment_and_service("mllab-serve-v1-abc", lbl, _server(canary=False))
    validate(dep)
    validate(svc)
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert dep["spec"]["template"]["metadata"]["labels"]["mllab.io/lab"] == "06"
    assert svc["spec"]["ports"][0]["targetPort"] == 8080


def test_inference_service_is_standard_mode_with_the_same_pod():
    pod = _server()
    isvc = o.inference_service("mllab-serve-abc", o.labels(6, "serve", "r"), pod)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    pred = isvc["spec"]["predictor"]
    assert pred["containers"] == pod["containers"] and pred["volumes"] == pod["volumes"] and pred["minReplicas"] == 1


def test_models_configmap_holds_the_archive_or_names_the_limit():
    cm = o.models_configmap("m", o.labels(6, "s", "r"), b"\x1f\x8b-archive")
    validate(cm)
    assert list(cm["binaryData"]) == ["models.tgz"]
    with pytest.raises(ValueError, match="ConfigMap holds at most"):
        o.models_configmap("m", {}, b"x" * (o.CONFIGMAP_LIMIT + 1))


def test_job_paths_under_the_workdir_move_to_the_work_pvc(tmp_path):
    from mllab.backends.base import JobSpec
    from mllab.backends.k8s import K8sBackend

    backend = K8sBackend.__new__(K8sBackend)  # no cluster needed to map paths
    backend.cfg, backend.run_id = CFG, "20261128-run"
    wd = tmp_path / "run.partial" / "crash-and-resume"
    spec = JobSpec(
        "crash-and-resume",
        "mllab.training",
        args=["--checkpoint-dir", str(wd / "checkpoints"), "--out", str(wd / "result.json"), "--seed", "7"],
        env={"X": str(wd), "Y": str(tmp_path / "elsewhere"), "Z": str(wd) + "-not-inside"},
        workdir=wd,
    )
    args, env = backend._translate(spec)
    pod_dir = "/mnt/work/mllab/20261128-run/crash-and-resume"
    assert args == ["--checkpoint-dir", pod_dir + "/checkpoints", "--out", pod_dir + "/result.json", "--seed", "7"]
    assert env["X"] == pod_dir and env["Y"] == str(tmp_path / "elsewhere") and env["Z"].endswith("-not-inside")
    assert env["MLLAB_JOB_NAME"] == "crash-and-resume"


def test_pipeline_step_outputs_live_in_shared_content_addressed_folders(tmp_path):
    from mllab.backends.base import JobSpec
    from mllab.backends.k8s import K8sBackend

    backend = K8sBackend.__new__(K8sBackend)
    backend.cfg, backend.run_id = CFG, "20261128-run"
    out = tmp_path / "good-config" / "train.tmp"
    spec = JobSpec(
        "train-0123abcd", "mllab.pipeline_step", ["--out", str(out)], workdir=out, shared_key="train-0123abcd"
    )
    args, _ = backend._translate(spec)
    # not under the run: a later run whose train step is cached finds it for its evaluate Job
    assert backend.pod_dir(spec) == "/mnt/work/mllab/shared/train-0123abcd" == backend.shared_dir("train-0123abcd")
    assert args == ["--out", "/mnt/work/mllab/shared/train-0123abcd"]


def test_archive_is_read_between_its_markers_only():
    import base64
    import hashlib

    data = b"\x1f\x8barchive"
    payload = base64.b64encode(data).decode()
    digest = hashlib.sha256(data).hexdigest()
    log = f"tar: warning on stderr\n{o.ARCHIVE_BEGIN}\n{payload}\n{o.ARCHIVE_END} {digest}\n"
    assert o.archive_from_log(log) == data
    with pytest.raises(ValueError, match="no archive in the fetch pod's log"):
        o.archive_from_log("sh: cd: /mnt/work/x: No such file or directory\n")


def test_fetch_pod_script_round_trips_the_workdir_and_a_cut_log_is_refused(tmp_path):
    """The fetch pod's script, run for real by sh on a folder: its stdout is a whole archive of
    the folder without checkpoints; the same log cut short (as containerd can lose a short-lived
    container's last bytes) or altered is a ValueError, never a partial extraction."""
    import io
    import subprocess
    import tarfile

    work = tmp_path / "work"
    (work / "model").mkdir(parents=True)
    (work / "model" / "meta.json").write_text('{"val_accuracy": 0.9}')
    (work / "result.json").write_text("{}" + " " * 5000)
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "epoch-1.pt").write_bytes(b"x" * 100)
    pod = o.fetch_pod(CFG, "mllab-fetch-x", o.labels(2, "x", "r"), str(work))
    argv = pod["spec"]["containers"][0]["command"]
    log = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    with tarfile.open(fileobj=io.BytesIO(o.archive_from_log(log)), mode="r:gz") as tar:
        names = sorted(n.removeprefix("./") for n in tar.getnames())
    assert "model/meta.json" in names and "result.json" in names
    assert not any(n.startswith("checkpoints") for n in names)
    cut = log[: log.index(o.ARCHIVE_END) - 80] + log[log.index(o.ARCHIVE_END) :]
    with pytest.raises(ValueError, match="archive is damaged: Incorrect padding"):
        o.archive_from_log(cut)
    altered = log.replace("\n", "\nAAAA", 2).replace("\nAAAA", "\n", 1)  # a whole 4-char group more
    with pytest.raises(ValueError, match="archive is damaged: sha256"):
        o.archive_from_log(altered)
    with pytest.raises(ValueError, match="the pod printed none"):
        o.archive_from_log(log[: log.index(o.ARCHIVE_END) + len(o.ARCHIVE_END)])


def test_a_damaged_fetch_is_fetched_again_then_named(tmp_path, monkeypatch):
    """The backend's retry around the fetch pods (the cluster side is the e2e tier's): a cut log is
    fetched again and the second, whole archive extracted; three cut logs fail with the reason."""
    import base64
    import hashlib
    import io
    import tarfile

    from mllab.backends.base import JobSpec
    from mllab.backends.k8s import FETCH_TRIES, K8sBackend
    from mllab.errors import JobFailed

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("./result.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    whole = f"{o.ARCHIVE_BEGIN}\n{base64.b64encode(data).decode()}\n{o.ARCHIVE_END} {digest}\n"
    cut = whole[: len(o.ARCHIVE_BEGIN) + 8]
    backend = K8sBackend.__new__(K8sBackend)
    said: list[str] = []
    monkeypatch.setattr(backend, "_say", said.append, raising=False)
    logs = iter([cut, whole])
    monkeypatch.setattr(backend, "_fetch_log", lambda spec: next(logs), raising=False)
    spec = JobSpec("train", "mllab.training", [], workdir=tmp_path / "out")
    backend._fetch(spec)
    assert (tmp_path / "out" / "result.json").read_text() == "{}"
    assert len(said) == 1 and "no archive" in said[0]

    calls = []
    monkeypatch.setattr(backend, "_fetch_log", lambda spec: calls.append(1) or cut, raising=False)
    backend.cfg = CFG
    with pytest.raises(JobFailed, match=f"failed {FETCH_TRIES} times: no archive"):
        backend._fetch(JobSpec("train", "mllab.training", [], workdir=tmp_path / "again"))
    assert len(calls) == FETCH_TRIES and not (tmp_path / "again" / "result.json").exists()


def test_attempt_wrapper_numbers_attempts_and_keeps_the_job_off_pid_1(tmp_path):
    """The wrapper, run for real by sh: each run is the next attempt; the job is a child of sh."""
    import subprocess

    job = o.job(
        CFG, "j", {}, ["sh", "-c", 'echo "attempt=$MLLAB_JOB_ATTEMPT pid=$$ ppid=$PPID"'], {}, 2, None, workdir="/w"
    )
    c = pod_of(job)["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert env["MLLAB_WORKDIR"] == "/w"
    argv = c["command"]
    assert argv[:2] == ["sh", "-c"]
    outs = []
    for _ in range(2):
        run = subprocess.run(
            argv,
            env={"MLLAB_WORKDIR": str(tmp_path / "w"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        outs.append(run.stdout)
    assert outs[0].startswith("attempt=1 ") and outs[1].startswith("attempt=2 ")
    assert (tmp_path / "w" / ".attempts").read_text().strip() == "2"


def test_service_monitor_selects_the_server_for_the_platform_prometheus():
    sm = o.service_monitor(
        "mllab-monitored-abc",
        o.labels(7, "monitored", "r"),
        {"serving.kserve.io/inferenceservice": "mllab-monitored-abc"},
        o.parse_labels("release=kube-prom-stack"),
    )
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert sm["metadata"]["labels"]["release"] == "kube-prom-stack"
    assert sm["metadata"]["labels"]["mllab.io/lab"] == "07"  # reset and Ctrl-C find it
    assert sm["spec"]["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": "mllab-monitored-abc"}
    assert sm["spec"]["endpoints"] == [{"targetPort": 8080, "path": "/metrics", "interval": "15s"}]
    with pytest.raises(UsageError, match="'release' is not key=value"):
        o.parse_labels("release")


@pytest.mark.parametrize("which", ["isvc", "servicemonitor"])
def test_custom_resources_match_their_crd_schema(which):
    """Against the CRDs of the pinned KServe and prometheus-operator modules (as the platform's)."""
    import harness  # tests/unit/platform (conftest.py)
    import jsonschema

    if which == "isvc":
        body = o.inference_service("mllab-serve-abc", o.labels(6, "serve", "r"), _server())
        schema = harness.crd_schema("serving.kserve.io", "InferenceService")
    else:
        body = o.service_monitor("m", o.labels(7, "m", "r"), {"a": "b"}, {"release": "kube-prom-stack"})
        schema = harness.crd_schema("monitoring.coreos.com", "ServiceMonitor")
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_trial_job_runs_one_trial_per_index_each_once():
    calls = [
        {"fn": "mllab.labs.lab04_hyperparameter_search:digits_trial", "args": [{"max_depth": d}], "kwargs": {}}
        for d in (2, 3, 4)
    ]
    job = o.trial_job(CFG, "mllab-trials-abc123", o.labels(4, "trials", "r"), calls, 2, 3600)
    validate(job)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 2)
    assert spec["backoffLimitPerIndex"] == 0 and "backoffLimit" not in spec  # a failed trial is a result
    assert pod_of(job)["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 3600
    c = pod_of(job)["containers"][0]
    assert c["command"] == ["python", "-m", "mllab.backends.k8s_call"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert json.loads(env["MLLAB_CALLS"]) == calls
    assert o.trial_job(CFG, "t", {}, calls[:1], 4, None)["spec"]["parallelism"] == 1
    with pytest.raises(ValueError, match="at least one call"):
        o.trial_job(CFG, "t", {}, [], 2, None)


def test_distributed_ranks_get_a_gpu_each_only_when_there_is_one_for_every_rank(monkeypatch):
    """Issue 12: lab 5's Job asks for GPUs when the cluster has them (one per rank; nccl then),
    never for more than the cluster offers (a rank would wait unschedulable)."""
    from mllab.backends.base import JobSpec
    from mllab.backends.k8s import K8sBackend

    def limits(bodies):
        job = next(b for b in bodies if b["kind"] == "Job")
        return job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]

    bodies = o.distributed_job(CFG, "ddp", {}, ["-m", "mllab.ddp_train"], {}, 2, 0, None, 1)
    [validate(b) for b in bodies]
    assert limits(bodies)["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in limits(o.distributed_job(CFG, "ddp", {}, [], {}, 2, 0, None))

    backend = K8sBackend.__new__(K8sBackend)
    backend.cfg, backend.lab, backend.run_id = CFG, 5, "r"
    said, sent = [], []
    monkeypatch.setattr(backend, "_say", said.append, raising=False)
    monkeypatch.setattr(backend, "_translate", lambda spec: ([], {}), raising=False)
    monkeypatch.setattr(backend, "_run", lambda spec, bodies: sent.append(bodies), raising=False)
    spec = JobSpec("ddp-2", "mllab.ddp_train", [])
    for available, want in ((2, "1"), (8, "1"), (1, None), (0, None)):
        backend._gpus = available
        backend.run_distributed(spec, 2)
        assert limits(sent[-1]).get("nvidia.com/gpu") == want, available
    assert said == ["job ddp-2: 2 ranks but 1 GPU(s) in the cluster: running on the CPU"]


def test_the_learners_files_reach_every_lab_pod_as_a_read_only_configmap(tmp_path):
    """mllab.exercise: the folder becomes a ConfigMap (one key per file, the notebook left out); every
    Job, Deployment and InferenceService the backend creates mounts it and names it in MLLAB_EXERCISE."""
    from mllab import exercise

    (tmp_path / "checkpoint.py").write_text("def save_checkpoint(): ...\n")
    (tmp_path / "job.yaml").write_text("kind: Job\n")
    (tmp_path / exercise.NOTEBOOK).write_text("{}")
    data = exercise.configmap_data(tmp_path)
    assert sorted(data) == ["checkpoint.py", "job.yaml"]
    cm = o.exercise_configmap("mllab-exercise-02-abc", o.labels(2, "exercise", "r"), data)
    validate(cm)
    lbls = o.labels(2, "train", "r")
    bodies = [
        o.job(CFG, "mllab-train-abc", lbls, ["python", "-m", "mllab.training"], {}, 2, 900),
        o.distributed_job(CFG, "mllab-ddp-abc", lbls, ["-m", "mllab.ddp_train"], {}, 2, 0, 600)[1],
        o.trial_job(CFG, "mllab-trials-abc", lbls, [{"fn": "m:f", "args": [], "kwargs": {}}], 2, 600),
        *o.deployment_and_service("mllab-serve-abc", lbls, _server())[:1],
    ]
    for body in bodies:
        o.with_exercise(body, cm["metadata"]["name"], exercise.EXERCISE_MOUNT, exercise.EXERCISE_ENV)
        validate(body)
        (pod,) = o.pod_specs(body)
        assert {"name": "exercise", "configMap": {"name": "mllab-exercise-02-abc"}} in pod["volumes"]
        for c in pod["containers"]:
            assert {"name": "exercise", "mountPath": exercise.EXERCISE_MOUNT, "readOnly": True} in c["volumeMounts"]
            assert {"name": exercise.EXERCISE_ENV, "value": exercise.EXERCISE_MOUNT} in c["env"]
    isvc = o.inference_service("mllab-serve-abc", lbls, _server())
    o.with_exercise(isvc, "cm", exercise.EXERCISE_MOUNT, exercise.EXERCISE_ENV)
    assert isvc["spec"]["predictor"]["volumes"][-1] == {"name": "exercise", "configMap": {"name": "cm"}}
    # A fetch pod is not lab code: nothing is injected into it.
    fetch = o.fetch_pod(CFG, "f", lbls, "/mnt/work/x")
    assert o.pod_specs(fetch) == []
    with pytest.raises(ValueError, match=r"exercise files are .* bytes"):
        o.exercise_configmap("big", lbls, {"big.py": "x" * (o.CONFIGMAP_LIMIT + 1)})


def test_the_backend_creates_one_exercise_configmap_per_namespace_and_injects_it(tmp_path, monkeypatch):
    from mllab.backends.k8s import K8sBackend

    (tmp_path / "checkpoint.py").write_text("x = 1\n")
    backend = K8sBackend.__new__(K8sBackend)
    backend.cfg, backend.run_id, backend.lab, backend._created = CFG, "r1", 2, []
    created: list[tuple[str, dict]] = []

    class Api:
        def __getattr__(self, name):
            return lambda ns, body: created.append((ns, body))

    monkeypatch.setattr(backend, "_api", lambda kind: Api(), raising=False)
    monkeypatch.setattr(backend, "_client", type("C", (), {"ApiException": Exception}), raising=False)
    backend.bind(2, exercise=tmp_path)
    job = o.job(CFG, "mllab-a-abc", o.labels(2, "a", "r1"), ["true"], {}, 0, None)
    backend._create(job, "ml-training")
    backend._create(o.job(CFG, "mllab-b-abc", o.labels(2, "b", "r1"), ["true"], {}, 0, None), "ml-training")
    kinds = [(ns, b["kind"]) for ns, b in created]
    assert kinds == [("ml-training", "ConfigMap"), ("ml-training", "Job"), ("ml-training", "Job")]
    assert created[0][1]["data"] == {"checkpoint.py": "x = 1\n"}
    assert created[0][1]["metadata"]["labels"]["mllab.io/lab"] == "02"  # `mllab reset 2` deletes it
    assert o.pod_specs(job)[0]["volumes"][-1]["configMap"]["name"] == created[0][1]["metadata"]["name"]
    backend.bind(2, exercise=None)
    plain = o.job(CFG, "mllab-c-abc", o.labels(2, "c", "r1"), ["true"], {}, 0, None)
    backend._create(plain, "ml-training")
    assert all(v["name"] != "exercise" for v in o.pod_specs(plain)[0]["volumes"])
