"""Entry point of one pipeline step in a Job (lab 8 on the cluster)::

    python -m mllab.pipeline_step --fn module:qualname --params JSON --out DIR [--input NAME=DIR ...]

Calls `fn(inputs, params, out) -> metrics` (mllab.pipeline's step contract) and writes the metrics
to DIR/metrics.json. The k8s backend points DIR and the inputs at content-addressed folders on the
work PVC, so each step's Job reads what the earlier steps' Jobs wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mllab.backends.k8s_call import resolve

KEEP = {".attempts"}  # the Job's attempt counter (k8s_objects.ATTEMPT_WRAPPER)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mllab.pipeline_step")
    p.add_argument("--fn", required=True, help="the step function, module:qualname")
    p.add_argument("--params", default="{}", help="the step's parameters, JSON")
    p.add_argument("--out", type=Path, required=True, help="the step's output folder")
    p.add_argument("--input", action="append", default=[], metavar="NAME=DIR", help="an earlier step's output")
    args = p.parse_args(argv)
    inputs: dict[str, Path] = {}
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"--input {item!r} is not NAME=DIR")
        if not Path(path).is_dir():
            print(
                f"error: input {name!r} is missing at {path}: the step that makes it did not run on this volume "
                "(a local cache without the work PVC's copy?); run `mllab reset 8` and run the lab again",
                file=sys.stderr,
            )
            return 2
        inputs[name] = Path(path)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        p.error(f"--params is not JSON: {exc}")
    fn = resolve(args.fn)
    args.out.mkdir(parents=True, exist_ok=True)
    for entry in args.out.iterdir():  # a previous, failed attempt's leftovers
        if entry.name not in KEEP:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    metrics = fn(inputs, params, args.out)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print(json.dumps(metrics, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
