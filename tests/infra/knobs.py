"""Settings as the playbooks see them, for the testinfra layers: the host's inventory
value, else the role default that defines it (roles/*/defaults/main.yml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def knob(host: Any, name: str) -> Any:
    """An inventory value for this host, else the role default that defines it."""
    variables = host.ansible.get_variables()
    if name in variables and "{{" not in str(variables[name]):
        return variables[name]
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        defaults = yaml.safe_load(path.read_text()) or {}
        if name in defaults:
            return defaults[name]
    raise KeyError(name)


def admins(host: Any) -> list[str]:
    """mllab_admins of the inventory, else the deprecated mllab_users it defaults to."""
    variables = host.ansible.get_variables()
    value = variables.get("mllab_admins", variables.get("mllab_users", []))
    return [] if "{{" in str(value) else list(value or [])
