"""What each import trick in src/alembic_autocopy saves (issue 15, item 3).

The tricks are found with an AST scan: every import inside a function (deferred until the
function runs) and every module-level ``TYPE_CHECKING = False`` (typing's constant, without
importing typing). A trick saves time on a command only if the command never imports that
module at all; then it saves what importing the module costs in a process that has
already imported everything the command imports.

So, per command: run it once, keep the names in ``sys.modules`` at its exit; then, in one
process that imports all those modules, fork once per deferred module and time its import in
the child (a fresh copy of the command's state each time). A command that never imports
the module holding a trick gains nothing from it, a few times, medians of CPU
time (the machine is shared: wall time there swings with other processes' load).
"""

from __future__ import annotations

import ast
import json
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import projects
from harness import SRC, call

PACKAGE = SRC / "alembic_autocopy"
THRESHOLD_MS = 5.0

# Run a command, then write the modules it imported (json) to argv[1].
RECORD_MODULES = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from alembic_autocopy.cli.main import main
sys.exit(main())
"""

# Import argv[1]'s modules, then per module of argv[2], fork: the child times its import.
TIME_IMPORTS = """
import importlib, json, os, sys, time
loaded = json.load(open(sys.argv[1]))
targets = json.load(open(sys.argv[2]))
runs = int(sys.argv[3])
for name in loaded:
    if name.endswith("__main__") or name in sys.modules:
        continue
    try:
        importlib.import_module(name)
    except BaseException:
        pass
result = {}
for target in targets:
    if target in sys.modules:
        result[target] = [0.0]
        continue
    result[target] = []
    for _ in range(runs):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            start = time.process_time()
            try:
                importlib.import_module(target)
                text = repr(time.process_time() - start)
            except BaseException as error:
                text = "nan"
            os.write(write, text.encode())
            os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 100):
            data += chunk
        os.close(read)
        os.waitpid(pid, 0)
        result[target].append(float(data) * 1000)
print(json.dumps(result))
"""


@dataclass(frozen=True)
class Trick:
    where: str  # path:line (function)
    module: str  # what it leaves unimported
    owner: str  # the module holding the trick: a command that never imports it gains nothing


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(node: ast.Import | ast.ImportFrom, current: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = _absolute(node, current, is_package)
    found = []
    for alias in node.names:  # `from package import submodule` imports the submodule
        sub = f"{module}.{alias.name}"
        if sub.startswith("alembic_autocopy") and (
                (SRC / sub.replace(".", "/")).with_suffix(".py").exists()
                or (SRC / sub.replace(".", "/")).is_dir()):
            found.append(sub)
    return found or [module]


def scan(package: Path = PACKAGE) -> list[Trick]:
    """Every deferred import and ``TYPE_CHECKING = False`` stand-in under ``package``."""
    tricks: list[Trick] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        current = _module_name(path)
        is_package = path.name == "__init__.py"
        relative = path.relative_to(SRC)
        for statement in tree.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)
                    and statement.targets[0].id == "TYPE_CHECKING"):
                tricks.append(Trick(f"{relative}:{statement.lineno} (TYPE_CHECKING = False)",
                                    "typing", current))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    for module in _targets(node, current, is_package):
                        tricks.append(Trick(f"{relative}:{node.lineno} ({function.name})",
                                            module, current))
    return sorted(set(tricks), key=lambda t: (t.where, t.module))


def commands(root: Path, env: Mapping[str, str]) -> dict[str, tuple[Path, list[str]]]:
    """The user-facing commands, each where it has nothing to do: (folder, arguments)."""
    solo = projects.fleet(root / "solo-30", 1, 30, 0, env)
    small = projects.fleet(root / "fleet-4x30", 4, 30, 3, env)
    return {
        "check": (solo.here, ["check"]),
        "upgrade": (solo.here, ["upgrade"]),
        "find": (small.here, ["find", projects.rev("a", 15)]),
        "list --no-db": (small.here, ["list", "--no-db"]),
    }


def measure(root: Path, python: Sequence[str], env: Mapping[str, str], quick: bool,
            lines: list[str]) -> None:
    """Append the report's section on import tricks to ``lines``."""
    tricks = scan()
    modules = sorted({trick.module for trick in tricks})
    work = root / "imports"
    work.mkdir(parents=True, exist_ok=True)
    (work / "targets.json").write_text(json.dumps(modules), encoding="utf-8")
    saved: dict[str, dict[str, float]] = {}
    imported: dict[str, set[str]] = {}
    for name, (cwd, arguments) in commands(root, env).items():
        loaded = work / f"loaded-{name.replace(' ', '_')}.json"
        call([*python, "-c", RECORD_MODULES, str(loaded), *arguments], cwd, env)  # warm
        call([*python, "-c", RECORD_MODULES, str(loaded), *arguments], cwd, env)
        output = subprocess.run(
            [*python, "-c", TIME_IMPORTS, str(loaded), str(work / "targets.json"),
             "1" if quick else "5"], cwd=cwd, env=dict(env), capture_output=True,
            text=True, check=True).stdout
        timings: dict[str, list[float]] = json.loads(output.strip().splitlines()[-1])
        imported[name] = set(json.loads(loaded.read_text(encoding="utf-8")))
        saved[name] = {module: statistics.median(values) for module, values in timings.items()}
        print(f"    imports: {name}: {len(timings)} modules timed", flush=True)
    lines += render(tricks, saved, imported)


def render(tricks: Sequence[Trick], saved: Mapping[str, Mapping[str, float]],
           imported: Mapping[str, set[str]]) -> list[str]:
    names = list(saved)
    lines = [
        "## Import tricks: what each saves (issue 15, item 3)", "",
        "Every import inside a function and every `TYPE_CHECKING = False` stand-in in "
        "src/alembic_autocopy (found by an AST scan, `bench/imports.py`), and what it saves "
        "on each user-facing command: the cost of importing that module in a process that "
        "has already imported all the command imports (0 when the command imports it "
        "anyway, or never imports the module holding the trick; n/a: not installed here). "
        "Medians of the CPU time of forked imports; a "
        "kept trick needs ≥ "
        f"{THRESHOLD_MS:.0f} ms on some command.", "",
        "| deferred import | module | " + " | ".join(f"`{n}`" for n in names) + " | best |",
        "|---|---|" + "---:|" * (len(names) + 1),
    ]
    below: dict[str, list[str]] = defaultdict(list)
    for trick in tricks:
        values = [saved[name].get(trick.module, float("nan"))
                  if trick.owner in imported[name] else 0.0 for name in names]
        best = max((v for v in values if v == v), default=0.0)
        cells = " | ".join(f"{v:.1f} ms" if v == v else "n/a" for v in values)
        lines.append(f"| {trick.where} | `{trick.module}` | {cells} | {best:.1f} ms |")
        if best < THRESHOLD_MS:
            below[trick.module].append(trick.where)
    lines += ["", f"Under {THRESHOLD_MS:.0f} ms on every command ({sum(map(len, below.values()))}"
              " tricks): plain imports would cost less than that.", ""]
    for module, places in sorted(below.items()):
        lines.append(f"- `{module}`: {', '.join(places)}")
    lines.append("")
    return lines
