"""What a migration's ``upgrade()`` does to the schema, read with ``ast`` (never run).

A revision applied to the shared database from another worktree created tables, columns,
indexes and constraints this worktree's models do not know: autogenerate would propose to drop
them, and this worktree's code may break on what it dropped or made required. This module
reads, from a migration's source text alone, which objects its ``upgrade()`` (and a
multi-database ``upgrade_<name>()``) creates, drops, renames and alters through ``op`` and
``batch_alter_table`` blocks. Raw SQL (``op.execute``, ``connection.execute``) is reported as
"objects unknown" with its line: it is never guessed.

Pure: takes source text, returns plain records. No import of Alembic or SQLAlchemy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

TABLE = "table"
COLUMN = "column"
INDEX = "index"
UNIQUE = "unique_constraint"
FOREIGN_KEY = "foreign_key_constraint"
CHECK = "check_constraint"
CONSTRAINT = "constraint"  # drop_constraint without a type_: any kind

_CONSTRAINT_TYPES = {"foreignkey": FOREIGN_KEY, "unique": UNIQUE, "check": CHECK}


class SchemaObject(NamedTuple):
    """One table, column, index or constraint. ``name`` None: an unnamed constraint (it is
    then known by its table, columns and, for a foreign key, the table it refers to)."""

    kind: str
    table: str
    name: str | None = None
    columns: tuple[str, ...] = ()
    referred_table: str | None = None
    schema: str | None = None

    def describe(self) -> str:
        table = f"{self.schema}.{self.table}" if self.schema else self.table
        if self.kind == TABLE:
            return f"table {table}"
        if self.kind == COLUMN:
            return f"column {table}.{self.name}"
        label = self.kind.replace("_", " ")
        if self.name:
            return f"{label} {self.name} on {table}"
        cols = ", ".join(self.columns)
        refers = f" -> {self.referred_table}" if self.referred_table else ""
        return f"unnamed {label} on {table} ({cols}){refers}"


class ColumnSpec(NamedTuple):
    """A column an upgrade adds or alters, with what running code cares about."""

    table: str
    column: str
    nullable: bool | None = None  # None: not said (a new column is then nullable)
    server_default: bool = False
    type_text: str | None = None  # source text of the type, e.g. "sa.String(length=50)"
    primary_key: bool = False
    line: int = 0


class Rename(NamedTuple):
    kind: str  # TABLE or COLUMN
    table: str  # the table (its old name for a table rename)
    old: str
    new: str
    line: int = 0


class Unknown(NamedTuple):
    """A statement whose effect on the schema cannot be read (raw SQL, computed names)."""

    line: int
    what: str  # "op.execute", "op.create_table with a computed name"...


class UpgradeEffects:
    """Everything read from one migration's upgrade functions, in source order."""

    def __init__(self, created: list[SchemaObject] | None = None,
                 dropped: list[SchemaObject] | None = None, renamed: list[Rename] | None = None,
                 added_columns: list[ColumnSpec] | None = None,
                 altered_columns: list[ColumnSpec] | None = None,
                 unknown: list[Unknown] | None = None, readable: bool = True) -> None:
        self.created = [] if created is None else created
        self.dropped = [] if dropped is None else dropped
        self.renamed = [] if renamed is None else renamed
        # add_column and create_table
        self.added_columns = [] if added_columns is None else added_columns
        self.altered_columns = [] if altered_columns is None else altered_columns
        self.unknown = [] if unknown is None else unknown
        self.readable = readable  # False: the source did not parse

    def objects_created(self) -> list[SchemaObject]:
        """Objects that exist after this upgrade because of it: created ones, followed
        through this upgrade's own renames and minus what it dropped again; plus the new
        names of tables and columns it renamed (they did not exist under that name)."""
        result: list[SchemaObject] = []
        for item in (*self._created_under_final_names(), *self._new_names()):
            if item not in result:
                result.append(item)
        dropped = _Dropped.of(self.dropped)
        return [item for item in result if not dropped.removes(item)]

    def _created_under_final_names(self) -> Iterable[SchemaObject]:
        """Each created object, followed through this upgrade's renames."""
        for item in self.created:
            for rename in self.renamed:
                item = _follow(item, rename)
            yield item

    def _new_names(self) -> Iterable[SchemaObject]:
        """The tables and columns this upgrade renamed, under their new names."""
        for rename in self.renamed:
            if rename.kind == TABLE:
                yield SchemaObject(TABLE, rename.new)
            else:
                yield SchemaObject(COLUMN, rename.table, rename.new)

    def required_columns_added(self) -> list[ColumnSpec]:
        """Columns added NOT NULL without a server default to a table that existed before
        (inserts that do not fill them fail)."""
        new_tables = {item.table for item in self.created if item.kind == TABLE}
        return [c for c in self.added_columns
                if c.nullable is False and not c.server_default and not c.primary_key
                and c.table not in new_tables]


class _Dropped(NamedTuple):
    """What an upgrade dropped, to tell which objects it created are gone again."""

    tables: frozenset[str]
    columns: frozenset[tuple[str, str | None]]  # (table, column)
    named: frozenset[tuple[str, str | None]]  # (kind, name) of indexes and constraints

    @classmethod
    def of(cls, dropped: Sequence[SchemaObject]) -> _Dropped:
        named = {(d.kind, d.name) for d in dropped if d.kind not in (TABLE, COLUMN)}
        # drop_constraint without a type_ may drop a constraint of any kind
        named |= {(kind, d.name) for d in dropped if d.kind == CONSTRAINT
                  for kind in (UNIQUE, FOREIGN_KEY, CHECK)}
        return cls(tables=frozenset(d.table for d in dropped if d.kind == TABLE),
                   columns=frozenset((d.table, d.name) for d in dropped if d.kind == COLUMN),
                   named=frozenset(named))

    def removes(self, item: SchemaObject) -> bool:
        if item.table in self.tables:
            return True
        if item.kind == COLUMN:
            return (item.table, item.name) in self.columns
        if item.kind == TABLE:
            return False
        return bool(item.name) and (item.kind, item.name) in self.named


def _follow(item: SchemaObject, rename: Rename) -> SchemaObject:
    if rename.kind == TABLE and item.table == rename.old:
        return item._replace(table=rename.new)
    if (rename.kind == COLUMN and item.kind == COLUMN and item.table == rename.table
            and item.name == rename.old):
        return item._replace(name=rename.new)
    return item


# --- reading -----------------------------------------------------------------------------------

def read_effects(source: bytes | str) -> UpgradeEffects:
    """What the file's ``upgrade()``/``upgrade_<name>()`` functions do through ``op``.
    Unparseable source: ``readable`` False, nothing else."""
    effects = UpgradeEffects()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        effects.readable = False
        return effects
    for function in tree.body:
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                function.name == "upgrade" or function.name.startswith("upgrade_")):
            _Reader(effects, _batch_aliases(function)).read(function)
    return effects


class _Batch(NamedTuple):
    table: str | None
    schema: str | None


def _batch_aliases(function: ast.AST) -> dict[str, _Batch]:
    aliases: dict[str, _Batch] = {}
    for node in ast.walk(function):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and _method(call) == "batch_alter_table"
                        and isinstance(item.optional_vars, ast.Name)):
                    aliases[item.optional_vars.id] = _Batch(
                        _text(_arg(call, 0, "table_name")), _text(_arg(call, None, "schema")))
    return aliases


def _method(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _arg(call: ast.Call, position: int | None, keyword: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == keyword:
            return item.value
    if position is not None and len(call.args) > position:
        value = call.args[position]
        return None if isinstance(value, ast.Starred) else value
    return None


def _text(node: ast.expr | None) -> str | None:
    """A literal string, also through ``op.f("name")`` / ``sa.text("...")``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and _method(node) in ("f", "quoted_name", "conv") and node.args:
        return _text(node.args[0])
    return None


def _texts(node: ast.expr | None) -> tuple[str, ...] | None:
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_column_ref(e) for e in node.elts]
        return tuple(v for v in values if v is not None) if all(values) else None
    single = _text(node)
    return (single,) if single is not None else None


def _column_ref(node: ast.expr) -> str | None:
    text = _text(node)
    if text is not None:
        return text
    if isinstance(node, ast.Call) and _method(node) == "column" and node.args:
        return _text(node.args[0])
    return None


def _bool(node: ast.expr | None) -> bool | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    return None


def _present(node: ast.expr | None) -> bool:
    return node is not None and not (isinstance(node, ast.Constant) and node.value is None)


_RAW_SQL = frozenset(("execute", "exec_driver_sql", "executescript", "run_sync"))
_SCHEMA_OPS = frozenset((
    "create_table", "drop_table", "rename_table", "add_column", "drop_column", "alter_column",
    "create_index", "drop_index", "create_foreign_key", "create_unique_constraint",
    "create_check_constraint", "create_primary_key", "drop_constraint",
))


class _Reader:
    def __init__(self, effects: UpgradeEffects, batches: Mapping[str, _Batch]) -> None:
        self.effects = effects
        self.batches = batches

    def read(self, function: ast.AST) -> None:
        calls = [node for node in ast.walk(function) if isinstance(node, ast.Call)]
        calls.sort(key=lambda node: (node.lineno, node.col_offset))
        for call in calls:
            self.call(call)

    def call(self, call: ast.Call) -> None:
        name = _method(call)
        if name is None or not isinstance(call.func, ast.Attribute):
            return
        owner = call.func.value
        batch = self.batches.get(owner.id) if isinstance(owner, ast.Name) else None
        if name in _RAW_SQL:
            where = ast.unparse(call.func)
            self.effects.unknown.append(Unknown(call.lineno, where))
            return
        if name not in _SCHEMA_OPS or _is_sqlalchemy(owner):
            return
        handler = getattr(self, f"_{name}")
        if batch is not None:
            if batch.table is None:
                self.effects.unknown.append(Unknown(call.lineno, "batch_alter_table with a "
                                                                 "computed table name"))
                return
            handler(call, batch.table, batch.schema, True)
        else:
            handler(call, None, _text(_arg(call, None, "schema")), False)

    def _unknown(self, call: ast.Call, name: str) -> None:
        self.effects.unknown.append(Unknown(call.lineno, f"{name} with a computed name"))

    # Each handler: (call, batch table or None, schema, in a batch block).

    def _create_table(self, call: ast.Call, _t: str | None, schema: str | None,
                      _b: bool) -> None:
        table = _text(_arg(call, 0, "table_name"))
        if table is None:
            return self._unknown(call, "op.create_table")
        created = self.effects.created
        created.append(SchemaObject(TABLE, table, schema=schema))
        for argument in call.args[1:]:
            if not isinstance(argument, ast.Call):
                continue
            kind = _method(argument)
            if kind == "Column":
                self._column(argument, table, schema, in_table=True)
            elif kind in ("UniqueConstraint", "ForeignKeyConstraint", "CheckConstraint",
                          "Index"):
                item = _table_item(argument, kind, table, schema)
                if item is not None:
                    created.append(item)

    def _column(self, node: ast.Call, table: str, schema: str | None,
                in_table: bool) -> None:
        name = _text(_arg(node, 0, "name"))
        if name is None:
            return self._unknown(node, "sa.Column")
        primary = _bool(_arg(node, None, "primary_key")) is True
        nullable = _bool(_arg(node, None, "nullable"))
        if primary and nullable is None:
            nullable = False
        type_node = next((a for a in node.args[1:] if not _is_foreign_key(a)), None)
        type_node = _arg(node, None, "type_") or type_node
        self.effects.created.append(SchemaObject(COLUMN, table, name, schema=schema))
        self.effects.added_columns.append(ColumnSpec(
            table, name, nullable, _present(_arg(node, None, "server_default")),
            ast.unparse(type_node) if type_node is not None else None, primary, node.lineno))
        for argument in node.args[1:]:
            if _is_foreign_key(argument):
                assert isinstance(argument, ast.Call)
                target = _text(_arg(argument, 0, "column"))
                self.effects.created.append(SchemaObject(
                    FOREIGN_KEY, table, _text(_arg(argument, None, "name")), (name,),
                    target.rsplit(".", 1)[0].rsplit(".", 1)[-1] if target else None, schema))
        if _bool(_arg(node, None, "unique")):
            self.effects.created.append(SchemaObject(UNIQUE, table, None, (name,),
                                                     schema=schema))
        if _bool(_arg(node, None, "index")):
            self.effects.created.append(SchemaObject(INDEX, table, None, (name,),
                                                     schema=schema))

    def _add_column(self, call: ast.Call, batch: str | None, schema: str | None,
                    in_batch: bool) -> None:
        table = batch if in_batch else _text(_arg(call, 0, "table_name"))
        column = _arg(call, 0 if in_batch else 1, "column")
        if table is None or not isinstance(column, ast.Call):
            return self._unknown(call, "add_column")
        self._column(column, table, schema, in_table=False)

    def _drop_table(self, call: ast.Call, _t: str | None, schema: str | None,
                    _b: bool) -> None:
        table = _text(_arg(call, 0, "table_name"))
        if table is None:
            return self._unknown(call, "op.drop_table")
        self.effects.dropped.append(SchemaObject(TABLE, table, schema=schema))

    def _drop_column(self, call: ast.Call, batch: str | None, schema: str | None,
                     in_batch: bool) -> None:
        table = batch if in_batch else _text(_arg(call, 0, "table_name"))
        column = _text(_arg(call, 0 if in_batch else 1, "column_name"))
        if table is None or column is None:
            return self._unknown(call, "drop_column")
        self.effects.dropped.append(SchemaObject(COLUMN, table, column, schema=schema))

    def _rename_table(self, call: ast.Call, _t: str | None, schema: str | None,
                      _b: bool) -> None:
        old = _text(_arg(call, 0, "old_table_name"))
        new = _text(_arg(call, 1, "new_table_name"))
        if old is None or new is None:
            return self._unknown(call, "op.rename_table")
        self.effects.renamed.append(Rename(TABLE, old, old, new, call.lineno))

    def _alter_column(self, call: ast.Call, batch: str | None, schema: str | None,
                      in_batch: bool) -> None:
        table = batch if in_batch else _text(_arg(call, 0, "table_name"))
        column = _text(_arg(call, 0 if in_batch else 1, "column_name"))
        if table is None or column is None:
            return self._unknown(call, "alter_column")
        new_name = _text(_arg(call, None, "new_column_name"))
        if new_name is not None and new_name != column:
            self.effects.renamed.append(Rename(COLUMN, table, column, new_name, call.lineno))
        type_node = _arg(call, None, "type_")
        nullable = _bool(_arg(call, None, "nullable"))
        if type_node is not None or nullable is not None:
            self.effects.altered_columns.append(ColumnSpec(
                table, new_name or column, nullable,
                _present(_arg(call, None, "server_default")),
                ast.unparse(type_node) if type_node is not None else None, False,
                call.lineno))

    def _create_index(self, call: ast.Call, batch: str | None, schema: str | None,
                      in_batch: bool) -> None:
        name = _text(_arg(call, 0, "index_name"))
        table = batch if in_batch else _text(_arg(call, 1, "table_name"))
        columns = _texts(_arg(call, 1 if in_batch else 2, "columns")) or ()
        if table is None:
            return self._unknown(call, "create_index")
        self.effects.created.append(SchemaObject(INDEX, table, name, columns, schema=schema))

    def _drop_index(self, call: ast.Call, batch: str | None, schema: str | None,
                    in_batch: bool) -> None:
        name = _text(_arg(call, 0, "index_name"))
        table = batch if in_batch else _text(_arg(call, 1, "table_name"))
        if name is None:
            return self._unknown(call, "drop_index")
        self.effects.dropped.append(SchemaObject(INDEX, table or "", name, schema=schema))

    def _create_foreign_key(self, call: ast.Call, batch: str | None, schema: str | None,
                            in_batch: bool) -> None:
        name = _text(_arg(call, 0, "constraint_name"))
        if in_batch:
            table, referred = batch, _text(_arg(call, 1, "referent_table"))
            local = _texts(_arg(call, 2, "local_cols"))
        else:
            table, referred = (_text(_arg(call, 1, "source_table")),
                               _text(_arg(call, 2, "referent_table")))
            local = _texts(_arg(call, 3, "local_cols"))
        if table is None:
            return self._unknown(call, "create_foreign_key")
        self.effects.created.append(SchemaObject(FOREIGN_KEY, table, name, local or (),
                                                 referred, schema))

    def _create_unique_constraint(self, call: ast.Call, batch: str | None,
                                  schema: str | None, in_batch: bool) -> None:
        name = _text(_arg(call, 0, "constraint_name"))
        table = batch if in_batch else _text(_arg(call, 1, "table_name"))
        columns = _texts(_arg(call, 1 if in_batch else 2, "columns")) or ()
        if table is None:
            return self._unknown(call, "create_unique_constraint")
        self.effects.created.append(SchemaObject(UNIQUE, table, name, columns, schema=schema))

    def _create_check_constraint(self, call: ast.Call, batch: str | None,
                                 schema: str | None, in_batch: bool) -> None:
        name = _text(_arg(call, 0, "constraint_name"))
        table = batch if in_batch else _text(_arg(call, 1, "table_name"))
        if table is None:
            return self._unknown(call, "create_check_constraint")
        self.effects.created.append(SchemaObject(CHECK, table, name, schema=schema))

    def _create_primary_key(self, call: ast.Call, batch: str | None, schema: str | None,
                            in_batch: bool) -> None:
        return  # a primary key is part of its table; autogenerate does not compare it

    def _drop_constraint(self, call: ast.Call, batch: str | None, schema: str | None,
                         in_batch: bool) -> None:
        name = _text(_arg(call, 0, "constraint_name"))
        table = batch if in_batch else _text(_arg(call, 1, "table_name"))
        kind = _CONSTRAINT_TYPES.get(_text(_arg(call, None, "type_")) or "", CONSTRAINT)
        if name is None or table is None:
            return self._unknown(call, "drop_constraint")
        self.effects.dropped.append(SchemaObject(kind, table, name, schema=schema))


def _is_sqlalchemy(owner: ast.expr) -> bool:
    return isinstance(owner, ast.Name) and owner.id in ("sa", "sqlalchemy")


def _is_foreign_key(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _method(node) == "ForeignKey"


def _table_item(node: ast.Call, kind: str, table: str,
                schema: str | None) -> SchemaObject | None:
    name = _text(_arg(node, None, "name"))
    if kind == "UniqueConstraint":
        cols = tuple(c for c in (_text(a) for a in node.args) if c)
        return SchemaObject(UNIQUE, table, name, cols, schema=schema)
    if kind == "CheckConstraint":
        return SchemaObject(CHECK, table, name, schema=schema)
    if kind == "Index":
        name = _text(_arg(node, 0, "name"))
        cols = tuple(c for c in (_column_ref(a) for a in node.args[1:]) if c)
        return SchemaObject(INDEX, table, name, cols, schema=schema)
    local = _texts(_arg(node, 0, "columns")) or ()
    remote = _texts(_arg(node, 1, "refcolumns")) or ()
    referred = remote[0].rsplit(".", 1)[0].rsplit(".", 1)[-1] if remote else None
    return SchemaObject(FOREIGN_KEY, table, name, local, referred, schema)


# --- whose objects are they ------------------------------------------------------------------

class ForeignRevision(NamedTuple):
    """A revision applied to the database that is not in this worktree's own lineage."""

    revision: str
    source: str  # where its file was read: "worktree /x/Proj-a (feature-a)", "branch a"...
    branch: str | None
    effects: UpgradeEffects


class Owner(NamedTuple):
    """Which foreign revision created an object."""

    revision: str
    source: str
    item: SchemaObject


class ForeignObjects:
    """Every object the foreign revisions created, looked up the way autogenerate names
    them: tables, columns by (table, name), indexes and constraints by name, or by their
    columns when unnamed (SQLite reflects foreign keys without names)."""

    def __init__(self, revisions: Sequence[ForeignRevision]) -> None:
        self.revisions = list(revisions)
        self.tables: dict[str, Owner] = {}
        self.columns: dict[tuple[str, str], Owner] = {}
        self.named: dict[tuple[str, str], Owner] = {}  # (kind, name) -> owner
        self.unnamed: list[Owner] = []
        for foreign in self.revisions:
            for item in foreign.effects.objects_created():
                owner = Owner(foreign.revision, foreign.source, item)
                if item.kind == TABLE:
                    self.tables.setdefault(item.table, owner)
                elif item.kind == COLUMN and item.name:
                    self.columns.setdefault((item.table, item.name), owner)
                elif item.name:
                    self.named.setdefault((item.kind, item.name), owner)
                else:
                    self.unnamed.append(owner)

    def __bool__(self) -> bool:
        return bool(self.tables or self.columns or self.named or self.unnamed)

    def unknown(self) -> list[tuple[ForeignRevision, Unknown]]:
        return [(f, u) for f in self.revisions for u in f.effects.unknown]

    def owner_of_table(self, table: str) -> Owner | None:
        return self.tables.get(table)

    def owner_of_column(self, table: str, column: str) -> Owner | None:
        return self.columns.get((table, column)) or self.tables.get(table)

    def owner_of(self, kind: str, table: str, name: str | None,
                 columns: Iterable[str] = (), referred_table: str | None = None
                 ) -> Owner | None:
        """An index or constraint: by name; else by its columns; else as part of a foreign
        table or built on a foreign column (it cannot exist without them)."""
        cols = tuple(columns)
        if name:
            owner = self.named.get((kind, name))
            if owner is not None and owner.item.table in (table, ""):
                return owner
        for owner in self.unnamed:
            item = owner.item
            if (item.kind == kind and item.table == table and item.columns == cols
                    and (referred_table is None or item.referred_table in
                         (None, referred_table))):
                return owner
        table_owner = self.tables.get(table)
        if table_owner is not None:
            return table_owner
        for column in cols:
            owner = self.columns.get((table, column))
            if owner is not None:
                return owner
        if referred_table is not None and referred_table in self.tables:
            return self.tables[referred_table]
        return None
