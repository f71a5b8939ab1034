#!/usr/bin/env python3
"""Build the lab runner image without a container daemon and push it to a registry.

The image is a pinned Python base image plus two layers, appended with go-containerregistry's
`crane` (github.com/google/go-containerregistry, cmd/crane: `append`, `mutate`, `digest`,
`export`), the way `ko` or `rules_oci` build images: nothing runs inside a container.

  deps layer   /opt/mllab/lib: mllab's dependencies (the wheel's Requires-Dist for the
               extras: ranges) at the exact versions of the constraints file
               (requirements/constraints.txt, `-c`), installed by uv for the base image's Python
               and platform (`uv pip install --target --python-version --python-platform
               --only-binary`), plus the pods' user (uid 1000, home /work) added to the base's
               /etc/passwd. Tagged <name>-deps:<hash of the requirements, the constraints, base,
               Python, platform>: built once, reused while the pins stay.
  mllab layer  the mllab wheel itself (--no-deps), and /opt/mllab/bin: the console scripts
               with a `#!/usr/bin/env python3` line, and `python` (the k8s backend runs
               `python -m ...`).

The tag of the result is content-addressed (<version>-<hash of the wheel's files and the deps
tag>), so nodes that pull with imagePullPolicy IfNotPresent never keep a stale build, and a
second run with the same inputs pushes nothing.

  lab_image.py ref   ARGS   print the image reference (no registry contacted)
  lab_image.py build ARGS   build and push what the registry lacks; print the reference
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

IMAGE_LIB = "opt/mllab/lib"  # PYTHONPATH of the image
IMAGE_BIN = "opt/mllab/bin"
USER_LINE = "mllab:x:1000:1000:mllab:/work:/bin/sh\n"
GROUP_LINE = "mllab:x:1000:\n"


class BuildError(Exception):
    pass


# --- inputs ------------------------------------------------------------------------------------
def wheel_metadata(wheel: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) of a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta is None:
            raise BuildError(f"{wheel} has no .dist-info/METADATA: is it a wheel (pip wheel python/)?")
        msg = email.parser.Parser().parsestr(zf.read(meta).decode())
    return msg["Name"], msg["Version"], msg.get_all("Requires-Dist") or []


def wheel_digest(wheel: Path) -> str:
    """The wheel's files, not its zip (timestamps): the same sources give the same digest."""
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith(".dist-info/RECORD"):
                continue
            h.update(name.encode() + b"\0" + zf.read(name) + b"\0")
    return h.hexdigest()


def plan(args: argparse.Namespace) -> dict[str, str]:
    wheel = Path(args.wheel)
    if not wheel.is_file():
        raise BuildError(f"no wheel at {wheel} (the labs layer builds it into artifacts/labs)")
    name, version, requires = wheel_metadata(wheel)
    me = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # a new layout rebuilds the layers
    constraints = _constraints_text(args)
    deps_inputs = json.dumps(
        [sorted(requires), constraints, name, version, args.extras, args.base, args.python_version, args.platform, me]
    )
    deps_tag = "deps-" + hashlib.sha256(deps_inputs.encode()).hexdigest()[:16]
    tag = f"{version}-" + hashlib.sha256((wheel_digest(wheel) + deps_tag).encode()).hexdigest()[:16]
    push = args.push_registry or args.registry
    return {
        "wheel": str(wheel),
        "version": version,
        "deps_push": f"{push}/{args.name}-deps:{deps_tag}",
        "push": f"{push}/{args.name}:{tag}",
        "ref": f"{args.registry}/{args.name}:{tag}",
    }


# --- crane -------------------------------------------------------------------------------------
def crane(args: argparse.Namespace, *argv: str, check: bool = True) -> str:
    """crane's stdout; with check=False, "" when it fails."""
    cmd = [args.crane, *argv, *(["--insecure"] if args.insecure else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if check:
            raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return ""
    return proc.stdout


def exists(args: argparse.Namespace, ref: str) -> bool:
    return bool(crane(args, "digest", ref, check=False).strip())


def base_accounts(args: argparse.Namespace) -> dict[str, bytes]:
    """/etc/passwd and /etc/group of the base image, from its flattened filesystem."""
    cmd = [args.crane, "export", args.base, "-", *(["--insecure"] if args.insecure else [])]
    found: dict[str, bytes] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name in ("etc/passwd", "etc/group") and member.isfile():
                    found[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
        err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise BuildError(f"crane export {args.base} failed ({proc.returncode}): {err.strip()[-2000:]}")
    for name in ("etc/passwd", "etc/group"):
        if name not in found:
            raise BuildError(f"the base image {args.base} has no /{name}: use a Debian or Ubuntu based Python image")
    return found


# --- layers ------------------------------------------------------------------------------------
def _constraints_text(args: argparse.Namespace) -> str:
    """The constraints file's text ("" without one): its pins are part of the deps layer's tag."""
    if not args.constraints:
        return ""
    path = Path(args.constraints)
    if not path.is_file():
        raise BuildError(f"no constraints file at {path} (requirements/constraints.txt of the checkout)")
    return path.read_text()


def uv_install(args: argparse.Namespace, target: Path, what: list[str], no_deps: bool) -> None:
    uv = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if uv is None:
        raise BuildError("uv is missing: pip install -r requirements/uv.txt in the controller's venv (make venv)")
    cmd = [
        uv, "pip", "install", "--quiet", "--target", str(target), "--python", args.build_python,
        "--python-version", args.python_version, "--python-platform", args.platform,
        "--only-binary", ":all:", "--link-mode", "copy", *(["--no-deps"] if no_deps else []),
        *args.index_arg, *what,
    ]  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise BuildError(f"installing for the image failed: {' '.join(cmd)}\n{proc.stdout.strip()[-3000:]}")


def compile_bytecode(args: argparse.Namespace, root: Path) -> None:
    """Bytecode for the image's Python, when the build Python is that version (else the pods
    compile at import: correct, slower to start)."""
    ver = subprocess.run(
        [args.build_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if ver != args.python_version:
        print(f"lab image: no bytecode (the build Python is {ver}, the image's {args.python_version})", file=sys.stderr)
        return
    subprocess.run(
        [args.build_python, "-m", "compileall", "-q", "-j0", "-s", str(root), "-p", "/", str(root / IMAGE_LIB)],
        check=False,
        stdout=subprocess.DEVNULL,
    )


def scripts_to_bin(root: Path) -> None:
    """uv writes console scripts for the build's interpreter: point them at the image's python3."""
    src, dst = root / IMAGE_LIB / "bin", root / IMAGE_BIN
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        for script in sorted(src.iterdir()):
            data = script.read_bytes()
            if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
                data = b"#!/usr/bin/env python3\n" + data.split(b"\n", 1)[1]
            (dst / script.name).write_bytes(data)
            (dst / script.name).chmod(0o755)
        shutil.rmtree(src)


def layer_tar(root: Path, out: Path) -> None:
    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=owner)


def build_deps(args: argparse.Namespace, p: dict[str, str], work: Path) -> None:
    root = work / "deps"
    # mllab[extras]'s ranges with their markers, not mllab itself (that is the next layer)
    reqs = work / "requirements.txt"
    reqs.write_text(_extras_requirements(wheel_metadata(Path(p["wheel"]))[2], args.extras))
    pins = ["-c", str(Path(args.constraints).resolve())] if args.constraints else []
    uv_install(args, root / IMAGE_LIB, ["-r", str(reqs), *pins], no_deps=False)
    compile_bytecode(args, root)
    scripts_to_bin(root)
    accounts = base_accounts(args)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_bytes(accounts["etc/passwd"].rstrip(b"\n") + b"\n" + USER_LINE.encode())
    (root / "etc/group").write_bytes(accounts["etc/group"].rstrip(b"\n") + b"\n" + GROUP_LINE.encode())
    (root / "work").mkdir()
    (root / "work").chmod(0o1777)  # one writable home for any uid (pods may run as another non-root user)
    layer_tar(root, work / "deps.tar")
    shutil.rmtree(root)
    crane(args, "append", "--base", args.base, "--new_layer", str(work / "deps.tar"), "--new_tag", p["deps_push"])
    (work / "deps.tar").unlink()


def _extras_requirements(requires: list[str], extras: list[str]) -> str:
    """Requires-Dist lines of the base install or of one of `extras`, the `extra == "..."` clause
    removed and the rest of the marker kept for uv to evaluate for the image's Python (setuptools
    writes the clause last, joined by `and`)."""
    out = []
    for line in requires:
        spec, _, marker = line.partition(";")
        clauses = [c.strip() for c in marker.split(" and ")] if marker.strip() else []
        wanted = [re.fullmatch(r"\(?extra\s*==\s*['\"]([^'\"]+)['\"]\)?", c) for c in clauses]
        named = [m.group(1) for m in wanted if m]
        if named and not set(named) & set(extras):
            continue
        rest = [c for c, m in zip(clauses, wanted, strict=True) if not m]
        out.append(f"{spec.strip()}; {' and '.join(rest)}" if rest else spec.strip())
    return "\n".join(out) + "\n"


def build_mllab(args: argparse.Namespace, p: dict[str, str], work: Path) -> None:
    root = work / "mllab"
    uv_install(args, root / IMAGE_LIB, [p["wheel"]], no_deps=True)
    compile_bytecode(args, root)
    scripts_to_bin(root)
    (root / IMAGE_BIN / "python").write_text('#!/bin/sh\nexec python3 "$@"\n')
    (root / IMAGE_BIN / "python").chmod(0o755)
    layer_tar(root, work / "mllab.tar")
    shutil.rmtree(root)
    # Appended under a work tag and configured onto the final one: a build that stops half-way
    # never leaves an image without its settings under the tag a rerun would take as done.
    wip = p["push"] + "-wip"
    crane(args, "append", "--base", p["deps_push"], "--new_layer", str(work / "mllab.tar"), "--new_tag", wip)
    env = {
        "PATH": f"/{IMAGE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": f"/{IMAGE_LIB}",
        "HOME": "/work",
        "MLLAB_HOME": "/work/.mllab",
        "MPLCONFIGDIR": "/work/.matplotlib",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    }
    mutate = ["mutate", wip, "--workdir", "/work", "--cmd", "mllab,--help", "--tag", p["push"]]
    mutate += [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    mutate += ["--label", f"org.opencontainers.image.version={p['version']}"]
    crane(args, *mutate)


def build(args: argparse.Namespace) -> dict[str, str]:
    p = plan(args)
    if exists(args, p["push"]):
        p["changed"] = "false"
        return p
    with tempfile.TemporaryDirectory(prefix="mllab-image-", dir=args.work) as tmp:
        work = Path(tmp)
        if not exists(args, p["deps_push"]):
            build_deps(args, p, work)
        build_mllab(args, p, work)
    p["changed"] = "true"
    p["digest"] = crane(args, "digest", p["push"]).strip()
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["ref", "build"])
    ap.add_argument("--wheel", required=True, help="the mllab wheel")
    ap.add_argument("--extras", default="labs", type=lambda s: [e for e in s.split(",") if e])
    ap.add_argument("--constraints", default="", help="the exact pins (requirements/constraints.txt)")
    ap.add_argument("--base", required=True, help="the Python base image (Debian or Ubuntu based)")
    ap.add_argument("--python-version", required=True, help="the base image's Python, e.g. 3.12")
    ap.add_argument("--platform", default="x86_64-manylinux_2_28", help="uv's --python-platform for the nodes")
    ap.add_argument("--registry", required=True, help="registry host[:port] the nodes pull from")
    ap.add_argument("--push-registry", default="", help="where to push, when the builder sees it elsewhere")
    ap.add_argument("--name", default="mllab", help="repository name")
    ap.add_argument("--crane", default="crane")
    ap.add_argument("--insecure", action="store_true", help="plain-HTTP registry (MicroK8s' registry addon)")
    ap.add_argument("--build-python", default=sys.executable, help="the interpreter uv installs with")
    ap.add_argument("--index-arg", action="append", default=[], help="an extra uv argument (e.g. --find-links=DIR)")
    ap.add_argument("--work", default=None, help="scratch folder (needs room for the layers, about 2x)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        result = plan(args) if args.action == "ref" else build(args)
    except BuildError as exc:
        print(f"lab image: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
