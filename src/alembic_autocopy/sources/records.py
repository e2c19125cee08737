"""The record table: every applied migration, kept in the database that applied it.

Files vanish (a worktree deleted before its migrations were committed, a branch abandoned, a
colleague's laptop), while the version table still names their revisions and no file
anywhere can repair it. So each applied revision is stored, in a table beside the version
table (same database, same schema; name from ``record_table``, default
``alembic_autocopy_scripts``), with its exact content, parents, sha256 and provenance.

* Writing: ``Recorder`` is an ``on_version_apply`` callback. Alembic calls it inside the
  migration's own transaction, right after the version table moved, so on a backend with
  transactional DDL (PostgreSQL) a migration that fails leaves no record. The table is
  created on first use, and only once env.py has the integration line
  (``alembic_autocopy.integration.options()``), which also keeps it out of autogenerate:
  a project without the line never gets a migration touching it. ``alembic-autocopy
  upgrade`` then adds the callback too; plain ``alembic`` runs get it through env.py.
* Reading happens on the connection env.py opens (``database.read_state``'s extra
  collector), so it works wherever the project's env.py works, async included. Content is
  fetched only for the revisions that need it (missing here, or different here).
* Records become planner candidates (``LocationKind.DATABASE``) only for revisions no file or
  git object holds, only when the user trusts the database, and only once their content
  matches their sha256 and parses as the migration it claims to be.

Importing this module imports neither Alembic nor SQLAlchemy.
"""

from __future__ import annotations

import datetime as _dt
import functools
import getpass
import re
import socket
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.core.errors import AutocopyError, GitError, MigrationParseError
from alembic_autocopy.core.model import Candidate, Location, LocationKind, SkippedFile
from alembic_autocopy.core.names import refusal as name_refusal
from alembic_autocopy.core.wording import LOGGER_NAME
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import (
    DEFAULT_MAX_FILE_BYTES,
    ProjectConfig,
    ToolSettings,
    alembic_config_files,
    load_project,
)

# Imported where used (`check` reads this module at every run): getpass, socket and datetime
# where a migration is recorded (by whom, when), drift where records are read or compared.
if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext, MigrationInfo
    from sqlalchemy.engine import Connection

    from alembic_autocopy.core.drift import Drift, Record
    from alembic_autocopy.effects.database import DatabaseState

# Imported inside functions, as each saves >= 5 ms where skipped: SQLAlchemy, Alembic, drift and
# the parser only when the table is read.

DEFAULT_TABLE = "alembic_autocopy_scripts"
_METADATA_COLUMNS = ("revision", "parents", "sha256", "filename", "applied_at", "applied_by",
                     "worktree", "branch", "commit")
_REQUIRED_COLUMNS = frozenset((*_METADATA_COLUMNS, "content"))
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,=+-]*\.py")
_SAFE_REVISION = re.compile(r"[A-Za-z0-9_]+")

_GIT_REF_KINDS = frozenset((LocationKind.BRANCH, LocationKind.REMOTE, LocationKind.TAG))

# Verified contents of records turned into candidates, by sha256: the content reader that
# placement calls gets them from here (re-checked against the sha256 before use).
_CONTENTS: dict[str, bytes] = {}


def table_for(name: str, schema: str | None) -> sa.Table:
    """The record table's definition (portable: SQLite, PostgreSQL, MariaDB/MySQL)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    # MySQL's BLOB stops at 64 KiB; migrations may be bigger (max_file_bytes, 1 MB).
    content_type = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("revision", sa.String(255), primary_key=True),
        sa.Column("parents", sa.Text, nullable=False),  # down_revision ids, space separated
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("content", content_type, nullable=False),
        sa.Column("applied_at", sa.String(40)),  # ISO 8601, UTC
        sa.Column("applied_by", sa.Text),  # user@host
        sa.Column("worktree", sa.Text),
        sa.Column("branch", sa.Text),
        sa.Column("commit", sa.String(64)),
        schema=schema,
    )


def qualified(name: str, schema: str | None) -> str:
    return f"{schema}.{name}" if schema else name


# --- writing ---------------------------------------------------------------------------------

class Origin(NamedTuple):
    """Who applied a migration, from where."""

    applied_by: str
    worktree: str | None
    branch: str | None
    commit: str | None


def user_at_host() -> str:

    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def this_host() -> str:

    return socket.gethostname()


def origin_of(folder: Path) -> Origin:
    """The worktree, branch and HEAD commit holding ``folder`` (None where git cannot say)."""
    worktree = branch = commit = None
    try:
        root = git.toplevel(folder)
        if root is not None:
            worktree = str(root)
            result = git.run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], root,
                                 check=False)
            branch = result.text.strip() or None
            result = git.run_git(["rev-parse", "--verify", "--quiet", "HEAD"], root,
                                 check=False)
            commit = result.text.strip() or None
    except AutocopyError:  # git missing, folder gone: the record is still worth writing
        pass
    return Origin(user_at_host(), worktree, branch, commit)


def now_iso() -> str:

    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_record(connection: Connection, table: sa.Table, record: Record,
                 content: bytes) -> None:
    """Insert (or replace) the row of ``record.revision``."""
    connection.execute(table.delete().where(table.c.revision == record.revision))
    connection.execute(table.insert().values(
        revision=record.revision, parents=" ".join(record.parents), sha256=record.sha256,
        filename=record.filename, content=content, applied_at=record.applied_at,
        applied_by=record.applied_by, worktree=record.worktree, branch=record.branch,
        commit=record.commit,
    ))


class _RunState:
    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self.ready = False
        self.origins: dict[str, Origin] = {}


class Recorder:
    """An Alembic ``on_version_apply`` callback that records each applied revision.

    Upgrades (and stamps up) write the revision's file into the record table; downgrades
    delete its row, so the table describes what is applied. ``table`` None (env.py's): the
    name comes from the project's configuration (``record_table``), and ``record = false``
    there turns recording off. When several recorders are configured (env.py's and
    ``alembic-autocopy upgrade``'s), only the first one writes.
    """

    def __init__(self, table: str | None = None) -> None:
        self.table = table
        self._runs: weakref.WeakKeyDictionary[Any, _RunState | None] = (
            weakref.WeakKeyDictionary())

    def __call__(self, *, ctx: MigrationContext, step: MigrationInfo, heads: Any = None,
                 run_args: Any = None) -> None:
        connection = ctx.connection
        if ctx.as_sql or connection is None or self is not _first_recorder(ctx):
            return
        if ctx not in self._runs:
            self._runs[ctx] = self._start(ctx)
        run = self._runs[ctx]
        if run is None:  # record = false
            return
        if step.is_upgrade:
            self._record_upgrade(connection, run, step)
        else:
            self._forget(connection, run, step.up_revision_ids)

    def _start(self, ctx: MigrationContext) -> _RunState | None:
        if self.table is not None:  # alembic-autocopy's own, added only when record is on
            return _RunState(table_for(self.table, ctx.version_table_schema))
        settings = settings_of(ctx.config)
        if not settings.record:
            return None
        return _RunState(table_for(settings.record_table, ctx.version_table_schema))

    def _record_upgrade(self, connection: Connection, run: _RunState,
                        step: MigrationInfo) -> None:
        from alembic.script.revision import Revision

        from alembic_autocopy.core.drift import Record

        for script in step.up_revisions:
            path = getattr(script, "path", None)
            if not isinstance(script, Revision) or not path or not str(path).endswith(".py"):
                continue  # sourceless (.pyc only): nothing a developer could use
            try:
                content = Path(path).read_bytes()
            except OSError:
                continue  # the migration ran; a missing record must not undo it
            folder = str(Path(path).parent)
            origin = run.origins.get(folder)
            if origin is None:
                origin = run.origins[folder] = origin_of(Path(folder))
            parents = tuple(getattr(script, "_versioned_down_revisions", ()) or ())
            from alembic_autocopy.core.parsing import sha256_hex  # not on a read-only run's path

            record = Record(
                revision=script.revision, parents=parents, sha256=sha256_hex(content),
                filename=Path(path).name, applied_at=now_iso(), applied_by=origin.applied_by,
                worktree=origin.worktree, branch=origin.branch, commit=origin.commit,
            )
            if not run.ready:
                run.table.create(connection, checkfirst=True)
                run.ready = True
            write_record(connection, run.table, record, content)

    def _forget(self, connection: Connection, run: _RunState,
                revisions: Sequence[str]) -> None:
        import sqlalchemy as sa

        if not revisions:
            return
        if not run.ready:
            table = run.table
            if not sa.inspect(connection).has_table(table.name, schema=table.schema):
                return
            run.ready = True
        connection.execute(run.table.delete().where(run.table.c.revision.in_(revisions)))


def _first_recorder(ctx: MigrationContext) -> Recorder | None:
    for callback in ctx.on_version_apply_callbacks:
        # integration.record_applied imports this module late: it hands its Recorder.
        recorder = getattr(callback, "recorder", callback)
        if isinstance(recorder, Recorder):
            return recorder
    return None


def table_name_for(config: Config | None) -> str:
    """``record_table`` of the project Alembic runs with (the default when it cannot say)."""
    return settings_of(config).record_table


def settings_of(config: Config | None) -> ToolSettings:
    """The tool's settings of the project Alembic runs with (the defaults when it cannot
    say)."""
    cwd = Path.cwd()  # Alembic reads `-c backend/alembic.ini` from the current folder
    section = getattr(config, "config_ini_section", None) or "alembic"
    return settings_for(alembic_config_files(config, cwd), section, str(cwd))


@functools.lru_cache(maxsize=16)
def settings_for(files: tuple[str, ...], section: str, cwd: str) -> ToolSettings:
    """The tool's settings of these existing config files, named relative to ``cwd``."""
    if not files:
        return ToolSettings()
    try:
        # Only the settings are wanted: a missing script folder is said where it matters.
        project = load_project(files, section, cwd=Path(cwd), require_script_folder=False)
    except AutocopyError as error:  # e.g. a misspelt key: said once (cached), never raised
        import logging

        logging.getLogger(LOGGER_NAME).warning(
            "alembic-autocopy: cannot read the settings of %s (%s): the defaults apply "
            "(record table %s)", " and ".join(files), error, DEFAULT_TABLE)
        return ToolSettings()
    return project.tool


# --- reading ---------------------------------------------------------------------------------

ContentWanted = Callable[[Sequence["Record"]], Collection[str]]


class RecordSet:
    """What the record table holds (records without content unless it was wanted)."""

    def __init__(self, table: str, schema: str | None = None, exists: bool = False) -> None:
        self.table = table
        self.schema = schema
        self.exists = exists
        self.records: dict[str, Record] = {}
        self.refused: dict[str, SkippedFile] = {}  # failed verification
        self.problems: list[str] = []  # why the table could not be read

    @property
    def name(self) -> str:
        return qualified(self.table, self.schema)

    def absorb(self, other: RecordSet) -> None:
        """Merge what another engine's env.py context read (multi-database env.py)."""
        self.schema = self.schema if self.exists else other.schema
        self.exists = self.exists or other.exists
        for revision, record in other.records.items():
            self.records.setdefault(revision, record)
        for revision, refusal in other.refused.items():
            self.refused.setdefault(revision, refusal)
        self.problems.extend(other.problems)


def read_records(connection: Connection, name: str, schema: str | None,
                 want_content: ContentWanted | None = None,
                 max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> RecordSet:
    """Read the record table on ``connection``; never raises for a missing or odd table."""
    from sqlalchemy import exc

    found = RecordSet(name, schema)
    try:
        if not _found_record_table(connection, found):
            return found
        table = table_for(name, schema)
        records = _read_metadata(connection, table)
        wanted = sorted(set(want_content(records)) if want_content else set())
        contents = _read_contents(connection, table, wanted)
    except exc.SQLAlchemyError as error:
        first = (str(getattr(error, "orig", None) or error).strip().splitlines() or ["?"])[0]
        found.problems.append(f"cannot read the record table {found.name}: {first}")
        return found
    for record in records:
        if record.revision in contents:
            verified, refusal = verify(record, contents[record.revision], found.name,
                                       max_bytes)
            record = verified
            if refusal is not None:
                found.refused[record.revision] = refusal
        found.records[record.revision] = record
    return found


def _found_record_table(connection: Connection, found: RecordSet) -> bool:
    """Whether ``found``'s table exists and has the record table's columns (then
    ``found.exists``); a table of that name that lacks them is noted as a problem."""
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    if not inspector.has_table(found.table, schema=found.schema):
        return False
    columns = {column["name"]
               for column in inspector.get_columns(found.table, schema=found.schema)}
    missing = sorted(_REQUIRED_COLUMNS - columns)
    if missing:
        found.problems.append(
            f"table {found.name} is not alembic-autocopy's record table (it lacks "
            f"{', '.join(missing)}): ignored; set record_table to another name")
        return False
    found.exists = True
    return True


def _read_metadata(connection: Connection, table: sa.Table) -> list[Record]:
    """Every row of the record table, without the content column."""
    import sqlalchemy as sa

    rows = connection.execute(sa.select(*(table.c[c] for c in _METADATA_COLUMNS))).all()
    return [_record_from_row(tuple(row)) for row in rows]


def _read_contents(connection: Connection, table: sa.Table,
                   wanted: list[str]) -> dict[str, bytes | None]:
    """The content of each ``wanted`` revision, read 200 rows at a time."""
    import sqlalchemy as sa

    contents: dict[str, bytes | None] = {}
    for start in range(0, len(wanted), 200):
        chunk = wanted[start:start + 200]
        query = sa.select(table.c.revision, table.c.content).where(
            table.c.revision.in_(chunk))
        for revision, content in connection.execute(query):
            contents[str(revision)] = bytes(content) if content is not None else None
    return contents


def _record_from_row(row: tuple[Any, ...]) -> Record:
    from alembic_autocopy.core.drift import Record

    revision, parents, sha256, filename, at, by, worktree, branch, commit = row
    return Record(
        revision=str(revision), parents=tuple(str(parents or "").split()),
        sha256=str(sha256 or ""), filename=str(filename or ""),
        applied_at=_text(at), applied_by=_text(by), worktree=_text(worktree),
        branch=_text(branch), commit=_text(commit),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def verify(record: Record, content: bytes | None, table: str,
           max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[Record, SkippedFile | None]:
    """``record`` with its content when it is what the row claims; else a refusal."""
    from alembic_autocopy.core.parsing import parse_migration, sha256_hex

    label = f"database record of {record.revision} in table {table}"
    if content is None:
        return record, SkippedFile(label, "it has no content")
    actual = sha256_hex(content)
    if actual != record.sha256:
        return record, SkippedFile(
            label, f"its content does not match its sha256 (recorded {record.sha256[:12]}, "
                   f"content {actual[:12]}): the row was changed after it was recorded")
    try:
        header = parse_migration(content, max_bytes=max_bytes, check_syntax=True)
    except MigrationParseError as error:
        return record, SkippedFile(label, f"its content is not a readable migration: "
                                          f"{error}")
    if header.revision != record.revision:
        return record, SkippedFile(label, f"its content is revision {header.revision}")
    return record._replace(content=content, header=header), None


def read_state(project: ProjectConfig, want_content: ContentWanted | None = None
               ) -> tuple[DatabaseState, RecordSet]:
    """The database's heads and its record table, in ONE run of env.py."""
    from alembic_autocopy.effects import database

    recorded = RecordSet(project.tool.record_table)

    def collect(heads: Sequence[str], context: MigrationContext) -> None:
        if context.as_sql or context.connection is None:
            return
        recorded.absorb(read_records(context.connection, recorded.table,
                                     context.version_table_schema, want_content,
                                     project.tool.max_file_bytes))

    state = database.read_state(project, collect)
    if not recorded.exists:
        recorded.schema = state.version_table_schema
    return state, recorded


def content_wanted(present: Iterable[Candidate]) -> ContentWanted:
    """Fetch the content of a record only when no source holds that exact content: the
    revision is missing everywhere (recovery) or different here (drift, ``--diff``)."""
    pairs = {(candidate.revision, candidate.sha256) for candidate in present}

    def wanted(records: Sequence[Record]) -> Collection[str]:
        return {r.revision for r in records if (r.revision, r.sha256) not in pairs}

    return wanted


# --- the record table as a source ------------------------------------------------------------

def candidates(recorded: RecordSet, present_ids: Collection[str]) -> list[Candidate]:
    """A candidate for every verified record of a revision that no other source holds."""
    found: list[Candidate] = []
    for revision in sorted(recorded.records):
        record = recorded.records[revision]
        if revision in present_ids or record.content is None or record.header is None:
            continue
        _CONTENTS[record.sha256] = record.content
        filename = safe_filename(record)
        if filename != record.filename:
            problem = name_refusal(record.filename, recursive=False) or "not a plain file name"
            recorded.problems.append(
                f"record of revision {revision} in table {recorded.name}: file name "
                f"{record.filename!r} refused ({problem}); a copy would be named {filename}")
        found.append(Candidate(
            header=record.header, sha256=record.sha256, size=len(record.content),
            filename=filename, relative_path=filename,
            location=Location(kind=LocationKind.DATABASE, worktree=record.worktree,
                              branch=record.branch, commit=record.commit,
                              detail=record.provenance),
        ))
    return found


def safe_filename(record: Record) -> str:
    """The recorded file name, when it is a plain name (a record is never trusted to pick
    a path)."""
    name = record.filename
    if _SAFE_FILENAME.fullmatch(name) and name_refusal(name, recursive=False) is None:
        return name
    if _SAFE_REVISION.fullmatch(record.revision):
        return f"{record.revision}_recorded.py"
    return f"recorded_{record.sha256[:12]}.py"


def read_candidate_content(candidate: Candidate) -> bytes:
    """Content reader for ``LocationKind.DATABASE`` candidates, checked against the sha256."""
    from alembic_autocopy.core.parsing import sha256_hex

    content = _CONTENTS.get(candidate.sha256)
    if content is None or sha256_hex(content) != candidate.sha256:
        raise AutocopyError(
            f"the database record of revision {candidate.revision} is not available or does "
            "not match its sha256", hint="run the command again")
    return content


def is_trusted(project: ProjectConfig, from_database: bool) -> bool:
    return from_database or project.tool.trust_database


# --- drift and integration checks ----------------------------------------------------------

def local_branches(root: Path) -> set[str] | None:
    try:
        result = git.run_git(["for-each-ref", "--format=%(refname:short)", "refs/heads/"],
                             root)
    except GitError:
        return None
    return {line for line in result.text.splitlines() if line}


def drift_of(local: Sequence[Candidate], others: Iterable[Candidate], recorded: RecordSet,
             heads: Sequence[str], root: Path | None) -> Drift | None:
    """Drift between this worktree's files and what the record table says was applied;
    None when the table holds nothing to compare with (drift.py is not even imported)."""
    if not recorded.records:
        return None
    from alembic_autocopy.core.drift import detect
    host = this_host()
    branches = None
    if root is not None and any(r.branch for r in recorded.records.values()):
        branches = local_branches(root)
    everything = [*local, *others]
    # A revision some branch holds was not abandoned, whichever worktree applied it.
    committed = {c.revision for c in everything
                 if c.location.committed or c.location.kind in _GIT_REF_KINDS}
    return detect(local, recorded.records.values(), heads, [c.header for c in everything],
                  branches, host, committed)


#: The env.py line, as every piece of advice prints it in full.
ENV_PY_LINE = ("`import alembic_autocopy.integration` at the top of env.py and "
               "`**alembic_autocopy.integration.options(),` in its `context.configure(...)` "
               "call")


def env_py_records(project: ProjectConfig) -> bool:
    """Does env.py use the integration (so plain ``alembic`` runs are recorded too, and
    autogenerate leaves the record table out)? The record table is created only then: a
    project without the line never sees it in ``alembic revision --autogenerate``."""
    try:
        text = (project.script_location / "env.py").read_text(encoding="utf-8",
                                                               errors="replace")
    except OSError:
        return False
    return "alembic_autocopy" in text


def unrecorded(recorded: RecordSet, heads: Sequence[str], local: Sequence[Candidate]
               ) -> list[str]:
    """Applied revisions with a file here but no record (applied without recording)."""
    if not recorded.exists:
        return []
    from alembic_autocopy.core.drift import applied_revisions

    headers = [c.header for c in local]
    applied = applied_revisions(heads, {r: x.parents for r, x in recorded.records.items()},
                                headers)
    here = {c.revision for c in local}
    return sorted(r for r in applied if r in here and r not in recorded.records)


# --- backfill (``alembic-autocopy record``) --------------------------------------------------

class BackfillReport:
    def __init__(self, table: str, dry_run: bool = False) -> None:
        self.table = table
        self.recorded: list[str] = []
        self.already: list[str] = []
        self.different: list[str] = []  # recorded with other content: kept
        self.no_file: list[str] = []  # applied, but no file here
        self.dry_run = dry_run


def backfill(project: ProjectConfig, local: Sequence[Candidate],
             dry_run: bool = False) -> BackfillReport:
    """Record every applied revision whose file is here and that has no record yet.

    An existing record is never replaced: it says what really ran.
    """
    from alembic_autocopy.core.drift import applied_revisions
    from alembic_autocopy.effects import database

    report = BackfillReport(qualified(project.tool.record_table, None), dry_run=dry_run)
    by_revision = {candidate.revision: candidate for candidate in local}

    def collect(heads: Sequence[str], context: MigrationContext) -> None:
        connection = context.connection
        if context.as_sql or connection is None:
            return
        schema = context.version_table_schema
        name = project.tool.record_table
        report.table = qualified(name, schema)
        existing = read_records(connection, name, schema)
        if existing.problems:
            raise AutocopyError(existing.problems[0])
        applied = applied_revisions(
            heads, {r: x.parents for r, x in existing.records.items()},
            [c.header for c in local])
        writes: list[tuple[Record, bytes]] = []
        for revision in sorted(applied):
            record = existing.records.get(revision)
            candidate = by_revision.get(revision)
            if record is not None:
                same = candidate is None or record.sha256 == candidate.sha256
                (report.already if same else report.different).append(revision)
            elif candidate is None or not candidate.location.path:
                report.no_file.append(revision)
            else:
                writes.append(_record_of_file(candidate))
                report.recorded.append(revision)
        if dry_run or not writes:
            return
        table = table_for(name, schema)
        # Alembic's own per-step transaction: committed on every backend (SQLite and MySQL
        # included, where the outer block of env.py commits nothing).
        with context.begin_transaction(_per_migration=True):
            table.create(connection, checkfirst=True)
            for record, content in writes:
                write_record(connection, table, record, content)

    database.read_state(project, collect)
    return report


def _record_of_file(candidate: Candidate) -> tuple[Record, bytes]:
    from alembic_autocopy.core.drift import Record
    from alembic_autocopy.core.parsing import sha256_hex

    assert candidate.location.path is not None
    path = Path(candidate.location.path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise AutocopyError(f"cannot read {path}: {error.strerror}") from error
    if sha256_hex(content) != candidate.sha256:
        raise AutocopyError(f"{path} changed while alembic-autocopy was running",
                            hint="run the command again")
    origin = origin_of(path.parent)
    record = Record(
        revision=candidate.revision, parents=candidate.header.down_revisions,
        sha256=candidate.sha256, filename=path.name, applied_at=None,
        applied_by=origin.applied_by, worktree=origin.worktree, branch=origin.branch,
        commit=origin.commit,
    )
    return record, content
