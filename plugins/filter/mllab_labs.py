"""Labs-layer decisions for ML Lab Kit: the learner's kubeconfig built from the admin one,
the MLflow URL the control host uses, the keys of the mllab-dist ConfigMap and its size
limit, the labs role's settings. Pure functions, used as Ansible filters by roles/labs,
unit tested in tests/unit/test_labs_role_filters.py.

Every *_problems function returns a list of problems, each naming the bad value and the
fix; an empty list means the input is usable.
"""

from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# A ConfigMap holds at most 1 MiB of data + binaryData (the API server's validation).
CONFIGMAP_LIMIT = 1024 * 1024
# ConfigMap keys are [-._a-zA-Z0-9]+ (no '/'): a guide's path 01-gpu/README.md becomes the key
# guide.01-gpu__README.md ('/' -> '__', which no guide path may contain: mllab_guide_keys checks).
_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_EXTRA_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _named(items: Iterable[Mapping[str, Any]], name: str, what: str, path: str) -> Mapping[str, Any]:
    for item in items or []:
        if isinstance(item, Mapping) and item.get("name") == name:
            return item.get(what) or {}
    raise ValueError(f"the kubeconfig {path} has no {what} named {name!r}")


def mllab_learner_kubeconfig(
    admin: str,
    token: str,
    namespace: str,
    user: str = "mllab-learner",
    context: str = "",
    path: str = "mllab_kubeconfig",
) -> dict[str, Any]:
    """A kubeconfig for the learner's service-account token, pointing at the same API server
    (server, CA, TLS server name) as the context `context` (""= current-context) of the admin
    kubeconfig text `admin`. A CA given as a file is embedded, so the result is self-contained."""
    import yaml

    if not token:
        raise ValueError("the learner's token is empty: the token Secret has not been filled by the cluster yet")
    data = yaml.safe_load(admin) or {}
    wanted = context or data.get("current-context") or ""
    ctx = _named(data.get("contexts"), wanted, "context", path)
    cluster = dict(_named(data.get("clusters"), ctx.get("cluster", ""), "cluster", path))
    if not cluster.get("server"):
        raise ValueError(f"cluster {ctx.get('cluster')!r} of {path} has no server")
    out: dict[str, Any] = {"server": cluster["server"]}
    if cluster.get("certificate-authority-data"):
        out["certificate-authority-data"] = cluster["certificate-authority-data"]
    elif cluster.get("certificate-authority"):
        ca = Path(cluster["certificate-authority"])
        if not ca.is_absolute():
            ca = Path(path).parent / ca
        out["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url"):
        if key in cluster:
            out[key] = cluster[key]
    name = "mllab"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": out}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


def mllab_host_tracking_uri(
    job_uri: str,
    cluster_ip: str = "",
    ingress_host: str = "",
    ingress_tls: bool = False,
    port: int = 5000,
) -> str:
    """MLflow as the control host reaches it. The in-cluster URI `job_uri`
    (http://mlflow.<ns>.svc.<domain>:5000<prefix>) does not resolve on a MicroK8s node, but
    the Service's cluster IP routes there: http://<cluster_ip>:<port><prefix>. With an
    ingress host name, the ingress URL (https when a TLS Secret is set) is used instead.
    Without either, the in-cluster URI is returned unchanged."""
    prefix = urlsplit(job_uri).path.rstrip("/")
    if ingress_host:
        return f"{'https' if ingress_tls else 'http'}://{ingress_host}{prefix}"
    if cluster_ip and cluster_ip.lower() != "none":
        host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
        return f"http://{host}:{port}{prefix}"
    return job_uri


def mllab_guide_keys(paths: Iterable[str]) -> dict[str, str]:
    """{ConfigMap key: relative path} for the guide files (labs/README.md, labs/NN-x/README.md,
    notebooks). Keys cannot hold '/', so each '/' becomes '__'. Raises on a path that would
    not make a valid key or would collide."""
    out: dict[str, str] = {}
    for rel in sorted(paths):
        norm = posixpath.normpath(rel)
        if norm.startswith(("../", "/")) or norm == ".." or "__" in norm:
            raise ValueError(f"guide path {rel!r} cannot be shipped (absolute, outside labs/, or contains '__')")
        key = "guide." + norm.replace("/", "__")
        if not _KEY_RE.match(key) or len(key) > 253:
            raise ValueError(f"guide path {rel!r} makes an invalid ConfigMap key {key!r}: rename the file")
        if key in out:
            raise ValueError(f"guide paths {out[key]!r} and {rel!r} make the same ConfigMap key")
        out[key] = norm
    return out


def mllab_guides_tsv(keys: Mapping[str, str]) -> str:
    """The manifest the JupyterLab start hook reads: one `key<TAB>relative path` line per guide."""
    return "".join(f"{key}\t{rel}\n" for key, rel in sorted(keys.items()))


def mllab_dist_size_problems(
    data: Mapping[str, str], binary_b64: Mapping[str, str], name: str = "mllab-dist"
) -> list[str]:
    """The ConfigMap must stay under the API server's 1 MiB (data values + binaryData bytes)."""
    text = sum(len(v.encode()) for v in data.values())
    binary = sum(len(base64.b64decode(v)) for v in binary_b64.values())
    if text + binary <= CONFIGMAP_LIMIT:
        return []
    return [
        f"ConfigMap {name} would hold {text + binary} bytes (wheel {binary}, guides and scripts {text}), "
        f"over the {CONFIGMAP_LIMIT} bytes (1 MiB) a ConfigMap may hold: set labs_jupyter: false and install "
        "mllab in your own JupyterLab image (jupyter_image), or ship fewer/smaller notebooks under labs/"
    ]


def mllab_labs_problems(settings: Mapping[str, Any]) -> list[str]:
    """The labs role's own settings (names are checked by mllab_name_problems)."""
    problems = []
    for var in (
        "labs_venv",
        "labs_cli_link",
        "labs_profile_file",
        "labs_jupyter_python_base",
        "labs_jupyter_guides_dir",
    ):
        value = settings.get(var)
        if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") == "":
            problems.append(f"{var} = {value!r} must be an absolute path other than /")
    for var in ("labs_pip_extras", "labs_jupyter_extras"):
        value = settings.get(var)
        if not isinstance(value, list) or not all(isinstance(x, str) and _EXTRA_RE.match(x) for x in value):
            problems.append(f"{var} = {value!r} must be a list of extras of the mllab package, e.g. [labs, k8s]")
    value = settings.get("labs_pip_args")
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        problems.append(f"labs_pip_args = {value!r} must be a list of pip arguments, e.g. ['--index-url', 'URL']")
    uri = settings.get("labs_host_tracking_uri", "")
    if uri and not re.match(r"^https?://[^/\s]+", str(uri)):
        problems.append(
            f"labs_host_tracking_uri = {uri!r} is not an http(s) URL: give e.g. http://10.0.0.5:5000/mlflow"
        )
    users = settings.get("mllab_admins")
    if not isinstance(users, list) or not all(
        isinstance(u, str) and re.match(r"^[a-z_][a-z0-9_.-]*$", u) for u in users
    ):
        problems.append(f"mllab_admins = {users!r} must be a list of Unix user names")
    return problems


class FilterModule:
    def filters(self):
        return {
            "mllab_learner_kubeconfig": mllab_learner_kubeconfig,
            "mllab_host_tracking_uri": mllab_host_tracking_uri,
            "mllab_guide_keys": mllab_guide_keys,
            "mllab_guides_tsv": mllab_guides_tsv,
            "mllab_dist_size_problems": mllab_dist_size_problems,
            "mllab_labs_problems": mllab_labs_problems,
        }
