"""Conventions the roles and playbooks keep, checked on their files (no ansible run):

- one naming style for every task, handler and play: "<Where> | <what it does>", where <Where>
  is the role's name (its tasks and handlers) or the playbook's layer (its plays and tasks), and
  <what it does> starts in lower case unless it starts with a name (MicroK8s, GPU, NVIDIA, MLflow...);
- an enumerated setting has `choices:` in its role's meta/argument_specs.yml (validated when the
  role starts, and by preflight for every layer at once), the same list the role's own checks
  use, and the role's default is one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible_tasks import tasks  # tests/unit/ansible_tasks.py

ROOT = Path(__file__).resolve().parents[2]

# The prefix of each role's task and handler names (a new role gets its line here).
ROLE_PREFIXES = {
    "base": "Base",
    "classroom": "Classroom",
    "gpu": "GPU",
    "jupyter": "JupyterLab",
    "jupyterhub": "JupyterHub",
    "kserve": "KServe",
    "lab_image": "Lab image",
    "labs": "Labs",
    "microk8s": "MicroK8s",
    "mlflow": "MLflow",
    "mllab_defaults": "Layer marker",  # its only tasks: tasks/layer_marker.yml
    "monitoring": "Monitoring",
    "platform_common": "Platform common",
    "preflight": "Preflight",
    "training": "Training",
}
# The prefix of each playbook's play and task names.
PLAYBOOK_PREFIXES = {
    "cluster": "Cluster layer",
    "gpu": "GPU layer",
    "host": "Host layer",
    "lab-image": "Lab image",
    "labs": "Labs layer",
    "platform": "Platform layer",
    "reset": "Reset",
    "upgrade": "Upgrade",
    "verify": "Verify layer",
}
# Capitalised words that are names, so they may start the part after the bar.
NAMES = {"Helm", "Grafana", "Prometheus", "Kubernetes", "Debian", "Ubuntu", "Docker", "Python"}


def _named() -> list[tuple[str, str, str]]:
    """(file, expected prefix, name) of every task, handler and play."""
    out = []
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")) + sorted((ROOT / "roles").glob("*/handlers/*.yml")):
        role = path.parts[-3]
        for task in tasks(yaml.safe_load(path.read_text())):
            prefix = ROLE_PREFIXES.get(role, f"<a prefix for {role}>")
            out.append((str(path.relative_to(ROOT)), prefix, task.get("name")))
    for path in sorted((ROOT / "playbooks").glob("*.yml")):
        prefix = PLAYBOOK_PREFIXES.get(path.stem, f"<a prefix for {path.name}>")
        for play in yaml.safe_load(path.read_text()):
            out.append((str(path.relative_to(ROOT)), prefix, play.get("name")))
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                out += [(str(path.relative_to(ROOT)), prefix, t.get("name")) for t in tasks(play.get(key))]
    return out


def _style_problem(prefix: str, name: str | None) -> str | None:
    if not name:
        return "has no name"
    head, bar, what = name.partition(" | ")
    if not bar or head != prefix:
        return f"does not start with '{prefix} | '"
    first = what.split(" ", 1)[0].rstrip(",:")
    if not what or what != what.strip():
        return "has nothing (or spaces) after the bar"
    if re.fullmatch(r"[A-Z][a-z]+", first) and first not in NAMES:
        return f"starts with {first!r} after the bar: lower case, unless it is a name (then add it to NAMES)"
    return None


def test_every_task_handler_and_play_is_named_where_it_is_then_what_it_does():
    named = _named()
    assert len(named) > 350  # every role and playbook was read
    problems = [f"{path}: {name!r} {p}" for path, prefix, name in named if (p := _style_problem(prefix, name))]
    assert not problems, "\n".join(problems)


def test_site_yml_imports_the_playbooks_whose_prefixes_are_known():
    """site.yml's entries are imports (their names are never printed): each names a playbook above."""
    site = yaml.safe_load((ROOT / "site.yml").read_text())
    imported = [Path(p["ansible.builtin.import_playbook"]).stem for p in site]
    assert set(imported) <= set(PLAYBOOK_PREFIXES), imported
    assert {p.stem for p in (ROOT / "playbooks").glob("*.yml")} == set(PLAYBOOK_PREFIXES)
    assert {p.name for p in (ROOT / "roles").iterdir() if (p / "meta/main.yml").exists()} == set(ROLE_PREFIXES)


@pytest.mark.parametrize(
    ("prefix", "name", "ok"),
    [
        ("MicroK8s", "MicroK8s | wait for the API server", True),
        ("GPU", "GPU | NVIDIA driver packages", True),
        ("Labs", "Labs | MLflow's address for the control host", True),
        ("Labs", "Install the mllab CLI", False),  # no prefix
        ("Labs", "Labs | Install the mllab CLI", False),  # capitalised verb
        ("Labs", "MicroK8s | install the snap", False),  # another role's prefix
    ],
)
def test_the_style_check_itself(prefix, name, ok):
    assert (_style_problem(prefix, name) is None) is ok


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
