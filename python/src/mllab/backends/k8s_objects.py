"""The Kubernetes objects the k8s backend creates, as plain dicts (pure functions, unit-tested
and schema-validated offline; mllab.backends.k8s sends them through the kubernetes client).

Every object carries `app.kubernetes.io/managed-by: mllab` and `mllab.io/lab: "NN"`, so
`mllab reset N` and Ctrl-C find exactly what a lab created. Pods follow the platform's
container security settings (non-root, no privilege escalation, no capabilities).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

WORK_MOUNT = "/mnt/work"  # the work PVC (checkpoints, outputs) inside every lab pod
RUN_AS = 1000  # the lab image's files are world-readable; HOME=/work is 1777
MANAGED_BY = {"app.kubernetes.io/managed-by": "mllab"}
RDZV_PORT = 29500
ARCHIVE_BEGIN, ARCHIVE_END = "MLLAB-ARCHIVE-BEGIN", "MLLAB-ARCHIVE-END"  # frame the fetch pod's archive


def dns_label(*parts: str, max_len: int = 63) -> str:
    """A valid DNS-1123 label from `parts` (lowercase alphanumerics and '-', at most max_len)."""
    raw = "-".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:max_len].rstrip("-")
    if not name:
        raise ValueError(f"no valid Kubernetes name can be made from {parts!r}")
    return name


def unique_name(base: str, max_len: int = 52) -> str:
    """`base` plus a random suffix; 52 characters leave room for the Job controller's pod suffixes."""
    suffix = secrets.token_hex(3)
    return f"{dns_label(base, max_len=max_len - len(suffix) - 1)}-{suffix}"


@dataclass(frozen=True)
class K8sConfig:
    """Where and how lab workloads run; every field has an MLLAB_* environment variable."""

    image: str = "mllab.local/mllab:0.1.0"
    namespace: str = "ml-training"  # Jobs, trials and distributed jobs
    serving_namespace: str = "ml-serving"  # InferenceServices
    service_account: str = "mllab-lab-runner"
    work_pvc: str = "checkpoints"
    models_pvc: str = "models"
    job_tracking_uri: str = ""  # MLflow as pods reach it (default: MLFLOW_TRACKING_URI)
    gpus: str = "auto"  # auto (allocatable nvidia.com/gpu on a node) | 0 | 1...
    ttl_seconds: int = 86400  # finished Jobs stay a day for `mllab check`, then go
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"

    ENV: ClassVar[dict[str, str]] = {
        "image": "MLLAB_IMAGE",
        "namespace": "MLLAB_TRAINING_NAMESPACE",
        "serving_namespace": "MLLAB_SERVING_NAMESPACE",
        "service_account": "MLLAB_SERVICE_ACCOUNT",
        "work_pvc": "MLLAB_WORK_PVC",
        "models_pvc": "MLLAB_MODELS_PVC",
        "job_tracking_uri": "MLLAB_JOB_TRACKING_URI",
        "gpus": "MLLAB_GPUS",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> K8sConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {f: env[v] for f, v in cls.ENV.items() if env.get(v)}
        if not values.get("job_tracking_uri") and env.get("MLFLOW_TRACKING_URI"):
            values["job_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        from mllab.errors import UsageError

        for f in ("namespace", "serving_namespace", "service_account", "work_pvc", "models_pvc"):
            value = getattr(self, f)
            if value != dns_label(value):
                raise UsageError(
                    f"{self.ENV[f]}={value!r} is not a valid Kubernetes name",
                    "use lowercase letters, digits and '-' (e.g. ml-training)",
                )
        if not re.fullmatch(r"[^\s]+", self.image):
            raise UsageError(f"MLLAB_IMAGE={self.image!r} is not an image reference", "e.g. mllab.local/mllab:0.1.0")
        if self.gpus != "auto" and not self.gpus.isdigit():
            raise UsageError(f"MLLAB_GPUS={self.gpus!r} is neither 'auto' nor a number", "use auto, 0 or 1")


def labels(lab: int | None, job: str, run_id: str) -> dict[str, str]:
    from mllab.learner import learner

    out = {**MANAGED_BY, "mllab.io/job": dns_label(job), "mllab.io/run": run_id}
    if lab is not None:
        out["mllab.io/lab"] = f"{lab:02d}"
    if learner():
        out["mllab.io/learner"] = learner()
    return out


def _security() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def container(
    cfg: K8sConfig,
    command: list[str],
    env: Mapping[str, str],
    gpus: int = 0,
    extra_env: list[dict[str, Any]] | None = None,
    name: str = "main",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    _, sec = _security()
    limits: dict[str, str] = {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    from mllab.learner import ENV, learner

    base_env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": cfg.job_tracking_uri}
    if learner():
        base_env[ENV] = learner()  # the same experiment and model names in the pods
    c: dict[str, Any] = {
        "name": name,
        "image": cfg.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": k, "value": str(v)} for k, v in {**base_env, **env}.items() if v != ""] + (extra_env or []),
        # MLflow's basic-auth credentials when the platform has them (the mlflow role's Secret).
        "envFrom": [{"secretRef": {"name": "mlflow-credentials", "optional": True}}],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": limits},
        "securityContext": sec,
        "volumeMounts": [{"name": "work", "mountPath": WORK_MOUNT}],
    }
    if ports:
        c["ports"] = ports
    return c


def pod_spec(cfg: K8sConfig, containers: list[dict[str, Any]], restart: str = "Never", **extra: Any) -> dict[str, Any]:
    pod_sec, _ = _security()
    return {
        "serviceAccountName": cfg.service_account,
        "automountServiceAccountToken": False,  # lab code never calls the API
        "restartPolicy": restart,
        "securityContext": pod_sec,
        "containers": containers,
        "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": cfg.work_pvc}}],
        **extra,
    }


# A Job's command runs under this shell: it numbers the attempts (MLLAB_JOB_ATTEMPT, as the local
# backend does; a replacement pod cannot know how many came before it) with a counter in the job's
# working directory, and keeps the job off PID 1, which ignores signals it sends itself (SIGKILL).
ATTEMPT_WRAPPER = (
    'mkdir -p "$MLLAB_WORKDIR" && n=$(cat "$MLLAB_WORKDIR/.attempts" 2>/dev/null || echo 0) && '
    'n=$((n + 1)) && echo "$n" > "$MLLAB_WORKDIR/.attempts" && MLLAB_JOB_ATTEMPT=$n "$@"'
)


def job(
    cfg: K8sConfig,
    name: str,
    lbls: dict[str, str],
    command: list[str],
    env: Mapping[str, str],
    backoff_limit: int,
    deadline: float | None,
    gpus: int = 0,
    workdir: str = "",
) -> dict[str, Any]:
    """A batch/v1 Job: a killed or failed pod is replaced up to backoffLimit times. With `workdir`,
    the command runs under ATTEMPT_WRAPPER (MLLAB_JOB_ATTEMPT = 1, 2, ... per pod)."""
    if workdir:
        command = ["sh", "-c", ATTEMPT_WRAPPER, "mllab-job", *command]
        env = {**env, "MLLAB_WORKDIR": workdir}
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": cfg.ttl_seconds,
        "template": {"metadata": {"labels": lbls}, "spec": pod_spec(cfg, [container(cfg, command, env, gpus)])},
    }
    if deadline:
        spec["activeDeadlineSeconds"] = int(deadline)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": lbls}, "spec": spec}


def distributed_job(
    cfg: K8sConfig,
    name: str,
    lbls: dict[str, str],
    module_argv: list[str],
    env: Mapping[str, str],
    nproc: int,
    backoff_limit: int,
    deadline: float | None,
    gpus: int = 0,
) -> list[dict[str, Any]]:
    """torchrun on `nproc` pods: an Indexed Job (one rank per index) plus the headless Service that
    gives pod 0 a DNS name (`<job>-0.<job>`) for the static rendezvous. gpus: per rank (0 or 1;
    ddp_train then uses nccl on CUDA)."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    rank_env = [{"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}}]
    command = [
        "python",
        "-m",
        "torch.distributed.run",
        f"--nnodes={nproc}",
        "--nproc-per-node=1",
        "--node-rank=$(NODE_RANK)",
        f"--master-addr={name}-0.{name}",
        f"--master-port={RDZV_PORT}",
        *module_argv,
    ]
    c = container(
        cfg, command, env, gpus, extra_env=rank_env, ports=[{"name": "rendezvous", "containerPort": RDZV_PORT}]
    )
    obj = job(cfg, name, lbls, command, env, backoff_limit, deadline)
    obj["spec"].update(completionMode="Indexed", completions=nproc, parallelism=nproc)
    # A rank that dies takes the others down with it (torchrun), so the whole Job retries.
    obj["spec"]["template"]["spec"].update(containers=[c], subdomain=name)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": lbls},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # rank 0 must resolve before any pod is Ready
            "selector": {"job-name": name},
            "ports": [{"name": "rendezvous", "port": RDZV_PORT, "targetPort": RDZV_PORT}],
        },
    }
    return [service, obj]


def trial_job(
    cfg: K8sConfig,
    name: str,
    lbls: dict[str, str],
    calls: list[dict[str, Any]],
    parallel: int,
    deadline: float | None,
) -> dict[str, Any]:
    """A hyperparameter search as one Indexed Job: trial i is completion index i
    (`python -m mllab.backends.k8s_call` picks calls[JOB_COMPLETION_INDEX] from MLLAB_CALLS),
    `parallel` trials at once, each tried once (backoffLimitPerIndex 0: a failed trial is a
    result, the other indexes go on)."""
    if not calls:
        raise ValueError("a trial job needs at least one call")
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    env = {"MLLAB_CALLS": json.dumps(calls, separators=(",", ":"))}
    obj = job(cfg, name, lbls, ["python", "-m", "mllab.backends.k8s_call"], env, 0, deadline)
    del obj["spec"]["backoffLimit"]  # per index instead
    obj["spec"].update(
        completionMode="Indexed",
        completions=len(calls),
        parallelism=min(parallel, len(calls)),
        backoffLimitPerIndex=0,
    )
    return obj


def archive_from_log(log: str) -> bytes:
    """The archive a fetch pod printed between its markers (anything else on the log is ignored),
    checked against the SHA-256 the pod printed after it. A container's log can lose its last
    bytes when the container exits at once (containerd: "Failed to pipe stdout ... file already
    closed"), so a short or altered archive is a ValueError the caller retries, never a bad tar."""
    import base64
    import hashlib

    begin, end = log.find(ARCHIVE_BEGIN), log.rfind(ARCHIVE_END)
    if begin < 0 or end < begin:
        raise ValueError(f"no archive in the fetch pod's log; it ends with: {log[-300:]!r}")
    # base64 in 76-character lines: no log line is long enough for the runtime to split it
    try:
        data = base64.b64decode("".join(log[begin + len(ARCHIVE_BEGIN) : end].split()), validate=True)
    except ValueError as exc:  # binascii.Error: a line lost, or cut mid-line
        raise ValueError(f"the fetch pod's archive is damaged: {exc}") from None
    tail = log[end + len(ARCHIVE_END) :].split()
    want = tail[0] if tail else ""
    got = hashlib.sha256(data).hexdigest()
    if want != got:
        raise ValueError(f"the fetch pod's archive is damaged: sha256 {got}, the pod printed {want or 'none'}")
    return data


def fetch_pod(cfg: K8sConfig, name: str, lbls: dict[str, str], pod_dir: str) -> dict[str, Any]:
    """A one-shot pod that prints `pod_dir` (checkpoints excluded) as a base64 tar.gz on its log
    (between markers, in short lines, then its SHA-256):
    how a job's outputs come back to the machine running `mllab`. It lingers a second after
    printing so that the runtime has read all of its stdout before it exits."""
    script = (
        f"cd {pod_dir} && tar -cz --exclude=./checkpoints -f /tmp/out.tgz . && "
        f"echo {ARCHIVE_BEGIN} && base64 /tmp/out.tgz && "
        f"echo {ARCHIVE_END} $(sha256sum /tmp/out.tgz | cut -d' ' -f1) && sleep 1"
    )
    c = container(cfg, ["sh", "-c", script], {})
    c["resources"] = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": lbls},
        "spec": pod_spec(cfg, [c]),
    }


SERVE_PORT = 8080
MODELS_DIR = "/tmp/models"  # the model server's copy of the models (an emptyDir)
CONFIGMAP_LIMIT = 1_000_000  # bytes a ConfigMap may hold (1 MiB, less the object's own fields)


def models_configmap(name: str, lbls: dict[str, str], archive: bytes) -> dict[str, Any]:
    """The model directories (tar.gz) for a model server, as binaryData."""
    import base64

    if len(archive) > CONFIGMAP_LIMIT:
        raise ValueError(
            f"the models archive is {len(archive)} bytes; a ConfigMap holds at most {CONFIGMAP_LIMIT}: "
            "serve smaller models, or put them on the models PVC"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": lbls},
        "binaryData": {"models.tgz": base64.b64encode(archive).decode()},
    }


def server_pod(cfg: K8sConfig, server_argv: list[str], configmap: str) -> dict[str, Any]:
    """The KServe-protocol model server (python -m mllab.serving) with its models unpacked from a
    ConfigMap: the pod of an InferenceService's predictor, or of a plain Deployment."""
    script = f"mkdir -p {MODELS_DIR} && tar -xzf /dist/models.tgz -C {MODELS_DIR} && exec " + " ".join(
        shlex_quote(a) for a in server_argv
    )
    c = container(cfg, ["sh", "-c", script], {}, name="kserve-container")
    c["ports"] = [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}]
    c["volumeMounts"] = [{"name": "dist", "mountPath": "/dist", "readOnly": True}]
    c["readinessProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": SERVE_PORT}, "periodSeconds": 2}
    c["resources"] = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    c.pop("envFrom")  # the server does not talk to MLflow
    pod_sec, _ = _security()
    return {
        "securityContext": pod_sec,
        "automountServiceAccountToken": False,
        "serviceAccountName": cfg.service_account,
        "containers": [c],
        "volumes": [{"name": "dist", "configMap": {"name": configmap}}],
    }


def exercise_configmap(name: str, lbls: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    """The learner's exercise files (mllab.exercise.configmap_data) for the lab's pods to mount."""
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_LIMIT:
        raise ValueError(
            f"the exercise files are {size} bytes; a ConfigMap holds at most {CONFIGMAP_LIMIT}: "
            "keep data and models out of the exercise folder"
        )
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": lbls}, "data": data}


def pod_specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a Job, Deployment or InferenceService (its predictor)."""
    kind = body.get("kind")
    if kind in ("Job", "Deployment"):
        return [body["spec"]["template"]["spec"]]
    if kind == "InferenceService":
        return [body["spec"]["predictor"]]
    return []


def with_exercise(body: dict[str, Any], configmap: str, mount: str, env_name: str) -> dict[str, Any]:
    """`body` with the exercise ConfigMap mounted read-only at `mount` in every container, and
    `env_name` naming that folder (how the learner's code reaches the lab's pods)."""
    for spec in pod_specs(body):
        spec.setdefault("volumes", []).append({"name": "exercise", "configMap": {"name": configmap}})
        for c in spec["containers"]:
            c.setdefault("volumeMounts", []).append({"name": "exercise", "mountPath": mount, "readOnly": True})
            c.setdefault("env", []).append({"name": env_name, "value": mount})
    return body


def inference_service(name: str, lbls: dict[str, str], pod: dict[str, Any]) -> dict[str, Any]:
    """A KServe InferenceService in Standard (raw Deployment) mode with a custom predictor container."""
    predictor = {"minReplicas": 1, "maxReplicas": 1, **pod}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": lbls, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {"predictor": predictor},
    }


def deployment_and_service(name: str, lbls: dict[str, str], pod: dict[str, Any]) -> list[dict[str, Any]]:
    """What KServe's Standard mode would create, for clusters without KServe: a Deployment + Service."""
    selector = {"mllab.io/server": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": lbls},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": {**lbls, **selector}}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {**lbls, **selector}},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": SERVE_PORT}]},
        },
    ]


def shlex_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def service_monitor(
    name: str, lbls: dict[str, str], service_selector: dict[str, str], stack_labels: dict[str, str]
) -> dict[str, Any]:
    """A prometheus-operator ServiceMonitor for a lab's model server: /metrics on the server's port,
    labelled so the platform's Prometheus (kube-prometheus-stack, `release: kube-prom-stack`) selects
    it; the monitoring role's PrometheusRule `mllab-ml-alerts` then applies to its metrics."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": {**lbls, **stack_labels}},
        "spec": {
            "selector": {"matchLabels": service_selector},
            "endpoints": [{"targetPort": SERVE_PORT, "path": "/metrics", "interval": "15s"}],
        },
    }


def parse_labels(raw: str) -> dict[str, str]:
    """`a=b,c=d` -> {"a": "b", "c": "d"} (MLLAB_MONITOR_LABELS)."""
    out = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            from mllab.errors import UsageError

            raise UsageError(f"MLLAB_MONITOR_LABELS item {item!r} is not key=value", "e.g. release=kube-prom-stack")
        out[key] = value
    return out
