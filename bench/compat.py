"""Compare alembic-autocopy's reading of real projects' migrations with Alembic's own.

For each project (a git mirror on this machine, read through its git objects only: no work
tree, nothing copied into this repository), the migration folder of one commit is exported
to a temporary folder, then:

* Alembic: ``ScriptDirectory`` with the project's version folders loads every file (the
  project's own modules are not installed here: imports the files make of them get a
  permissive stand-in module, with the few constants the headers use taken from the
  project's source, named in ``CONSTANTS``); its heads, and each revision's parents,
  branch labels and dependencies;
* the tool: ``parsing.parse_migration`` on the same files (the static reader); the files it
  refuses are the ones this worktree's reader hands to Alembic's own loading
  (``loading.py``), so the tool's headers are the static ones plus Alembic's for those;
  its heads through ``revisions.heads``;
* history: every version of every file under the migration folder across all refs, read
  by the static reader (how many it reads, how many it refuses, and why).

Run: ``python3 bench/compat.py [--markdown]`` (the mirrors are in /work/.mirror, brought
by the session's ``fetch`` tool; a missing one is skipped).
"""

from __future__ import annotations

import argparse
import collections
import importlib.abc
import importlib.machinery
import io
import subprocess
import sys
import tarfile
import tempfile
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from alembic_autocopy.core import revisions
from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader
from alembic_autocopy.core.parsing import parse_migration

MIRRORS = Path("/work/.mirror")


@dataclass(frozen=True)
class Layout:
    name: str  # owner/repo
    script_dir: str  # folder holding env.py, inside the repository
    version_dirs: tuple[str, ...]  # version locations, relative to script_dir
    recursive: bool = False
    features: str = ""
    label: str = ""  # e.g. the dialect, when a project has one graph per dialect


# Constants the headers read from the project's own modules (checked in their source).
CONSTANTS: dict[str, dict[str, object]] = {
    "neutron.db.migration.cli": {"EXPAND_BRANCH": "expand", "CONTRACT_BRANCH": "contract"},
    "neutron.db.migration": {"MITAKA": "mitaka", "NEWTON": "newton", "OCATA": "ocata",
                             "LIBERTY": "liberty"},
}

LAYOUTS = (
    Layout("CTFd/CTFd", "migrations", ("versions",),
           features="Flask-Migrate: alembic.ini beside env.py, no script_location; helpers "
                    "imported from the application"),
    Layout("getredash/redash", "migrations", ("versions",),
           features="Flask-Migrate layout; a merge revision (tuple `down_revision`); files "
                    "import the application"),
    Layout("PrefectHQ/prefect", "src/prefect/server/database/_migrations",
           ("versions/sqlite",), label="sqlite",
           features="env.py sets `context.script.version_locations` to one folder per "
                    "dialect (`versions/sqlite`, `versions/postgresql`); the configured folder "
                    "holds only those sub-folders; date-prefixed file names; files import the "
                    "application"),
    Layout("PrefectHQ/prefect", "src/prefect/server/database/_migrations",
           ("versions/postgresql",), label="postgresql",
           features="(the same project, its PostgreSQL folder)"),
    Layout("openstack/neutron", "neutron/db/migration/alembic_migrations", ("versions",),
           recursive=True,
           features="expand/contract branches: `branch_labels = (cli.EXPAND_BRANCH,)` (an "
                    "attribute of an imported module), `depends_on` across branches (11 "
                    "files), one folder per release and branch (recursive, or one version "
                    "location each)"),
    Layout("openstack/keystone", "keystone/common/sql/migrations", ("versions",),
           recursive=True,
           features="expand/contract branch labels as literals, release sub-folders "
                    "(recursive)"),
)


@dataclass
class Result:
    layout: Layout
    commit: str = ""
    date: str = ""
    files: int = 0
    static_read: int = 0
    static_agree: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    alembic_heads: tuple[str, ...] = ()
    tool_heads: tuple[str, ...] = ()
    refs: int = 0
    history_versions: int = 0
    history_read: int = 0
    history_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    problem: str = ""


def git(repository: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(repository), *args], check=True,
                          capture_output=True).stdout


# --- Alembic's side: a stand-in for modules the exported files cannot import ----------------

class _Anything:
    """Whatever a migration file takes from a module that is not installed here."""

    def __getattr__(self, name: str) -> _Anything:
        return _Anything()

    def __call__(self, *args: object, **kwargs: object) -> _Anything:
        return _Anything()

    def __iter__(self) -> object:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __mro_entries__(self, bases: tuple[object, ...]) -> tuple[type, ...]:
        return (object,)


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of the project's own (not installed) modules get a permissive module."""

    def __init__(self) -> None:
        self.prefixes: set[str] = set()

    def find_spec(self, fullname: str, path: object, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        # Last on sys.meta_path: only what no real finder found comes here.
        self.prefixes.add(fullname.split(".")[0])
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _AnyModule(spec.name)
        module.__path__ = []
        for name, value in CONSTANTS.get(spec.name, {}).items():
            setattr(module, name, value)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _AnyModule(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


def alembic_side(script_dir: Path, layout: Layout
                 ) -> tuple[tuple[str, ...], dict[str, MigrationHeader]]:
    from alembic.script import ScriptDirectory

    locations = [str(script_dir / folder) for folder in layout.version_dirs]
    script = ScriptDirectory(str(script_dir), version_locations=locations,
                             recursive_version_locations=layout.recursive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = tuple(sorted(script.get_heads()))
        headers = {}
        for revision in script.walk_revisions():
            module = revision.module
            headers[revision.path] = MigrationHeader(
                revision=revision.revision,
                down_revisions=_tuple(getattr(module, "down_revision", None)),
                branch_labels=_tuple(getattr(module, "branch_labels", None)),
                depends_on=_tuple(getattr(module, "depends_on", None)),
            )
    return heads, headers


def _tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)  # type: ignore[attr-defined]


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0] if "`" in reason else reason


def compare(layout: Layout) -> Result:
    result = Result(layout)
    repository = MIRRORS / layout.name.replace("/", "+") / "repo"
    if not repository.is_dir():
        result.problem = "mirror not on this machine"
        return result
    result.commit = git(repository, "rev-parse", "HEAD").decode().strip()
    result.date = git(repository, "log", "-1", "--format=%cs", "HEAD").decode().strip()
    with tempfile.TemporaryDirectory() as temporary:
        archive = git(repository, "archive", "--format=tar", "HEAD", layout.script_dir)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(temporary, filter="data")
        script_dir = Path(temporary) / layout.script_dir
        files = _migration_files(script_dir, layout)
        result.files = len(files)
        stand_in = _StandIn()
        sys.meta_path.append(stand_in)
        try:
            alembic_heads, alembic_headers = alembic_side(script_dir, layout)
        except Exception as error:  # a finding, reported in the table
            import traceback
            traceback.print_exc()
            result.problem = f"Alembic could not load it here: {type(error).__name__}: {error}"
            return result
        finally:
            sys.meta_path.remove(stand_in)
            for name in list(sys.modules):
                if name.split(".")[0] in stand_in.prefixes:
                    del sys.modules[name]
        result.alembic_heads = alembic_heads
        tool_headers: list[MigrationHeader] = []
        for path in files:
            expected = alembic_headers.get(str(path.resolve()))
            try:
                header = parse_migration(path.read_bytes())
            except MigrationParseError as error:
                result.refused[_reason_kind(str(error))] += 1
                if expected is not None:  # this worktree's file: Alembic's own loading
                    tool_headers.append(expected)
                continue
            result.static_read += 1
            tool_headers.append(header)
            if expected is not None and _same(header, expected):
                result.static_agree += 1
        result.tool_heads = tuple(sorted(revisions.heads(tool_headers)))
    _history(repository, layout, result)
    return result


def _same(header: MigrationHeader, expected: MigrationHeader) -> bool:
    return (header.revision == expected.revision
            and header.down_revisions == expected.down_revisions
            and set(header.branch_labels) == set(expected.branch_labels)
            and header.depends_on == expected.depends_on)


def _migration_files(script_dir: Path, layout: Layout) -> list[Path]:
    found: list[Path] = []
    for folder in layout.version_dirs:
        base = script_dir / folder
        pattern = "**/*.py" if layout.recursive else "*.py"
        found += [path for path in sorted(base.glob(pattern))
                  if path.name != "__init__.py" and "__pycache__" not in path.parts]
    return found


def _history(repository: Path, layout: Layout, result: Result) -> None:
    """Every version of every file under the version folders, across all refs."""
    result.refs = len(git(repository, "for-each-ref", "--format=%(refname)").splitlines())
    paths = [f"{layout.script_dir}/{folder}" for folder in layout.version_dirs]
    listing = git(repository, "rev-list", "--all", "--objects", "--", *paths).decode()
    blobs = []
    for line in listing.splitlines():
        oid, _, path = line.partition(" ")
        if path.endswith(".py") and not path.endswith("__init__.py") and any(
                path.startswith(p + "/") for p in paths):
            blobs.append(oid)
    blobs = list(dict.fromkeys(blobs))
    result.history_versions = len(blobs)
    batch = subprocess.run(["git", "--git-dir", str(repository), "cat-file", "--batch"],
                           input="".join(f"{oid}\n" for oid in blobs).encode(),
                           capture_output=True, check=True).stdout
    position = 0
    for _ in blobs:
        header_end = batch.index(b"\n", position)
        size = int(batch[position:header_end].split()[2])
        content = batch[header_end + 1:header_end + 1 + size]
        position = header_end + 1 + size + 1
        try:
            parse_migration(content)
            result.history_read += 1
        except MigrationParseError as error:
            result.history_refused[_reason_kind(str(error))] += 1


def markdown(results: Sequence[Result]) -> str:
    lines = ["| project | commit | files | read statically (agree with Alembic) | handed to "
             "Alembic's loading | heads (Alembic = tool) | refs | file versions in history "
             "(read statically) | layout features |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        name = r.layout.name + (f" ({r.layout.label})" if r.layout.label else "")
        if r.problem:
            lines.append(f"| {name} | {r.commit[:10]} | {r.files} | - | - | {r.problem} | "
                         f"{r.refs} | - | {r.layout.features} |")
            continue
        refused = sum(r.refused.values())
        same = "yes" if r.alembic_heads == r.tool_heads else "**NO**"
        heads = f"{same}: {len(r.alembic_heads)} ({', '.join(r.alembic_heads)})"
        lines.append(
            f"| {name} | {r.commit[:10]} ({r.date}) | {r.files} | {r.static_read} "
            f"({r.static_agree}) | {refused} | {heads} | {r.refs:,} | "
            f"{r.history_versions:,} ({r.history_read:,}) | {r.layout.features} |")
    reasons: collections.Counter[str] = collections.Counter()
    history: collections.Counter[str] = collections.Counter()
    for r in results:
        reasons.update(r.refused)
        history.update(r.history_refused)
    lines.append("")
    lines.append("Why the static reader refused a file at the tip (each goes to Alembic's own "
                 "loading in this worktree):")
    lines.append("")
    lines += [f"- {count} x {reason}" for reason, count in reasons.most_common()] or ["- none"]
    lines.append("")
    lines.append("Why it refused a file version in history (from other refs: never run, "
                 "reported once per kind):")
    lines.append("")
    lines += [f"- {count} x {reason}" for reason, count in history.most_common()] or ["- none"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results = [compare(layout) for layout in LAYOUTS]
    if args.markdown:
        print(markdown(results))
    else:
        for r in results:
            print(r)
    return 0 if all(r.problem or r.alembic_heads == r.tool_heads for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
