"""Will this worktree's code still work on the shared database? (``check --schema``)

Compares the models env.py gives Alembic (``target_metadata``) with the database as it is
(reflection, on the connection env.py opens): tables and columns the models use that are
missing, NOT NULL columns without a server default that the models do not know (inserts
fail), and column types that narrowed. Each finding names the foreign revision responsible
(read statically by foreign_objects.py: drop_table, drop_column, renames, alter_column,
add_column nullable=False) and where it comes from.

The comparison is pure (``compare``, ``responsible``): it takes plain shapes. Only
``read_schema`` touches env.py, SQLAlchemy and the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.core.errors import ConfigError
from alembic_autocopy.core.foreign_objects import COLUMN, TABLE, ForeignRevision, UpgradeEffects

if TYPE_CHECKING:
    from alembic_autocopy.effects.project import ProjectConfig

# Imported inside functions, as each saves >= 5 ms where skipped: SQLAlchemy reflection and
# ownership only for check --schema.

MISSING_TABLE = "missing_table"
MISSING_COLUMN = "missing_column"
REQUIRED_UNKNOWN = "required_column_unknown"
NARROWED = "type_narrowed"
MADE_REQUIRED = "made_not_null"


class TypeShape(NamedTuple):
    """What matters of a column type for "does it still fit": its family and size."""

    family: str  # "string", "text", "integer", "numeric", or the type's own name
    size: int | None = None  # string length, integer bytes, numeric precision
    scale: int | None = None


class ColumnShape(NamedTuple):
    name: str
    type_: TypeShape
    nullable: bool = True
    has_default: bool = False  # server default, identity, computed, autoincrement key
    primary_key: bool = False


class TableShape(NamedTuple):
    name: str
    schema: str | None
    columns: tuple[ColumnShape, ...]

    def column(self, name: str) -> ColumnShape | None:
        return next((c for c in self.columns if c.name == name), None)


class Responsible(NamedTuple):
    revision: str
    source: str
    branch: str | None
    what: str  # "drop_column users.legacy"

    def describe(self) -> str:
        branch = f", branch {self.branch}" if self.branch else ""
        return f"revision {self.revision} ({self.source}{branch}: {self.what})"


class Finding(NamedTuple):
    kind: str
    table: str
    column: str | None
    message: str
    responsible: tuple[Responsible, ...] = ()

    def text(self) -> str:
        if self.responsible:
            by = "; ".join(r.describe() for r in self.responsible)
            return f"{self.message}; by {by}"
        return f"{self.message}; no revision foreign to this worktree did it (one of its " \
               "own migrations not applied yet?)"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "table": self.table, "column": self.column,
                "message": self.message,
                "responsible": [{"revision": r.revision, "source": r.source,
                                 "branch": r.branch, "operation": r.what}
                                for r in self.responsible]}


class SchemaReport:
    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.unknown: list[str] = []  # foreign raw SQL: objects unknown
        self.tables_compared = 0
        self.foreign_revisions: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.findings


# --- the pure comparison -----------------------------------------------------------------------

def narrowed(model: TypeShape, database: TypeShape) -> bool:
    """Does a value the model allows no longer fit the database's type?"""
    if model.family == "text" and database.family == "string":
        return database.size is not None
    if model.family != database.family:
        return False
    if model.family in ("string", "integer"):
        if database.size is None:
            return False
        return model.size is None or database.size < model.size
    if model.family == "numeric":
        return ((model.size or 0) > (database.size or model.size or 0)
                or (model.scale or 0) > (database.scale or model.scale or 0))
    return False


def describe_type(shape: TypeShape) -> str:
    if shape.family == "numeric" and shape.size is not None:
        return f"numeric({shape.size}, {shape.scale or 0})"
    if shape.family == "integer" and shape.size is not None:
        return {2: "smallint", 4: "integer", 8: "bigint"}.get(shape.size, "integer")
    return f"{shape.family}({shape.size})" if shape.size is not None else shape.family


def compare(models: Sequence[TableShape], database: dict[tuple[str | None, str], TableShape],
            foreign: Sequence[ForeignRevision]) -> list[Finding]:
    """Pure: what of the models the database breaks, each with the foreign revisions
    responsible. ``database``: (schema, name) -> the table as reflected (absent: missing)."""
    findings: list[Finding] = []
    for table in models:
        found = database.get((table.schema, table.name))
        if found is None:
            findings.append(_missing_table(table, foreign))
            continue
        for column in table.columns:
            findings.extend(_column_findings(table, column, found.column(column.name), foreign))
        findings.extend(_required_unknown(table, found, foreign))
    return findings


def _label(table: TableShape) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def _missing_table(table: TableShape, foreign: Sequence[ForeignRevision]) -> Finding:
    return Finding(
        MISSING_TABLE, table.name, None,
        f"table {_label(table)}, used by this worktree's models, is missing from the database",
        responsible(MISSING_TABLE, table.name, None, foreign))


def _column_findings(table: TableShape, column: ColumnShape, there: ColumnShape | None,
                     foreign: Sequence[ForeignRevision]) -> list[Finding]:
    """What breaks one model column: missing, or narrowed and/or made NOT NULL."""
    label = _label(table)
    if there is None:
        return [Finding(
            MISSING_COLUMN, table.name, column.name,
            f"column {label}.{column.name}, used by this worktree's models, is "
            "missing from the database",
            responsible(MISSING_COLUMN, table.name, column.name, foreign))]
    findings = []
    if narrowed(column.type_, there.type_):
        findings.append(Finding(
            NARROWED, table.name, column.name,
            f"column {label}.{column.name} is {describe_type(there.type_)} in the "
            f"database, narrower than the models' {describe_type(column.type_)}: "
            "values the code writes may not fit",
            responsible(NARROWED, table.name, column.name, foreign)))
    if column.nullable and not there.nullable and not there.has_default and (
            not column.primary_key):
        findings.append(Finding(
            MADE_REQUIRED, table.name, column.name,
            f"column {label}.{column.name} is NOT NULL without a server default in "
            "the database, nullable in the models: inserts that leave it empty fail",
            responsible(MADE_REQUIRED, table.name, column.name, foreign)))
    return findings


def _required_unknown(table: TableShape, found: TableShape,
                      foreign: Sequence[ForeignRevision]) -> list[Finding]:
    """The database's NOT NULL columns without a default that the models do not know."""
    label = _label(table)
    known = {c.name for c in table.columns}
    return [Finding(
        REQUIRED_UNKNOWN, table.name, there.name,
        f"column {label}.{there.name} is NOT NULL without a server default and this "
        f"worktree's models do not know it: inserts into {label} will fail",
        responsible(REQUIRED_UNKNOWN, table.name, there.name, foreign))
        for there in found.columns
        if not (there.name in known or there.nullable or there.has_default
                or there.primary_key)]


def responsible(kind: str, table: str, column: str | None,
                foreign: Sequence[ForeignRevision]) -> tuple[Responsible, ...]:
    """Pure: the foreign revisions whose upgrade() explains a finding."""
    found: list[Responsible] = []
    for revision in foreign:
        whats = [*_drops(kind, table, column, revision.effects),
                 *_renames(kind, table, column, revision.effects),
                 *_required_additions(kind, table, column, revision.effects),
                 *_alterations(kind, table, column, revision.effects)]
        found.extend(Responsible(revision.revision, revision.source, revision.branch, what)
                     for what in whats if kind != MISSING_TABLE or "table" in what)
    return tuple(found)


def _drops(kind: str, table: str, column: str | None, effects: UpgradeEffects) -> list[str]:
    whats = []
    for dropped in effects.dropped:
        if dropped.kind == TABLE and dropped.table == table:
            whats.append(f"drop_table {table}")
        elif (kind == MISSING_COLUMN and dropped.kind == COLUMN
              and (dropped.table, dropped.name) == (table, column)):
            whats.append(f"drop_column {table}.{column}")
    return whats


def _renames(kind: str, table: str, column: str | None, effects: UpgradeEffects) -> list[str]:
    whats = []
    for rename in effects.renamed:
        if rename.kind == TABLE and rename.old == table:
            whats.append(f"rename_table {table} -> {rename.new}")
        elif (kind == MISSING_COLUMN and rename.kind == COLUMN and rename.table == table
              and rename.old == column):
            whats.append(f"alter_column {table}.{column} new_column_name={rename.new}")
    return whats


def _required_additions(kind: str, table: str, column: str | None,
                        effects: UpgradeEffects) -> list[str]:
    if kind != REQUIRED_UNKNOWN:
        return []
    return [f"add_column {table}.{c.column} nullable=False, no server_default"
            for c in effects.added_columns
            if (c.table, c.column) == (table, column) and c.nullable is False]


def _alterations(kind: str, table: str, column: str | None,
                 effects: UpgradeEffects) -> list[str]:
    whats = []
    for altered in effects.altered_columns:
        if (altered.table, altered.column) != (table, column):
            continue
        if kind == NARROWED and altered.type_text:
            whats.append(f"alter_column {table}.{column} type_={altered.type_text}")
        elif kind in (MADE_REQUIRED, REQUIRED_UNKNOWN) and altered.nullable is False:
            whats.append(f"alter_column {table}.{column} nullable=False")
    return whats


# --- the boundary: env.py's models and the database ------------------------------------------

def type_shape(type_: Any) -> TypeShape:
    import sqlalchemy as sa

    if isinstance(type_, sa.Boolean):
        return TypeShape("boolean")
    if isinstance(type_, sa.Integer):
        size = 8 if isinstance(type_, sa.BigInteger) else (
            2 if isinstance(type_, sa.SmallInteger) else 4)
        return TypeShape("integer", size)
    if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float):
        return TypeShape("numeric", type_.precision, type_.scale)
    if isinstance(type_, sa.String):
        if isinstance(type_, sa.Text) or type_.length is None:
            return TypeShape("text")
        return TypeShape("string", type_.length)
    return TypeShape(type(type_).__name__.lower())


def model_tables(metadata: Any, ignored: set[str]) -> list[TableShape]:
    tables: list[TableShape] = []
    for table in metadata.sorted_tables:
        if table.name in ignored:
            continue
        columns = tuple(ColumnShape(
            str(column.name), type_shape(column.type), bool(column.nullable),
            column.server_default is not None, bool(column.primary_key))
            for column in table.columns)
        tables.append(TableShape(str(table.name), table.schema, columns))
    return tables


def reflect(connection: Any, tables: Sequence[TableShape]
            ) -> dict[tuple[str | None, str], TableShape]:
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    found: dict[tuple[str | None, str], TableShape] = {}
    for table in tables:
        if not inspector.has_table(table.name, schema=table.schema):
            continue
        keys = set(inspector.get_pk_constraint(table.name, schema=table.schema)
                   .get("constrained_columns") or ())
        columns = []
        for column in inspector.get_columns(table.name, schema=table.schema):
            name = str(column["name"])
            primary = name in keys
            has_default = (column.get("default") is not None or bool(column.get("identity"))
                           or bool(column.get("computed"))
                           or (primary and column.get("autoincrement") is not False))
            columns.append(ColumnShape(name, type_shape(column["type"]),
                                       bool(column.get("nullable", True)), has_default,
                                       primary))
        found[(table.schema, table.name)] = TableShape(table.name, table.schema,
                                                       tuple(columns))
    return found


def _metadatas(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [m for m in value if m is not None]
    if isinstance(value, dict):
        return [m for m in value.values() if m is not None]
    return [value]


def read_schema(project: ProjectConfig) -> SchemaReport:
    """Run env.py once: its models, the database's tables, the foreign revisions."""
    from alembic_autocopy.effects import database
    from alembic_autocopy.workflow import ownership
    from alembic_autocopy.workflow.integration import record_table_names

    report = SchemaReport()
    seen_metadata = {"any": False}

    def collect(heads: Sequence[str], context: Any) -> None:
        connection = context.connection
        if context.as_sql or connection is None:
            return
        metadatas = _metadatas(context.opts.get("target_metadata"))
        if not metadatas:
            return
        seen_metadata["any"] = True
        foreign = ownership.foreign_revisions(project, heads,
                                              ownership.record_reader(context, project))
        ignored = record_table_names() | {context.version_table}
        for metadata in metadatas:
            models = model_tables(metadata, ignored)
            report.tables_compared += len(models)
            report.findings.extend(compare(models, reflect(connection, models), foreign))
        for revision in foreign:
            if revision.revision not in report.foreign_revisions:
                report.foreign_revisions.append(revision.revision)
            report.unknown.extend(
                f"revision {revision.revision} ({revision.source}): {u.what}"
                + (f" at line {u.line}" if u.line else "") + ": objects unknown (not read)"
                for u in revision.effects.unknown)

    try:
        database.read_state(project, collect)
    finally:
        from alembic_autocopy.sources import gitobjects

        gitobjects.close_readers()
    if not seen_metadata["any"]:
        raise ConfigError(
            "env.py gives Alembic no target_metadata: check --schema compares your models "
            "with the database and found none",
            hint="set target_metadata in env.py (as for autogenerate) to your models' MetaData")
    return report
