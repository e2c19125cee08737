"""``alembic-autocopy revision``: ``alembic revision`` based on this worktree's own head.

After a repair, a worktree holds other worktrees' revisions too, and usually two heads: plain
``alembic revision`` then refuses ("Multiple heads are present"), or, when the foreign chain
grew from this worktree's head, silently bases the new file on a revision this branch does not
have in git. This command finds this worktree's own head and passes ``--head`` for the user;
with ``--autogenerate`` it warns when the new file drops tables or columns that applied
foreign revisions created (this worktree's models cannot know them yet).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.cli.commands import options_from, project_from
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.output import Output
from alembic_autocopy.core.errors import AutocopyError, UsageError
from alembic_autocopy.core.foreign import HeadSplit
from alembic_autocopy.core.model import Candidate
from alembic_autocopy.sources.inventory import gather

if TYPE_CHECKING:
    from alembic_autocopy.effects.project import ProjectConfig

# Imported inside functions, as each saves >= 5 ms where skipped: Alembic, the database and
# placement only for the new revision.

DESCRIPTION = """\
Run `alembic revision` with the same options, based on this worktree's own head while
revisions of other worktrees are present here (copies placed by alembic-autocopy, or files
not committed on this branch that another worktree or branch holds): it passes --head <own
head> for you, so Alembic neither refuses with "Multiple heads are present" nor bases the new
file on a revision this branch does not have. An explicit --head is passed through unchanged.
With --autogenerate, it warns when the new file drops tables or columns that applied foreign
revisions created: delete those drops before applying it.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--message", default=None, help="message of the revision")
    parser.add_argument("--autogenerate", action="store_true",
                        help="compare the database with the models (target_metadata)")
    parser.add_argument("--sql", action="store_true",
                        help="print SQL instead (needs revision_environment)")
    parser.add_argument("--head", default=None, metavar="REV",
                        help="base the revision on REV (default: this worktree's own head)")
    parser.add_argument("--splice", action="store_true",
                        help="allow a non-head revision as the --head")
    parser.add_argument("--branch-label", default=None, metavar="LABEL",
                        help="branch label to apply to the new revision")
    parser.add_argument("--version-path", default=None, metavar="PATH",
                        help="version folder to put the new file in")
    parser.add_argument("--rev-id", default=None, metavar="ID",
                        help="revision id to use instead of a generated one")
    parser.add_argument("--depends-on", action="append", default=None, metavar="REV",
                        help="revision(s) the new one depends on (repeatable)")


def base_for_new_revision(split: HeadSplit, explicit: str | None) -> str:
    """The ``--head`` to pass: the user's, else this worktree's own head when foreign heads
    are present ("base" when it has no revision of its own), else Alembic's default."""
    if explicit:
        return explicit
    if not split.foreign:
        return "head"
    if len(split.own_heads) == 1:
        return split.own_heads[0]
    if not split.own_heads:
        return "base"
    raise UsageError(
        f"this worktree has {len(split.own_heads)} heads of its own: "
        f"{', '.join(split.own_heads)} (besides other worktrees' "
        f"{', '.join(split.foreign_heads) or 'revisions'})",
        hint="choose one with --head REV, or join them first with `alembic merge`")


# --- what an upgrade() creates and drops ---------------------------------------------------

class SchemaChanges:
    """Tables and columns an ``upgrade()`` creates or drops, read with ``ast`` (not run)."""

    def __init__(self, created_tables: set[str] | None = None,
                 added_columns: set[tuple[str, str]] | None = None,
                 dropped_tables: set[str] | None = None,
                 dropped_columns: set[tuple[str, str]] | None = None) -> None:
        self.created_tables = set() if created_tables is None else created_tables
        self.added_columns = set() if added_columns is None else added_columns
        self.dropped_tables = set() if dropped_tables is None else dropped_tables
        self.dropped_columns = set() if dropped_columns is None else dropped_columns

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SchemaChanges):
            return NotImplemented
        return vars(self) == vars(other)


def schema_changes(source: bytes | str) -> SchemaChanges:
    """What the file's ``upgrade()`` (and multi-database ``upgrade_<name>()``) functions do
    through ``op``: create_table, add_column, drop_table, drop_column, and the same inside
    ``with op.batch_alter_table(...) as batch_op``. Unreadable source: nothing."""
    changes = SchemaChanges()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return changes
    for function in tree.body:
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                function.name == "upgrade" or function.name.startswith("upgrade_")):
            batches = _batch_aliases(function)
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    _record_call(node, batches, changes)
    return changes


def _batch_aliases(function: ast.AST) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(function):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and _called_name(call) == "batch_alter_table"
                        and isinstance(item.optional_vars, ast.Name)):
                    table = _argument(call, 0, "table_name")
                    if table is not None:
                        aliases[item.optional_vars.id] = table
    return aliases


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _argument(call: ast.Call, position: int, keyword: str) -> str | None:
    value: ast.AST | None = None
    if len(call.args) > position:
        value = call.args[position]
    for item in call.keywords:
        if item.arg == keyword:
            value = item.value
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    return None


def _column_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and _called_name(node) == "Column":
        return _argument(node, 0, "name")
    return None


def _record_call(call: ast.Call, batches: Mapping[str, str], changes: SchemaChanges) -> None:
    owner = call.func.value if isinstance(call.func, ast.Attribute) else None
    batch_table = batches.get(owner.id) if isinstance(owner, ast.Name) else None
    if batch_table is not None:
        _record_batch_call(call, batch_table, changes)
        return
    name = _called_name(call)
    if name == "create_table":
        _record_create_table(call, changes)
    elif name == "add_column":
        _record_add_column(call, changes)
    elif name == "drop_table":
        table = _argument(call, 0, "table_name")
        if table:
            changes.dropped_tables.add(table)
    elif name == "drop_column":
        table = _argument(call, 0, "table_name")
        column = _argument(call, 1, "column_name")
        if table and column:
            changes.dropped_columns.add((table, column))


def _record_batch_call(call: ast.Call, table: str, changes: SchemaChanges) -> None:
    """``batch_op.add_column(Column(...))`` or ``batch_op.drop_column(name)`` on ``table``."""
    name = _called_name(call)
    if name == "add_column" and call.args:
        column = _column_name(call.args[0])
        if column:
            changes.added_columns.add((table, column))
    elif name == "drop_column":
        column = _argument(call, 0, "column_name")
        if column:
            changes.dropped_columns.add((table, column))


def _record_create_table(call: ast.Call, changes: SchemaChanges) -> None:
    table = _argument(call, 0, "table_name")
    if not table:
        return
    changes.created_tables.add(table)
    for argument in call.args[1:]:
        column = _column_name(argument)
        if column:
            changes.added_columns.add((table, column))


def _record_add_column(call: ast.Call, changes: SchemaChanges) -> None:
    table = _argument(call, 0, "table_name")
    column_node = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg == "column"), None)
    column = _column_name(column_node) if column_node is not None else None
    if table and column:
        changes.added_columns.add((table, column))


class ForeignDrop(NamedTuple):
    """The new revision drops something an applied foreign revision created."""

    what: str  # "table orders" or "column orders.total"
    revision: str  # the foreign revision that created it


def foreign_drops(new_file: SchemaChanges,
                  owners: Mapping[str, SchemaChanges]) -> list[ForeignDrop]:
    """Pure: every drop of ``new_file`` that one of ``owners`` (revision -> its upgrade's
    changes) created."""
    found: list[ForeignDrop] = []
    for table in sorted(new_file.dropped_tables):
        for revision, changes in sorted(owners.items()):
            if table in changes.created_tables:
                found.append(ForeignDrop(f"table {table}", revision))
    for table, column in sorted(new_file.dropped_columns):
        for revision, changes in sorted(owners.items()):
            if (table, column) in changes.added_columns or table in changes.created_tables:
                found.append(ForeignDrop(f"column {table}.{column}", revision))
    return found


# --- the command ---------------------------------------------------------------------------

class _Generated:
    def __init__(self) -> None:
        self.scripts: list[Any] = []
        self.database_heads: tuple[str, ...] | None = None
        self.alembic_output = ""
        self.left_out: list[str] = []  # objects of foreign revisions


def run(args: argparse.Namespace, out: Output) -> int:

    project = project_from(args)
    inventory = gather(project, options_from(args))
    show_inventory_warnings(inventory, out)
    split = _split_heads(project, inventory.local, inventory.elsewhere)
    head = base_for_new_revision(split, args.head)
    # Our own head may sit below a foreign chain (it grew from it): Alembic then wants
    # --splice to start a branch there, which is exactly what this branch needs.
    splice = bool(args.splice) or (not args.head and head not in ("head", "base")
                                   and head not in split.heads)
    generated = _generate(project, args, head, splice)
    scripts = [s for s in generated.scripts if s is not None]
    for line in generated.alembic_output.splitlines():
        out.line(line)
    drops: list[tuple[str, ForeignDrop]] = []
    if args.autogenerate and split.foreign:
        drops = _check_drops(scripts, split, inventory.local, generated.database_heads)
        _warn_drops(drops, split, out)
    _show_created(scripts, split, args.head, out)
    out.emit({
        "ok": True,
        "head_passed": head,
        "own_heads": list(split.own_heads),
        "foreign_heads": list(split.foreign_heads),
        "revisions": [{"revision": s.revision, "path": s.path,
                       "down_revisions": list(_as_tuple(s.down_revision))} for s in scripts],
        "foreign_drops": [{"path": p, "drops": d.what, "created_by": d.revision}
                          for p, d in drops],
        "left_out": generated.left_out,
    })
    return 0


def _split_heads(project: ProjectConfig, local: Sequence[Candidate], elsewhere: Sequence[Candidate]
                 ) -> HeadSplit:
    """This worktree's own heads apart from other worktrees' (copies placed here and files
    not committed on this branch)."""
    from alembic_autocopy.workflow.revision_base import own_heads

    return own_heads(project, local, elsewhere)


def _warn_drops(drops: Sequence[tuple[str, ForeignDrop]], split: HeadSplit,
                out: Output) -> None:
    for path, drop in drops:
        origin = split.foreign[drop.revision].location
        out.warn(f"{path} drops {drop.what}, which revision {drop.revision} created "
                 f"(another worktree's revision, {origin.path}): this worktree's models "
                 "do not know it yet; delete that drop (and its downgrade) before "
                 "applying the file")


def _show_created(scripts: Sequence[Any], split: HeadSplit, explicit_head: str | None,
                  out: Output) -> None:
    foreign_note = ""
    if split.foreign_heads and not explicit_head:
        foreign_note = (f" (other worktrees' head(s) here: {', '.join(split.foreign_heads)}, "
                        "left alone)")
    for script in scripts:
        parents = script.down_revision
        parent_text = ", ".join(parents) if isinstance(parents, tuple) else parents or "base"
        out.result(f"Created revision {script.revision} on {parent_text}: {script.path}"
                   + foreign_note)


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (tuple, list)) else (str(value),)


def _generate(project: Any, args: argparse.Namespace, head: str,
              splice: bool) -> _Generated:
    """Run Alembic's own ``revision`` command in this process, output captured."""
    from alembic import command

    from alembic_autocopy.effects import database

    generated = _Generated()
    buffer = io.StringIO()
    config = database.alembic_config(project, stdout=buffer)

    def remember_heads(context: Any, revision: Any, directives: Any) -> None:
        generated.database_heads = tuple(_as_tuple(revision))
        if args.autogenerate:  # the env.py integration's filter, with or without env.py's line
            from alembic_autocopy.workflow import ownership

            generated.left_out = [
                left.what for left in ownership.filter_directives(context, directives)]

    def generate() -> None:
        with contextlib.redirect_stdout(buffer):
            result = command.revision(
                config, message=args.message, autogenerate=args.autogenerate, sql=args.sql,
                head=head, splice=splice, branch_label=args.branch_label,
                version_path=args.version_path, rev_id=args.rev_id,
                depends_on=args.depends_on, process_revision_directives=remember_heads)
        generated.scripts = result if isinstance(result, list) else [result]

    try:
        database.guarded(generate, project)
    except AutocopyError as error:
        raise _with_next_step(error) from error.__cause__
    finally:
        generated.alembic_output = buffer.getvalue()
    return generated


def _with_next_step(error: AutocopyError) -> AutocopyError:
    text = error.message
    if "Can't locate revision" in text or "not up to date" in text:
        return AutocopyError(text, hint="bring the database's revisions in and apply this "
                                        "worktree's first: alembic-autocopy upgrade")
    if "Multiple heads" in text:
        return AutocopyError(text, hint="name the base with --head REV")
    return error


def _check_drops(scripts: Sequence[Any], split: HeadSplit, local: Sequence[Candidate],
                 database_heads: tuple[str, ...] | None) -> list[tuple[str, ForeignDrop]]:
    applied = set(split.foreign)
    if database_heads is not None:
        from alembic_autocopy.core import revisions

        # On failure keep every foreign revision: a warning too many beats one missed.
        with contextlib.suppress(AutocopyError, KeyError, ValueError):
            applied &= revisions.ancestry([c.header for c in local], database_heads)
    owners: dict[str, SchemaChanges] = {}
    for revision in sorted(applied):
        path = split.foreign[revision].location.path
        if path:
            with contextlib.suppress(OSError):
                owners[revision] = schema_changes(Path(path).read_bytes())
    found: list[tuple[str, ForeignDrop]] = []
    for script in scripts:
        try:
            changes = schema_changes(Path(script.path).read_bytes())
        except OSError:
            continue
        found.extend((script.path, drop) for drop in foreign_drops(changes, owners))
    return found
