"""Section 4: CLI start-up (heavy imports must stay lazy) and provisioning (molecule:
first converge of the host layer vs the idempotent second run)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from common import ROOT, Figure, Row, Section, time_command

CLI_TARGET_S = 0.3


def cli(runs: int = 10) -> Section:
    bindir = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
    py = str(bindir / "python")
    cases = [
        ("python -c pass (interpreter floor)", [py, "-c", "pass"]),
        ("mllab --help", [str(bindir / "mllab"), "--help"]),
        ("mllab list", [str(bindir / "mllab"), "list"]),
        # start: the guide and the starter files (kept after the first run); hint: the next hint
        ("mllab start 2", [str(bindir / "mllab"), "start", "2"]),
        ("mllab hint 2", [str(bindir / "mllab"), "hint", "2"]),
        ("peer: mlflow --help", [str(bindir / "mlflow"), "--help"]),
    ]
    env = dict(
        os.environ,
        MLLAB_HOME=str(ROOT / ".cache/bench/mllab-home"),
        MLLAB_WORKSPACE=str(ROOT / ".cache/bench/mllab-workspace"),
    )
    section = Section(
        "CLI start-up",
        ["wall"],
        target=f"`mllab --help`, `list`, `start N` and `hint N` under {CLI_TARGET_S} s (heavy imports stay lazy)",
        reproduce="make bench BENCH=cli",
        chart="wall",
    )
    for name, cmd in cases:
        if not Path(cmd[0]).exists():
            section.rows.append(Row(name, {}, note=f"{cmd[0]} not installed"))
            continue
        section.rows.append(Row(name, {"wall": time_command(cmd, runs, env=env)}))
    ours = [r for r in section.rows if r.name.startswith("mllab") and "wall" in r.figures]
    peer = next((r for r in section.rows if r.name.startswith("peer") and "wall" in r.figures), None)
    if ours:
        worst = max(r.figures["wall"].median for r in ours)
        verdict = f"slowest mllab command {worst:.3f} s: target {'met' if worst < CLI_TARGET_S else 'MISSED'}"
        if peer:
            verdict += f"; {peer.figures['wall'].median / worst:.1f}x faster than `mlflow --help`"
        section.verdict = verdict
    return section


RECAP = re.compile(r"changed=(\d+)")


def _converge(env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["molecule", "converge"], cwd=ROOT / "roles/base", env=env, capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - start
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    changed = [int(n) for n in RECAP.findall(text)]
    # The last PLAY RECAP line is the instance's (the first ones are molecule's own plays).
    return seconds, changed[-1] if changed else -1


def provisioning(reruns: int = 3) -> Section:
    section = Section(
        "Provisioning: host layer (molecule, Debian 12 container)",
        ["wall"],
        target="second run reports 0 changed; its time is reported",
        reproduce="make bench BENCH=provisioning",
    )
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        section.verdict = "skipped: no Docker engine"
        return section
    bindir = str(ROOT / ".venv/bin")
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"], MOLECULE_DISTRO="bookworm")
    if "MOLECULE_IMAGE" not in env:  # the local image `make molecule` uses (built once, then cached)
        # stderr kept: a failure's last line (e.g. "debootstrap is missing. Fix: ...") goes into the report
        subprocess.run([str(ROOT / "tests/molecule/build-image.sh"), "bookworm"], check=True, stderr=subprocess.PIPE)
        env["MOLECULE_IMAGE"] = "mllab-systemd:bookworm"
    subprocess.run(["molecule", "destroy"], cwd=ROOT / "roles/base", env=env, capture_output=True)
    subprocess.run(["molecule", "create"], cwd=ROOT / "roles/base", env=env, capture_output=True, check=True)
    try:
        first, first_changed = _converge(env)
        again = [_converge(env) for _ in range(reruns)]
    finally:
        subprocess.run(["molecule", "destroy"], cwd=ROOT / "roles/base", env=env, capture_output=True)
    section.rows.append(Row("first converge", {"wall": Figure([first], "s")}, note=f"changed={first_changed}"))
    changed = sorted({c for _, c in again})
    section.rows.append(
        Row("second run (idempotent)", {"wall": Figure([s for s, _ in again], "s")}, note=f"changed={changed}")
    )
    ok = changed == [0]
    section.verdict = (
        f"second run {'reports 0 changed' if ok else f'CHANGED {changed}'}; "
        f"it takes {Figure([s for s, _ in again], 's').median / first:.0%} of the first converge"
    )
    return section
