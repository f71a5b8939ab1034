"""The mllab package's dependencies (issue 16), checked on its files and on this venv:

- every third-party module that src/mllab imports (at the top of a file or inside a function,
  the exercises' starter and solution files included, and the modules mllab.fastserve names in a
  string: uvicorn's loop="uvloop" and http="httptools") comes from a distribution that
  python/pyproject.toml declares, in the base install or an extra: nothing arrives only because
  another package happens to depend on it;
- pyproject.toml declares ranges (a lower and an upper bound, never `==`);
- requirements/constraints.txt, the one place the exact versions live, pins every package
  pyproject.toml names, once per supported Python, inside pyproject.toml's range, and nothing else;
- this venv runs exactly those pins, so the pins are the versions the tests ran with."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "python/src/mllab"
PYPROJECT = ROOT / "python/pyproject.toml"
CONSTRAINTS = ROOT / "requirements/constraints.txt"
# The Pythons requires-python admits that the kit runs on (Debian 12: 3.11; the lab image and
# the venvs: 3.12; the JupyterLab images: 3.13).
PYTHONS = ("3.11", "3.12", "3.13")
REINSTALL = "scripts/pip-install .venv/bin/pip -c requirements/constraints.txt -e 'python[labs,k8s,test]'"
# uvicorn.run(loop=..., http=...): the module each value makes uvicorn import.
UVICORN_MODULES = {"loop": {"uvloop": "uvloop"}, "http": {"httptools": "httptools", "h11": "h11"}}


def _pyproject_requirements() -> dict[str, list[Requirement]]:
    """{"base" or the extra's name: its requirements}."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = {"base": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    return {group: [Requirement(line) for line in lines] for group, lines in groups.items()}


def _declared() -> dict[str, list[Requirement]]:
    """{canonical name: every pyproject.toml requirement of it (one per group that names it)}."""
    out: dict[str, list[Requirement]] = defaultdict(list)
    for reqs in _pyproject_requirements().values():
        for req in reqs:
            out[canonicalize_name(req.name)].append(req)
    return dict(out)


def _constraints() -> list[tuple[int, Requirement]]:
    """(line number, requirement) of each pin in constraints.txt."""
    out = []
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            out.append((number, Requirement(text)))
    return out


def _env(python: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0"}


def _applies(marker: Marker | None, python: str | None = None) -> bool:
    """Whether a marker holds for `python` (None: this interpreter)."""
    if marker is None:
        return True
    return marker.evaluate(None if python is None else _env(python))


def _pin(req: Requirement) -> Version | None:
    """The version of an exact `==X` pin (no wildcard), else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == "==" and not specs[0].version.endswith(".*"):
        return Version(specs[0].version)
    return None


def _third_party_imports() -> dict[str, set[str]]:
    """{top-level module: the src/mllab files that import it (or, for uvicorn's loop/http, name it)}."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        siblings = {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "uvicorn.run":
                for kw in node.keywords:
                    if kw.arg in UVICORN_MODULES and isinstance(kw.value, ast.Constant):
                        module = UVICORN_MODULES[kw.arg].get(kw.value.value)
                        names += [module] if module else []
            for name in names:
                top = name.split(".")[0]
                # an exercise's own module next to it (the learner's files import each other)
                if top in stdlib or top == "mllab" or (top in siblings and "exercises" in path.parts):
                    continue
                found[top].add(rel)
    return dict(found)


def test_the_scan_sees_imports_inside_functions_and_uvicorns_named_modules():
    """The scan itself: mllab.fastserve imports uvicorn and joblib inside functions and names
    uvloop and httptools only as uvicorn.run's loop= and http= values; the local backend imports
    threadpoolctl inside a function."""
    found = _third_party_imports()
    for module in ("uvicorn", "joblib", "uvloop", "httptools"):
        assert "fastserve.py" in found.get(module, set()), (module, found.get(module))
    assert "backends/local.py" in found.get("threadpoolctl", set())
    assert not {"json", "mllab", "__future__"} & set(found)


def test_every_imported_module_is_a_declared_dependency():
    declared = set(_declared())
    dists = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_third_party_imports().items()):
        where = ", ".join(sorted(files)[:3]) + (" ..." if len(files) > 3 else "")
        providers = dists.get(module)
        if not providers:
            problems.append(
                f"{module} (imported by {where}) is not installed here, so its distribution is unknown: "
                f"declare it in python/pyproject.toml (the extra whose code imports it), pin it in "
                f"requirements/constraints.txt and reinstall: {REINSTALL}"
            )
        elif not {canonicalize_name(d) for d in providers} & declared:
            problems.append(
                f"{module} (imported by {where}) comes from {' or '.join(sorted(set(providers)))}, which "
                f"python/pyproject.toml does not declare (it only arrives with another package): add "
                f'"{sorted(set(providers))[0]}>=X,<NEXT" to the extra whose code imports it and its '
                f"==X pin to requirements/constraints.txt"
            )
    assert not problems, "\n".join(problems)


def test_pyproject_declares_ranges_with_upper_bounds():
    problems = []
    for group, reqs in _pyproject_requirements().items():
        for req in reqs:
            ops = {s.operator for s in req.specifier}
            fix = (
                f"write it as a range, {req.name}>=PIN,<NEXT (next major; next minor for 0.x), "
                f"and keep the exact ==PIN in requirements/constraints.txt"
            )
            if ops & {"==", "==="}:
                problems.append(f"python/pyproject.toml [{group}] {req}: an exact pin; {fix}")
            elif not ops & {"<", "<=", "~="}:
                problems.append(f"python/pyproject.toml [{group}] {req}: no upper bound; {fix}")
            elif not ops & {">=", ">", "~="}:
                problems.append(f"python/pyproject.toml [{group}] {req}: no lower bound; {fix}")
    assert not problems, "\n".join(problems)


def test_constraints_pin_every_declared_package_inside_its_range():
    declared = _declared()
    pins = _constraints()
    problems = []
    by_name: dict[str, list[tuple[int, Requirement]]] = defaultdict(list)
    for number, req in pins:
        where = f"requirements/constraints.txt:{number} {req}"
        by_name[canonicalize_name(req.name)].append((number, req))
        version = _pin(req)
        if version is None or req.extras:
            problems.append(f"{where}: not an exact pin; write it as {req.name}==X (a marker may follow ';')")
            continue
        if canonicalize_name(req.name) not in declared:
            problems.append(
                f"{where}: python/pyproject.toml does not name {req.name}; remove the pin, or declare the "
                f"package there if mllab imports it"
            )
            continue
        for ranged in declared[canonicalize_name(req.name)]:
            if version not in SpecifierSet(str(ranged.specifier), prereleases=True):
                problems.append(
                    f"{where}: {version} is outside python/pyproject.toml's {ranged}; move the range in "
                    f"pyproject.toml (lower bound: the pin) or pin a version inside it"
                )
    for name, reqs in sorted(declared.items()):
        unpinned = []
        for python in PYTHONS:
            if not any(_applies(r.marker, python) for r in reqs):
                continue  # pyproject.toml itself does not want it on this Python
            hits = [f"line {n}" for n, r in by_name.get(name, []) if _applies(r.marker, python)]
            if not hits:
                unpinned.append(python)
            elif len(hits) > 1:
                problems.append(
                    f"{reqs[0].name}: requirements/constraints.txt pins it {len(hits)} times for Python "
                    f"{python} ({', '.join(hits)}); keep one, with python_version markers that do not overlap"
                )
        if unpinned:
            problems.append(
                f"{reqs[0].name}: requirements/constraints.txt has no pin for Python {', '.join(unpinned)}; add "
                f"{reqs[0].name}==X, resolved with the other pins (with a python_version marker where one "
                f"Python needs another version than the others)"
            )
    assert not problems, "\n".join(problems)


def test_this_venv_runs_the_constraints_pins():
    """The pins are the tested versions: the venv the tests run in was installed with them."""
    python = "{}.{}".format(*sys.version_info[:2])
    declared = _declared()
    problems = []
    for _number, req in _constraints():
        name = canonicalize_name(req.name)
        if name not in declared or not _applies(req.marker) or _pin(req) is None:
            continue  # another Python's pin, or a line the test above names
        if not any(_applies(r.marker) for r in declared[name]):
            continue
        try:
            installed = Version(importlib.metadata.version(req.name))
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{req.name} is not installed in this venv ({sys.prefix}); install the pins: {REINSTALL}")
            continue
        if installed != _pin(req):
            problems.append(
                f"{req.name}: this venv has {installed}, requirements/constraints.txt pins {_pin(req)} for "
                f"Python {python}; reinstall with the constraints ({REINSTALL}), or, if {installed} is the "
                f"version you mean to test, pin it there"
            )
    assert not problems, "\n".join(problems)
