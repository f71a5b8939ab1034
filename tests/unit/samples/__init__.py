"""CLI output samples for the parsers' unit tests, one folder per tool family. Each file
starts with `#~` lines that say where its format comes from (upstream source, docs, or a
capture on a real host)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def sample(folder: str, name: str) -> str:
    """A sample without its `#~` provenance header."""
    text = (HERE / folder / name).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.startswith("#~")) + "\n"


def without_provenance(folder: str) -> list[str]:
    """Names of the samples in folder that do not say where they come from."""
    return [p.name for p in sorted((HERE / folder).iterdir()) if not p.read_text(encoding="utf-8").startswith("#~ ")]
