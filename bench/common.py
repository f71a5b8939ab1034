"""Shared pieces of `make bench`: repeated measurements summarised as median and
min-max, version capture, and the report (rich table on the terminal, markdown in
docs/benchmarks.md, a PNG chart). Benchmarks are not tests: nothing here asserts."""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Figure:
    """One measured quantity over several runs."""

    values: list[float]
    unit: str

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        lo, hi = min(self.values), max(self.values)
        return f"{fmt(self.median)} {self.unit} ({fmt(lo)}-{fmt(hi)}, n={len(self.values)})"


def fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


@dataclass
class Row:
    name: str
    figures: dict[str, Figure]
    note: str = ""


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    target: str = ""
    verdict: str = ""  # the target met or the gap, stated from the measured numbers
    reproduce: str = ""
    chart: str | None = None  # column to chart, if any
    notes: str = ""  # what the figures rest on (design, method), written under the section


def timed(fn: Callable[[], object], runs: int, warmup: int = 1) -> Figure:
    for _ in range(warmup):
        fn()
    values = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        values.append(time.perf_counter() - start)
    return Figure(values, "s")


def time_command(cmd: Sequence[str], runs: int, warmup: int = 1, env: dict | None = None) -> Figure:
    def once() -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    return timed(once, runs, warmup)


def versions(*dists: str) -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": f"{platform.machine()}, {_cores()} cores"}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = "not installed"
    return out


def peer_versions() -> dict[str, str]:
    """Versions inside the peers' own venv (MLServer), which the bench's interpreter cannot import."""
    py = ROOT / ".cache/bench/mlserver-venv/bin/python"
    if not py.exists():
        return {"mlserver": "not installed"}
    code = "from importlib import metadata as m; print(m.version('mlserver'), m.version('mlserver-sklearn'))"
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True).stdout.split()
    return {"mlserver": out[0], "mlserver-sklearn": out[1]} if len(out) == 2 else {"mlserver": "unknown"}


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def print_sections(sections: list[Section]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))
    for s in sections:
        table = Table(title=s.title, show_lines=False)
        table.add_column("")
        for c in s.columns:
            table.add_column(c, justify="right")
        table.add_column("note")
        for r in s.rows:
            table.add_row(r.name, *[str(r.figures[c]) if c in r.figures else "-" for c in s.columns], r.note)
        if s.rows:
            console.print(table)
        else:
            console.print(f"[bold]{s.title}[/bold]")
        if s.verdict:
            console.print(f"[bold]{s.verdict}[/bold]")


def write_report(sections: list[Section], vers: dict[str, str], command: str, path: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` (bench/run.py). Each figure is the median of several runs with",
        "min-max and run count in brackets; every comparison ran side by side in the same invocation,",
        "so the ratios, not the absolute numbers, are the claims (these machines are noisy).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "",
    ]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.target:
            lines += [f"Target: {s.target}", ""]
        if s.rows:
            lines += ["| | " + " | ".join(s.columns) + " | note |", "|---" * (len(s.columns) + 2) + "|"]
            for r in s.rows:
                cells = [str(r.figures[c]) if c in r.figures else "-" for c in s.columns]
                lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {r.note} |")
            lines.append("")
        if s.verdict:
            lines += [f"**Result:** {s.verdict}", ""]
        if s.reproduce:
            lines += [f"Reproduce: `{s.reproduce}`", ""]
        if s.notes:
            lines += [s.notes.strip(), ""]
    if any(s.chart for s in sections):
        lines += ["![benchmarks](benchmarks.png)", ""]
    path.write_text("\n".join(lines))


def write_chart(sections: list[Section], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charted = [s for s in sections if s.chart]
    if not charted:
        return
    fig, axes = plt.subplots(1, len(charted), figsize=(5.5 * len(charted), 4), squeeze=False)
    for ax, s in zip(axes[0], charted, strict=True):
        rows = [r for r in s.rows if s.chart in r.figures]
        med = [r.figures[s.chart].median for r in rows]
        lo = [m - min(r.figures[s.chart].values) for m, r in zip(med, rows, strict=True)]
        hi = [max(r.figures[s.chart].values) - m for m, r in zip(med, rows, strict=True)]
        ax.barh([r.name for r in rows], med, xerr=[lo, hi], color="#4c72b0", capsize=3)
        ax.set_title(s.title, fontsize=10)
        ax.set_xlabel(f"{s.chart} ({rows[0].figures[s.chart].unit})" if rows else s.chart)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def python() -> str:
    return sys.executable
