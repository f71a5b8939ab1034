"""`make bench`: every benchmark side by side in one invocation, printed as tables and
written to docs/benchmarks.md with a PNG chart. Select sections with BENCH=a,b."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, peer_versions, print_sections, versions, write_chart, write_report

# section -> (module in bench/, function returning a common.Section)
RUNNERS = {
    "serving": ("serving", "serving"),
    "training": ("training", "training"),
    "distributed": ("distributed", "distributed"),
    "cli": ("cli_provisioning", "cli"),
    "provisioning": ("cli_provisioning", "provisioning"),
}
SECTIONS = list(RUNNERS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    args = parser.parse_args()
    wanted = [s for s in (args.only.split(",") if args.only else SECTIONS) if s]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}: choose from {SECTIONS}")

    results = []
    start = time.monotonic()
    for name in wanted:
        t0 = time.monotonic()
        module, function = RUNNERS[name]
        results.append(getattr(importlib.import_module(module), function)())
        print(f"[bench] {name}: {time.monotonic() - t0:.0f} s", flush=True)

    print_sections(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    vers = versions("mllab", "torch", "mlflow", "kserve", "onnxruntime", "skl2onnx", "scikit-learn", "molecule")
    vers.update(peer_versions())
    command = "make bench" + (f" BENCH={args.only}" if args.only else "")
    write_report(results, vers, command, out)
    write_chart(results, out.with_suffix(".png"))
    print(f"[bench] wrote {out} and {out.with_suffix('.png')} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
