"""Entry point of a k8s trial pod: call the function named in MLLAB_CALL and report its result.

MLLAB_CALL is JSON `{"fn": "module:qualname", "args": [...], "kwargs": {...}}` (what the k8s
backend's Executor was given). The JSON result, or the error, is written to the container's
termination message (/dev/termination-log, 4 KiB at most), where the backend reads it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

TERMINATION_LOG = Path(os.environ.get("MLLAB_TERMINATION_LOG", "/dev/termination-log"))


def resolve(ref: str):
    module, _, qualname = ref.partition(":")
    if not module or not qualname:
        raise ValueError(f"MLLAB_CALL fn {ref!r} is not 'module:qualname'")
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def main() -> int:
    try:
        call = json.loads(os.environ["MLLAB_CALL"])
        result = resolve(call["fn"])(*call.get("args", []), **call.get("kwargs", {}))
        reply, code = json.dumps({"result": result}), 0
    except Exception as exc:
        traceback.print_exc()
        reply, code = f"{type(exc).__name__}: {exc}"[:4000], 1
    print(reply, flush=True)
    with contextlib.suppress(OSError):  # not in a pod: stdout has it
        TERMINATION_LOG.write_text(reply)
    return code


if __name__ == "__main__":
    sys.exit(main())
