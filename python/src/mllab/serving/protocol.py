"""The one V1/V2 request parser both model servers use (``mllab.serving`` and ``mllab.fastserve``).

Pure functions (no server needed: unit-testable) plus the two size guards a server puts in front
of them: a body-size limit checked before the body is read (413), and a cap on the rows of one
request (413). Every malformed body raises :class:`BadRequest`, whose message names the bad value
and what a good request looks like; a server answers it as ``{"error": message}`` with
``exc.status`` (400, or 413 for :class:`TooLarge`).

What is refused: JSON of the wrong type anywhere in ``instances``/``inputs``/``shape``/
``datatype``/``data`` (a boolean or a string where a number belongs, too), data of the wrong size,
and values that are not finite once cast to the model's dtype (NaN, infinity, and numbers such as
1e300 that overflow float32).

Cost on a good request: one ``set(map(type, ...))`` pass over the values (C speed), one
``np.asarray`` cast, one ``np.isfinite`` on the array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mllab.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, add_limit_options, max_body_bytes

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ROWS",
    "BadRequest",
    "Disconnected",
    "InputSpec",
    "RequestGuard",
    "TooLarge",
    "add_limit_options",
    "max_body_bytes",
    "parse",
    "parse_v1",
    "parse_v2",
    "parse_v2_input",
    "read_body",
    "rows_cap",
    "v1_response",
    "v2_inputs",
]

INLINE_PARSE_BYTES = 64 * 1024  # bodies up to this size parse on the event loop (well under 1 ms)

N_FEATURES = 64  # the labs' digits model: 8x8 pixel values
V1_EXAMPLE = '{"instances": [[0, 0, 5, 13, ...64 pixel values 0-16...]]}'
V2_EXAMPLE = '{"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [...64 values...]}]}'
FLOAT_V2 = ("FP32", "FP64")
INT_V2 = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
NUMERIC_V2 = frozenset(FLOAT_V2 + INT_V2)  # FP16 has no JSON form (KServe refuses it too)

_NUMBERS = frozenset({int, float})
_INTS = frozenset({int})
_JSON_KIND = {dict: "an object", str: "a string", bool: "a boolean", type(None): "a JSON null", list: "a list"}


class BadRequest(ValueError):
    """The request is malformed; the message says what is wrong and what a good request looks like."""

    status = 400


class TooLarge(BadRequest):
    """The request is over a size limit of the server (body bytes, rows); the message names the option."""

    status = 413


@dataclass(frozen=True)
class InputSpec:
    """What one model takes: rows of ``n_features`` numbers (None: any, the same in every row)."""

    n_features: int | None = None
    dtype: type = np.float32
    max_rows: int | None = None  # a server's cap on the rows of one request (None: no cap)
    what: str = "numbers only"  # in messages: "each instance must hold 4 numbers only"
    v1_example: str = '{"instances": [[feature, ...], ...]}'
    v2_example: str = '{"inputs": [{"name": "input-0", "shape": [rows, features], "datatype": "FP32", "data": [...]}]}'
    max_rows_option: str = "--max-rows"

    def features(self) -> str:
        return f"{self.n_features} " if self.n_features else ""


DIGITS = InputSpec(N_FEATURES, what="pixel values (8x8, 0-16)", v1_example=V1_EXAMPLE, v2_example=V2_EXAMPLE)


def _kind(value: Any) -> str:
    return _JSON_KIND.get(type(value), "a number" if type(value) in _NUMBERS else type(value).__name__)


def _show(value: Any) -> str:
    """A value as the client sent it (JSON spelling, cut short)."""
    import orjson

    if type(value) is float and not math.isfinite(value):
        return repr(value)
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- bodies --------------------------------------------------------------------------------------
def loads(raw: bytes | bytearray | memoryview | str, example: str = V1_EXAMPLE) -> Any:
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"the request body is not valid JSON ({exc}); send Content-Type: application/json and {example}"
        ) from None


def body_too_large(size: int, limit: int, option: str = "--max-body-mib") -> TooLarge:
    return TooLarge(
        f"the request body is {size} bytes, over this server's limit of {limit} bytes ({limit / 2**20:g} MiB): "
        f"send fewer rows per request, or start the server with a larger {option}"
    )


def content_length(scope: dict, limit: int) -> int | None:
    """An ASGI request's declared body size (None: chunked), refused before the body is read when over `limit`."""
    raw = next((v for k, v in scope["headers"] if k == b"content-length"), None)  # ASGI servers lower-case names
    if raw is None:
        return None
    try:
        size = int(raw)
    except ValueError:
        raise BadRequest(f"Content-Length {raw.decode('latin-1')!r} is not a number of bytes") from None
    if size > limit:
        raise body_too_large(size, limit)
    return size


class Disconnected(Exception):
    """The client went away before its request's body had arrived: nothing to answer."""


async def read_body(scope: dict, receive: Callable, limit: int) -> bytes:
    """An ASGI request's body, at most `limit` bytes: 413 before reading when Content-Length says more,
    and as soon as a chunked body passes the limit."""
    content_length(scope, limit)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if not more and not chunks:
            if len(chunk) > limit:
                raise body_too_large(len(chunk), limit)
            return chunk
        size += len(chunk)
        if size > limit:
            raise body_too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class RequestGuard:
    """ASGI middleware: the body-size limit, then (optionally) the body's validation in a worker thread,
    answering a refused request with ``{"error": ...}`` and 400/413 before the app sees it.

    `validate(path, headers, body)` raises BadRequest for a bad body (or returns for one the app should
    get); `on_reject(path)` counts a refusal (metrics). Other requests pass through untouched."""

    def __init__(
        self,
        app: Any,
        max_body: int = DEFAULT_MAX_BODY_BYTES,
        validate: Callable[[str, Any, bytes], None] | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.validate = validate
        self.on_reject = on_reject

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        import anyio
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        try:
            body = await read_body(scope, receive, self.max_body)
            if self.validate is not None:
                headers = Headers(scope=scope)
                if len(body) > INLINE_PARSE_BYTES:
                    await anyio.to_thread.run_sync(self.validate, scope["path"], headers, body)
                else:
                    self.validate(scope["path"], headers, body)
        except Disconnected:
            return
        except BadRequest as exc:
            if self.on_reject is not None:
                self.on_reject(scope["path"])
            await JSONResponse({"error": str(exc)}, exc.status)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when it comes

        await self.app(scope, replay, send)


# ---- values -------------------------------------------------------------------------------------
def _flat(values: list, allowed: frozenset, where: str, depth: int, numbers: str) -> list:
    """`values` flattened row-major through at most `depth` levels of nested lists, each leaf checked
    to be a JSON number of an allowed type (a boolean is not a number here)."""
    for level in range(depth + 1):
        types = set(map(type, values))
        if types <= allowed:
            return values
        if types == {list} and level < depth:
            values = list(itertools.chain.from_iterable(values))
            continue
        pos, v = next((i, v) for i, v in enumerate(values) if type(v) not in allowed)
        if type(v) is list:
            problem = "is nested deeper than allowed" if types == {list} else "mixes lists and numbers"
            raise BadRequest(f"{where} {problem} (at value {pos}: {_show(v)}); send a flat list of {numbers}")
        hint = 'e.g. 1.5 not "1.5", 1 not true' if allowed is _NUMBERS else "e.g. 3 not 3.0 or true"
        raise BadRequest(
            f"{where} contains a non-numeric value: value {pos} is {_show(v)} ({_kind(v)}); send {numbers} ({hint})"
        )
    raise AssertionError("unreachable")


def _cast(values: list, spec: InputSpec, where: str, width: int, locate: Callable[[int], str]) -> np.ndarray:
    """`values` (checked JSON numbers: flat, or a list of rows of `width`) as the model's dtype, refused
    when a value is not finite there (NaN, infinity, or too large for the dtype, e.g. 1e300 in float32)."""

    def sent(k: int) -> Any:
        return values[k // width][k % width] if type(values[0]) is list else values[k]

    dtype = np.dtype(spec.dtype)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.asarray(values, dtype=dtype)
    except OverflowError:
        n = sum(map(len, values)) if type(values[0]) is list else len(values)
        k = next(k for k in range(n) if type(sent(k)) is int and abs(sent(k)) >= 2**63)
        raise BadRequest(
            f"{where}: {locate(k)} is {_show(sent(k))}, an integer too large for {dtype.name}; send smaller numbers"
        ) from None
    if dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            k = int(np.flatnonzero(~finite)[0])
            raise BadRequest(
                f"{where} contains NaN or infinity after the cast to {dtype.name}: {locate(k)} is "
                f"{_show(sent(k))}, which is {x.reshape(-1)[k]} as {dtype.name} (it holds at most "
                f"±{float(np.finfo(dtype).max):.4g}); send finite numbers within that range"
            )
    return x


def rows_cap(rows: int, spec: InputSpec) -> None:
    """TooLarge (413) when one request has more rows than the server takes."""
    if spec.max_rows is not None and rows > spec.max_rows:
        raise TooLarge(
            f"the request has {rows} rows, over this server's cap of {spec.max_rows} rows per request: "
            f"split it into requests of at most {spec.max_rows} rows, or start the server with "
            f"{spec.max_rows_option} {rows} (or more)"
        )


# ---- V1 -----------------------------------------------------------------------------------------
def parse_v1(body: Any, spec: InputSpec = DIGITS) -> np.ndarray:
    """``{"instances": [[f, ...], ...]}`` (bytes, str or parsed) -> rows x features of spec.dtype.
    An instance may be nested (an 8x8 image): it is flattened row-major."""
    if isinstance(body, bytes | bytearray | memoryview | str):  # e.g. `curl -d` without a JSON content type
        body = loads(body, spec.v1_example)
    if not isinstance(body, dict) or "instances" not in body:
        got = sorted(body) if isinstance(body, dict) else _kind(body)
        raise BadRequest(f"a V1 request needs an 'instances' list (got {got}); example: {spec.v1_example}")
    inst = body["instances"]
    if type(inst) is not list or not inst:
        raise BadRequest(
            f"'instances' must be a non-empty list of rows (got {_show(inst)}); example: {spec.v1_example}"
        )
    rows_cap(len(inst), spec)
    if set(map(type, inst)) != {list}:
        i, bad = next((i, v) for i, v in enumerate(inst) if type(v) is not list)
        raise BadRequest(
            f"instance {i} is {_kind(bad)} ({_show(bad)}); each instance must be a list of {spec.features()}{spec.what}"
        )
    nf = spec.n_features
    lengths = set(map(len, inst))
    flat = None
    if len(lengths) == 1:  # the common case: equal rows of plain numbers, checked in one pass
        leaves = itertools.chain.from_iterable(inst)
        if set(map(type, leaves)) <= _NUMBERS and (nf is None or lengths == {nf}):
            flat = inst
    if flat is None:  # nested instances, or an error to locate
        flat = [_flat(row, _NUMBERS, f"instance {i}", 2, spec.what) for i, row in enumerate(inst)]
        want = nf if nf is not None else len(flat[0])
        for i, row in enumerate(flat):
            if len(row) != want:
                why = (
                    f"{len(row)} features, the model expects {nf}"
                    if nf is not None
                    else f"instance 0 has {want}; every instance must have the same count"
                )
                raise BadRequest(
                    f"instance {i} has {len(row)} values ({why}); each instance must hold {spec.features()}{spec.what}"
                )
    width = len(flat[0])
    if width == 0:
        raise BadRequest(f"instance 0 is empty; each instance must hold {spec.features()}{spec.what}")
    return _cast(flat, spec, "instances", width, lambda k: f"instance {k // width} value {k % width}")


def v1_response(labels: np.ndarray) -> dict[str, Any]:
    return {"predictions": [int(v) for v in labels]}


# ---- V2 -----------------------------------------------------------------------------------------
def _datatype_problem(name: str, datatype: Any) -> BadRequest:
    return BadRequest(
        f"input {name!r} has datatype {datatype!r}, and {datatype!r} is not supported; use a numeric "
        f"type such as FP32 (one of {', '.join(FLOAT_V2 + INT_V2)})"
    )


def _shape_problem(name: str, shape: Any, spec: InputSpec) -> BadRequest:
    example = f"[n, {spec.n_features}]" if spec.n_features else "[rows, features]"
    return BadRequest(
        f"input {name!r} has shape {_show(shape)}; shape must be [rows, features], two positive integers: {example}"
    )


def _data_problem(name: str, data: Any) -> BadRequest:
    return BadRequest(f"input {name!r}: data must be a non-empty list of numbers (got {_show(data)})")


def v2_inputs(body: Any, spec: InputSpec = DIGITS, *, data: bool = True) -> list[dict[str, Any]]:
    """A V2 request's envelope, checked for JSON types -> its input tensors (objects).

    Checked: ``inputs`` is a non-empty list of objects, each with name, shape, datatype (and data,
    unless `data` is False: the binary extension sends it after the JSON); ``name``, ``datatype``
    and ``id`` are strings, ``shape`` a list of integers (not booleans, strings or floats),
    ``data`` a list. Not checked: what the values mean (a supported datatype, the shape against the
    model, the data's values and size): that is :func:`parse_v2_input`'s. A typed decoder such as
    KServe's coerces ``"1"`` or ``true`` in a shape to 1, so a model behind it cannot see them."""
    if not isinstance(body, dict) or type(body.get("inputs")) is not list or not body["inputs"]:
        got = sorted(body) if isinstance(body, dict) else _kind(body)
        raise BadRequest(f"a V2 request needs a non-empty 'inputs' list (got {got}); example: {spec.v2_example}")
    rid = body.get("id")
    if rid is not None and type(rid) is not str:
        raise BadRequest(f'\'id\' must be a string (got {_show(rid)}, {_kind(rid)}); e.g. "id": "req-1"')
    keys = ("name", "shape", "datatype", "data") if data else ("name", "shape", "datatype")
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict):
            raise BadRequest(
                f"inputs[{i}] is {_kind(tensor)}; it must be an object with name, shape, datatype and data: "
                f"{spec.v2_example}"
            )
        missing = [k for k in keys if k not in tensor]
        if missing:
            raise BadRequest(
                f"inputs[{i}] lacks {', '.join(missing)}; each input needs name, shape, datatype and data: "
                f"{spec.v2_example}"
            )
        name = tensor["name"]
        if type(name) is not str:
            raise BadRequest(
                f'inputs[{i}].name must be a string (got {_show(name)}, {_kind(name)}); e.g. "name": "input-0"'
            )
        if type(tensor["datatype"]) is not str:
            raise _datatype_problem(name, tensor["datatype"])
        shape = tensor["shape"]
        if type(shape) is not list or set(map(type, shape)) - _INTS:
            raise _shape_problem(name, shape, spec)
        if "data" in tensor and type(tensor["data"]) is not list:
            raise _data_problem(name, tensor["data"])
    return body["inputs"]


def parse_v2(body: Any, spec: InputSpec = DIGITS) -> tuple[np.ndarray, str | None]:
    """A whole V2 request (bytes, str or parsed) -> (rows x features, the request's id or None)."""
    if isinstance(body, bytes | bytearray | memoryview | str):
        body = loads(body, spec.v2_example)
    inputs = v2_inputs(body, spec)
    if len(inputs) != 1:
        raise BadRequest(f"this model takes one input tensor; the request has {len(inputs)}: send only inputs[0]")
    tensor = inputs[0]
    return parse_v2_input(tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"], spec), body.get("id")


def parse_v2_input(name: str, datatype: Any, shape: Any, data: Any, spec: InputSpec = DIGITS) -> np.ndarray:
    """One V2 input tensor -> rows x features of spec.dtype. `data` may be flat or nested row-major."""
    if type(datatype) is not str or datatype not in NUMERIC_V2:
        raise _datatype_problem(name, datatype)
    nf = spec.n_features
    example = f"[n, {nf}]" if nf else "[rows, features]"
    if type(shape) is not list or len(shape) != 2 or any(type(d) is not int or d < 1 for d in shape):
        raise _shape_problem(name, shape, spec)
    if nf is not None and shape[1] != nf:
        raise BadRequest(
            f"input {name!r} has shape {shape}: {shape[1]} features per row, the model expects {nf}; "
            f"use shape {example}"
        )
    rows_cap(shape[0], spec)
    if type(data) is not list or not data:
        raise _data_problem(name, data)
    allowed = _NUMBERS if datatype in FLOAT_V2 else _INTS
    numbers = "numbers" if allowed is _NUMBERS else f"integers ({datatype})"
    values = _flat(data, allowed, f"input {name!r} data", 2, numbers)
    need = math.prod(shape)
    if len(values) != need:
        raise BadRequest(f"input {name!r} has {len(values)} values but shape {shape} needs {need}")
    width = shape[1]
    x = _cast(
        values, spec, f"input {name!r} data", width, lambda k: f"value {k} (row {k // width}, feature {k % width})"
    )
    return x.reshape(shape)


# ---- both ---------------------------------------------------------------------------------------
def parse(protocol: str, raw: bytes, spec: InputSpec) -> np.ndarray:
    """A raw body of `protocol` ("v1" or "v2") -> rows x features (what a guard validates)."""
    return parse_v1(raw, spec) if protocol == "v1" else parse_v2(raw, spec)[0]


def route(path: str) -> tuple[str, str] | None:
    """(protocol, model name) of an inference URL, or None for any other path."""
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return "v1", path[len("/v1/models/") : -len(":predict")]
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "v2", path[len("/v2/models/") : -len("/infer")].split("/versions/")[0]
    return None
