"""Request parsing and response building for the V1 and V2 protocols (no server needed: unit-testable)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

N_FEATURES = 64
V1_EXAMPLE = '{"instances": [[0, 0, 5, 13, ...64 pixel values 0-16...]]}'
V2_EXAMPLE = '{"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [...64 values...]}]}'
NUMERIC_V2 = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


class BadRequest(ValueError):
    """The request is malformed; the message says what is wrong and what a good request looks like."""


def _rows(instances: Any) -> np.ndarray:
    rows = []
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            raise BadRequest(f"instance {i} is an object; each instance must be a list of {N_FEATURES} numbers")
        arr = np.asarray(inst, dtype=object).reshape(-1) if isinstance(inst, list) else None
        if arr is None or arr.size != N_FEATURES:
            size = "not a list" if arr is None else f"{arr.size} values"
            raise BadRequest(f"instance {i} has {size}; each instance must be {N_FEATURES} pixel values (8x8, 0-16)")
        try:
            row = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise BadRequest(f"instance {i} contains a non-numeric value; use numbers 0-16") from None
        if not np.all(np.isfinite(row)):
            raise BadRequest(f"instance {i} contains NaN or infinity; use numbers 0-16")
        rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def parse_v1(body: Any) -> np.ndarray:
    if isinstance(body, bytes | bytearray | str):  # e.g. `curl -d` without a JSON content type
        try:
            body = json.loads(body)
        except ValueError:
            raise BadRequest(
                f"the request body is not valid JSON; send Content-Type: application/json and {V1_EXAMPLE}"
            ) from None
    if not isinstance(body, dict) or "instances" not in body:
        got = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise BadRequest(f"a V1 request needs an 'instances' list (got {got}); example: {V1_EXAMPLE}")
    inst = body["instances"]
    if not isinstance(inst, list) or not inst:
        raise BadRequest(f"'instances' must be a non-empty list; example: {V1_EXAMPLE}")
    return _rows(inst)


def parse_v2_input(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    if datatype not in NUMERIC_V2:
        raise BadRequest(f"input {name!r} has datatype {datatype!r}; use a numeric type such as FP32")
    if len(shape) != 2 or shape[1] != N_FEATURES or shape[0] < 1:
        raise BadRequest(f"input {name!r} has shape {shape}; use [n, {N_FEATURES}] (n images of 8x8 pixels)")
    arr = np.asarray(data, dtype=object).reshape(-1)
    if arr.size != math.prod(shape):
        raise BadRequest(f"input {name!r} has {arr.size} values but shape {shape} needs {math.prod(shape)}")
    return _rows(arr.reshape(shape).tolist())


def v1_response(labels: np.ndarray) -> dict[str, Any]:
    return {"predictions": [int(v) for v in labels]}
