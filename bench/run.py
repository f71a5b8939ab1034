"""`make bench`: every benchmark side by side in one invocation, printed as tables and
written to docs/benchmarks.md with a PNG chart. Select sections with BENCH=a,b."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Section, peer_versions, print_sections, versions, write_chart, write_report

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
    failed = []
    start = time.monotonic()
    for name in wanted:
        t0 = time.monotonic()
        module, function = RUNNERS[name]
        try:
            results.append(getattr(importlib.import_module(module), function)())
        except Exception as exc:  # one broken section must not lose the others' figures
            failed.append(name)
            stderr = getattr(exc, "stderr", "") or ""
            stderr = re.sub(
                r"\x1b\[[0-9;]*m", "", stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
            )
            why = f"{type(exc).__name__}: {exc}" + (f"; {stderr.strip().splitlines()[-1]}" if stderr.strip() else "")
            results.append(
                Section(
                    f"{name}: FAILED", [], verdict=f"FAILED, no figures: {why}", reproduce=f"make bench BENCH={name}"
                )
            )
            print(f"[bench] {name}: FAILED: {why}", file=sys.stderr, flush=True)
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
    if failed:
        print(f"[bench] FAILED sections: {', '.join(failed)} (their rows in {out} say why)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
