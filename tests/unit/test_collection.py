"""The repository is the Ansible collection mllab.lab_kit (galaxy.yml): its version is the
project's, its dependencies are requirements.yml's, the roles call the filters by full name, and
the collection built from this checkout, or installed from a git URL, runs from a playbook outside
the repository by full names (role and filter) with no roles_path or filter_plugins to it.

Nothing is written in the checkout: builds, installs and the outside playbook live under tmp_path,
and no network is used (ansible-galaxy --offline: the dependencies are the installed ones)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from ansible_tasks import tasks  # tests/unit/ansible_tasks.py
from needs import missing

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
BIN = Path(sys.executable).parent
# What the tarball may hold: the roles (without their molecule scenarios), the filter plugins, meta/.
MAX_TARBALL_BYTES = 400 * 1024


def _filters() -> set[str]:
    """Filter names the collection's plugins define (their FilterModule.filters() keys)."""
    names: set[str] = set()
    for path in (ROOT / "plugins/filter").glob("*.py"):
        names |= set(re.findall(r'^\s+"(mllab_[a-z0-9_]+)":', path.read_text(), re.M))
    return names


def _ansible_files() -> list[Path]:
    """The YAML and templates ansible reads: the roles (molecule scenarios included), playbooks, site.yml."""
    files = [ROOT / "site.yml", *sorted((ROOT / "playbooks").glob("*.yml"))]
    files += sorted(p for p in (ROOT / "roles").rglob("*") if p.suffix in (".yml", ".yaml", ".j2"))
    return files


def test_the_version_is_the_projects():
    """One version: mllab.__version__; pyproject.toml reads it (dynamic) and galaxy.yml repeats it."""
    pyproject = tomllib.loads((ROOT / "python/pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mllab.__version__"}
    package = re.search(r'^__version__ = "([^"]+)"', (ROOT / "python/src/mllab/__init__.py").read_text(), re.M)
    assert package, "python/src/mllab/__init__.py has no __version__"
    assert GALAXY["version"] == package[1], f"galaxy.yml version {GALAXY['version']} != mllab.__version__ {package[1]}"


def test_the_dependencies_are_the_collections_the_roles_call_with_requirements_ranges():
    required = {c["name"]: c["version"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    deps = GALAXY["dependencies"]
    for name, version in deps.items():
        assert required.get(name) == version, (
            f"galaxy.yml {name}: {version!r}, requirements.yml: {required.get(name)!r}"
        )
    # modules: the tasks' keys ns.collection.module; plugins: filters, lookups and tests by full name
    fqcn = re.compile(r"^([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*$")
    plugin = re.compile(
        r"(?:\|\s*|\bis\s+|lookup\(\s*['\"]|query\(\s*['\"])([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\b"
    )
    used: set[str] = set()
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")) + sorted((ROOT / "roles").glob("*/handlers/*.yml")):
        for task in tasks(yaml.safe_load(path.read_text())):
            used |= {m[1] for m in map(fqcn.match, task) if m}
    for pattern in ("*/tasks/*.yml", "*/handlers/*.yml", "*/defaults/*.yml", "*/vars/*.yml", "*/templates/*.j2"):
        for path in (ROOT / "roles").glob(pattern):
            used |= set(plugin.findall(path.read_text()))
    used -= {"ansible.builtin", FQCN}
    assert used == set(deps), f"the roles call {sorted(used)}; galaxy.yml depends on {sorted(deps)}"


def test_requires_ansible_is_the_oldest_core_the_controller_pins():
    """ansible N bundles ansible-core 2.(N+7) (12 -> 2.19, 14 -> 2.21): the collection needs the
    core of the oldest `ansible==` pin in requirements/controller.txt."""
    pins = re.findall(r"^ansible==(\d+)\.", (ROOT / "requirements/controller.txt").read_text(), re.M)
    oldest_core = f"2.{min(int(p) for p in pins) + 7}.0"
    runtime = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())
    assert runtime["requires_ansible"] == f">={oldest_core}"


def test_the_roles_call_the_filters_by_full_name():
    """An installed collection's roles see its filters by full name only (role-embedded plugin
    folders and filter_plugins are not read for them), so a short name would work from this
    checkout and fail from the collection."""
    names = _filters()
    alternatives = "|".join(sorted(names, key=len, reverse=True))
    short = re.compile(rf"(?:\|\s*|(?:map|select|reject)\(\s*['\"])({alternatives})\b")
    full = re.compile(rf"{re.escape(FQCN)}\.([a-z0-9_]+)")
    found = []
    for path in _ansible_files():
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {m[1]}" for m in short.finditer(text)]
        unknown = set(full.findall(text)) - names
        assert not unknown, f"{path.relative_to(ROOT)} calls {sorted(unknown)}, which plugins/filter does not define"
    assert not found, f"filters called by short name (use {FQCN}.<name>): {found}"
    assert not list(ROOT.glob("roles/*/*_plugins/*.py")), "role-embedded plugins are not loaded for collection roles"


def test_this_checkout_is_the_collection_for_its_own_runs():
    """ansible.cfg's collections_path starts with .collections, whose mllab/lab_kit links to this
    checkout's roles, plugins and meta (no link loop: none of them contains .collections)."""
    link_dir = ROOT / ".collections/ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    for name in ("galaxy.yml", "meta", "plugins", "roles"):
        assert (link_dir / name).is_symlink() and (link_dir / name).resolve() == (ROOT / name).resolve(), name
    cfg = (ROOT / "ansible.cfg").read_text()
    assert re.search(r"^collections_path = \.collections:", cfg, re.M), (
        "ansible.cfg: collections_path = .collections:..."
    )
    for key in ("library", "module_utils", "filter_plugins"):
        assert not re.search(rf"^{key}\s*=", cfg, re.M), f"ansible.cfg names {key}, which nothing uses"


# --- the built collection, used from outside --------------------------------------------------------


def _galaxy(args: list[str], cwd: Path, cfg: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    proc = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A folder outside the checkout with its own ansible.cfg: collections_path is only its own
    collections/ (the dependencies come from the installed ansible package, on Python's path)."""
    base = tmp_path_factory.mktemp("outside")
    (base / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {base / 'collections'}\nroles_path = {base / 'roles'}\n"
    )
    return base


@pytest.fixture(scope="module")
def tarball(outside: Path) -> Path:
    _galaxy(["build", str(ROOT), "--output-path", str(outside / "build")], outside, outside / "ansible.cfg")
    (path,) = (outside / "build").glob("*.tar.gz")
    return path


def test_the_build_holds_the_roles_and_plugins_and_nothing_else(tarball: Path):
    assert tarball.name == f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
    assert tarball.stat().st_size < MAX_TARBALL_BYTES, f"{tarball.stat().st_size} bytes: a folder build_ignore misses?"
    with tarfile.open(tarball) as tar:
        files = {m.name for m in tar.getmembers() if m.isfile()}
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "meta/main.yml").exists()}
    assert {f.split("/")[1] for f in files if f.startswith("roles/")} == roles
    assert {f"plugins/filter/{p.name}" for p in (ROOT / "plugins/filter").glob("*.py")} <= files
    assert {"meta/runtime.yml", "README.md", "roles/preflight/meta/argument_specs.yml"} <= files
    top = {f.split("/")[0] for f in files}
    assert top == {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "meta", "plugins", "roles"}, top
    assert not [f for f in files if "/molecule/" in f or "__pycache__" in f]
    assert manifest["version"] == GALAXY["version"] and manifest["dependencies"] == GALAXY["dependencies"]


def _install(source: str, outside: Path, dest: Path) -> None:
    _galaxy(["install", "--offline", "--force", "-p", str(dest), source], outside, outside / "ansible.cfg")
    installed = dest / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    assert (installed / "roles/preflight/tasks/main.yml").is_file()
    assert json.loads((installed / "MANIFEST.json").read_text())["collection_info"]["version"] == GALAXY["version"]


PLAYBOOK = f"""
- name: Outside | a filter of the collection by its full name
  hosts: localhost
  gather_facts: false
  tags: [preflight]
  tasks:
    - name: Outside | show what the channel filter says of a strict channel
      ansible.builtin.debug:
        msg: "channel problems: {{{{ '1.36-strict/stable' | {FQCN}.mllab_channel_problems | join(' ') }}}}"

- name: Outside | the collection's preflight role by its full name
  hosts: cluster
  gather_facts: false
  tags: [preflight]
  roles:
    - role: {FQCN}.preflight
"""


def _run_outside(outside: Path, **extra: object) -> str:
    """The playbook above on this machine (local connection) with the installed collection:
    preflight's checks, with offline snap files (no store probe) and a tiny disk need."""
    snap, assertion = outside / "microk8s.snap", outside / "microk8s.assert"
    snap.write_bytes(b"snap")
    assertion.write_text("assert")
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become_method": "su"}
    inventory = {"all": {"children": {"cluster": {"children": {"control_plane": {"hosts": {"localhost": host}}}}}}}
    (outside / "inventory.json").write_text(json.dumps(inventory))
    (outside / "play.yml").write_text(PLAYBOOK)
    extra = {
        "microk8s_snap_file": str(snap),
        "microk8s_assert_file": str(assertion),
        "preflight_base_disk_mb": 1,
        "preflight_addon_disk_mb": {},
        **extra,
    }
    env = dict(os.environ, ANSIBLE_CONFIG=str(outside / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["MLLAB_ARTIFACTS_DIR"] = str(outside / "artifacts")
    for key in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH", "ANSIBLE_FILTER_PLUGINS"):
        env.pop(key, None)
    cmd = [str(BIN / "ansible-playbook"), "-i", "inventory.json", "play.yml", "--tags", "preflight"]
    proc = subprocess.run(
        [*cmd, "-e", json.dumps(extra)], cwd=outside, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    for folder in ("roles", "plugins", ".collections"):
        assert str(ROOT / folder) not in out, f"the outside playbook read {ROOT / folder}"
    return f"rc={proc.returncode}\n{out}"


def test_a_playbook_outside_the_repository_uses_the_built_collection_by_full_names(tarball: Path, outside: Path):
    _install(str(tarball), outside, outside / "collections")
    out = _run_outside(outside)
    assert out.startswith("rc=0"), out[-4000:]
    assert f"TASK [{FQCN}.preflight : " in out and "preflight ok:" in out
    assert "channel problems: microk8s_channel = '1.36-strict/stable' is a strictly confined MicroK8s" in out, out[
        -4000:
    ]

    # The role's decisions run from the installed collection: its filters, and the argument specs
    # of the collection's other roles (gpu_stack is the gpu role's).
    out = _run_outside(outside, microk8s_channel="1.36", gpu_stack="gpu-operator")
    assert out.startswith("rc=2"), out[-4000:]
    assert "microk8s_channel = '1.36' is malformed" in out and "gpu_stack" in out and "roles/gpu" in out, out[-4000:]


def test_the_collection_installs_from_a_git_url(outside: Path, tmp_path: Path):
    """ansible-galaxy collection install git+file://... (the way a git host's URL works, offline):
    a git repository of this checkout's files as they are now (committed or not)."""
    if not shutil.which("git"):
        missing("git is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        missing(f"{ROOT} is not a git checkout ({listed.stderr.strip()})")
    repo = tmp_path / "repo"
    for name in filter(None, listed.stdout.split("\0")):
        src, dst = ROOT / name, repo / name
        if src.is_symlink() or src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "this checkout"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    dest = tmp_path / "collections"
    _install(f"git+file://{repo}", outside, dest)
    installed = dest / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    assert not (installed / "python").exists() and not (installed / "roles/microk8s/molecule").exists()
