"""Lab 1: is there a GPU, and what does it buy us?

The learner writes two files: `job.yaml`, the Kubernetes Job that runs the benchmark (batch/v1,
a GPU in the container's limits, a restartPolicy a Job accepts, a non-root securityContext), and
`device.py`, which picks the device at run time (cuda when PyTorch sees one, else cpu) and moves
the work there. The job (`python -m mllab.gpu_bench`, with as many GPUs as job.yaml's limits ask
for) times the same work on the CPU and on the device `device.py` picks: a large matrix
multiplication and a CNN training step. On a CPU-only machine the speed-up passes as "skipped:
no GPU", but the learner's files are still graded: the manifest is parsed and validated, and
`pick_device()` is called with CUDA reported available and unavailable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mllab.backends import JobSpec
from mllab.errors import JobFailed
from mllab.labs.base import Check, LabContext

HINTS = [
    "Decide the device at run time, never hard-code it: "
    'torch.device("cuda" if torch.cuda.is_available() else "cpu"), then move the model and every tensor there.',
    "On Kubernetes the pod must request the GPU: resources.limits['nvidia.com/gpu'] = 1 (in limits, a whole number).",
    "A Job's pod needs restartPolicy Never or OnFailure, and should run as a non-root user "
    "(securityContext: runAsNonRoot: true, runAsUser: 1000).",
    "torch.cuda.is_available() is False when the driver, the CUDA runtime or the device plugin is missing: "
    "run `nvidia-smi` on the node and `mllab doctor`.",
    "GPU work is asynchronous: call torch.cuda.synchronize() before reading the clock, or you time the launch only.",
    "Warm up once before timing: the first CUDA call pays for context creation and kernel selection.",
]

GPU = "nvidia.com/gpu"
MANIFEST = "job.yaml"


# --- the learner's job.yaml ------------------------------------------------------------------
def _load_manifest(path: Path) -> tuple[Any, str]:
    """The parsed manifest, or (None, why it cannot be read)."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        return None, f"{path.name} cannot be read: {exc.strerror or exc}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return None, f"{path.name} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
    if len(docs) != 1:
        return None, f"{path.name} holds {len(docs)} YAML documents; one Job is expected"
    return docs[0], ""


def _pod(doc: Any) -> dict[str, Any]:
    spec = doc.get("spec") if isinstance(doc, dict) else None
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    return pod if isinstance(pod, dict) else {}


def _containers(doc: Any) -> list[dict[str, Any]]:
    found = _pod(doc).get("containers")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _count(value: Any) -> int | None:
    """A GPU quantity as Kubernetes reads it (a whole number, maybe quoted), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def manifest_gpus(path: Path) -> int:
    """The GPUs job.yaml's containers ask for in their limits (0 when it asks for none or cannot be read)."""
    doc, _ = _load_manifest(path)
    total = 0
    for c in _containers(doc):
        res = c.get("resources")
        limits = res.get("limits") if isinstance(res, dict) else None
        n = _count(limits.get(GPU)) if isinstance(limits, dict) else None
        total += n if n and n > 0 else 0
    return total


def validate_manifest(path: Path) -> list[Check]:
    """job.yaml as the API server and a careful reviewer read it, one property per check."""
    doc, error = _load_manifest(path)
    if doc is None:
        return [Check(f"{MANIFEST} parses", False, error, f"fix {path}; `mllab start 1 --reset-files` puts it back")]
    containers = _containers(doc)
    kind = (doc.get("apiVersion"), doc.get("kind")) if isinstance(doc, dict) else (None, None)
    is_job = kind == ("batch/v1", "Job") and bool(containers) and all(c.get("image") for c in containers)
    checks = [
        Check(
            f"{MANIFEST} is a batch/v1 Job with a container",
            is_job,
            f"apiVersion {kind[0]!r}, kind {kind[1]!r}, {len(containers)} container(s) under spec.template.spec"
            + ("" if all(c.get("image") for c in containers) else ", one without an image"),
            "a Job is apiVersion: batch/v1, kind: Job; its pod is spec.template.spec, with containers: "
            "[{name, image, command}]",
        )
    ]
    # The GPU: an extended resource, a whole number, in the container's limits.
    per: list[str] = []
    gpus = 0
    misplaced = False
    for c in containers:
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        limits = res.get("limits") if isinstance(res.get("limits"), dict) else {}
        requests = res.get("requests") if isinstance(res.get("requests"), dict) else {}
        lim, req = limits.get(GPU), requests.get(GPU)
        n = _count(lim)
        if lim is None and req is not None:
            misplaced = True
            per.append(f"{c.get('name', '?')}: {GPU} {req!r} in requests only")
        elif lim is not None and (n is None or n < 1):
            per.append(f"{c.get('name', '?')}: limits {GPU} {lim!r} is not a whole number >= 1")
        elif n and req is not None and _count(req) != n:
            per.append(f"{c.get('name', '?')}: requests {GPU} {req!r} differs from limits {lim!r}")
        elif n:
            gpus += n
            per.append(f"{c.get('name', '?')}: limits {GPU} {n}")
        else:
            per.append(f"{c.get('name', '?')}: no {GPU}")
    bad = any("requests" in p or "whole number" in p for p in per)
    checks.append(
        Check(
            f"{MANIFEST} requests a GPU in the container's limits",
            gpus >= 1 and not bad,
            "; ".join(per) or "no containers",
            "GPUs go in limits, not requests: the API server refuses an extended resource that is only requested, "
            f"and the device plugin hands out whole GPUs: resources: {{limits: {{{GPU}: 1}}}}"
            if misplaced
            else f"add resources.limits['{GPU}']: 1 to the container (a whole number; the scheduler then places "
            "the pod on a node whose device plugin advertises a GPU)",
        )
    )
    policy = _pod(doc).get("restartPolicy")
    checks.append(
        Check(
            f"{MANIFEST} sets restartPolicy Never or OnFailure",
            policy in ("Never", "OnFailure"),
            f"spec.template.spec.restartPolicy is {policy!r}" if policy is not None else "no restartPolicy",
            "a Job refuses the pod default (Always): set spec.template.spec.restartPolicy: Never (the Job makes a "
            "new pod per retry, up to backoffLimit) or OnFailure (the kubelet restarts the container in place)",
        )
    )
    pod_sec = _pod(doc).get("securityContext") if isinstance(_pod(doc).get("securityContext"), dict) else {}
    why: list[str] = []
    for c in containers:
        sec = c.get("securityContext") if isinstance(c.get("securityContext"), dict) else {}
        non_root = sec.get("runAsNonRoot", pod_sec.get("runAsNonRoot"))
        user = sec.get("runAsUser", pod_sec.get("runAsUser"))
        name = c.get("name", "?")
        if user == 0:
            why.append(f"{name}: runAsUser 0 is root")
        elif sec.get("privileged") is True:
            why.append(f"{name}: privileged")
        elif sec.get("allowPrivilegeEscalation") is True:
            why.append(f"{name}: allowPrivilegeEscalation true")
        elif non_root is True or (_count(user) or 0) > 0:
            why.append(f"{name}: runs as " + (f"user {user}" if user is not None else "non-root (runAsNonRoot)"))
            continue
        else:
            why.append(f"{name}: no runAsNonRoot/runAsUser in the pod's or the container's securityContext")
        why[-1] = "!" + why[-1]
    checks.append(
        Check(
            f"{MANIFEST} runs as a non-root user",
            bool(containers) and not any(w.startswith("!") for w in why),
            "; ".join(w.lstrip("!") for w in why) or "no containers",
            "add a pod securityContext: {runAsNonRoot: true, runAsUser: 1000} (the lab image's user; the kit's "
            "ml-* namespaces warn about root pods under Pod Security 'restricted'), and in the container "
            "allowPrivilegeEscalation: false, never privileged",
        )
    )
    return checks


# --- the learner's device.py -----------------------------------------------------------------
@contextmanager
def cuda_reported(available: bool) -> Iterator[None]:
    """PyTorch reports CUDA available (one GPU) or not, whatever this machine has; Apple's MPS off."""
    import torch

    def no_gpu(*a: Any, **k: Any) -> Any:
        raise RuntimeError("CUDA is not available (mllab check 1's probe)")

    patches = {
        "is_available": lambda: available,
        "device_count": lambda: 1 if available else 0,
        "current_device": (lambda: 0) if available else no_gpu,
        "get_device_name": (lambda *a, **k: "probe GPU") if available else no_gpu,
    }
    saved = {n: getattr(torch.cuda, n) for n in patches}
    mps = getattr(torch.backends, "mps", None)
    saved_mps = getattr(mps, "is_available", None)
    try:
        for n, f in patches.items():
            setattr(torch.cuda, n, f)
        if saved_mps is not None:
            mps.is_available = lambda: False
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.cuda, n, f)
        if saved_mps is not None:
            mps.is_available = saved_mps


def probe_device(load: Any) -> list[Check]:
    """Grade the learner's device.py directly: `load()` imports it afresh (under each CUDA report,
    so that `from torch.cuda import is_available` sees it too)."""
    import torch

    from mllab.exercise import ExerciseError, call

    checks: list[Check] = []
    for available, want in ((True, "cuda"), (False, "cpu")):
        name = f"pick_device() picks {want} when CUDA is {'available' if available else 'not available'}"
        try:
            with cuda_reported(available):
                got: Any = call(load(), "pick_device")
        except ExerciseError as exc:
            checks.append(Check(name, False, exc.message, exc.fix))
            continue
        try:
            kind = torch.device(got).type
        except (TypeError, RuntimeError):
            kind = None
        checks.append(
            Check(
                name,
                kind == want,
                f"with torch.cuda.is_available() {available}, pick_device() returned {got!r}",
                (
                    "pick_device() must decide at run time: return torch.device('cuda') when "
                    "torch.cuda.is_available() is True (the pod with the GPU), not a hard-coded cpu"
                    if available
                    else "pick_device() must fall back to torch.device('cpu') when torch.cuda.is_available() is "
                    "False (a laptop, CI, a pod without a GPU): a hard-coded cuda fails there"
                )
                if kind is not None
                else "return a torch.device (or 'cuda' / 'cpu'), not " + type(got).__name__,
            )
        )
    # to_device: every machine has the "meta" device, which stands in for cuda here.
    name = "to_device() moves the model and every tensor to the device it is given"
    model = torch.nn.Linear(4, 2)
    tensors = (torch.randn(3, 4), torch.zeros(3, dtype=torch.long))
    try:
        out = call(load(), "to_device", torch.device("meta"), model, *tensors)
    except ExerciseError as exc:
        return [*checks, Check(name, False, exc.message, exc.fix)]
    if not isinstance(out, (tuple, list)) or len(out) != 1 + len(tensors):
        checks.append(
            Check(
                name,
                False,
                f"for a model and {len(tensors)} tensors, to_device() returned {type(out).__name__} "
                f"of {len(out) if isinstance(out, (tuple, list)) else 1} value(s)",
                "return (model, *tensors): the moved model first, then every moved tensor in the order given",
            )
        )
        return checks
    got_model, *got_tensors = out
    model_on = (
        sorted({p.device.type for p in got_model.parameters()}) if isinstance(got_model, torch.nn.Module) else None
    )
    tensors_on = [t.device.type if isinstance(t, torch.Tensor) else type(t).__name__ for t in got_tensors]
    ok = model_on == ["meta"] and all(t == "meta" for t in tensors_on)
    hint = (
        "the tensors stay behind: move every one of them too, (model.to(device), *(t.to(device) for t in "
        "tensors)); on a GPU, a CUDA model fed CPU tensors fails with 'Expected all tensors to be on the same device'"
        if model_on == ["meta"]
        else "move the work to the `device` argument, not to a hard-coded 'cpu' (or 'cuda'): model.to(device), "
        "t.to(device)"
    )
    checks.append(
        Check(
            name,
            ok,
            f"asked for device 'meta' (standing in for cuda: every machine has it), the model is on "
            f"{', '.join(model_on) if model_on else type(got_model).__name__}, its {len(tensors_on)} tensors on "
            f"{' and '.join(tensors_on)}",
            "" if ok else hint,
        )
    )
    return checks


# --- run and check ---------------------------------------------------------------------------
def run(ctx: LabContext) -> dict[str, Any]:
    from mllab import procs

    size, repeats, batch = (1024, 3, 32) if ctx.quick else (2048, 6, 64)
    gpus = 1
    if ctx.exercise is not None:  # the learner's job.yaml says how many GPUs the job asks for
        gpus = manifest_gpus(ctx.exercise / MANIFEST)
        ctx.console.print(
            f"{MANIFEST} asks for {gpus} GPU(s)"
            + ("" if gpus else f" (no resources.limits['{GPU}']): on the cluster the job gets none")
        )
    spec = JobSpec(
        name="gpu-bench",
        module="mllab.gpu_bench",
        gpus=gpus,
        active_deadline_seconds=600,
        args=[
            "--out",
            str(ctx.rundir / "bench.json"),
            "--size",
            str(size),
            "--repeats",
            str(repeats),
            "--batch",
            str(batch),
        ],
        workdir=ctx.rundir,
    )
    with ctx.console.status("benchmarking the CPU (and the GPU, if CUDA sees one and device.py picks it)"):
        res = ctx.backend.run_job(spec)
    if not res.succeeded:
        errors = [line for line in procs.tail(res.log, 40).splitlines() if line.startswith(("error:", "  fix:"))]
        raise JobFailed(
            f"the benchmark job ended {res.status} (exit codes {res.exit_codes})"
            + ("".join(f"\n{line}" for line in errors) if errors else ""),
            f"read {res.log}",
        )
    info = json.loads((ctx.rundir / "bench.json").read_text())
    info["requested_gpus"] = gpus
    cpu = info["cpu"]
    ctx.console.print(
        f"device.py picked [bold]{info['picked_device']}[/] (CUDA available in the job: {info['gpu']})\n"
        f"CPU ({info['cpu_threads']} threads): matmul {size}x{size} {cpu['matmul_tflops']:.3f} TFLOP/s, "
        f"train step {cpu['train_images_per_s']:.0f} images/s"
    )
    if "gpu_bench" in info:
        g = info["gpu_bench"]
        ctx.console.print(
            f"GPU {info['device_name']}: matmul {g['matmul_tflops']:.2f} TFLOP/s "
            f"([bold]{info['speedup_matmul']:.1f}x[/] the CPU), train step "
            f"{g['train_images_per_s']:.0f} images/s ([bold]{info['speedup_train_step']:.1f}x[/])"
        )
        from mllab.plots import bars

        bars(
            ["matmul", "train step"],
            [info["speedup_matmul"], info["speedup_train_step"]],
            ctx.rundir / "speedup.png",
            "GPU speed-up (x)",
            info["device_name"],
        )
    elif info["gpu"]:
        ctx.console.print(f"[red]the job sees {info.get('device_name')}, but device.py picked the CPU[/]")
    else:
        ctx.console.print("[yellow]skipped: no GPU[/] (torch.cuda.is_available() is False); CPU numbers recorded")
    return info


def check(ctx: LabContext, result: dict[str, Any]) -> list[Check]:
    import torch

    checks: list[Check] = []
    if ctx.exercise is not None:  # the learner's files, property by property, whatever this machine has
        checks += validate_manifest(ctx.exercise / MANIFEST)
        checks += probe_device(lambda: ctx.learner("device", "pick_device", "to_device"))
    cpu = result["cpu"]
    on_cpu = cpu.get("work_device", ["cpu"]) == ["cpu"]
    checks.append(
        Check(
            "CPU benchmark measured",
            cpu["matmul_s"] > 0 and cpu["train_step_s"] > 0 and on_cpu,
            f"matmul {cpu['matmul_s'] * 1e3:.1f} ms, train step {cpu['train_step_s'] * 1e3:.1f} ms, "
            f"on {', '.join(cpu.get('work_device', ['cpu']))}",
            "run the lab: mllab run 1" if on_cpu else "to_device(device, ...) must move the work to `device`",
        )
    )
    now = torch.cuda.is_available()
    if not result["gpu"]:
        picked = result.get("picked_device", "cpu")
        if picked != "cpu":
            checks.append(
                Check(
                    "device.py picked the CPU in a job without a GPU",
                    False,
                    f"the job saw no GPU, device.py picked {picked}",
                    "fall back to torch.device('cpu') when torch.cuda.is_available() is False",
                )
            )
        consistent = not now
        checks.append(
            Check(
                "GPU speed-up",
                consistent,
                "skipped: no GPU" if consistent else "a GPU is visible now but the run saw none",
                ""
                if consistent
                else "re-run the lab where the GPU is visible (mllab run 1); on the cluster, job.yaml must ask for "
                f"it in limits ({GPU}: 1)",
                skipped=consistent,
            )
        )
        return checks
    checks.append(
        Check(
            "GPU detected",
            bool(result.get("device_name")),
            f"{result.get('device_name')} (x{result.get('device_count')})",
            HINTS[3],
        )
    )
    picked = result.get("picked_device")
    checks.append(
        Check(
            "device.py picked the GPU the job sees",
            picked == "cuda",
            f"CUDA available in the job, device.py picked {picked}",
            "pick_device() must return torch.device('cuda') when torch.cuda.is_available() is True",
        )
    )
    if "gpu_bench" not in result:
        checks.append(
            Check(
                "GPU speed-up",
                False,
                f"not measured: device.py picked {picked}",
                "the benchmark times the GPU on the device pick_device() returns",
            )
        )
        return checks
    where = result["gpu_bench"].get("work_device", [])
    checks.append(
        Check(
            "the GPU benchmark's work ran on the GPU",
            where == ["cuda"],
            f"model and tensors on {', '.join(where) or '?'}",
            "to_device(device, model, *tensors) must move the model and every tensor to the device given",
        )
    )
    sm, st = result["speedup_matmul"], result["speedup_train_step"]
    checks.append(Check("GPU matmul faster than CPU", sm > 1.0, f"speed-up {sm:.1f}x", HINTS[4]))
    checks.append(Check("GPU training step faster than CPU", st > 1.0, f"speed-up {st:.1f}x", HINTS[5]))
    return checks
