"""The k8s backend: a lab's jobs, trials and distributed jobs run on the cluster, through the
kubernetes client and a kubeconfig (or the pod's service account inside JupyterLab).

- Jobs (lab 1, 2, 7): a batch/v1 Job with backoffLimit, activeDeadlineSeconds and
  ttlSecondsAfterFinished; a killed pod is replaced by the Job controller and the training
  resumes from its checkpoint on the work PVC.
- Trials (lab 4): one Job per trial, like Katib's Trials, started by an Executor the search
  drives; each trial's result comes back as its pod's termination message.
- Distributed (lab 5): an Indexed Job (one rank per index) and a headless Service; torchrun's
  static rendezvous on pod 0.
- A job's working directory lives on the work PVC (`checkpoints` in the training namespace);
  when the job is done a one-shot pod streams it back (tar + base64 on its log), so the lab
  reads the same files as with the local backend.

Logs stream to the console while a job runs; Ctrl-C deletes what the lab created; every object
is labelled `mllab.io/lab` so `mllab reset N` removes it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllab import procs
from mllab.backends import k8s_objects as obj
from mllab.backends.base import Backend, Endpoint, JobResult, JobSpec, ServeSpec
from mllab.errors import BackendUnavailable, JobFailed, MllabError, TrackingUnavailable

if TYPE_CHECKING:
    from mllab.prometheus import RuleSet

# Waiting reasons that will not fix themselves: fail at once with the image named.
IMAGE_ERRORS = {
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
}
POLL_S = 1.0
FETCH_TRIES = 3  # fetch pods per job output before giving up (a log can lose its tail)
ISVC = ("serving.kserve.io", "v1beta1")  # + namespace, "inferenceservices"
MONITORING = ("monitoring.coreos.com", "v1")  # + namespace, "servicemonitors"
# The custom resources a lab creates: kind -> (group, version, plural)
CUSTOM = {
    "InferenceService": (*ISVC, "inferenceservices"),
    "ServiceMonitor": (*MONITORING, "servicemonitors"),
    "PrometheusRule": (*MONITORING, "prometheusrules"),
}
# The Service of the MicroK8s observability addon's Prometheus (kube-prometheus-stack's
# <release>-kube-prome-prometheus), in MLLAB_MONITORING_NAMESPACE; MLLAB_PROMETHEUS_URL overrides.
MONITORING_NAMESPACE = "observability"
RULE_LOAD_TIMEOUT_S = 240  # the operator writes the rule file, the kubelet syncs the volume, the reloader reloads


def load_kube_config() -> None:
    """In a pod (JupyterLab): the service account; elsewhere: KUBECONFIG or ~/.kube/config."""
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
        return
    try:
        config.load_kube_config()
    except Exception as exc:  # missing file, bad context: one clear message
        raise BackendUnavailable(
            f"no usable kubeconfig for the k8s backend ({exc})",
            "set KUBECONFIG to the lab cluster's kubeconfig (make site writes artifacts/kubeconfig), "
            "or run inside the platform's JupyterLab",
        ) from None


def reset_lab(lab: int, namespaces: list[str]) -> list[str]:
    """Delete every object labelled for lab `lab` in `namespaces` (in a class, only the learner's:
    mllab.learner); returns what was deleted."""
    from kubernetes import client

    from mllab.learner import learner

    load_kube_config()
    batch, core, custom = client.BatchV1Api(), client.CoreV1Api(), client.CustomObjectsApi()
    selector = f"app.kubernetes.io/managed-by=mllab,mllab.io/lab={lab:02d}"
    if learner():
        selector += f",mllab.io/learner={learner()}"
    gone: list[str] = []
    for ns in namespaces:
        for j in batch.list_namespaced_job(ns, label_selector=selector).items:
            batch.delete_namespaced_job(j.metadata.name, ns, propagation_policy="Background")
            gone.append(f"job/{ns}/{j.metadata.name}")
        apps = client.AppsV1Api()
        for kind, lister, deleter in (
            ("deployment", apps.list_namespaced_deployment, apps.delete_namespaced_deployment),
            ("service", core.list_namespaced_service, core.delete_namespaced_service),
            ("configmap", core.list_namespaced_config_map, core.delete_namespaced_config_map),
            ("pod", core.list_namespaced_pod, core.delete_namespaced_pod),
        ):
            for o in lister(ns, label_selector=selector).items:
                if kind == "pod" and o.metadata.owner_references:
                    continue  # a Job's pods go with their Job
                deleter(o.metadata.name, ns)
                gone.append(f"{kind}/{ns}/{o.metadata.name}")
        try:
            isvcs = custom.list_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", ns, "inferenceservices", label_selector=selector
            )["items"]
        except client.ApiException:  # KServe not installed
            isvcs = []
        for o in isvcs:
            custom.delete_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", ns, "inferenceservices", o["metadata"]["name"]
            )
            gone.append(f"inferenceservice/{ns}/{o['metadata']['name']}")
    return gone


class K8sBackend(Backend):
    name = "k8s"

    def __init__(self, cfg: obj.K8sConfig | None = None, console: Any = None) -> None:
        self.cfg = cfg or obj.K8sConfig.from_env()
        load_kube_config()
        from kubernetes import client

        self._client = client
        self.batch = client.BatchV1Api()
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.custom = client.CustomObjectsApi()
        self.lab: int | None = None
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + obj.unique_name("r")[-6:]
        self._created: list[tuple[str, str, str]] = []  # (kind, namespace, name), in creation order
        self._exercise_cms: dict[str, str] = {}  # namespace -> the run's exercise ConfigMap there (bind())
        self._tracking: str | None = None
        self._gpus: int | None = None
        self.console = console
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    def bind(self, lab: int, console: Any = None, exercise: Path | None = None) -> None:
        super().bind(lab, console, exercise)
        self.lab = lab
        self._exercise_cms = {}
        if console is not None:
            self.console = console

    def _exercise_configmap(self, namespace: str) -> str:
        """The ConfigMap holding the learner's files in `namespace`, created on first use."""
        from mllab.exercise import configmap_data

        cms = self._exercise_cms
        if namespace not in cms:
            name = obj.unique_name(f"mllab-exercise-{self.lab or 0:02d}")
            try:
                body = obj.exercise_configmap(name, self._labels("exercise"), configmap_data(self.exercise))
            except ValueError as exc:
                raise MllabError(str(exc), "") from None
            self._create(body, namespace)
            cms[namespace] = name
        return cms[namespace]

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False, markup=False)
        else:
            print(text, flush=True)

    # --- tracking ------------------------------------------------------------------------
    def tracking_uri(self) -> str:
        if self._tracking:
            return self._tracking
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri:
            raise TrackingUnavailable(
                "the k8s backend needs the platform's MLflow: MLFLOW_TRACKING_URI is not set",
                "in JupyterLab it is set for you; elsewhere export MLFLOW_TRACKING_URI (the labs role writes it "
                "to /etc/profile.d/mllab.sh on the control host)",
            )
        from mllab.backends.local import check_tracking_uri

        check_tracking_uri(uri)
        if not self.cfg.job_tracking_uri:
            raise TrackingUnavailable(
                "no MLflow URI for the lab pods", "set MLLAB_JOB_TRACKING_URI (or MLFLOW_TRACKING_URI)"
            )
        self._tracking = uri
        return uri

    # --- cluster facts -------------------------------------------------------------------
    def gpus(self) -> int:
        """GPUs the cluster offers this learner: MLLAB_GPUS (the labs layer sets it from what the
        nodes advertise; a learner may not list nodes), or with auto the allocatable nvidia.com/gpu
        of all nodes. A training pod asks for one of them; lab 5 one per rank."""
        if self._gpus is not None:
            return self._gpus
        if self.cfg.gpus != "auto":
            self._gpus = int(self.cfg.gpus)
            return self._gpus
        try:
            nodes = self.core.list_node().items
            self._gpus = sum(int((n.status.allocatable or {}).get("nvidia.com/gpu", "0")) for n in nodes)
        except self._client.ApiException as exc:
            if exc.status != 403:
                raise
            self._gpus = 0  # a lab account may not list nodes: CPU unless MLLAB_GPUS says otherwise
            self._say("note: cannot list nodes (RBAC); running on CPU; set MLLAB_GPUS=1 to request a GPU")
        return self._gpus

    # --- objects -------------------------------------------------------------------------
    def _labels(self, job: str) -> dict[str, str]:
        return obj.labels(self.lab, job, self.run_id)

    def _create(self, body: dict[str, Any], namespace: str) -> None:
        kind, name = body["kind"], body["metadata"]["name"]
        if self.exercise is not None and obj.pod_specs(body):
            from mllab.exercise import EXERCISE_ENV, EXERCISE_MOUNT

            obj.with_exercise(body, self._exercise_configmap(namespace), EXERCISE_MOUNT, EXERCISE_ENV)
        try:
            if kind in CUSTOM:
                group, version, plural = CUSTOM[kind]
                self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)
            else:
                getattr(self._api(kind), f"create_namespaced_{_snake(kind)}")(namespace, body)
        except self._client.ApiException as exc:
            hint = {
                403: f"the account in your kubeconfig may not create {kind}s in {namespace}: "
                "use the labs' kubeconfig (labs role) or JupyterLab",
                404: f"namespace {namespace} does not exist: run the platform layer (make site) "
                "or set MLLAB_TRAINING_NAMESPACE",
                422: "the object was rejected as invalid; please report it",
            }.get(exc.status, "see the API server's message above")
            raise MllabError(
                f"cannot create {kind} {namespace}/{name}: {exc.status} {exc.reason}: {_msg(exc)}", hint
            ) from None
        self._created.append((kind, namespace, name))

    def _api(self, kind: str) -> Any:
        return {"Job": self.batch, "Deployment": self.apps}.get(kind, self.core)

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            if kind in CUSTOM:
                group, version, plural = CUSTOM[kind]
                self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
            else:
                kw: dict[str, Any] = {"propagation_policy": "Background"}
                if kind == "Pod":
                    kw["grace_period_seconds"] = 0
                getattr(self._api(kind), f"delete_namespaced_{_snake(kind)}")(name, namespace, **kw)
        except self._client.ApiException as exc:
            if exc.status != 404:
                raise

    def cleanup(self) -> list[str]:
        """Delete everything this backend created (Ctrl-C, or a failed run)."""
        gone = []
        for kind, ns, name in reversed(self._created):
            self._delete(kind, ns, name)
            gone.append(f"{kind.lower()}/{ns}/{name}")
        self._created.clear()
        return gone

    # --- jobs ----------------------------------------------------------------------------
    def pod_dir(self, spec: JobSpec) -> str:
        if spec.shared_key:
            return self.shared_dir(spec.shared_key)
        return f"{obj.WORK_MOUNT}/mllab/{self.run_id}/{obj.dns_label(spec.name)}"

    @staticmethod
    def shared_dir(key: str) -> str:
        """A content-addressed folder on the work PVC that outlives runs (pipeline step outputs)."""
        return f"{obj.WORK_MOUNT}/mllab/shared/{obj.dns_label(key)}"

    def _translate(self, spec: JobSpec) -> tuple[list[str], dict[str, str]]:
        """The job's arguments and environment with its local working directory mapped to the PVC."""
        local, remote = str(spec.workdir), self.pod_dir(spec)

        def tr(value: str) -> str:
            return remote + value[len(local) :] if value == local or value.startswith(local + "/") else value

        env = {k: tr(v) for k, v in spec.env.items()}
        env.setdefault("MLLAB_JOB_NAME", spec.name)
        return [tr(a) for a in spec.args], env

    def run_job(self, spec: JobSpec) -> JobResult:
        args, env = self._translate(spec)
        name = obj.unique_name(f"mllab-{spec.name}")
        # A job that wants GPUs gets them when a node has some; otherwise it runs on the CPU (lab 1
        # then reports "skipped: no GPU") instead of waiting forever for an unschedulable pod.
        available = self.gpus()
        gpus = min(spec.gpus, available) if spec.gpus else (min(1, available) if spec.module == "mllab.training" else 0)
        if spec.gpus and not gpus:
            self._say(f"job {spec.name}: no node has allocatable nvidia.com/gpu; running on the CPU")
        body = obj.job(
            self.cfg,
            name,
            self._labels(spec.name),
            ["python", "-m", spec.module, *args],
            env,
            spec.backoff_limit,
            spec.active_deadline_seconds,
            gpus,
            workdir=self.pod_dir(spec),
        )
        return self._run(spec, [body])

    def run_distributed(self, spec: JobSpec, nproc: int) -> JobResult:
        if nproc < 1:
            raise MllabError(f"nproc must be >= 1, got {nproc}", "pass a positive number of processes")
        args, env = self._translate(spec)
        name = obj.unique_name(f"mllab-{spec.name}", max_len=40)  # room for "-<index>-<pod suffix>"
        # A GPU per rank when the cluster has one for every rank; a rank without one would wait
        # unschedulable, so fewer GPUs than ranks means all ranks on the CPU (gloo).
        available = self.gpus()
        per_rank = 1 if available >= nproc else 0
        if available and not per_rank:
            self._say(f"job {spec.name}: {nproc} ranks but {available} GPU(s) in the cluster: running on the CPU")
        bodies = obj.distributed_job(
            self.cfg,
            name,
            self._labels(spec.name),
            ["-m", spec.module, *args],
            env,
            nproc,
            spec.backoff_limit,
            spec.active_deadline_seconds,
            per_rank,
        )
        return self._run(spec, bodies)

    def _run(self, spec: JobSpec, bodies: list[dict[str, Any]]) -> JobResult:
        self.tracking_uri()
        spec.workdir.mkdir(parents=True, exist_ok=True)
        log = spec.workdir / f"{spec.name}.log"
        ns = self.cfg.namespace
        job_body = next(b for b in bodies if b["kind"] == "Job")
        name = job_body["metadata"]["name"]
        start = time.monotonic()
        try:
            for body in bodies:
                self._create(body, ns)
            self._say(f"job {ns}/{name}: created (image {self.cfg.image})")
            status = self._wait(name, log)
            pods = self._pods(name)
            codes = [c for p in pods for c in _exit_codes(p)]
            attempts = len({p.metadata.name for p in pods if not _is_indexed(p)}) or _attempts(pods)
            if status == "Succeeded":
                self._fetch(spec)
            for body in bodies:
                if body["kind"] == "Service":
                    self._delete("Service", ns, body["metadata"]["name"])
        except BaseException:
            gone = self.cleanup()
            self._say(f"interrupted: deleted {', '.join(gone) or 'nothing'}")
            raise
        return JobResult(spec.name, status, attempts, codes, time.monotonic() - start, log, ref=f"{ns}/{name}")

    def job_state(self, ref: str) -> dict[str, object] | None:
        """The Job as the cluster has it now: conditions and pod counts (None: it is gone)."""
        ns, _, name = ref.partition("/")
        try:
            j = self.batch.read_namespaced_job_status(name, ns)
        except self._client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        conds = {c.type: c.status == "True" for c in j.status.conditions or []}
        return {
            "complete": conds.get("Complete", False),
            "failed": conds.get("Failed", False),
            "succeeded_pods": j.status.succeeded or 0,
            "failed_pods": j.status.failed or 0,
            "backoff_limit": j.spec.backoff_limit,
        }

    def _pods(self, job: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(self.cfg.namespace, label_selector=f"job-name={job}").items
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp)

    def _wait(self, job: str, log: Path, echo: bool = True) -> str:
        """Follow the Job until it completes or fails; stream each pod's log as it runs (to `log`,
        and to the console with `echo`)."""
        followed: set[str] = set()
        threads: list[threading.Thread] = []
        lock = threading.Lock()
        while True:
            j = self.batch.read_namespaced_job_status(job, self.cfg.namespace)
            for pod in self._pods(job):
                self._check_pod(pod)
                pname = pod.metadata.name
                if pname not in followed and pod.status.phase in ("Running", "Succeeded", "Failed"):
                    followed.add(pname)
                    t = threading.Thread(target=self._follow, args=(pname, log, lock, echo), daemon=True)
                    t.start()
                    threads.append(t)
            for cond in j.status.conditions or []:
                if cond.status == "True" and cond.type in ("Complete", "Failed"):
                    for t in threads:
                        t.join(timeout=10)
                    if cond.type == "Complete":
                        return "Succeeded"
                    return "DeadlineExceeded" if cond.reason == "DeadlineExceeded" else "Failed"
            time.sleep(POLL_S)

    def _check_pod(self, pod: Any) -> None:
        for cs in (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []):
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason in IMAGE_ERRORS:
                raise MllabError(
                    f"pod {pod.metadata.name} cannot start its container: {waiting.reason} for image "
                    f"{self.cfg.image!r} ({waiting.message or 'no message'})",
                    "build the lab image (make lab-image) and import it into the cluster's containerd, or set "
                    "MLLAB_IMAGE (mllab_image in the inventory) to an image your nodes can pull",
                )

    def _follow(self, pod: str, log: Path, lock: threading.Lock, echo: bool = True) -> None:
        try:
            resp = self.core.read_namespaced_pod_log(pod, self.cfg.namespace, follow=True, _preload_content=False)
            for raw in resp:
                for line in raw.decode(errors="replace").splitlines():
                    with lock, open(log, "a") as fh:
                        fh.write(f"[{pod}] {line}\n")
                    if echo:
                        self._say(f"  [{pod}] {line}")
        except Exception as exc:  # a log stream that breaks must not break the job
            with lock, open(log, "a") as fh:
                fh.write(f"[{pod}] (log stream ended: {exc})\n")

    def _fetch(self, spec: JobSpec) -> None:
        """Copy the job's working directory from the work PVC into spec.workdir. The copy travels
        on a one-shot pod's log, which the runtime can cut short: a damaged archive is fetched
        again by a fresh pod (FETCH_TRIES in all); nothing is extracted until one is whole."""
        why = ""
        for _ in range(FETCH_TRIES):
            try:
                archive = obj.archive_from_log(self._fetch_log(spec))
                with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                    tar.extractall(spec.workdir, filter="data")
                return
            except (ValueError, tarfile.TarError) as exc:
                why = str(exc)
                self._say(f"fetching {spec.name}'s outputs: {why}; fetching again")
        raise JobFailed(
            f"fetching {spec.name}'s outputs failed {FETCH_TRIES} times: {why}",
            "the outputs are still on the work PVC; see the fetch pods' events (kubectl -n "
            f"{self.cfg.namespace} get events) and run the lab again",
        )

    def _fetch_log(self, spec: JobSpec) -> str:
        """Run one fetch pod to its end; its log (the archive between markers)."""
        name = obj.unique_name(f"mllab-fetch-{spec.name}")
        self._create(obj.fetch_pod(self.cfg, name, self._labels(spec.name), self.pod_dir(spec)), self.cfg.namespace)
        deadline = time.monotonic() + 300
        while True:
            pod = self.core.read_namespaced_pod(name, self.cfg.namespace)
            self._check_pod(pod)
            if pod.status.phase in ("Succeeded", "Failed"):
                break
            if time.monotonic() > deadline:
                self._delete("Pod", self.cfg.namespace, name)
                raise JobFailed(f"fetching {spec.name}'s outputs: pod {name} did not finish in 300 s", "")
            time.sleep(POLL_S)
        # The raw bytes: this client's str result is the repr of the bytes (b'...').
        resp = self.core.read_namespaced_pod_log(name, self.cfg.namespace, _preload_content=False)
        text = resp.data.decode(errors="replace")
        self._delete("Pod", self.cfg.namespace, name)
        if pod.status.phase != "Succeeded":
            raise JobFailed(f"fetching {spec.name}'s outputs failed: {text[-500:]}", "")
        return text

    # --- pipeline steps (lab 8) ------------------------------------------------------------
    def run_step(
        self,
        fn: Callable[[dict[str, Path], dict[str, Any], Path], dict[str, Any]],
        inputs: dict[str, Path],
        params: dict[str, Any],
        out: Path,
        key: str,
        input_keys: dict[str, str],
    ) -> dict[str, Any]:
        """A pipeline step as a Job (`python -m mllab.pipeline_step`): it reads its inputs from, and
        writes its output to, content-addressed folders on the work PVC (shared_dir), so the chain
        of step Jobs shares one volume; the output is then fetched into `out`."""
        args = ["--fn", f"{fn.__module__}:{fn.__qualname__}", "--params", json.dumps(params), "--out", str(out)]
        for name in inputs:
            args += ["--input", f"{name}={self.shared_dir(input_keys[name])}"]
        spec = JobSpec(key, "mllab.pipeline_step", args, workdir=out, active_deadline_seconds=1800, shared_key=key)
        res = self.run_job(spec)
        log = out.parent / res.log.name
        if res.log.exists():  # the job's log is not part of the step's output (nor of its version)
            res.log.replace(log)
        if res.status != "Succeeded":
            lines = [ln for ln in (log.read_text(errors="replace") if log.exists() else "").splitlines() if ln.strip()]
            raise JobFailed(f"step job {key} ended {res.status}: {lines[-1] if lines else 'no log'}", f"its log: {log}")
        return json.loads((out / "metrics.json").read_text())

    # --- trials (lab 4) ------------------------------------------------------------------
    def executor(self, max_workers: int) -> Executor:
        return TrialJobExecutor(self, max_workers)

    # --- serving -------------------------------------------------------------------------
    def _serves(self, group_version: tuple[str, str], plural: str) -> bool:
        """Whether the cluster has this custom resource API (its CRD is installed)."""
        try:
            self.custom.list_namespaced_custom_object(*group_version, self.cfg.serving_namespace, plural, limit=1)
            return True
        except self._client.ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                raise MllabError(
                    f"the account in your kubeconfig may not list {plural} ({group_version[0]}) in "
                    f"{self.cfg.serving_namespace}",
                    "use the labs' kubeconfig (labs role), or run the lab with --backend local",
                ) from None
            raise

    def has_kserve(self) -> bool:
        return self._serves(ISVC, "inferenceservices")

    def _service_url(self, service: str, namespace: str) -> str:
        """In a pod: the Service's DNS name; on a node (the control host): its cluster IP."""
        svc = self.core.read_namespaced_service(service, namespace)
        port = svc.spec.ports[0].port
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return f"http://{service}.{namespace}.svc:{port}"
        return f"http://{svc.spec.cluster_ip}:{port}"

    @contextmanager
    def serve(self, spec: ServeSpec) -> Iterator[Endpoint]:
        """The lab's KServe-protocol server (python -m mllab.serving) with the lab's models: an
        InferenceService when KServe is installed, else the Deployment + Service KServe's Standard
        mode would create. The models travel in a ConfigMap; everything is deleted on exit."""
        ns = self.cfg.serving_namespace
        name = obj.unique_name(f"mllab-{spec.name}", max_len=40)
        # 0.0.0.0: the Service reaches the pod on its own IP (the server binds 127.0.0.1 unless told)
        argv = ["python", "-m", "mllab.serving", "--http-port", str(obj.SERVE_PORT), "--host", "0.0.0.0"]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for model, path in spec.models.items():
                tar.add(path, arcname=model)
                argv += ["--model", f"{model}={obj.MODELS_DIR}/{model}"]
            for model, (path, percent) in spec.canary.items():
                tar.add(path, arcname=f"{model}-canary")
                argv += ["--canary", f"{model}={obj.MODELS_DIR}/{model}-canary:{percent}"]
        argv += spec.extra_args
        lbls = self._labels(spec.name)
        try:
            cm = obj.models_configmap(f"{name}-models", lbls, buf.getvalue())
        except ValueError as exc:
            raise MllabError(str(exc), "") from None
        pod = obj.server_pod(self.cfg, argv, cm["metadata"]["name"])
        mine: list[tuple[str, str, str]] = []

        def create(body: dict[str, Any]) -> None:
            self._create(body, ns)
            mine.append((body["kind"], ns, body["metadata"]["name"]))

        try:
            create(cm)
            rules = self._rules(create, spec, name, lbls) if spec.rules else None
            if self.has_kserve():
                create(obj.inference_service(name, lbls, pod))
                service = f"{name}-predictor"
                service_selector = {"serving.kserve.io/inferenceservice": name}
                self._say(f"InferenceService {ns}/{name} (Standard mode): waiting for Ready")
                if spec.canary:
                    self._say(
                        "  canary: KServe 0.20's Standard-mode spec.canary creates a second Deployment but routes "
                        "no traffic to it through an Ingress (canaryTrafficPercent splits only in Serverless mode), "
                        "so this InferenceService serves both versions and its model server makes the split"
                    )
                self._wait_ready(
                    lambda: self._isvc_ready(name),
                    f"InferenceService {ns}/{name}",
                    f"serving.kserve.io/inferenceservice={name}",
                )
            else:
                self._say(
                    f"KServe is not installed on this cluster (no InferenceService API): serving {ns}/{name} with "
                    "a Deployment + Service running the same KServe-protocol server (what KServe's Standard mode "
                    "creates)"
                )
                for body in obj.deployment_and_service(name, lbls, pod):
                    create(body)
                service = name
                service_selector = {"mllab.io/server": name}
                self._wait_ready(
                    lambda: self._deployment_ready(name), f"Deployment {ns}/{name}", f"mllab.io/server={name}"
                )
            if spec.monitor or rules:
                self._monitor(create, name, lbls, service_selector)
            url = self._service_url(service, ns)
            if not procs.wait_http(url + "/v2/health/ready", 120, interval=0.5):
                raise MllabError(
                    f"{url}/v2/health/ready does not answer from here", "check the Service and network policies"
                )
            if rules:
                self._wait_rules_loaded(rules)
            yield Endpoint(url=url, metrics_url=url + "/metrics", rules=rules)
        finally:
            for kind, n_s, n in reversed(mine):
                self._delete(kind, n_s, n)
                if (kind, n_s, n) in self._created:
                    self._created.remove((kind, n_s, n))

    def _monitor(
        self, create: Callable[[dict[str, Any]], None], name: str, lbls: dict[str, str], sel: dict[str, str]
    ) -> None:
        """A ServiceMonitor for the server when the cluster has prometheus-operator's API."""
        if not self._serves(MONITORING, "servicemonitors"):
            self._say("no prometheus-operator on this cluster: nothing scrapes the server")
            return
        stack = self._stack_labels()
        create(obj.service_monitor(name, lbls, sel, stack))
        self._say(f"ServiceMonitor {self.cfg.serving_namespace}/{name}: Prometheus scrapes the server ({stack})")

    def _stack_labels(self) -> dict[str, str]:
        return obj.parse_labels(os.environ.get("MLLAB_MONITOR_LABELS", "release=kube-prom-stack"))

    def prometheus_url(self) -> str:
        """The cluster's Prometheus: MLLAB_PROMETHEUS_URL, else the observability addon's Service
        (<release>-kube-prome-prometheus in MLLAB_MONITORING_NAMESPACE, default observability)."""
        if os.environ.get("MLLAB_PROMETHEUS_URL"):
            return os.environ["MLLAB_PROMETHEUS_URL"].rstrip("/")
        ns = os.environ.get("MLLAB_MONITORING_NAMESPACE", MONITORING_NAMESPACE)
        service = f"{self._stack_labels().get('release', 'kube-prom-stack')}-kube-prome-prometheus"
        try:
            return self._service_url(service, ns)
        except self._client.ApiException as exc:
            raise MllabError(
                f"cannot find the cluster's Prometheus: Service {ns}/{service}: {exc.status} {exc.reason}",
                "set MLLAB_PROMETHEUS_URL to its address (e.g. http://<its Service IP>:9090), or "
                "MLLAB_MONITORING_NAMESPACE to the namespace of the monitoring stack",
            ) from None

    def _rules(
        self, create: Callable[[dict[str, Any]], None], spec: ServeSpec, name: str, lbls: dict[str, str]
    ) -> RuleSet:
        """The server's rule file as a PrometheusRule the cluster's Prometheus selects."""
        from mllab.prometheus import RuleSet, prometheus_rule

        assert spec.rules is not None
        if not self._serves(MONITORING, "prometheusrules"):
            raise MllabError(
                f"lab {self.lab} on the k8s backend has its alerts evaluated by the cluster's Prometheus, and this "
                "cluster has no prometheus-operator (no monitoring.coreos.com PrometheusRule API)",
                "apply the monitoring layer (monitoring_enabled; on MicroK8s the observability addon), "
                "or run the lab with --backend local",
            )
        url = self.prometheus_url()
        body = prometheus_rule(spec.rules, name, {**lbls, **self._stack_labels()}, name)
        create(body)
        self._say(f"PrometheusRule {self.cfg.serving_namespace}/{name}: your {spec.rules.name}, for {url}")
        alerts = [r["alert"] for g in body["spec"]["groups"] for r in g["rules"] if "alert" in r]
        return RuleSet(url=url, namespace=self.cfg.serving_namespace, name=name, server=name, alerts=alerts)

    def _wait_rules_loaded(self, rules: RuleSet) -> None:
        """Wait until Prometheus has loaded every alert of the server's PrometheusRule."""
        from mllab.prometheus import Prometheus

        self._say(
            f"waiting for Prometheus to load PrometheusRule {rules.name} (the operator, then the config reloader)"
        )
        with Prometheus(rules.url) as prom:

            def loaded() -> bool:
                now = prom.rules()
                return all(now.get(a, rules.in_file) for a in rules.alerts)

            prom.wait(
                f"PrometheusRule {rules.namespace}/{rules.name} ({', '.join(rules.alerts)}) is not loaded",
                loaded,
                RULE_LOAD_TIMEOUT_S,
                every=3,
                fix=f"does the Prometheus select PrometheusRules labelled {self._stack_labels()} in this namespace "
                "(ruleSelector, ruleNamespaceSelector)? kubectl -n observability logs deploy/prometheus-operator",
            )

    def _isvc_ready(self, name: str) -> bool:
        o = self.custom.get_namespaced_custom_object_status(
            *ISVC, self.cfg.serving_namespace, "inferenceservices", name
        )
        return any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in o.get("status", {}).get("conditions", [])
        )

    def _deployment_ready(self, name: str) -> bool:
        d = self.apps.read_namespaced_deployment_status(name, self.cfg.serving_namespace)
        return (d.status.ready_replicas or 0) >= 1

    def _wait_ready(self, ready: Callable[[], bool], what: str, selector: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for pod in self.core.list_namespaced_pod(self.cfg.serving_namespace, label_selector=selector).items:
                self._check_pod(pod)
            if time.monotonic() > deadline:
                raise MllabError(
                    f"{what} was not ready after {timeout:.0f} s",
                    f"kubectl -n {self.cfg.serving_namespace} describe pods -l {selector}",
                )
            time.sleep(POLL_S)

    def close(self) -> None:
        self._tracking = None

    def describe(self) -> Iterator[tuple[str, str]]:
        yield ("backend", "k8s (Jobs on the cluster)")
        yield ("namespace", self.cfg.namespace)
        yield ("image", self.cfg.image)


class TrialJobExecutor(Executor):
    """A hyperparameter search as one Indexed Job (k8s_objects.trial_job): trial i is completion
    index i, `max_workers` pods at once. Experiment.run calls prepare() with every planned trial
    first, then submit() hands back the trial's future, resolved from its pod's termination
    message. On an early stop (goal reached, too many failures) shutdown() deletes the Job, so no
    further trial starts; trials log their MLflow run only once trained, so a stopped one leaves
    none behind."""

    def __init__(self, backend: K8sBackend, max_workers: int, deadline: float = 3600) -> None:
        self.backend = backend
        self.parallel = max_workers
        self.deadline = deadline
        self.job = ""
        self.ref = ""  # namespace/name of the trial job, for job_state()
        self.futures: list[Future[Any]] = []
        self.index: dict[str, int] = {}
        self.done = threading.Event()
        self.watcher: threading.Thread | None = None

    def prepare(self, fn: Callable[..., Any], calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> str:
        """Create the Job for these calls (args, kwargs; kwargs name the trial: trial_name)."""
        ref = f"{fn.__module__}:{fn.__qualname__}"
        specs = [{"fn": ref, "args": list(args), "kwargs": kwargs} for args, kwargs in calls]
        self.index = {str(kw.get("trial_name", i)): i for i, (_, kw) in enumerate(calls)}
        self.futures = [Future() for _ in calls]
        name = obj.unique_name("mllab-trials")
        b = self.backend
        b._create(obj.trial_job(b.cfg, name, b._labels("trials"), specs, self.parallel, self.deadline), b.cfg.namespace)
        self.job, self.ref = name, f"{b.cfg.namespace}/{name}"
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        return name

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not self.job:
            raise RuntimeError("TrialJobExecutor: call prepare() with every trial before submit()")
        name = str(kwargs.get("trial_name"))
        if name not in self.index:
            raise KeyError(f"trial {name!r} was not in the prepared trial job {self.job}")
        return self.futures[self.index[name]]

    def _resolve(self, i: int, pod: Any) -> None:
        fut = self.futures[i]
        if fut.done():
            return
        msgs = _termination_messages(pod)
        if pod.status.phase == "Succeeded" and msgs:
            fut.set_result(json.loads(msgs[-1])["result"])
        else:
            why = msgs[-1] if msgs else "no message"
            fut.set_exception(JobFailed(f"trial pod {pod.metadata.name} failed: {why}", ""))

    def _fail_rest(self, why: str) -> None:
        for fut in self.futures:
            if not fut.done():
                fut.set_exception(JobFailed(f"trial job {self.job}: {why}", ""))

    def _watch(self) -> None:
        b = self.backend
        try:
            while not self.done.is_set() and not all(f.done() for f in self.futures):
                for pod in b._pods(self.job):
                    b._check_pod(pod)
                    idx = (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index", "")
                    if idx.isdigit() and int(idx) < len(self.futures) and pod.status.phase in ("Succeeded", "Failed"):
                        self._resolve(int(idx), pod)
                j = b.batch.read_namespaced_job_status(self.job, b.cfg.namespace)
                for cond in j.status.conditions or []:
                    if cond.status == "True" and cond.type == "Failed" and cond.reason == "DeadlineExceeded":
                        self._fail_rest(f"deadline of {int(self.deadline)} s exceeded")
                self.done.wait(POLL_S)
        except BaseException as exc:
            self._fail_rest(f"{type(exc).__name__}: {exc}")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self.job:
            return
        if not all(f.done() for f in self.futures):  # an early stop: no further trial may start
            self.backend._delete("Job", self.backend.cfg.namespace, self.job)
            self._fail_rest("stopped before this trial ran")
        self.done.set()
        if wait and self.watcher is not None:
            self.watcher.join(timeout=30)


def _msg(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message", "")
    except Exception:
        return str(exc.body)[:300]


def _exit_codes(pod: Any) -> list[int]:
    out = []
    for cs in pod.status.container_statuses or []:
        term = cs.state.terminated if cs.state else None
        if term is not None:
            out.append(int(term.exit_code))
    return out


def _termination_messages(pod: Any) -> list[str]:
    out = []
    for cs in pod.status.container_statuses or []:
        term = cs.state.terminated if cs.state else None
        if term is not None and term.message:
            out.append(term.message)
    return out


def _is_indexed(pod: Any) -> bool:
    return "batch.kubernetes.io/job-completion-index" in (pod.metadata.annotations or {})


def _attempts(pods: list[Any]) -> int:
    """Attempts of an Indexed Job: the most pods any one index needed."""
    per_index: dict[str, int] = {}
    for p in pods:
        idx = (p.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index", "0")
        per_index[idx] = per_index.get(idx, 0) + 1
    return max(per_index.values(), default=0)


def _snake(kind: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in kind).lstrip("_")
