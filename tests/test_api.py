"""`alembic_autocopy.ensure_database_current`: called from real scripts in real worktrees."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from support import (
    BASE_REV,
    Database,
    Repo,
    Worktree,
    make_repo,
    one_id_two_contents,
    run,
    use_the_application_engine,
)

REPORT = """
def as_json(report):
    return json.dumps({
        "brought_in": [item.revision for item in report.brought_in],
        "copies_exist": all(os.path.isfile(item.path) for item in report.brought_in),
        "applied": list(report.applied),
        "heads": sorted(report.heads),
        "target": report.target,
        "changed": report.changed,
    })
"""


def _script(worktree: Worktree, body: str) -> dict[str, Any]:
    path = worktree.path.parent / "app_start.py"
    source = "import json, os, sys\n" + REPORT + textwrap.dedent(body)
    path.write_text(source, encoding="utf-8")
    result = run([sys.executable, str(path)], cwd=worktree.path, check=True)
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


def _diverged(repo: Repo) -> tuple[Worktree, list[str], str]:
    """a applied three migrations; b has one of its own (not applied) and lacks a's."""
    a = repo.add_worktree("a")
    ids = a.chain(3, BASE_REV, "a")
    a.commit("three")
    a.alembic("upgrade", "head", check=True)
    b = repo.add_worktree("b")
    own = "b00000000001"
    b.write_migration(own, down=BASE_REV, message="own")
    b.commit("own migration")
    return b, ids, own


def test_from_a_plain_script(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    b, ids, own = _diverged(repo)

    document = _script(b, """
        import logging
        import alembic_autocopy
        cheap = "alembic" not in sys.modules and "sqlalchemy" not in sys.modules
        app_logger = logging.getLogger("myapp")
        report = alembic_autocopy.ensure_database_current("alembic.ini")
        print(json.dumps({**json.loads(as_json(report)), "cheap_import": cheap,
                          "app_logger_enabled": not app_logger.disabled}))
    """)

    assert document["cheap_import"] is True
    assert document["brought_in"] == ids and document["copies_exist"] is True
    assert document["applied"] == [own]
    assert document["heads"] == sorted([ids[-1], own])
    assert document["target"] == "heads"  # two heads here now: its own and a's
    assert document["changed"] is True
    assert document["app_logger_enabled"] is True  # env.py's fileConfig() was undone
    assert sqlite_db.versions() == {ids[-1], own}


def test_inside_a_running_event_loop_with_an_async_env(sqlite_db: Database,
                                                        tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db, env="async")
    assert "async_engine_from_config" in (repo.root / "migrations/env.py").read_text("utf-8")
    b, ids, own = _diverged(repo)

    document = _script(b, """
        import asyncio
        from alembic_autocopy import ensure_database_current

        async def lifespan():
            asyncio.get_running_loop()  # raises unless a loop runs here, as in FastAPI
            return ensure_database_current()

        report = asyncio.run(lifespan())
        print(as_json(report))
    """)

    assert document["brought_in"] == ids
    assert document["applied"] == [own]
    assert sqlite_db.versions() == {ids[-1], own}


def test_an_application_engine_still_works_after_a_repair_in_its_event_loop(
        postgresql_db: Database, tmp_path: Path) -> None:
    """env.py on the application's pooled asyncpg engine, the call made in the application's
    running loop (a FastAPI lifespan): the repair reads and upgrades through env.py on
    loops of its own, and the application's next query, on its own loop, works (it was
    handed a connection of the repair's closed loop: "attached to a different loop")."""
    repo = make_repo(tmp_path, postgresql_db, env="async")
    use_the_application_engine(repo)
    b, ids, own = _diverged(repo)

    document = _script(b, """
        import asyncio
        sys.path.insert(0, os.getcwd())  # the application's own modules
        from sqlalchemy import text
        from alembic_autocopy import ensure_database_current
        from appdb import engine

        async def lifespan():
            report = ensure_database_current()
            async with engine.connect() as connection:  # the application starts serving
                heads = await connection.scalars(text("SELECT version_num FROM alembic_version"))
                heads = sorted(heads)
            try:  # called again once the application has connected: said what to do
                ensure_database_current()
            except Exception as error:
                return report, heads, f"{error.message} / {error.hint}"
            return report, heads, None

        report, heads, later = asyncio.run(lifespan())
        print(json.dumps({**json.loads(as_json(report)), "app_sees": heads, "later": later}))
    """)

    assert document["brought_in"] == ids and document["applied"] == [own]
    assert document["app_sees"] == sorted([ids[-1], own])
    # An engine whose pool holds the application's connections cannot serve env.py on
    # another loop: nothing Python can do about it, but the error says what to do.
    assert "another event loop" in document["later"]
    assert "before the application's first query" in document["later"]


def test_failures_raise_one_typed_error(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.alembic("upgrade", "head", check=True)
    sqlite_db.execute("UPDATE alembic_version SET version_num = 'dead00000000'")

    document = _script(repo.main, """
        from alembic_autocopy import AutocopyError, AutocopyFailed, ensure_database_current

        def attempt(**kwargs):
            try:
                ensure_database_current(**kwargs)
            except AutocopyFailed as error:
                return {"typed": isinstance(error, AutocopyError), "message": str(error),
                        "hint": error.hint, "exit_code": error.exit_code,
                        "cause": type(error.cause).__name__,
                        "unresolved": [u.revision for u in error.plan.unresolved]
                                      if error.plan else None}
            return None

        print(json.dumps({"found_nowhere": attempt(),
                          "no_config": attempt(config="missing.ini"),
                          "dry_run": attempt(dry_run=True)}))
    """)

    nowhere = document["found_nowhere"]
    assert nowhere["typed"] is True and nowhere["cause"] == "PlanBlocked"
    assert nowhere["unresolved"] == ["dead00000000"] and nowhere["exit_code"] == 1
    assert "dead00000000" in nowhere["message"]
    config = document["no_config"]
    assert config["cause"] == "ConfigError" and config["exit_code"] == 2
    assert "missing.ini" in config["message"]
    assert document["dry_run"] is not None  # a blocked plan fails a dry run too
    assert sqlite_db.versions() == {"dead00000000"}  # nothing was changed


def test_an_application_is_not_left_with_git_processes(sqlite_db: Database,
                                                        tmp_path: Path) -> None:
    # The revisions now live only on a's branch (its worktree was removed): the search reads
    # git objects through a long-lived `git cat-file --batch`, which a command-line run keeps
    # to its end but an application, which goes on after start-up, must not inherit.
    repo = make_repo(tmp_path, sqlite_db)
    b, ids, _own = _diverged(repo)
    a = repo.worktrees["a"]
    repo.main.git("worktree", "remove", "--force", str(a.path))
    assert not a.path.exists()

    document = _script(b, """
        import alembic_autocopy
        report = alembic_autocopy.ensure_database_current("alembic.ini")
        from alembic_autocopy.sources import gitobjects
        assert all("branch a" in item.source for item in report.brought_in), report
        pid = os.getpid()
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        print(json.dumps({**json.loads(as_json(report)), "readers": len(gitobjects._READERS),
                          "children": children}))
    """)

    assert document["brought_in"] == ids  # from the branch
    assert document["readers"] == 0 and document["children"] == []


def test_two_contents_for_one_id_hint_the_prefer_parameter(sqlite_db: Database,
                                                           tmp_path: Path) -> None:
    # The API has no --prefer option but a `prefer` parameter: the hint names that.
    repo = make_repo(tmp_path, sqlite_db)
    a, b = one_id_two_contents(repo)

    document = _script(b, f"""
        from alembic_autocopy import AutocopyFailed, ensure_database_current
        try:
            ensure_database_current()
            failed = None
        except AutocopyFailed as error:
            failed = {{"message": str(error), "hint": error.hint,
                       "conflicts": [c.revision for c in error.plan.conflicts]}}
        report = ensure_database_current(prefer=[{str(a.path)!r}])
        print(json.dumps({{"failed": failed, "after": json.loads(as_json(report))}}))
    """)

    failed = document["failed"]
    assert failed["conflicts"] == ["e00000000001"]
    assert "exists with different contents" in failed["message"]
    assert ('choose one with ensure_database_current(prefer=["PATH_OR_REF"])'
            in failed["hint"])
    assert "--prefer" not in failed["hint"]
    assert document["after"]["brought_in"] == ["e00000000001"]  # what the hint says works


def test_a_failing_env_py_hint_points_at_the_cause_not_a_command_line_flag(
        sqlite_db: Database, tmp_path: Path) -> None:
    # The command line says "run again with --traceback"; the API has no such flag, but
    # it has `cause`, whose traceback shows where env.py failed.
    repo = make_repo(tmp_path, sqlite_db)
    env_py = repo.main.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text(encoding="utf-8")
                      + "\nraise RuntimeError('settings not loaded')\n", encoding="utf-8")

    document = _script(repo.main, """
        import traceback
        from alembic_autocopy import AutocopyFailed, ensure_database_current
        try:
            ensure_database_current()
        except AutocopyFailed as error:
            where = "".join(traceback.format_exception(error.cause))
            print(json.dumps({"message": str(error), "hint": error.hint,
                              "cause_shows_env_py": "env.py" in where and "settings" in where}))
    """)

    assert "env.py failed: RuntimeError: settings not loaded" in document["message"]
    assert "--traceback" not in document["hint"]
    assert "error.cause" in document["hint"]
    assert document["cause_shows_env_py"] is True
    cli = repo.main.autocopy("upgrade")  # the command line keeps its own words
    assert cli.returncode == 1 and "run again with --traceback to see where" in cli.stderr
