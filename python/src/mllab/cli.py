"""The `mllab` command line. Imports only the standard library at start-up: rich and the lab
machinery are imported by the command that needs them, so `--help`, `start` and `hint` stay fast."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mllab import INSTALL_K8S, __version__
from mllab.errors import BackendUnavailable, MllabError, UsageError


class _LazyConsole:
    """A rich Console made on first use (importing rich.console costs more than `--help` may)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def real(self) -> Any:
        """The rich Console itself, for code that takes one (rich's Live enters it: `with console:`)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


console: Any = _LazyConsole()
err: Any = _LazyConsole(stderr=True, soft_wrap=True)  # error lines stay whole: paths and URLs copy-paste


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def Table(*args: Any, **kwargs: Any) -> Any:  # rich's class, imported when a table is drawn
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


def _guide_path(dirname: str) -> Path | None:
    import os

    candidates = []
    if os.environ.get("MLLAB_GUIDES"):
        candidates.append(Path(os.environ["MLLAB_GUIDES"]))
    candidates.append(Path(__file__).resolve().parents[3] / "labs")  # a source checkout: <repo>/labs
    for base in candidates:
        path = base / dirname / "README.md"
        if path.is_file():
            return path
    return None


# --- commands ---------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from mllab.home import Progress
    from mllab.labs import LABS

    progress = Progress().load()
    rows = []
    for lab in LABS:
        entry = progress.get(f"{lab.number:02d}", {})
        last = entry.get("last_check")
        status = (
            ("passed (reference)" if last.get("graded") == "reference" else "passed")
            if last and last.get("passed")
            else "failed"
            if last
            else "run"
            if "last_run" in entry
            else ("started" if "started_at" in entry else "new")
        )
        rows.append(
            {
                "number": lab.number,
                "name": lab.slug,
                "title": lab.title,
                "summary": lab.summary,
                "needs": list(lab.needs),
                "status": status,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="mllab labs")
    for col in ("#", "name", "title", "status"):
        table.add_column(col)
    for row in rows:
        table.add_row(str(row["number"]), row["name"], row["title"], row["status"])
    console.print(table)
    console.print("Start with [bold]mllab start 1[/]; then [bold]mllab run N[/] and [bold]mllab check N[/].")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from mllab import exercise
    from mllab.runner import parse_lab, start_lab

    lab = parse_lab(args.lab)
    if args.reset_files:
        changed = exercise.changed_files(lab)
        if changed:
            console.print(
                f"--reset-files puts the starter back over your edits of: {', '.join(changed)} "
                f"(in {exercise.workspace(lab)})"
            )
    report = start_lab(lab, reset_files=args.reset_files)
    guide = _guide_path(lab.dirname)
    if guide:
        from rich.markdown import Markdown

        console.print(Markdown(guide.read_text()))
    else:
        console.print(f"[bold]Lab {lab.number}: {lab.title}[/]\n{lab.summary}")
    if not (report.copied or report.kept or report.replaced):
        console.print(f"\nNext: [bold]mllab run {lab.number}[/], then [bold]mllab check {lab.number}[/].")
        return 0
    console.print(f"\n[bold]Your files[/] in {report.folder}:")
    for names, what in ((report.copied, "new"), (report.kept, "kept (your edits)"), (report.replaced, "reset")):
        for name in names:
            console.print(f"  {name}  [dim]{what}[/]")
    todo = [t for n in exercise.file_names(lab) for t in exercise.todos(report.folder / n)]
    if todo:
        console.print("[bold]To do[/]:")
        for t in todo:
            console.print(f"  {escape(t)}")
    console.print(
        f"Next: complete the TODOs, then [bold]mllab run {lab.number}[/] (your code) and "
        f"[bold]mllab check {lab.number}[/]; or open {exercise.NOTEBOOK} in JupyterLab."
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mllab.runner import parse_lab, run_lab

    lab = parse_lab(args.lab)
    console.rule(f"Lab {lab.number}: {lab.title}" + (" (reference solution)" if args.solution else ""))
    out = run_lab(lab, backend_name=args.backend, quick=args.quick, console=console.real(), solution=args.solution)
    console.print(
        f"[green]Lab {lab.number} ran in {out['meta']['wall_s']} s.[/] Now: [bold]mllab check {lab.number}[/]"
    )
    return 0


def _print_checks(checks: list[Any]) -> None:
    table = Table(show_header=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("why")
    for c in checks:
        mark = "[yellow]skipped[/]" if c.skipped else "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        hint = f"\n[dim]hint: {escape(c.hint)}[/]" if not c.passed and c.hint else ""
        table.add_row(escape(c.name), mark, escape(c.reason) + hint)
    console.print(table)


def _record_in_class(lab: Any, checks: list[Any], backend: str | None) -> None:
    """A learner in a class (MLLAB_LEARNER set): the result goes to their namespace's mllab-results
    too. Whatever goes wrong there is one warning; the check's output and exit code stay as they are."""
    if not os.environ.get("MLLAB_LEARNER"):
        return
    try:
        from mllab import classroom
        from mllab.runner import load_result

        rec = load_result(lab)
        meta = rec["meta"] if rec else {}
        record = classroom.result_record(
            lab.number,
            checks,
            backend or meta.get("backend"),
            graded="reference" if meta.get("solution") else "yours",
        )
    except Exception as exc:  # never the check's business
        from mllab.state import warn

        warn(f"lab {lab.number}'s result was not recorded in your namespace ({exc}); your check result is unchanged")
        return
    classroom.record_check(record, os.environ)


def cmd_check(args: argparse.Namespace) -> int:
    from mllab.runner import check_lab, parse_lab

    lab = parse_lab(args.lab)
    checks = check_lab(lab, backend_name=args.backend, console=(err if args.json else console).real())
    passed = all(c.passed for c in checks)
    if args.json:
        print(json.dumps({"lab": lab.number, "passed": passed, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        _print_checks(checks)
        console.print(
            f"[green]Lab {lab.number}: PASS[/]"
            if passed
            else f"[red]Lab {lab.number}: not yet[/] (mllab hint {lab.number})"
        )
    _record_in_class(lab, checks, args.backend)  # after the result is shown: the cluster may be slow
    return 0 if passed else 1


def cmd_hint(args: argparse.Namespace) -> int:
    """One hint at a time: the failing checks' own hints first, then the lab's progressive hints;
    each call shows the next one (`--all`: every hint shown so far)."""
    from mllab.home import Progress
    from mllab.labs import get_lab

    lab = get_lab(args.lab)  # not runner.parse_lab: the runner imports the backends
    progress = Progress()
    entry = progress.load().get(f"{lab.number:02d}", {})
    last = entry.get("last_check")
    hints: list[tuple[str, str]] = []
    for c in (last or {}).get("checks", []):
        if not c["passed"] and c.get("hint") and all(h != c["hint"] for _, h in hints):
            hints.append((c["name"], c["hint"]))
    for i, hint in enumerate(getattr(lab.load(), "HINTS", []), 1):
        if all(h != hint for _, h in hints):
            hints.append((f"hint {i}", hint))
    if not hints:
        console.print(f"Lab {lab.number} has no hints.")
        return 0
    shown = entry.get("hints_shown", 0)
    shown = shown if isinstance(shown, int) and 0 <= shown <= len(hints) else 0
    if args.all:
        upto = max(shown, 1)
    else:
        upto = min(shown + 1, len(hints))
        progress.update(lab.number, hints_shown=upto)
    for n, (about, hint) in enumerate(hints[:upto], 1):
        if args.all or n == upto:
            console.print(f"[bold]Hint {n} of {len(hints)}[/] ({escape(about)}): {escape(hint)}")
    if upto < len(hints):
        console.print(f"[dim]`mllab hint {lab.number}` again for the next one.[/]")
    else:
        console.print(f"[dim]That was the last hint; `mllab solution {lab.number}` shows the reference.[/]")
    return 0


def cmd_solution(args: argparse.Namespace) -> int:
    from rich.syntax import Syntax

    from mllab import exercise
    from mllab.runner import parse_lab

    lab = parse_lab(args.lab)
    names = exercise.file_names(lab)
    if not names:
        import inspect

        module = lab.load()
        console.print(f"[bold]Lab {lab.number} solution[/] ({module.__file__}):")
        console.print(Syntax(inspect.getsource(module.run), "python", line_numbers=False, word_wrap=True))
        return 0
    if not args.diff:
        for name in names:
            path = exercise.solution_dir(lab) / name
            console.rule(f"solution/{name}")
            lexer = "python" if name.endswith(".py") else "yaml" if name.endswith((".yaml", ".yml")) else "text"
            console.print(Syntax(path.read_text(), lexer, line_numbers=False, word_wrap=True))
    text = exercise.diff(lab)
    mine = exercise.workspace(lab)
    if text:
        console.rule(f"your files ({mine}) -> the solution")
        console.print(Syntax(text, "diff", word_wrap=True))
    elif all((mine / n).is_file() for n in names):
        console.print(f"Your files in {mine} are the solution, line for line.")
    else:
        console.print(f"[dim]No diff: your files are not in {mine} (mllab start {lab.number}).[/]")
    console.print(f"`mllab run {lab.number} --solution` runs the reference.")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from mllab.home import Progress
    from mllab.labs import LABS

    data = Progress().load()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    table = Table(title="progress")
    for col in ("#", "lab", "started", "last run (s)", "last check"):
        table.add_column(col)
    for lab in LABS:
        e = data.get(f"{lab.number:02d}", {})
        chk = e.get("last_check")
        table.add_row(
            str(lab.number),
            lab.slug,
            e.get("started_at", "-"),
            str(e.get("last_run", {}).get("wall_s", "-")),
            "-" if not chk else ("[green]pass[/]" if chk["passed"] else "[red]fail[/]"),
        )
    console.print(table)
    done = sum(1 for e in data.values() if e.get("last_check", {}).get("passed"))
    console.print(f"{done}/{len(LABS)} labs passed.")
    return 0


_RESET_WHAT = {
    "labs": "every lab's working directory and outputs",
    "mlflow": "the local MLflow store: runs, metrics, registered models",
    "progress.json": "your progress: started, last run, last check",
}


def _confirm_reset_all(targets: list[Path], yes: bool) -> bool:
    """Say what `mllab reset` (all labs) deletes; True to go ahead (asked on a terminal unless --yes)."""
    listing = "\n".join(f"  {p}  ({_RESET_WHAT.get(p.name, p.name)})" for p in targets)
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"`mllab reset` without a lab number deletes everything below, and stdin is not a terminal to "
            f"ask for confirmation; nothing was deleted:\n{listing}",
            "pass --yes to delete it all (`mllab reset --yes`), or reset one lab with `mllab reset N`",
        )
    console.print(f"[bold]mllab reset[/] deletes:\n{escape(listing)}")
    try:
        answer = input("Delete all of this? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def cmd_reset(args: argparse.Namespace) -> int:
    from mllab.runner import lab_lock, parse_lab, recorded_backend, reset, reset_targets

    lab = parse_lab(args.lab) if args.lab else None
    if lab is None:
        targets = reset_targets(None)
        if not targets:
            console.print("Nothing to reset: no progress, lab outputs or local MLflow store yet.")
            return 0
        if not _confirm_reset_all(targets, args.yes):
            console.print("Nothing deleted.")
            return 1
        removed: list[Any] = reset(None)
        gone = ", ".join(map(str, removed)) or "nothing"
        console.print(f"Reset all labs (and the local MLflow store); removed: {gone}")
        return 0
    removed = []
    with lab_lock(lab, f"mllab reset {lab.number}"):  # not while the lab runs; reset() takes it again
        if args.backend == "k8s" or recorded_backend(lab) == "k8s":
            from mllab.backends.k8s import reset_lab
            from mllab.backends.k8s_objects import K8sConfig

            cfg = K8sConfig.from_env()
            removed += reset_lab(lab.number, sorted({cfg.namespace, cfg.serving_namespace}))
        removed += reset(lab)
    console.print(f"Reset lab {lab.number}; removed: {', '.join(map(str, removed)) or 'nothing'}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from mllab.doctor import diagnose

    items = diagnose()
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        table = Table(title="mllab doctor")
        for col in ("component", "status", "detail", "fix"):
            table.add_column(col)
        colors = {"ok": "green", "missing": "red", "unreachable": "red", "absent": "yellow", "info": "cyan"}
        for it in items:
            table.add_row(
                it["component"],
                f"[{colors.get(it['status'], 'white')}]{it['status']}[/]",
                it["detail"],
                it.get("fix", ""),
            )
        console.print(table)
    return 1 if any(it["status"] in ("missing", "unreachable") and it.get("required") for it in items) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mllab.serving import main as serve_main

    model = Path(args.model).expanduser()
    if not (model / "meta.json").is_file():
        raise UsageError(
            f"{args.model!r} is not a model directory (no meta.json in it)",
            "pass a model directory written by the labs, e.g. ~/.mllab/labs/06-serving/run/models/v1 "
            "(run `mllab run 6` first)",
        )
    return serve_main(
        [
            "--http-port",
            str(args.port),
            "--host",
            args.host,
            "--model",
            f"{args.name}={model}",
            "--max-body-mib",
            str(args.max_body_mib),
            "--max-rows",
            str(args.max_rows),
        ]
    )


def cmd_class(args: argparse.Namespace) -> int:
    """The instructor's view: every learner namespace's recorded checks (admin kubeconfig)."""
    from mllab import classroom

    try:
        core = classroom.core_api()
    except ImportError as exc:
        raise BackendUnavailable(f"`mllab class` needs the kubernetes client ({exc})", INSTALL_K8S) from None
    except BackendUnavailable as exc:
        raise classroom.needs_admin(exc.message) from None
    report = classroom.class_report(core)
    if args.json:
        print(classroom.render_json(report))
    elif args.csv:
        sys.stdout.write(classroom.render_csv(report))
    elif not report["learners"]:
        console.print(f"No learner namespaces on this cluster (none is labelled {classroom.LEARNER_LABEL}).")
    else:
        console.print(classroom.render_table(report))
        console.print(
            "[dim]A recorded pass is the learner's own claim (their account writes mllab-results); "
            "see the guide's Class results to re-check.[/]"
        )
    return 0


# --- parser -----------------------------------------------------------------------------------
def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: use an integer between 1 and 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: use an integer between 1 and 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mllab",
        description="Guided, self-checking ML-on-Kubernetes labs. Progress lives in ~/.mllab (MLLAB_HOME).",
    )
    parser.add_argument("--version", action="version", version=f"mllab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def lab_cmd(name: str, help_: str, func: Any, json_flag: bool = False, backend: bool | str = False) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("lab", help="lab number or name (see `mllab list`)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if backend == "run":
            default = os.environ.get("MLLAB_BACKEND") or "local"
            p.add_argument(
                "--backend",
                choices=["local", "k8s"],
                default=default,
                help=f"where to run (default: $MLLAB_BACKEND or local; here: {default})",
            )
        elif backend:
            p.add_argument(
                "--backend", choices=["local", "k8s"], default=None, help="where to check (default: where it ran)"
            )
        p.set_defaults(func=func)
        return p

    p = sub.add_parser("list", help="list the labs and your status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)
    start = lab_cmd("start", "show a lab's guide and put its starter files in your workspace", cmd_start)
    start.add_argument(
        "--reset-files", action="store_true", help="put the starter files back over your edits (says which first)"
    )
    run = lab_cmd("run", "run your code for a lab (from `mllab start N`) on a backend", cmd_run, backend="run")
    run.add_argument("--quick", action="store_true", help="smaller data and epochs (tests, slow machines)")
    run.add_argument("--solution", action="store_true", help="run the reference solution instead of your code")
    lab_cmd(
        "check", "verify a lab's outcomes (pass/fail with reasons and hints)", cmd_check, json_flag=True, backend=True
    )
    hint = lab_cmd("hint", "the next hint for a lab (the failing checks' first)", cmd_hint)
    hint.add_argument("--all", action="store_true", help="every hint shown so far")
    sol = lab_cmd("solution", "the reference solution, and a diff from your files to it", cmd_solution)
    sol.add_argument("--diff", action="store_true", help="only the diff from your files to the solution")
    p = sub.add_parser("progress", help="your progress over all labs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_progress)
    p = sub.add_parser(
        "reset", help="forget a lab's outputs and progress (all labs if no number), and delete its cluster objects"
    )
    p.add_argument("lab", nargs="?", help="lab number or name; omit to reset everything")
    p.add_argument(
        "--backend",
        choices=["local", "k8s"],
        default=None,
        help="k8s: also delete the lab's Jobs, Services and InferenceServices (default: when it last ran there)",
    )
    p.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="reset everything without asking (needed when stdin is not a terminal)",
    )
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser(
        "class",
        help="instructor: every learner's recorded checks, from their namespaces (admin kubeconfig)",
        description="Every learner namespace (label mllab.io/learner) and the checks its mllab-results "
        "ConfigMap records: a recorded pass is the learner's claim (see the guide's Class results).",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output (documented in the guide)")
    fmt.add_argument("--csv", action="store_true", help="one row per learner and attempted lab")
    p.set_defaults(func=cmd_class)
    p = sub.add_parser("doctor", help="what is reachable (MLflow, cluster, GPU, KServe) and what to fix")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("serve", help="serve a model directory with the KServe model server (lab 6)")
    p.add_argument("model", help="model directory (contains meta.json and model.pt)")
    p.add_argument("--port", type=_port, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--name", default="digits", help="model name in the URLs (default: digits)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)",
    )
    from mllab.serving.limits import add_limit_options  # no numpy: the CLI starts light

    add_limit_options(p)
    p.set_defaults(func=cmd_serve)
    return parser


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: child processes are stopped


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except MllabError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        if exc.fix:
            err.print(f"[yellow]fix:[/] {exc.fix}")
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]: child processes stopped, nothing half-written kept")
        return 130
    finally:
        from mllab import procs

        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
