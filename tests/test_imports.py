"""Commands that need no database import neither Alembic nor SQLAlchemy (~340 ms).

Each command runs in a real subprocess through a tiny wrapper that prints, at exit, every
module the process imported; the assertion is on that list.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import sysconfig
import time
import typing
from pathlib import Path

import pytest

import alembic_autocopy
from alembic_autocopy.sources import index
from support import Database, Worktree, make_repo, run

SOURCE = Path(alembic_autocopy.__file__).parent

# The console script's body, plus the list of imported modules printed on stderr at exit.
_WRAPPER = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n"))
from alembic_autocopy.cli.main import main
sys.exit(main())
"""


def modules_imported(worktree: Worktree, *args: str) -> tuple[set[str], str]:
    result = run([sys.executable, "-c", _WRAPPER, *args], cwd=worktree.path, check=False)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:]), result.stdout


def database_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if m in ("alembic", "sqlalchemy") or m.startswith(("alembic.", "sqlalchemy.")))


@pytest.fixture
def fleet(sqlite_db: Database, tmp_path: Path) -> Worktree:
    """Two worktrees: a chain of three in the other one, committed there."""
    repo = make_repo(tmp_path, sqlite_db)
    feature = repo.add_worktree("feature")
    feature.chain(3, repo.base_rev, "f")
    feature.commit("three migrations")
    return repo.main


@pytest.mark.parametrize("command", [["find", "f00000000002"], ["list", "--no-db"]])
def test_no_database_command_imports_neither_alembic_nor_sqlalchemy(
        fleet: Worktree, command: list[str]) -> None:
    cold, _ = modules_imported(fleet, *command, "--json")  # builds the index
    warm, stdout = modules_imported(fleet, *command, "--json")  # an up-to-date index
    assert "alembic_autocopy.sources.index" in warm  # the index was what answered
    assert database_modules(cold) == []
    assert database_modules(warm) == []
    assert json.loads(stdout)["ok"] is True


# What a read-only command that never touches the database has no use for (issue 6: it runs
# in git hooks and at every dev-server start): the record table and its drift checks, with
# socket and getpass (who applied a migration); the repair's event log; traceback (printed
# only on a failure); the TOML parser (this project has only an alembic.ini); dataclasses
# and the inspect module it loads (issue 15: on Python 3.11 a frozen dataclass costs ~1.3 ms
# to create against ~0.2 ms for a NamedTuple; `find` created 35 of them, ~50 ms with inspect);
# datetime (a commit's date is written with `time`, 2 ms of `find` on a small project).
NOT_NEEDED_WITHOUT_DATABASE = frozenset({
    "alembic_autocopy.sources.records", "alembic_autocopy.core.drift",
    "alembic_autocopy.workflow.events",
    "socket", "getpass", "traceback", "tomllib", "dataclasses", "inspect", "datetime",
})


# What a warm run (every file known to the index) has no use for: hashing and parsing come
# with a file read; the index is written through effects/temporary.py, not tempfile; the
# help formatter sizes itself without shutil. Together ~10 ms of `find` on a small project
# (bench/run.py): hashlib loads OpenSSL, tempfile and shutil bring random, bz2 and lzma.
NOT_NEEDED_WHEN_WARM = frozenset({
    "hashlib", "tempfile", "shutil", "alembic_autocopy.core.parsing",
})


@pytest.mark.parametrize("command", [["find", "f00000000002"], ["list", "--no-db"]])
def test_no_database_command_imports_nothing_it_does_not_use(
        fleet: Worktree, command: list[str]) -> None:
    cold, _ = modules_imported(fleet, *command, "--json")  # builds the index
    warm, stdout = modules_imported(fleet, *command, "--json")  # an up-to-date index
    assert json.loads(stdout)["ok"] is True
    assert sorted(cold & NOT_NEEDED_WITHOUT_DATABASE) == []
    assert sorted(warm & NOT_NEEDED_WITHOUT_DATABASE) == []


@pytest.mark.parametrize("command", [["find", "f00000000002"], ["list", "--no-db"]])
def test_a_warm_run_reads_hashes_and_parses_no_file(fleet: Worktree,
                                                     command: list[str]) -> None:
    # Started as the benchmark starts Python (-S: no site-packages .pth start-up hook, some
    # import tempfile and shutil themselves), the files older than the index's racy window.
    paths = [str(SOURCE.parent), *{sysconfig.get_paths()[key] for key in ("purelib", "platlib")}]
    bare = [sys.executable, "-S", "-c", _WRAPPER, *command, "--json"]
    env = {"PYTHONPATH": os.pathsep.join(paths)}
    time.sleep(index.RACY_WINDOW_NS / 1e9 + 0.1)  # ctime, which only time can age
    cold = run(bare, cwd=fleet.path, check=True, env=env)  # builds the index
    warm = run(bare, cwd=fleet.path, check=True, env=env)
    assert json.loads(warm.stdout)["ok"] is True
    modules = {name: set(next(line for line in result.stderr.splitlines()
                              if line.startswith("MODULES ")).split()[1:])
               for name, result in (("cold", cold), ("warm", warm))}
    assert "hashlib" in modules["cold"]  # the witness: reading a file does hash it
    assert sorted(modules["warm"] & NOT_NEEDED_WHEN_WARM) == []


def test_a_database_command_does_import_them(fleet: Worktree) -> None:
    # The wrapper's list is a real witness: the same wrapper sees them when they are used.
    modules, _ = modules_imported(fleet, "list", "--json")
    assert "alembic" in database_modules(modules)
    assert "sqlalchemy" in database_modules(modules)
    assert "alembic_autocopy.sources.records" in modules


def test_check_with_nothing_to_do_imports_no_search_it_does_not_make(fleet: Worktree) -> None:
    # Nothing applied yet: this worktree knows everything, so no other source is searched,
    # and the modules that search them (git objects) or place copies are never imported:
    # each of those deferrals saves `check` 5 ms or more (bench/run.py, import table); the
    # cheaper ones (trust.py) are plain imports. (The parser may be imported: files younger
    # than the index's racy window are read again.)
    modules, stdout = modules_imported(fleet, "check", "--json")
    assert json.loads(stdout)["ok"] is True
    # Nor the drift checks: the database has no record table to compare with.
    unused = {"alembic_autocopy.sources.gitobjects", "alembic_autocopy.effects.placement",
              "alembic_autocopy.effects.locking", "alembic_autocopy.core.drift"}
    assert modules & unused == set()
    assert "alembic" in database_modules(modules)  # the database was read, through env.py


def test_upgrade_with_nothing_to_do_imports_what_check_does(fleet: Worktree) -> None:
    # Issue 15: a nothing-to-do `upgrade` costs what `check` costs. It decides "already
    # current" from the headers already read: no preflight, no file placement (nor the
    # parser it compiles copies with), no notification module (urllib.request, http.client).
    assert run_json(fleet, "upgrade")["ok"] is True  # the database now holds this worktree
    modules, stdout = modules_imported(fleet, "upgrade", "--json")
    assert json.loads(stdout)["applied"] == []
    unused = {"alembic_autocopy.effects.placement", "alembic_autocopy.core.parsing",
              "alembic_autocopy.workflow.notify", "urllib.request", "http.client",
              "alembic_autocopy.sources.gitobjects"}
    assert modules & unused == set()
    assert "alembic_autocopy.workflow.events" in modules  # the witness: upgrade's own path


def test_the_package_defines_no_dataclass_but_the_public_api() -> None:
    # Records are NamedTuples and state is plain classes (see the comment above
    # NOT_NEEDED_WITHOUT_DATABASE); only the API's report types stay dataclasses, as users
    # may rely on them being dataclasses.
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom)}
        if "dataclasses" in names:
            offenders.append(str(path.relative_to(SOURCE)))
    assert offenders == [str(Path("workflow", "api.py"))]


def run_json(worktree: Worktree, *args: str) -> dict[str, object]:
    result = run([sys.executable, "-m", "alembic_autocopy", *args, "--json"],
                 cwd=worktree.path, check=False)
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout)
    return value


# At exit, the interpreter's cyclic garbage collector walks every object still alive (all of
# Alembic's and SQLAlchemy's): ~60 ms of a nothing-to-do `check`. A process that runs one
# command hides them from it (gc.freeze); the wrapper reports what is frozen at exit.
_FROZEN_AT_EXIT = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write("\\nFROZEN %d\\n" % gc.get_freeze_count()))
from alembic_autocopy.cli.main import main
sys.exit(main({argv}))
"""


def frozen_at_exit(worktree: Worktree, argv: str, *args: str) -> tuple[int, int, str]:
    result = run([sys.executable, "-c", _FROZEN_AT_EXIT.format(argv=argv), *args],
                 cwd=worktree.path, check=False)
    line = next(line for line in result.stderr.splitlines() if line.startswith("FROZEN "))
    return result.returncode, int(line.split()[1]), result.stdout


def test_a_command_process_spares_the_collector_at_exit(fleet: Worktree) -> None:
    code, frozen, stdout = frozen_at_exit(fleet, "", "check", "--json")
    assert code == 0 and json.loads(stdout)["ok"] is True
    assert frozen > 10_000  # Alembic and SQLAlchemy's objects, at least
    # Called with its arguments (from a test, or a program that goes on afterwards), main()
    # leaves the process's collector alone.
    code, frozen, stdout = frozen_at_exit(fleet, "['check', '--json']")
    assert code == 0 and json.loads(stdout)["ok"] is True
    assert frozen == 0
    # A failing command exits with its own code all the same.
    code, frozen, _ = frozen_at_exit(fleet, "", "find", "f0000000dead")
    assert code != 0 and frozen > 0


def test_a_warm_find_creates_no_named_tuple_from_annotation_strings(fleet: Worktree) -> None:
    # A NamedTuple compiles each field's annotation when it is a string (a ForwardRef per
    # field, as `from __future__ import annotations` makes them all): ~0.1 ms a field, ~150
    # fields in the modules `find` loads, 3% of `find` on a small project (bench/run.py).
    # Those modules evaluate their annotations; this fails when one of them goes back to
    # strings.
    modules, _ = modules_imported(fleet, "find", "f00000000002")
    ours = sorted(m for m in modules if m.startswith("alembic_autocopy."))
    with_strings = []
    for name in ours:
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, tuple)
                    and value.__module__ == name and hasattr(value, "_fields")):
                strings = [field for field, hint in value.__annotations__.items()
                           if isinstance(hint, (str, typing.ForwardRef))]
                if strings:
                    with_strings.append(f"{name}.{value.__name__}: {', '.join(strings)}")
    assert "alembic_autocopy.core.model" in ours  # the witness: it defines most of them
    assert with_strings == []
