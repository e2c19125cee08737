"""Whose schema objects are these? Revisions applied to the shared database that are foreign
to this worktree's own lineage, and the objects they created, for autogenerate.

Foreign revisions are applied in the database (the ancestry of the version table's heads) but
not in this worktree's own lineage (the ancestry of the heads of its own files: copies placed
by alembic-autocopy and uncommitted files another place holds are not its own). Their files
come from the places the tool already knows: this worktree's copies, sibling worktrees,
configured folders, git refs, and the record table (verified rows only). They are read with
``ast`` only (foreign_objects.py), never imported.

``include_object`` (given by ``integration.options()``) leaves those objects out of
``alembic revision --autogenerate`` and ``alembic check``; ``filter_directives`` does the same
to the operations ``alembic-autocopy revision --autogenerate`` generates. Each object left
out is said once, on the ``alembic.autocopy`` logger (a child of Alembic's: env.py's
``fileConfig`` keeps it enabled, and prints it where Alembic prints its own lines).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.foreign_objects import (
    FOREIGN_KEY,
    INDEX,
    UNIQUE,
    ForeignObjects,
    ForeignRevision,
    Owner,
    read_effects,
)
from alembic_autocopy.core.model import Candidate, LocationKind, reachable
from alembic_autocopy.core.wording import LOGGER_NAME
from alembic_autocopy.sources.inventory import gather

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext

    from alembic_autocopy.effects.project import ProjectConfig

# Imported inside functions, as each saves >= 5 ms where skipped: Alembic's operations and the
# repair only during autogenerate.



class Lineage:
    """This worktree's revisions split by owner, and where each foreign file was found."""

    def __init__(self, applied: set[str], own: set[str], foreign: list[str]) -> None:
        self.applied = applied
        self.own = own
        self.foreign = foreign  # applied, not own: oldest first is not promised
        self.sources: dict[str, Candidate] = {}  # foreign id -> best source
        self.readable: dict[str, Candidate] = {}  # foreign id -> content


def split_lineage(local: Sequence[Candidate], elsewhere: Sequence[Candidate],
                  managed: Sequence[str], heads: Sequence[str]) -> Lineage:
    """Pure. ``managed``: paths of the copies this tool placed here (the manifest)."""
    from alembic_autocopy.core.foreign import foreign_revisions  # the same rule

    copies = foreign_revisions(local, elsewhere, managed)
    own_files = [c for c in local if c.revision not in copies]
    parents: dict[str, tuple[str, ...]] = {}
    for candidate in [*local, *elsewhere]:
        parents.setdefault(candidate.revision, candidate.header.needs)
    revised = {parent for c in own_files for parent in c.header.down_revisions}
    own = reachable({c.revision for c in own_files} - revised, parents)
    applied = reachable(heads, parents)
    foreign = sorted(applied - own)
    lineage = Lineage(applied, own, foreign)
    for revision in foreign:
        found = [c for c in [*local, *elsewhere] if c.revision == revision]
        if not found:
            continue
        # Read the closest copy; name the place it comes from (not "this worktree" for a
        # copy placed here: the worktree or branch that holds it).
        lineage.readable[revision] = min(found, key=lambda c: c.location.kind.rank)
        named = [c for c in found if c.location.kind is not LocationKind.HERE]
        lineage.sources[revision] = min(named or found, key=_source_rank)
    return lineage


def _source_rank(candidate: Candidate) -> tuple[int, int]:
    # A worktree or branch that holds the file committed names it best.
    return (0 if candidate.location.committed is not False else 1,
            candidate.location.kind.rank)


def branch_of(candidate: Candidate) -> str | None:
    location = candidate.location
    if location.branch:
        return location.branch
    if location.ref:
        from alembic_autocopy.core.model import short_ref

        return short_ref(location.ref)
    return None


RecordReader = Callable[[Collection[str]], dict[str, tuple[bytes, str]]]


def foreign_revisions(project: ProjectConfig, heads: Sequence[str],
                      read_recorded: RecordReader | None = None) -> list[ForeignRevision]:
    """Every applied revision foreign to this worktree's lineage, with what its upgrade()
    does. ``read_recorded(ids)``: revision -> (content, provenance) from the record table,
    asked only for revisions no file holds. A foreign revision found nowhere has no effects
    and an "objects unknown" line."""
    from alembic_autocopy import repair
    from alembic_autocopy.core.foreign_objects import Unknown, UpgradeEffects
    from alembic_autocopy.effects import placement
    from alembic_autocopy.sources import scanning

    found = gather(project, repair.Options())
    root = scanning.this_worktree(project)
    manifest = placement.open_manifest(project, root)
    copies, _merged = placement.still_copies(manifest, root)  # a merged file is the branch's
    lineage = split_lineage(found.local, found.elsewhere, [entry.path for entry in copies],
                            heads)
    missing = [r for r in lineage.foreign if r not in lineage.readable]
    recorded: dict[str, tuple[bytes, str]] = {}
    if missing and read_recorded is not None:
        try:
            recorded = read_recorded(missing)
        except Exception:  # a record table that cannot be read: files only
            recorded = {}
    result: list[ForeignRevision] = []
    for revision in lineage.foreign:
        candidate = lineage.readable.get(revision)
        content: bytes | None = None
        source = "nowhere (no file, no record)"
        branch = None
        if candidate is not None:
            named = lineage.sources[revision]
            source, branch = named.location.describe(), branch_of(named)
            try:
                content = repair.read_file_content(candidate)
            except (OSError, AutocopyError):
                content = None
        elif revision in recorded:
            content, source = recorded[revision]
        if content is None:
            effects = UpgradeEffects(unknown=[Unknown(0, "no readable file")], readable=False)
        else:
            effects = read_effects(content)
            if not effects.readable:
                effects.unknown.append(Unknown(0, "a file that does not parse"))
        result.append(ForeignRevision(revision, source, branch, effects))
    return result


def record_reader(context: MigrationContext, project: ProjectConfig) -> RecordReader:
    """Verified contents of the record table, read on env.py's connection."""

    def read(wanted: Collection[str]) -> dict[str, tuple[bytes, str]]:
        from alembic_autocopy.sources import records

        if context.connection is None:
            return {}
        found = records.read_records(
            context.connection, project.tool.record_table, context.version_table_schema,
            want_content=lambda rows: [r.revision for r in rows if r.revision in wanted])
        return {revision: (record.content, f"database ({record.provenance})")
                for revision, record in found.records.items()
                if record.content is not None and revision not in found.refused}

    return read


# --- deciding about one object -------------------------------------------------------------

class LeftOut(NamedTuple):
    what: str  # "table orders", "column users.nickname", "index ix_x on users"...
    owner: Owner


def _name_of(value: Any) -> str | None:
    name = getattr(value, "name", None)
    return str(name) if name is not None else None


def _table_of(object_: Any) -> str | None:
    table = getattr(object_, "table", None)
    return _name_of(table)


def owner_of_object(foreign: ForeignObjects, object_: Any, name: str | None,
                    type_: str) -> Owner | None:
    """Which foreign revision created this SQLAlchemy object (None: not a foreign one)."""
    try:
        if type_ == "table":
            return foreign.owner_of_table(name or "")
        table = _table_of(object_)
        if table is None:
            return None
        if type_ == "column":
            return foreign.owner_of_column(table, name or "")
        if type_ == "index":
            columns = [str(c.name) for c in getattr(object_, "columns", ()) if
                       getattr(c, "name", None)]
            return foreign.owner_of(INDEX, table, name, columns)
        if type_ == "unique_constraint":
            columns = [str(c.name) for c in object_.columns]
            return foreign.owner_of(UNIQUE, table, name, columns)
        if type_ == "foreign_key_constraint":
            columns = [str(c) for c in object_.column_keys]
            referred = None
            try:
                referred = _name_of(object_.referred_table)
            except Exception:  # an unresolved target: known by columns only
                referred = None
            return foreign.owner_of(FOREIGN_KEY, table, name, columns, referred)
    except (AttributeError, TypeError):
        return None
    return None


def describe(object_: Any, name: str | None, type_: str) -> str:
    if type_ == "table":
        return f"table {name}"
    table = _table_of(object_) or "?"
    if type_ == "column":
        return f"column {table}.{name}"
    label = type_.replace("_", " ")
    return f"{label} {name} on {table}" if name else f"unnamed {label} on {table}"


def left_out_line(left: LeftOut) -> str:
    owner = left.owner
    return (f"alembic-autocopy: left out of autogenerate: {left.what}, created by revision "
            f"{owner.revision} ({owner.source}), which is not in this worktree's lineage")


def unknown_lines(foreign: ForeignObjects) -> list[str]:
    return [f"alembic-autocopy: revision {revision.revision} ({revision.source}): "
            f"{unknown.what}" + (f" at line {unknown.line}" if unknown.line else "")
            + ": objects unknown (not read); check the generated operations for them"
            for revision, unknown in foreign.unknown()]


class ForeignFilter:
    """State of one Alembic run: the foreign objects (computed on first use) and the lines
    already said."""

    def __init__(self, foreign: ForeignObjects) -> None:
        self.foreign = foreign
        self.said: set[str] = set()
        self.left_out: list[LeftOut] = []

    def say(self, line: str) -> None:
        if line not in self.said:
            self.said.add(line)
            logging.getLogger(LOGGER_NAME).warning(line)

    def start(self) -> None:
        for line in unknown_lines(self.foreign):
            self.say(line)

    def include(self, object_: Any, name: str | None, type_: str, reflected: bool,
                compare_to: Any) -> bool:
        if not reflected and compare_to is None:
            return True  # only in the models: this worktree's own
        # In the database (or in the models and the database alike: comparing would alter or
        # re-create it): left out when a foreign revision created it.
        owner = owner_of_object(self.foreign, object_, name, type_)
        if owner is None:
            return True
        left = LeftOut(describe(object_, name, type_), owner)
        self.left_out.append(left)
        self.say(left_out_line(left))
        return False


_FILTERS: weakref.WeakKeyDictionary[Any, ForeignFilter] = weakref.WeakKeyDictionary()


def filter_for(context: MigrationContext) -> ForeignFilter:
    """The filter of this Alembic run (one per migration context), computed once."""
    existing = _FILTERS.get(context)
    if existing is not None:
        return existing
    try:
        revisions = _foreign_for_context(context)
    except (AutocopyError, OSError) as error:  # never break the user's autogenerate
        logging.getLogger(LOGGER_NAME).warning(
            "alembic-autocopy: cannot tell which objects other worktrees' revisions created "
            "(%s): nothing is left out of autogenerate", error)
        revisions = []
    made = ForeignFilter(ForeignObjects(revisions))
    _FILTERS[context] = made
    made.start()
    return made


def _foreign_for_context(context: MigrationContext) -> list[ForeignRevision]:
    project = project_of(context.config)
    if project is None:
        return []
    heads = context.get_current_heads()
    try:
        return foreign_revisions(project, heads, record_reader(context, project))
    finally:
        from alembic_autocopy.sources import gitobjects

        gitobjects.close_readers()  # env.py's process may go on (an application)


def project_of(config: Any) -> ProjectConfig | None:
    """The alembic-autocopy project of the configuration Alembic runs with (None: a Config
    built in code). Read from the current folder, as Alembic reads ``-c`` and a relative
    ``script_location``; a ConfigError (the script folder missing) is for the caller to say."""
    from alembic_autocopy.effects.project import alembic_config_files, load_project

    if config is None:
        return None
    cwd = Path.cwd()
    files = alembic_config_files(config, cwd)
    if not files:  # nothing to find the worktree from (load_project would search cwd)
        return None
    x_args = list(getattr(getattr(config, "cmd_opts", None), "x", None) or ())
    return load_project(files, config.config_ini_section, x_args, cwd=cwd)


def include_object(object_: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Alembic's ``include_object`` hook: False for objects created by revisions foreign to
    this worktree's lineage (one log line each)."""
    from alembic import context

    try:
        migration_context = context.get_context()
    except Exception:  # outside an Alembic run: nothing to judge by
        return True
    return filter_for(migration_context).include(object_, name, type_, reflected,
                                                 compare_to)


# --- the same filter on generated operations (alembic-autocopy revision) ------------------

def filter_directives(context: MigrationContext, directives: Sequence[Any]) -> list[LeftOut]:
    """Remove from generated scripts every operation on an object a foreign revision
    created (upgrade and downgrade alike); return what was left out."""
    from alembic.operations import ops

    from alembic_autocopy.workflow.integration import record_table_names

    run = filter_for(context)
    removed: list[LeftOut] = []
    record_tables = record_table_names()

    def keep(op: Any, table: str | None = None) -> bool:
        if isinstance(op, (ops.CreateTableOp, ops.DropTableOp, ops.ModifyTableOps)) and (
                op.table_name in record_tables):
            return False  # alembic-autocopy's record table: never in a migration
        if isinstance(op, ops.ModifyTableOps):
            op.ops = [child for child in op.ops if keep(child, op.table_name)]
            return bool(op.ops)
        owner, what = _op_owner(run.foreign, op, table)
        if owner is None:
            return True
        left = LeftOut(what, owner)
        if what not in {r.what for r in removed}:
            removed.append(left)
            run.say(left_out_line(left))
        return False

    for script in directives:
        for container in (*getattr(script, "upgrade_ops_list", ()),
                          *getattr(script, "downgrade_ops_list", ())):
            container.ops = [op for op in container.ops if keep(op)]
    return removed


def _op_owner(foreign: ForeignObjects, op: Any, table: str | None
              ) -> tuple[Owner | None, str]:
    from alembic.operations import ops

    if isinstance(op, (ops.CreateTableOp, ops.DropTableOp)):
        return foreign.owner_of_table(op.table_name), f"table {op.table_name}"
    table = getattr(op, "table_name", None) or table or ""
    if isinstance(op, (ops.AddColumnOp, ops.DropColumnOp)):
        column = op.column.name if isinstance(op, ops.AddColumnOp) else op.column_name
        return foreign.owner_of_column(table, column), f"column {table}.{column}"
    if isinstance(op, ops.AlterColumnOp):
        return (foreign.owner_of_column(table, op.column_name),
                f"column {table}.{op.column_name}")
    if isinstance(op, (ops.CreateIndexOp, ops.DropIndexOp)):
        return _index_owner(foreign, op, table)
    if isinstance(op, (ops.AddConstraintOp, ops.DropConstraintOp)):
        return _constraint_owner(foreign, op, table)
    return None, ""


def _index_owner(foreign: ForeignObjects, op: Any, table: str) -> tuple[Owner | None, str]:
    index_columns = [str(c) for c in (getattr(op, "columns", None) or ())
                     if isinstance(c, str)]
    return (foreign.owner_of(INDEX, table, op.index_name, index_columns),
            f"index {op.index_name} on {table}")


def _constraint_owner(foreign: ForeignObjects, op: Any, table: str
                      ) -> tuple[Owner | None, str]:
    """A foreign key or unique constraint's owner; other constraints are not followed."""
    from alembic.operations import ops

    kind = {"foreignkey": FOREIGN_KEY, "unique": UNIQUE}.get(
        getattr(op, "constraint_type", None) or "", "")
    name = getattr(op, "constraint_name", None)
    columns: list[str] = []
    referred = None
    if isinstance(op, ops.CreateForeignKeyOp):
        kind, columns, referred = FOREIGN_KEY, list(op.local_cols), op.referent_table
    elif isinstance(op, ops.CreateUniqueConstraintOp):
        kind, columns = UNIQUE, list(op.columns)
    if not kind:
        return None, ""
    label = kind.replace("_", " ")
    return (foreign.owner_of(kind, table, name, columns, referred),
            f"{label} {name} on {table}" if name else f"unnamed {label} on {table}")
