"""The model servers' size limits and their command-line options (no numpy: the CLI imports this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # 4 MiB: ~50k digits rows of 64 pixels
DEFAULT_MAX_ROWS = 10_000


def _positive(kind: type) -> Callable[[str], Any]:
    def parse_arg(value: str) -> Any:
        import argparse

        try:
            got = kind(value)
        except ValueError:
            got = 0
        if not got > 0:
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: use a positive {kind.__name__}")
        return got

    return parse_arg


def add_limit_options(parser: Any) -> None:
    """--max-body-mib and --max-rows, the same on both servers."""
    parser.add_argument(
        "--max-body-mib",
        type=_positive(float),
        default=DEFAULT_MAX_BODY_BYTES / 2**20,
        help=f"refuse request bodies over this many MiB with 413 (default {DEFAULT_MAX_BODY_BYTES / 2**20:g})",
    )
    parser.add_argument(
        "--max-rows",
        type=_positive(int),
        default=DEFAULT_MAX_ROWS,
        help=f"refuse requests of more rows than this with 413 (default {DEFAULT_MAX_ROWS})",
    )


def max_body_bytes(args: Any) -> int:
    return int(args.max_body_mib * 2**20)
