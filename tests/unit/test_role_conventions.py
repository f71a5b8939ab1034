"""Conventions the roles keep, checked on their files (no ansible run): an enumerated setting has
`choices:` in its role's meta/argument_specs.yml (validated when the role starts, and by preflight
for every layer at once), the same list the role's own checks use, and the role's default is one
of them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# --- enumerated settings ---------------------------------------------------------------------


def _specs() -> dict[str, dict[str, dict]]:
    """{role: {option path: option spec}} of every role's main entry point (nested options as a.b)."""

    def flat(options, prefix=""):
        out = {}
        for name, spec in (options or {}).items():
            out[prefix + name] = spec
            out |= flat(spec.get("options"), f"{prefix}{name}.")
        return out

    found = {}
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        entry = yaml.safe_load(path.read_text())["argument_specs"]["main"]
        found[path.parts[-3]] = flat(entry.get("options"))
    return found


def _checked_choices() -> list[tuple[str, str, list[str]]]:
    """(file, setting, allowed values) of every list of values the roles check a setting against:
    mllab_choice_problems' {'x': [x, [...]]} and preflight's (x in [...])."""
    found = []
    pair = re.compile(r"'(\w+)': \[\1, \[([^\]]*)\]\]")
    member = re.compile(r"\((\w+) in \[([^\]]*)\]\)")
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        text = path.read_text()
        for m in [*pair.finditer(text), *member.finditer(text)]:
            found.append((str(path.relative_to(ROOT)), m[1], yaml.safe_load(f"[{m[2]}]")))
    return found


def test_the_roles_own_checks_and_the_argument_specs_allow_the_same_values():
    checked = _checked_choices()
    assert len(checked) >= 7
    specs = _specs()
    for path, setting, allowed in checked:
        declared = [spec[setting] for spec in specs.values() if setting in spec]
        assert declared, f"{path} checks {setting}, which no role's argument_specs.yml declares"
        for spec in declared:
            assert spec.get("choices") == allowed, f"{setting}: {path} allows {allowed}, its spec {spec.get('choices')}"


def _defaults() -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted((ROOT / "roles").glob("*/defaults/main.yml")):
        found |= yaml.safe_load(path.read_text()) or {}
    return found


def test_every_default_is_one_of_its_choices():
    defaults = _defaults()
    checked = 0
    for role, options in _specs().items():
        for setting, spec in options.items():
            if "choices" not in spec:
                continue
            head, _, sub = setting.partition(".")
            value = defaults.get(head)
            value = value.get(sub) if sub and isinstance(value, dict) else value
            if value is None or (isinstance(value, str) and "{{" in value):
                continue  # no default, or a computed one
            checked += 1
            assert value in spec["choices"], f"roles/{role}: {setting} defaults to {value!r}, not in {spec['choices']}"
    assert checked >= 10


def test_the_gpu_filters_and_the_gpu_spec_allow_the_same_mig_strategies():
    import mllab_gpu  # plugins/filter (conftest.py)

    assert _specs()["gpu"]["gpu_sharing.mig_strategy"]["choices"] == list(mllab_gpu.MIG_STRATEGIES)
