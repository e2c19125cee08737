"""One line in env.py so that plain ``alembic`` runs are recorded too.

``alembic-autocopy upgrade`` records every migration it applies. Migrations applied by plain
``alembic upgrade`` (or by ``flask db upgrade``, a start script...) are recorded when env.py
passes this module's callback to ``context.configure``::

    import alembic_autocopy.integration

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        **alembic_autocopy.integration.options(),
    )

``options()`` adds the recording callback (``on_version_apply``) and keeps the record table
out of autogenerate (``include_name`` and ``include_object``), as well as the tables, columns,
indexes and constraints that other worktrees' applied revisions created (``include_object``,
see ownership.py); give it your own hooks, if
env.py already passes some, and it chains them::

    **alembic_autocopy.integration.options(include_object=my_include_object)

The pieces work alone as well: ``on_version_apply=[alembic_autocopy.integration.record_applied]``
and ``include_object=alembic_autocopy.integration.include_object``.

The table's name comes from ``record_table`` in the project's ``[tool.alembic-autocopy]`` (or
``[alembic-autocopy]`` in alembic.ini), default ``alembic_autocopy_scripts``. Importing this
module imports neither Alembic nor SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic_autocopy.sources.records import Recorder

# Imported inside functions, as each saves >= 5 ms where skipped: env.py imports this at every
# plain alembic run: the rest only on use.

__all__ = ["include_name", "include_object", "options", "record_applied"]


class RecordApplied:
    """``records.Recorder``, imported on the first migration applied: env.py imports this
    module at every run, also when nothing is to be done (docs/benchmarks-integration.md)."""

    def __init__(self) -> None:
        self._recorder: Recorder | None = None

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            from alembic_autocopy.sources.records import Recorder

            self._recorder = Recorder()
        return self._recorder

    def __call__(self, **kwargs: Any) -> None:
        self.recorder(**kwargs)


#: The ``on_version_apply`` callback: records each applied revision (removes it on downgrade).
record_applied = RecordApplied()

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]
IncludeName = Callable[[str | None, str, dict[str, str | None]], bool]


def record_table_names() -> set[str]:
    """The record table's names to keep out of autogenerate: the default and the configured
    one (read from the configuration Alembic is running with, when there is one)."""
    from alembic_autocopy.sources.records import DEFAULT_TABLE, table_name_for

    names = {DEFAULT_TABLE}
    try:
        from alembic import context

        names.add(table_name_for(context.config))
    except Exception:  # outside an Alembic run: no proxy; the default name is enough
        pass
    return names


def include_object(object_: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Alembic's ``include_object`` hook: False for the record table, and for the objects
    that revisions foreign to this worktree's lineage created in the shared database
    (ownership.py: one log line per object left out); True otherwise."""
    if type_ == "table" and name in record_table_names():
        return False
    from alembic_autocopy.workflow import ownership

    return ownership.include_object(object_, name, type_, reflected, compare_to)


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic's ``include_name`` hook: the record table is not even reflected."""
    return not (type_ == "table" and name in record_table_names())


# options() takes hooks named like these functions; keep a name for ours that it cannot shadow.
_OWN_INCLUDE_OBJECT = include_object
_OWN_INCLUDE_NAME = include_name


def options(*, include_object: IncludeObject | None = None,
            include_name: IncludeName | None = None,
            on_version_apply: Sequence[Callable[..., None]] = (),
            heal: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``context.configure``: recording plus autogenerate exclusion,
    chained with the project's own hooks when given; and (``heal``, online runs only) the
    command's ``fn`` wrapped so that the run first brings in what the database applied
    (see ``alembic_autocopy.workflow.heal``)."""
    result: dict[str, Any] = {
        "on_version_apply": [*on_version_apply, record_applied],
        "include_object": _chain_object(include_object),
        "include_name": _chain_name(include_name),
    }
    if heal:
        healing = healing_fn()
        if healing is not None:
            result["fn"] = healing
    return result


def healing_fn() -> Callable[..., Any] | None:
    """The running command's ``fn`` (``EnvironmentContext``'s ``fn`` option), wrapped to heal
    first; None outside an Alembic run, offline (``--sql``), in alembic-autocopy's own runs
    of env.py, and for commands without one. Alone: ``context.configure(...,
    fn=alembic_autocopy.integration.healing_fn())`` would drop ``fn`` when it is None, so
    prefer ``**options()``."""
    import sys

    from alembic_autocopy.core.model import INTERNAL_OPTION
    from alembic_autocopy.workflow.heal import wrap

    module = sys.modules.get("alembic.context")
    environment = getattr(module, "_proxy", None)  # the EnvironmentContext env.py runs in
    opts = getattr(environment, "context_opts", None)
    if not isinstance(opts, dict) or opts.get(INTERNAL_OPTION) or opts.get("as_sql"):
        return None
    original = opts.get("fn")
    return wrap(original) if callable(original) else None


def _chain_object(theirs: IncludeObject | None) -> IncludeObject:
    if theirs is None:
        return _OWN_INCLUDE_OBJECT

    def chained(object_: Any, name: str | None, type_: str, reflected: bool,
                compare_to: Any) -> bool:
        return (_OWN_INCLUDE_OBJECT(object_, name, type_, reflected, compare_to)
                and theirs(object_, name, type_, reflected, compare_to))

    return chained


def _chain_name(theirs: IncludeName | None) -> IncludeName:
    if theirs is None:
        return _OWN_INCLUDE_NAME

    def chained(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
        return (_OWN_INCLUDE_NAME(name, type_, parent_names)
                and theirs(name, type_, parent_names))

    return chained
