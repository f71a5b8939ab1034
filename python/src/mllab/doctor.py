"""`mllab doctor`: what is reachable (MLflow, cluster, GPU, KServe) and what to fix. Imports nothing heavy."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from typing import Any

from mllab import INSTALL_LABS
from mllab.procs import http_ok


def _item(component: str, status: str, detail: str, fix: str = "", required: bool = False) -> dict[str, Any]:
    return {"component": component, "status": status, "detail": detail, "fix": fix, "required": required}


def _run(argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return out.returncode, (out.stdout + out.stderr).strip()


def diagnose() -> list[dict[str, Any]]:
    items = [_item("python", "ok", sys.version.split()[0])]
    missing = [
        m
        for m in ("torch", "mlflow", "kserve", "sklearn", "scipy", "prometheus_client", "matplotlib")
        if importlib.util.find_spec(m) is None
    ]
    items.append(
        _item(
            "lab packages",
            "missing",
            "not installed: " + ", ".join(missing),
            f"{INSTALL_LABS} (or `make labs-test`)",
            required=True,
        )
        if missing
        else _item("lab packages", "ok", "torch, mlflow, kserve, scikit-learn, scipy, prometheus-client, matplotlib")
    )
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        items.append(
            _item(
                "mlflow",
                "info",
                "MLFLOW_TRACKING_URI unset: the local backend starts its own server "
                "(sqlite + artifacts under ~/.mllab/mlflow) when a lab needs it",
            )
        )
    elif uri.startswith("http") and not http_ok(uri.rstrip("/") + "/health", timeout=5):
        items.append(
            _item(
                "mlflow",
                "unreachable",
                f"{uri}/health does not answer",
                "start the server or port-forward it, or unset MLFLOW_TRACKING_URI",
                required=True,
            )
        )
    else:
        items.append(_item("mlflow", "ok", f"{uri} answers"))
    kubectl = shutil.which("kubectl") or shutil.which("microk8s.kubectl")
    if not kubectl:
        items.append(
            _item(
                "cluster",
                "absent",
                "no kubectl on PATH (fine for the local backend)",
                "for the k8s backend: install kubectl and a kubeconfig (make site provisions one)",
            )
        )
    else:
        code, out = _run([kubectl, "version", "--request-timeout=5s"])
        if code == 0:
            items.append(_item("cluster", "ok", out.splitlines()[-1] if out else "reachable"))
            code, out = _run([kubectl, "get", "crd", "inferenceservices.serving.kserve.io", "--request-timeout=5s"])
            items.append(
                _item(
                    "kserve (cluster)",
                    "ok" if code == 0 else "absent",
                    "InferenceService CRD installed" if code == 0 else "InferenceService CRD not found",
                    "" if code == 0 else "enable the kserve role (playbooks/platform.yml)",
                )
            )
        else:
            items.append(
                _item(
                    "cluster",
                    "unreachable",
                    out.splitlines()[-1] if out else "kubectl failed",
                    "check KUBECONFIG / the cluster (make verify)",
                )
            )
    items.append(
        _item("kserve (local)", "ok", "kserve SDK installed: `mllab serve` and lab 6 can run")
        if importlib.util.find_spec("kserve")
        else _item("kserve (local)", "missing", "kserve SDK not installed", INSTALL_LABS)
    )
    smi = shutil.which("nvidia-smi")
    if smi:
        code, out = _run([smi, "-L"])
        items.append(
            _item(
                "gpu",
                "ok" if code == 0 else "unreachable",
                out.splitlines()[0] if out else "nvidia-smi",
                "" if code == 0 else "check the NVIDIA driver (the gpu role installs it)",
            )
        )
    else:
        items.append(_item("gpu", "absent", "no nvidia-smi: labs run on CPU (lab 1 passes as 'skipped: no GPU')"))
    return items
