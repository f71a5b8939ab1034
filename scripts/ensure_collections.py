#!/usr/bin/env python3
"""Make sure the collections in requirements.yml are installed, without Galaxy if possible.

The `ansible` PyPI package bundles kubernetes.core, community.general, ansible.posix,
community.crypto and community.docker. When the bundled (or already installed) versions satisfy
requirements.yml, nothing is downloaded, so hosts without Ansible Galaxy work.
Otherwise `ansible-galaxy collection install -r requirements.yml` runs; if that fails
too, the error names the missing collections and the way out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version


def installed_collections(galaxy: str) -> dict[str, str]:
    out = subprocess.run(
        [galaxy, "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, str] = {}
    # One entry per collections path; the first path wins, as in Ansible itself.
    for _path, colls in json.loads(out).items():
        for name, meta in colls.items():
            found.setdefault(name, meta.get("version", "0.0.0"))
    return found


def unmet(requirements: list[dict], installed: dict[str, str]) -> list[str]:
    problems = []
    for req in requirements:
        name, spec = req["name"], req.get("version", "*")
        have = installed.get(name)
        if have is None:
            problems.append(f"{name} (wanted {spec}, not installed)")
        elif spec not in ("*", "") and Version(have) not in SpecifierSet(spec):
            problems.append(f"{name} (wanted {spec}, found {have})")
    return problems


def main() -> int:
    galaxy = sys.argv[1] if len(sys.argv) > 1 else "ansible-galaxy"
    reqfile = Path(sys.argv[2] if len(sys.argv) > 2 else "requirements.yml")
    requirements = yaml.safe_load(reqfile.read_text())["collections"]
    problems = unmet(requirements, installed_collections(galaxy))
    if not problems:
        print(f"collections: all {len(requirements)} in {reqfile} satisfied by installed ones")
        return 0
    print("collections: installing from Galaxy: " + "; ".join(problems))
    if subprocess.run([galaxy, "collection", "install", "-r", str(reqfile)]).returncode == 0:
        return 0
    print(
        "ERROR: could not install " + "; ".join(problems) + " from Ansible Galaxy.\n"
        "Fix: reach galaxy.ansible.com, or install the `ansible` package pinned in "
        "requirements/controller.txt (it bundles these collections), or copy the "
        "collections into ~/.ansible/collections.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
