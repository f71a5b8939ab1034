"""Entry point of a k8s trial pod: call the function named in MLLAB_CALL and report its result.

MLLAB_CALL is JSON `{"fn": "module:qualname", "args": [...], "kwargs": {...}}` (what the k8s
backend's Executor was given). In a trial job (an Indexed Job), MLLAB_CALLS is a JSON list of such
calls and the pod runs the one at its completion index (JOB_COMPLETION_INDEX, set by the Job
controller). The JSON result, or the error, is written to the container's
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


def this_call(env) -> dict:
    """The call this pod runs: MLLAB_CALL, or MLLAB_CALLS[JOB_COMPLETION_INDEX]."""
    if "MLLAB_CALLS" not in env:
        return json.loads(env["MLLAB_CALL"])
    calls = json.loads(env["MLLAB_CALLS"])
    index = env.get("JOB_COMPLETION_INDEX", "")
    if not index.isdigit() or int(index) >= len(calls):
        raise ValueError(f"JOB_COMPLETION_INDEX {index!r} names none of the {len(calls)} calls in MLLAB_CALLS")
    return calls[int(index)]


def main() -> int:
    try:
        call = this_call(os.environ)
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
