"""inventory/group_vars/all.yml documents knobs as commented `# name: value` lines; each
must exist in exactly one role's defaults with the same value, so the docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KNOB = re.compile(r"^# ([a-z][a-z0-9_]*): (.*)$")


def documented() -> dict[str, object]:
    lines = (ROOT / "inventory/group_vars/all.yml").read_text().splitlines()
    return {m[1]: yaml.safe_load(m[2]) for m in map(KNOB.match, lines) if m}


def role_defaults() -> dict[str, list[tuple[str, object]]]:
    found: dict[str, list[tuple[str, object]]] = {}
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            found.setdefault(key, []).append((path.parts[-3], value))
    return found


def test_the_doc_lists_knobs():
    assert len(documented()) >= 10


@pytest.mark.parametrize("name", sorted(documented()))
def test_documented_knob_matches_its_role_default(name):
    defaults = role_defaults()
    assert name in defaults, f"{name} is documented in inventory/group_vars/all.yml but no role defines it"
    (role, value), *others = defaults[name]
    assert not others, f"{name} is defined by several roles: {[role] + [r for r, _ in others]}"
    assert documented()[name] == value, f"{name}: doc says {documented()[name]!r}, roles/{role} says {value!r}"
