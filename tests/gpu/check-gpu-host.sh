#!/usr/bin/env bash
# GPU checks for a host with an NVIDIA GPU (CI has none): the gpu role's parsers on this
# host's real `nvidia-smi -L` / `lspci -nn` output, lab 1's CUDA path (mllab run 1 +
# check 1), and the GPU-marked tests of the lab package. Uses the python3 on PATH, which
# must have torch with CUDA; the package runs from the source tree (PYTHONPATH).
#   tests/gpu/check-gpu-host.sh [OUTDIR]     (default artifacts/gpu-check)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-artifacts/gpu-check}}
mkdir -p "$out"
export PYTHONPATH=$PWD/python/src PYTHONUNBUFFERED=1 MLLAB_HOME=${MLLAB_HOME:-$(mktemp -d)}
fail=0
step() { printf '\n=== %s\n' "$*"; }

step "driver and devices"
nvidia-smi -L | tee "$out/nvidia-smi-L.txt" || fail=1
# the gpu role's queries (mllab_gpu.SMI_QUERY_ARGV / SMI_MIG_ARGV): captures for tests/unit/samples/gpu/
nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version --format=csv,noheader \
  | tee "$out/nvidia-smi-query-gpu.txt" || fail=1
nvidia-smi --query-gpu=index,mig.mode.current --format=csv,noheader | tee "$out/nvidia-smi-query-mig.txt"
if command -v lspci >/dev/null; then lspci -nn >"$out/lspci-nn.txt"; else echo "lspci: not installed" | tee "$out/lspci-nn.txt"; fi

step "the gpu role's parsers on this host's output"
python3 - "$out" <<'PY' || fail=1
import importlib.util, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("g", "plugins/filter/mllab_gpu.py")
g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g)
smi = g.mllab_gpu_smi_list((out / "nvidia-smi-L.txt").read_text())
lspci = (out / "lspci-nn.txt").read_text()
def ran(name):
    return {"rc": 0, "stdout": (out / name).read_text()}
summary = g.mllab_gpu_summary("" if lspci.startswith("lspci: not installed") else lspci,
                              ran("nvidia-smi-query-gpu.txt"), ran("nvidia-smi-query-mig.txt"))
print(json.dumps({"nvidia_smi_L": smi, "summary": summary}, indent=2, default=str))
assert smi and all(d.get("uuid", "").startswith("GPU-") for d in smi), smi
assert summary["driver"] == "loaded" and [x["uuid"] for x in summary["gpus"]] == [x["uuid"] for x in smi], summary
PY

step "lab 1: mllab run 1 && mllab check 1"
python3 -m mllab run 1 | tee "$out/lab1-run.txt" || fail=1
python3 -m mllab check 1 --json | tee "$out/lab1-check.json" || fail=1
cp "$MLLAB_HOME"/labs/01-*/bench.json "$out/lab1-bench.json" 2>/dev/null
cp "$MLLAB_HOME"/labs/01-*/speedup.png "$out/lab1-speedup.png" 2>/dev/null

step "GPU-marked tests of the lab package"
python3 -m pytest python/tests/test_labs.py -m gpu -q -rs -p no:cacheprovider 2>&1 | tee "$out/pytest-gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1

step "result: $([ $fail -eq 0 ] && echo PASS || echo FAIL)"
exit $fail
