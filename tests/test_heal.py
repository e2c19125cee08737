"""The env.py line heals plain `alembic` runs: real worktrees, real databases, real Alembic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo, one_id_two_contents, run
from support.project import EnvKind

LINE = "**alembic_autocopy.integration.options(include_object=models_only)"
# Autogenerate compares only what the models declare (the test models declare nothing):
# `alembic check` then passes when the database is current.
MODELS_ONLY = '''import sqlalchemy
import alembic_autocopy.integration


def models_only(object_, name, type_, reflected, compare_to):
    return not (reflected and compare_to is None)

'''
EVERY_HEAD = "upgrading to every head"
CANT_LOCATE = "Can't locate revision identified by"


def add_line(repo: Repo) -> None:
    """The one env.py line in every context.configure (committed: every worktree has it)."""
    env_py = repo.main.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    marker = "context.configure("
    assert marker in text, "Alembic's env.py template changed shape"
    text = text.replace(marker, f"{marker}\n        {LINE},")
    text = text.replace("target_metadata = None\n", "target_metadata = sqlalchemy.MetaData()\n")
    anchor = "from alembic import context\n"
    assert anchor in text
    text = text.replace(anchor, anchor + MODELS_ONLY, 1)
    env_py.write_text(text, encoding="utf-8")
    repo.main.commit("env.py heals plain alembic runs")


def setup(tmp_path: Path, db: Database, env: EnvKind = "sync",
          line: bool = True) -> tuple[Repo, Worktree, list[str], str]:
    """A applied a chain of 3; B has its own unapplied migration. (repo, b, A's ids, b's id)"""
    repo = make_repo(tmp_path, db, env=env)
    if line:
        add_line(repo)
    repo.main.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    ids = a.chain(3, BASE_REV, "a")
    a.commit("three migrations")
    a.alembic("upgrade", "head", check=True)
    b = repo.add_worktree("b")
    (own,) = b.chain(1, BASE_REV, "b")
    b.commit("b's own migration")
    return repo, b, ids, own


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


def test_plain_upgrade_head_heals_and_goes_to_both_heads(sqlite_db: Database,
                                                          tmp_path: Path) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db)

    result = ok(b.alembic("upgrade", "head"))

    assert sqlite_db.versions() == {ids[-1], own}
    assert "brought in 3 migration(s)" in result.stderr
    assert result.stderr.count(EVERY_HEAD) == 1
    assert {f"t_{rev}" for rev in [*ids, own]} <= sqlite_db.tables()
    assert b.status_porcelain() == ""  # the copies stay invisible to git
    # Nothing left to do: the next run says nothing of ours.
    again = ok(b.alembic("upgrade", "head"))
    assert "alembic-autocopy" not in again.stderr


def test_current_history_check_and_downgrade_heal(sqlite_db: Database,
                                                  tmp_path: Path) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db)
    # Without the heal each of these fails on A's head (FINDINGS); `clean` removes the
    # copies between them (--all: the database needs them), so every command has to heal on its own.
    current = ok(b.alembic("current"))
    assert ids[-1] in current.stdout
    ok(b.autocopy("clean", "--all"))
    history = ok(b.alembic("history", "-r", "current:"))
    assert CANT_LOCATE not in history.stdout + history.stderr
    ok(b.autocopy("clean", "--all"))
    downgrade = ok(b.alembic("downgrade", "-1"))
    assert "brought in 3 migration(s)" in downgrade.stderr
    assert sqlite_db.versions() == {ids[-2]}
    ok(b.alembic("upgrade", "head"))
    assert sqlite_db.versions() == {ids[-1], own}
    ok(b.autocopy("clean", "--all"))
    check = ok(b.alembic("check"))
    assert "No new upgrade operations detected" in check.stdout
    ok(b.autocopy("clean", "--all"))
    revision = ok(b.alembic("revision", "--autogenerate", "-m", "more", "--head", own))
    assert "brought in 3 migration(s)" in revision.stderr
    ok(b.autocopy("clean", "--all"))
    stamp = ok(b.alembic("stamp", ids[-1], own))
    assert "brought in 3 migration(s)" in stamp.stderr


def test_genuine_multiple_heads_fail_as_alembic_says(sqlite_db: Database,
                                                     tmp_path: Path) -> None:
    _repo, b, ids, _own = setup(tmp_path, sqlite_db)
    b.write_migration("b2second", down=BASE_REV)  # a second head of B's own
    b.commit("a second head")

    result = b.alembic("upgrade", "head")

    assert result.returncode != 0
    assert "Multiple head revisions are present" in result.stdout + result.stderr
    assert EVERY_HEAD not in result.stderr
    assert sqlite_db.versions() == {ids[-1]}  # nothing applied


def test_offline_sql_output_is_the_same_with_the_line(sqlite_db: Database,
                                                      tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.chain(2, BASE_REV, "m")
    without = ok(repo.main.alembic("upgrade", "head", "--sql"))
    add_line(repo)
    with_line = ok(repo.main.alembic("upgrade", "head", "--sql"))

    assert with_line.stdout == without.stdout
    assert "alembic-autocopy" not in with_line.stderr
    assert sqlite_db.versions() == set()  # offline: nothing ran, nothing repaired


@pytest.mark.parametrize("env", ["async", "multi_engine"])
def test_async_and_multidb_env_py_heal(sqlite_db: Database, tmp_path: Path,
                                       env: EnvKind) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db, env=env)

    ok(b.alembic("upgrade", "head"))

    assert sqlite_db.versions() == {ids[-1], own}
    ok(b.autocopy("clean"))
    assert ids[-1] in ok(b.alembic("current")).stdout


def test_command_upgrade_inside_a_running_event_loop(sqlite_db: Database,
                                                     tmp_path: Path) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db, env="async")
    script = (
        "import asyncio\n"
        "from alembic import command\n"
        "from alembic.config import Config\n"
        "async def main():\n"
        "    command.upgrade(Config('alembic.ini'), 'head')\n"
        "asyncio.run(main())\n"
    )
    # Alembic's async env.py calls asyncio.run(): inside a running loop it needs a thread,
    # which is the application's to give (as it must without alembic-autocopy too).
    threaded = script.replace(
        "    command.upgrade(Config('alembic.ini'), 'head')\n",
        "    await asyncio.to_thread(command.upgrade, Config('alembic.ini'), 'head')\n")
    result = subprocess.run([sys.executable, "-c", threaded], cwd=b.path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert sqlite_db.versions() == {ids[-1], own}


def test_sync_command_upgrade_inside_a_running_event_loop(sqlite_db: Database,
                                                          tmp_path: Path) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db)
    script = (
        "import asyncio\n"
        "from alembic import command\n"
        "from alembic.config import Config\n"
        "async def main():\n"
        "    command.upgrade(Config('alembic.ini'), 'head')\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=b.path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert sqlite_db.versions() == {ids[-1], own}


FLASK_APP = '''from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = {url!r}
db = SQLAlchemy(app)
migrate = Migrate(app, db)
'''


def test_flask_db_upgrade_heals(sqlite_db: Database, tmp_path: Path) -> None:
    root = tmp_path / "FlaskProj"
    root.mkdir()
    (root / "app.py").write_text(FLASK_APP.format(url=sqlite_db.url), encoding="utf-8")
    (root / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    main = Worktree(path=root)
    flask = [sys.executable, "-m", "flask", "--app", "app", "db"]
    ok(run([*flask, "init"], cwd=root, check=False))
    env_py = root / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    assert text.count("**conf_args") == 1, "Flask-Migrate's env.py changed shape"
    text = text.replace("**conf_args", "**conf_args,\n            "
                        "**alembic_autocopy.integration.options()")
    env_py.write_text("import alembic_autocopy.integration\n" + text, encoding="utf-8")
    main.write_migration(BASE_REV, down=None, message="base")
    main.git("init", "--quiet")
    main.commit("a Flask project")
    ok(run([*flask, "upgrade"], cwd=root, check=False))
    main.git("worktree", "add", "--quiet", "-b", "a", str(tmp_path / "FlaskProj-a"))
    a = Worktree(path=tmp_path / "FlaskProj-a")
    ids = a.chain(3, BASE_REV, "a")
    a.commit("three migrations")
    ok(run([*flask, "upgrade"], cwd=a.path, check=False))
    main.git("worktree", "add", "--quiet", "-b", "b", str(tmp_path / "FlaskProj-b"))
    b = Worktree(path=tmp_path / "FlaskProj-b")
    (own,) = b.chain(1, BASE_REV, "b")
    b.commit("b's own")

    result = ok(run([*flask, "upgrade"], cwd=b.path, check=False))

    assert "brought in 3 migration(s)" in result.stderr
    assert sqlite_db.versions() == {ids[-1], own}
    assert b.status_porcelain() == ""


WAIT_FOR_GO = '''
    import pathlib
    import time
    pathlib.Path({started!r}).touch()
    deadline = time.monotonic() + 60
    while not pathlib.Path({go!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
'''


def test_two_worktrees_upgrading_at_once_apply_each_migration_once(
        any_db: Database, tmp_path: Path) -> None:
    """A's migration holds the lock until the test says go, once B is seen waiting for it:
    B read the heads before A applied anything, and must not apply A's migration again."""
    repo = make_repo(tmp_path, any_db)
    add_line(repo)
    repo.main.alembic("upgrade", "head", check=True)
    go = tmp_path / "go"
    worktrees = {}
    for name in ("a", "b"):
        worktree = repo.add_worktree(name)
        path = worktree.write_migration(f"{name}0000000001", down=BASE_REV)
        text = path.read_text(encoding="utf-8")
        anchor = "def upgrade() -> None:\n"
        started = tmp_path / f"started-{name}"
        text = text.replace(anchor, anchor + WAIT_FOR_GO.format(started=str(started),
                                                                go=str(go)))
        path.write_text(text, encoding="utf-8")
        worktree.commit(f"{name}'s migration")
        worktrees[name] = worktree
    logs = {name: tmp_path / f"{name}.log" for name in worktrees}
    processes = {}
    for name, worktree in worktrees.items():
        with logs[name].open("w") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=worktree.path,
                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # one holds the lock, the other waits for it
            texts = [log.read_text(encoding="utf-8") for log in logs.values()]
            if any("waiting for another upgrade" in text for text in texts):
                break
            time.sleep(0.1)
        go.touch()
        codes = {name: process.wait(timeout=120) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    texts = {name: log.read_text(encoding="utf-8") for name, log in logs.items()}
    assert codes == {"a": 0, "b": 0}, texts
    (loser,) = [text for text in texts.values() if "waiting for another upgrade" in text]
    # It read the heads again under the lock, brought the winner's migration in, and went
    # to both heads.
    assert "brought in 1 migration(s)" in loser and EVERY_HEAD in loser, texts
    assert any_db.versions() == {"a0000000001", "b0000000001"}
    assert {"t_a0000000001", "t_b0000000001"} <= any_db.tables()


def test_run_never_reruns_an_upgrade_bound_to_fail(sqlite_db: Database,
                                                   tmp_path: Path) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db, line=False)

    result = b.autocopy("run", "--json", "--", sys.executable, "-m", "alembic", "upgrade",
                        "head")

    assert result.returncode != 0
    document = json.loads(result.stdout)
    assert [attempt["exit_code"] for attempt in document["attempts"]] == [255]  # not re-run
    assert document["repairs"][0]["brought_in"] == ids
    assert document["run_instead"] == "python3 -m alembic upgrade heads".replace(
        "python3", Path(sys.executable).name)
    assert "upgrade heads`" in result.stderr and "integration.options()" in result.stderr
    assert sqlite_db.versions() == {ids[-1]}
    ok(b.alembic("upgrade", "heads"))  # what it said to run works
    assert sqlite_db.versions() == {ids[-1], own}


def test_run_with_the_line_succeeds_at_once(sqlite_db: Database, tmp_path: Path) -> None:
    _repo, b, ids, own = setup(tmp_path, sqlite_db)

    result = b.autocopy("run", "--json", "--", sys.executable, "-m", "alembic", "upgrade",
                        "head")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [attempt["exit_code"] for attempt in document["attempts"]] == [0]
    assert sqlite_db.versions() == {ids[-1], own}


def test_autocopy_upgrade_keeps_alembics_error_for_heads_of_its_own(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.write_migration("own0000001", down=BASE_REV)
    repo.main.write_migration("own0000002", down=BASE_REV)

    result = repo.main.autocopy("upgrade")

    assert result.returncode == 1
    assert "Multiple head revisions are present" in result.stderr
    assert sqlite_db.versions() == set()


def test_async_env_py_on_postgresql_heals_under_the_lock(postgresql_db: Database,
                                                         tmp_path: Path) -> None:
    """asyncpg: the lock takes a connection of its own; it is released once the migrations
    committed (the next run finds nothing to wait for)."""
    _repo, b, ids, own = setup(tmp_path, postgresql_db, env="async")

    result = ok(b.alembic("upgrade", "head"))

    assert "brought in 3 migration(s)" in result.stderr
    assert postgresql_db.versions() == {ids[-1], own}
    downgrade = ok(b.alembic("downgrade", BASE_REV))
    assert "waiting" not in downgrade.stderr
    assert postgresql_db.versions() == {BASE_REV}


def _statements_and_connections(ini: Path) -> tuple[list[str], int]:
    """Every SQL statement and every new DBAPI connection of one in-process
    `command.upgrade(cfg, "head")`."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from alembic_autocopy.workflow.api import _logging_preserved  # env.py's fileConfig()

    statements: list[str] = []
    connections: list[int] = []

    def on_sql(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    def on_connect(dbapi_connection: object, record: object) -> None:
        connections.append(1)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_sql)
    sa.event.listen(sa.pool.Pool, "connect", on_connect)
    try:
        with _logging_preserved():
            command.upgrade(Config(str(ini)), "head")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", on_sql)
        sa.event.remove(sa.pool.Pool, "connect", on_connect)
    return statements, len(connections)


def test_nothing_to_do_adds_no_query_and_no_connection(sqlite_db: Database,
                                                       tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.chain(2, BASE_REV, "m")
    repo.main.alembic("upgrade", "head", check=True)
    ini = repo.main.path / "alembic.ini"
    without = _statements_and_connections(ini)
    add_line(repo)

    with_line = _statements_and_connections(ini)

    assert with_line == without
    assert without[1] == 1  # env.py's own connection, and no other


def test_what_run_says_to_run_instead() -> None:
    from alembic_autocopy.cli.commands.run import instead

    assert instead(["alembic", "upgrade", "head"]) == "alembic upgrade heads"
    assert instead(["/venv/bin/alembic", "-c", "x.ini", "upgrade", "head"]) == (
        "alembic -c x.ini upgrade heads")
    assert instead(["flask", "db", "upgrade"]) == "flask db upgrade heads"
    assert instead(["./start.sh"]) == "alembic upgrade heads"


HANDED_CONNECTION = '''
    handed = config.attributes.get("connection")
    if handed is not None:  # the application's own connection (Alembic's cookbook)
        context.configure(connection=handed, target_metadata=target_metadata,
                          **alembic_autocopy.integration.options())
        with context.begin_transaction():
            context.run_migrations()
        return
'''


def test_two_commands_in_one_open_transaction_do_not_wait_for_themselves(
        sqlite_db: Database, tmp_path: Path) -> None:
    """An application hands env.py its connection and runs two upgrades before committing:
    the first one's lock is held until that commit; the second one must not wait for it."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from alembic_autocopy.workflow.api import _logging_preserved

    repo = make_repo(tmp_path, sqlite_db)
    ids = repo.main.chain(2, BASE_REV, "m")
    env_py = repo.main.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    anchor = "    \"\"\"Run migrations in 'online' mode.\n"
    assert anchor in text
    end = text.index('    """', text.index(anchor) + len(anchor)) + len('    """\n')
    text = text[:end] + HANDED_CONNECTION + text[end:]
    env_py.write_text("import alembic_autocopy.integration\n" + text, encoding="utf-8")
    ini = repo.main.path / "alembic.ini"
    ini.write_text(ini.read_text(encoding="utf-8") + "\n[alembic-autocopy]\nlock_timeout = 3\n",
                   encoding="utf-8")
    config = Config(str(ini))
    engine = sa.create_engine(sqlite_db.url)
    try:
        with _logging_preserved(), engine.connect() as connection:
            config.attributes["connection"] = connection
            connection.begin()
            command.upgrade(config, ids[0])
            command.upgrade(config, "head")  # would wait lock_timeout for its own lock
            connection.commit()
    finally:
        engine.dispose()
    assert sqlite_db.versions() == {ids[-1]}


def test_two_contents_for_one_id_hint_what_plain_alembic_users_can_run(
        sqlite_db: Database, tmp_path: Path) -> None:
    # alembic has no --prefer: the hint names alembic-autocopy's own upgrade, then the
    # alembic command again (the hint said "choose one with --prefer ...").
    repo = make_repo(tmp_path, sqlite_db)
    add_line(repo)
    a, b = one_id_two_contents(repo)
    before = sorted(path.name for path in b.versions.iterdir())

    result = b.alembic("upgrade", "head")

    assert result.returncode != 0
    assert "exists with different contents" in result.stderr
    assert ("choose one with `alembic-autocopy upgrade --prefer PATH_OR_REF`, "
            "then run this alembic command again") in result.stderr
    assert "with --prefer" not in result.stderr
    assert sorted(path.name for path in b.versions.iterdir()) == before
    assert sqlite_db.versions() == {"e00000000001"}
    # What the hint says works.
    ok(b.autocopy("upgrade", "--prefer", str(a.path)))
    ok(b.alembic("upgrade", "head"))
