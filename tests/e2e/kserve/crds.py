"""KServe's CRDs as its release builds them: controller-gen's output, then the edits of the
release's `make manifests` (github.com/kserve/kserve Makefile, v0.20.0) on the
InferenceService CRD, re-done here on the parsed YAML:

- no `required` one level under each component (predictor.model, predictor.sklearn, ...):
  the container's `name` must stay optional there;
- no `ephemeralContainers` in the component pod specs (CRD size);
- no `required` on httpGet/tcpSocket of the components' probes, nor on httpGet of the probes
  of their `containers` (KServe fills the port in).

    crds.py postprocess GENERATED_DIR OUT_DIR    edit the CRDs the kit installs into OUT_DIR
    crds.py compare OUT_DIR SHIPPED_DIR          exit 1, listing the paths, when the schemas differ
    crds.py compare-prometheus OUT_DIR SHIPPED_DIR   the same for prometheus-operator's CRDs
    crds.py prometheus-version DIR VERSION       annotate them as the operator's release does
                                                 (its scripts/generate/append-operator-version.sh)

`compare` is also what tests/unit/test_kserve_crds.py runs: the generated CRDs must equal,
as parsed YAML, the ones the release ships in config/crd/full (and in the kserve-crd chart).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

# The CRDs of the kserve-crd chart (templates/, and files/ for ClusterStorageContainer).
CRDS = (
    "serving.kserve.io_clusterservingruntimes.yaml",
    "serving.kserve.io_inferencegraphs.yaml",
    "serving.kserve.io_inferenceservices.yaml",
    "serving.kserve.io_servingruntimes.yaml",
    "serving.kserve.io_trainedmodels.yaml",
    "serving.kserve.io_clusterstoragecontainers.yaml",
)
# Where each sits in the module: config/crd/full/<file>, except this one.
SHIPPED_PATH = {"serving.kserve.io_clusterstoragecontainers.yaml": "clusterstoragecontainer/"}
# prometheus-operator's CRDs the platform creates objects of (example/prometheus-operator-crd/).
PROMETHEUS_CRDS = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_podmonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)


def _components(crd: dict[str, Any]) -> dict[str, Any]:
    """spec.properties of the first version's openAPIV3Schema (predictor, transformer, ...)."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]


def _dict_values(node: Any) -> list[dict[str, Any]]:
    return [v for v in (node or {}).values() if isinstance(v, dict)] if isinstance(node, dict) else []


def postprocess(crd: dict[str, Any]) -> dict[str, Any]:
    """The release's edits (see the module docstring); only the InferenceService CRD has any."""
    if crd["metadata"]["name"] != "inferenceservices.serving.kserve.io":
        return crd
    for component in _dict_values(_components(crd)):
        props = component.get("properties", {})
        props.pop("ephemeralContainers", None)
        for field in _dict_values(props):
            field.pop("required", None)
            for probe in ("readinessProbe", "livenessProbe"):
                handlers = field.get("properties", {}).get(probe, {}).get("properties", {})
                for handler in ("httpGet", "tcpSocket"):
                    if isinstance(handlers.get(handler), dict):
                        handlers[handler].pop("required", None)
        items = props.get("containers", {}).get("items", {}).get("properties", {})
        for probe in ("readinessProbe", "livenessProbe"):
            http_get = items.get(probe, {}).get("properties", {}).get("httpGet")
            if isinstance(http_get, dict):
                http_get.pop("required", None)
    return crd


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Paths where two parsed documents differ (empty: equal)."""
    if type(ours) is not type(theirs):
        return [f"{path or '/'}: {type(ours).__name__} here, {type(theirs).__name__} shipped"]
    if isinstance(ours, dict):
        out = []
        for key in sorted(set(ours) | set(theirs), key=str):
            if key not in theirs:
                out.append(f"{path}/{key}: only generated")
            elif key not in ours:
                out.append(f"{path}/{key}: only shipped")
            else:
                out += differences(ours[key], theirs[key], f"{path}/{key}")
        return out
    if isinstance(ours, list):
        out = [f"{path}: {len(ours)} items here, {len(theirs)} shipped"] if len(ours) != len(theirs) else []
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    return [] if ours == theirs else [f"{path}: {ours!r} here, {theirs!r} shipped"]


def load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: expected one CustomResourceDefinition")
    return docs[0]


def compare(ours: Path, shipped: Path, names: tuple[str, ...], where: dict[str, str]) -> int:
    failed = 0
    for name in names:
        diff = differences(load(ours / name), load(shipped / (where.get(name, "") + name)))
        if diff:
            failed += 1
            print(f"{name}: {len(diff)} difference(s) from the shipped CRD:", *diff[:20], sep="\n  ", file=sys.stderr)
    print(f"crds.py: {len(names) - failed} of {len(names)} generated CRDs equal the shipped ones")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("postprocess", "compare", "compare-prometheus", "prometheus-version"):
        print(
            "usage: crds.py postprocess GENERATED_DIR OUT_DIR | compare[-prometheus] OUT_DIR SHIPPED_DIR"
            " | prometheus-version DIR VERSION",
            file=sys.stderr,
        )
        return 2
    if argv[1] == "prometheus-version":
        for name in PROMETHEUS_CRDS:
            path = Path(argv[2]) / name
            crd = load(path)
            crd["metadata"].setdefault("annotations", {})["operator.prometheus.io/version"] = argv[3].lstrip("v")
            path.write_text("---\n" + yaml.safe_dump(crd, sort_keys=False, width=1000))
        return 0
    src, dst = Path(argv[2]), Path(argv[3])
    if argv[1] == "postprocess":
        dst.mkdir(parents=True, exist_ok=True)
        for name in CRDS:
            crd = postprocess(load(src / name))
            (dst / name).write_text("---\n" + yaml.safe_dump(crd, sort_keys=False, width=1000))
        return 0
    if argv[1] == "compare-prometheus":
        return compare(src, dst, PROMETHEUS_CRDS, {})
    return compare(src, dst, CRDS, SHIPPED_PATH)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
