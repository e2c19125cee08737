"""Heal inside env.py: plain ``alembic`` runs repair before Alembic resolves a revision.

``alembic_autocopy.integration.options()`` (the one env.py line) hands ``context.configure``
a ``fn`` that wraps the command's own (Alembic merges configure's keyword arguments into the
context options, ``fn`` included). Alembic calls it with the heads it just read on env.py's
connection, before the command resolves anything:

- Every applied head is a revision this worktree has, and the command has no migration to
  run (``current``, ``check``, ``history``, an upgrade with nothing to do): the command goes
  on at once. No query, no lock, no second connection, no second run of env.py.
- Something to run, or an applied head this worktree lacks: the database lock is taken
  (``locking.database_lock``, the one ``alembic-autocopy upgrade`` takes), the heads are read
  again under it, the missing revisions are brought in (``repair.bring_in``: the same
  planner, placement and worktree lock), Alembic's map of revisions is rebuilt, and the
  command goes on. The lock is held until env.py's transaction ends, so a second upgrade
  started meanwhile reads what this one applied.
- When another upgrade changed the database while this one waited for the lock, the heads
  Alembic read are stale: the migrations are run again from the start
  (``MigrationContext.run_migrations``), on the heads read under the lock.
- ``upgrade head`` that fails only because a revision brought in from elsewhere made a second
  head goes to every head, and says so in one line. Several heads of the worktree's own still
  fail exactly as Alembic says.

Offline (``--sql``) runs are never wrapped. What cannot be done becomes Alembic's own
``CommandError`` (``FAILED: alembic-autocopy: ...``), with the next step.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from alembic_autocopy.effects.project import ProjectConfig

# Imported inside functions, as each saves >= 5 ms where skipped: env.py loads this at every plain
# alembic run: the repair only when healing.

PREFIX = "alembic-autocopy: "

MigrationFn = Callable[[Any, "MigrationContext"], Iterable[Any]]
_MARK = "__alembic_autocopy_heal__"


class _State:
    """One wrapped ``fn``: is our lock held (a nested run of the migrations)?"""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False


def say(text: str) -> None:
    """One line on stderr: the command's standard output stays its own."""
    print(PREFIX + text, file=sys.stderr, flush=True)


def wrap(original: MigrationFn) -> MigrationFn:
    """``original`` (the command's ``fn``), healing first; for ``alembic revision``, the new
    revision then based on this worktree's own head (``revision_base``). Wrapping twice (a
    multi-database env.py configures once per engine) wraps the command's own ``fn`` once."""
    original = getattr(original, "__wrapped__", original) if getattr(
        original, _MARK, False) else original
    state = _State()

    def healing(heads: Any, context: MigrationContext) -> Iterable[Any]:
        steps = _run(original, state, tuple(heads or ()), context)
        revision = context.opts.get("revision_context")  # `alembic revision` runs env.py
        if revision is not None:  # its scripts are written after env.py: base them now
            from alembic_autocopy.workflow import revision_base

            revision_base.base_on_own_head(context, heads, revision.generated_revisions)
        return steps

    healing.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(healing, _MARK, True)
    return healing


def _run(original: MigrationFn, state: _State, heads: tuple[str, ...],
         context: MigrationContext) -> Iterable[Any]:
    if context.as_sql or context.connection is None:
        return original(heads, context)
    if state.held:  # run again under our lock: heal on these (fresh) heads
        return _bring_in_and_go(original, heads, context)
    script = context.script
    assert script is not None
    if all(_known(script, head) for head in heads):
        try:
            steps = list(original(heads, context))
        except Exception as error:
            steps = _every_head_instead(original, heads, context, error)
        if not steps or context.opts.get("dont_mutate"):
            return steps
        return _locked(original, state, heads, context, steps)
    return _locked(original, state, heads, context, None)


def _known(script: ScriptDirectory, revision: str) -> bool:
    """Is ``revision`` (an id from the version table) one of Alembic's loaded revisions?
    Exactly: Alembic would also accept a unique prefix of another id."""
    try:
        found = script.revision_map.get_revision(revision)
    except Exception:  # unknown id, or a map that cannot load (a half-present chain)
        return False
    return found is not None and found.revision == revision


def _is_upgrade_to_head(original: MigrationFn, context: MigrationContext) -> bool:
    """``alembic upgrade head`` (also ``flask db upgrade``, ``command.upgrade(cfg, "head")``):
    the command's ``fn`` is ``alembic.command.upgrade``'s own."""
    return (getattr(original, "__module__", None) == "alembic.command"
            and getattr(original, "__name__", None) == "upgrade"
            and context.opts.get("destination_rev") == "head")


def _every_head_instead(original: MigrationFn, heads: tuple[str, ...],
                        context: MigrationContext, error: Exception) -> list[Any]:
    """``upgrade head`` refused for several heads: go to every head when the second one
    was brought in (by an earlier run); re-raise Alembic's error otherwise."""
    script = context.script
    if script is None or not _is_upgrade_to_head(original, context):
        raise error
    from alembic_autocopy import repair
    from alembic_autocopy.effects import placement
    from alembic_autocopy.sources import scanning

    project = _project(context)
    if project is None:
        raise error
    try:
        local_heads = tuple(script.get_heads())
        root = scanning.this_worktree(project)
        manifest = placement.open_manifest(project, root)
        copies = {entry.revision for entry in placement.still_copies(manifest, root)[0]}
    except Exception:
        raise error from None
    if len(local_heads) < 2 or repair.effective_target("head", local_heads, copies) != "heads":
        raise error
    steps = list(_upgrade_steps(script, "heads", heads))
    if steps:
        _say_every_head()
    return steps


def _upgrade_steps(script: ScriptDirectory, target: str,
                   heads: tuple[str, ...]) -> list[Any]:
    """What ``alembic upgrade <target>`` runs from ``heads``: ``command.upgrade``'s own call
    (it passes the heads tuple too, whatever the annotation says)."""
    current: Any = heads
    return list(script._upgrade_revs(target, current))


def _say_every_head() -> None:
    say("upgrading to every head: a revision brought in from another worktree made a second "
        "head here, so `head` means `heads`")


def _locked(original: MigrationFn, state: _State, heads: tuple[str, ...],
            context: MigrationContext, steps: list[Any] | None) -> Iterator[Any]:
    """Under the database lock: read the heads again, heal, then the command's steps. The
    lock is released when env.py's transaction ends (after the last migration commits)."""
    from alembic_autocopy.effects import database, locking

    connection = context.connection
    assert connection is not None
    project = _project(context)
    timeout = project.tool.lock_timeout if project is not None else 60.0
    waiting = locking.Waiting(timeout, say)
    endpoint = database.Endpoint(connection.engine.url, context.version_table,
                                 context.version_table_schema, connection.engine)
    stack = contextlib.ExitStack()
    state.held = True
    key = _lock_key(endpoint)
    try:
        if key not in _HELD:  # else an earlier run of this process, not committed yet
            try:
                held = stack.enter_context(locking.database_lock([endpoint], waiting))
            except Exception as error:
                raise _command_error(error) from error
            _HELD.add(key)
            stack.callback(_HELD.discard, key)
            for note in held.notes:
                say(note)
        fresh = _fresh_heads(context)
        if set(fresh) != set(heads):
            # Another upgrade moved the database while we waited: Alembic's own bookkeeping
            # holds the old heads. Run the migrations again, from the heads read now.
            _ensure_rerunnable(context)
            context.run_migrations()
            return
        if steps is None:
            steps = list(_bring_in_and_go(original, heads, context))
        yield from steps
    finally:
        state.held = False
        _release_after_transaction(stack, connection)


# The databases whose lock this process holds through a heal whose transaction has not
# ended yet: an application that runs two commands in one open transaction (a connection
# handed to env.py) must not wait for itself.
_HELD: set[str] = set()


def _lock_key(endpoint: Any) -> str:
    url = endpoint.url
    return "\0".join(str(part) for part in (
        url.get_backend_name(), url.host, url.port, url.database,
        endpoint.version_table_schema, endpoint.version_table))


def _ensure_rerunnable(context: MigrationContext) -> None:
    """The migrations are run again without the keyword arguments env.py gave
    ``run_migrations`` (this ``fn`` never sees them). A multi-database env.py passes
    ``engine_name=...`` (its upgrade token names the engine): stop cleanly instead."""
    from alembic.util import CommandError

    if context.opts.get("upgrade_token", "upgrades") != "upgrades":
        raise CommandError(
            f"{PREFIX}another upgrade changed the database while this one waited for its "
            "lock; nothing was run here: run the same command again")


def _fresh_heads(context: MigrationContext) -> tuple[str, ...]:
    """The heads now, seen through env.py's connection. Without transactional DDL (SQLite,
    MariaDB/MySQL) Alembic commits this connection at the end of every migration anyway;
    committing its reads now ends a REPEATABLE READ snapshot taken before the wait."""
    connection = context.connection
    assert connection is not None
    if (not context.impl.transactional_ddl and connection.in_transaction()
            and not getattr(context, "_in_external_transaction", False)):
        connection.commit()
    return tuple(context.get_current_heads())


def _release_after_transaction(stack: contextlib.ExitStack, connection: Any) -> None:
    """Release the lock now if env.py's connection has nothing uncommitted; else right after
    its transaction commits (or rolls back). SQLAlchemy's events fire just before the
    driver's commit: the handler commits first (the driver's second commit is a no-op)."""
    if not connection.in_transaction():
        stack.close()
        return
    from sqlalchemy import event

    def on_end(conn: Any, finish: str) -> None:
        try:
            method = getattr(conn.engine.dialect, finish)
            method(conn.connection)
        except Exception:  # SQLAlchemy's own call reports it
            pass
        finally:
            stack.close()

    event.listen(connection, "commit", lambda conn: on_end(conn, "do_commit"), once=True)
    event.listen(connection, "rollback", lambda conn: on_end(conn, "do_rollback"), once=True)


def _bring_in_and_go(original: MigrationFn, heads: tuple[str, ...],
                     context: MigrationContext) -> Iterable[Any]:
    """Place what ``heads`` need (the caller holds the database lock), rebuild Alembic's map
    of revisions, then the command's own ``fn`` (``heads`` for a brought-in second head)."""
    from alembic_autocopy.core.errors import AutocopyError
    from alembic_autocopy.core.model import Options
    from alembic_autocopy.workflow import events

    project = _project(context)
    script = context.script
    if project is None or script is None:
        return original(heads, context)
    options = Options(prefer_wording=_prefer_wording(context))
    try:
        report = events.bring_in(project, heads, options, notify=say)
    except AutocopyError as error:
        for warning in error.warnings:
            say(f"warning: {warning}")
        raise _command_error(error) from error
    for warning in report.warnings:
        say(f"warning: {warning}")
    if report.placed:
        _reload_revisions(script)
        bring = report.situation.plan.bring
        say(f"brought in {len(bring)} migration(s) the database applied, parents first: "
            + ", ".join(candidate.revision for candidate in bring))
    if report.upgraded_to_every_head and _is_upgrade_to_head(original, context):
        _say_every_head()
        return _upgrade_steps(script, "heads", heads)
    return original(heads, context)


def _prefer_wording(context: MigrationContext) -> str:
    """How a user of plain ``alembic`` chooses one version of an id (``Options.prefer_wording``):
    alembic has no ``--prefer``, so through ``alembic-autocopy upgrade`` with the same
    configuration, then the alembic command again."""
    import shlex

    from alembic_autocopy.effects.project import alembic_config_files

    config = context.config
    words = ["alembic-autocopy"]
    if config is not None:
        for name in alembic_config_files(config, Path.cwd()):
            if name not in ("alembic.ini", "pyproject.toml"):  # the defaults of both tools
                words += ["-c", name]
        if config.config_ini_section != "alembic":
            words += ["-n", config.config_ini_section]
        for x_arg in getattr(config.cmd_opts, "x", None) or []:
            words += ["-x", x_arg]
    command = shlex.join([*words, "upgrade", "--prefer"])
    return f"`{command} {{}}`, then run this alembic command again"


def _reload_revisions(script: ScriptDirectory) -> None:
    """A fresh map of revisions, read from the version folders again (Alembic builds one
    per ScriptDirectory, memoized, the first time it is used)."""
    from alembic.script.revision import RevisionMap

    script.revision_map = RevisionMap(script._load_revisions)


def _project(context: MigrationContext) -> ProjectConfig | None:
    """The project Alembic runs with: its config files, section and ``-x`` arguments.
    None when the Config has no file that exists (built in code): nothing to find the
    worktree from."""
    from alembic_autocopy.effects.project import alembic_config_files, load_project

    config = context.config
    if config is None:
        return None
    cwd = Path.cwd()
    files = alembic_config_files(config, cwd)
    if not files:
        return None
    x_args = list(getattr(config.cmd_opts, "x", None) or [])
    try:
        return load_project(files, config.config_ini_section, x_args, cwd=cwd)
    except Exception as error:
        raise _command_error(error) from error


def _command_error(error: BaseException) -> Exception:
    """Alembic's own error type: its command line prints ``FAILED: ...`` and exits."""
    from alembic.util import CommandError

    from alembic_autocopy.core.errors import AutocopyError

    if isinstance(error, AutocopyError):
        hint = f" ({error.hint})" if error.hint else ""
        return CommandError(f"{PREFIX}{error.message}{hint}")
    return CommandError(f"{PREFIX}{type(error).__name__}: {error}")
