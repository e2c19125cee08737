"""The fixtures against the real thing: git, Alembic and the three database servers.

These reproduce FINDINGS.md's starting point with plain Alembic, before any code of the
tool runs: if one of them fails, the environment (not the tool) is broken.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo, rev_id, rev_ids
from support.environment import SRC_DIR

CANT_LOCATE = "Can't locate revision identified by"


def upgrade(worktree: Worktree, target: str = "head") -> subprocess.CompletedProcess[str]:
    return worktree.alembic("upgrade", target, check=True)


def test_hermetic_environment(tmp_path: Path, hermetic_environment: Path) -> None:
    assert Path(os.environ["HOME"]) == hermetic_environment
    assert os.environ["GIT_CONFIG_NOSYSTEM"] == "1"
    assert "ALEMBIC_CONFIG" not in os.environ
    assert not {"GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE"} & set(os.environ)
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(SRC_DIR)
    probe = subprocess.run(
        [sys.executable, "-c", "import alembic_autocopy; print(alembic_autocopy.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert Path(probe.stdout.strip()).parent == SRC_DIR / "alembic_autocopy"


def test_repo_is_committed_and_clean(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    assert main.git("branch", "--show-current").stdout.strip() == "main"
    assert main.status_porcelain() == ""
    tracked = set(main.git("ls-files").stdout.split())
    base_file = f"migrations/versions/{BASE_REV}_base.py"
    assert {"alembic.ini", "migrations/env.py", "migrations/script.py.mako", base_file} <= tracked
    author = main.git("log", "-1", "--format=%an <%ae> %aI").stdout.strip()
    assert author == "Autocopy Tester <tester@example.invalid> 2024-01-02T03:04:05+00:00"
    upgrade(main)
    # Alembic's bytecode must not show up as untracked files.
    assert main.status_porcelain() == ""


def test_written_migrations_match_alembic_revision(sqlite_db: Database, tmp_path: Path) -> None:
    """A file from write_migration and one from `alembic revision` read back the same."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    ours = main.write_migration(rev_id("ours"), down=BASE_REV, annotated=True, message="x y")
    theirs = main.alembic("revision", "-m", "x y", "--rev-id", "c0ffee000000", check=True)
    assert "Generating" in theirs.stdout
    generated = next(main.versions.glob("c0ffee000000_x_y.py")).read_text(encoding="utf-8")
    written = ours.read_text(encoding="utf-8")
    assert ours.name == f"{rev_id('ours')}_x_y.py"
    # Alembic read our file: it based its new revision on it.
    assert f"down_revision: Union[str, Sequence[str], None] = '{rev_id('ours')}'" in generated
    assert main.alembic("heads", check=True).stdout == "c0ffee000000 (head)\n"
    # Same template, same shape: only the ids and the message differ.
    normalized = written.replace(rev_id("ours"), "c0ffee000000").replace(BASE_REV, rev_id("ours"))
    assert _header(normalized) == _header(generated)


def _header(source: str) -> list[str]:
    """The lines of a migration file up to its upgrade() function, without the date."""
    lines = source.split("def upgrade()")[0].splitlines()
    return [line for line in lines if not line.startswith("Create Date:")]


def test_plain_and_annotated_forms(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    first, second = rev_ids("a", 2)
    plain = repo.main.write_migration(first, down=BASE_REV, depends_on=BASE_REV)
    merge = repo.main.write_migration(
        second, down=(first,), branch_labels="feature", annotated=True
    )
    assert f"revision = '{first}'\ndown_revision = '{BASE_REV}'\n" in plain.read_text("utf-8")
    assert f"depends_on = '{BASE_REV}'" in plain.read_text("utf-8")
    annotated = merge.read_text("utf-8")
    assert f"revision: str = '{second}'" in annotated
    assert f"down_revision: Union[str, Sequence[str], None] = '{first}'" in annotated
    assert "branch_labels: Union[str, Sequence[str], None] = ('feature',)" in annotated
    upgrade(repo.main, "heads")
    assert sqlite_db.versions() == {second}
    assert {f"t_{first}", f"t_{second}"} <= sqlite_db.tables()


def test_file_template(sqlite_db: Database, tmp_path: Path) -> None:
    template = "%(year)d_%(month).2d_%(day).2d_%(hour).2d%(minute).2d-%(rev)s_%(slug)s"
    repo = make_repo(tmp_path, sqlite_db, file_template=template)
    path = repo.main.write_migration("abc000000001", down=BASE_REV, message="Add users!")
    assert path.name == "2024_01_02_0304-abc000000001_add_users.py"
    assert (repo.main.versions / f"2024_01_02_0304-{BASE_REV}_base.py").is_file()
    upgrade(repo.main)
    assert sqlite_db.versions() == {"abc000000001"}


def test_worktree_with_unusual_path(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    target = tmp_path / "with space" / "wörk tree"
    target.parent.mkdir()
    other = repo.add_worktree("odd", path=target)
    assert other.path == target
    assert other.git("branch", "--show-current").stdout.strip() == "odd"
    ids = other.chain(3, BASE_REV, "e")
    assert ids == ["e00000000001", "e00000000002", "e00000000003"]
    other.commit("three steps")
    assert other.status_porcelain() == ""
    upgrade(other)
    assert sqlite_db.versions() == {ids[-1]}


def _diverge(repo: Repo) -> tuple[Worktree, Worktree, str]:
    """Worktree A applies a migration that worktree B does not have."""
    a = repo.add_worktree("a")
    b = repo.add_worktree("b", branch="feature-b")
    foreign = rev_id("only in a")
    a.write_migration(foreign, down=BASE_REV, message="only in a")
    upgrade(a)
    return a, b, foreign


def _assert_cant_locate(worktree: Worktree, foreign: str) -> None:
    result = worktree.alembic("upgrade", "head")
    assert result.returncode != 0, result
    assert f"{CANT_LOCATE} '{foreign}'" in result.stdout + result.stderr


def test_findings_reproduced(any_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, any_db)
    _, b, foreign = _diverge(repo)
    _assert_cant_locate(b, foreign)
    assert f"t_{foreign}" in any_db.tables()
    assert any_db.versions() == {foreign}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_async_env(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db: Database = request.getfixturevalue(f"{backend}_db")
    repo = make_repo(tmp_path, db, env="async")
    assert db.async_url is not None
    assert f"sqlalchemy.url = {db.async_url}\n" in (repo.root / "alembic.ini").read_text("utf-8")
    assert "async_engine_from_config" in (repo.root / "migrations/env.py").read_text("utf-8")
    _, b, foreign = _diverge(repo)
    _assert_cant_locate(b, foreign)
    assert db.versions() == {foreign}


def test_custom_version_table(any_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, any_db, env="custom_version_table")
    _, b, foreign = _diverge(repo)
    _assert_cant_locate(b, foreign)
    assert any_db.versions() == set()  # nothing in alembic_version ...
    assert any_db.versions("my_versions", repo.version_table_schema) == {foreign}
    assert repo.applied_versions() == {foreign}
    if any_db.backend == "postgresql":
        assert repo.version_table_schema == "alembic_meta"
        assert "my_versions" in any_db.tables(schema="alembic_meta")


def test_multi_engine(any_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, any_db, env="multi_engine")
    ini = (repo.root / "alembic.ini").read_text("utf-8")
    assert ini.count(f"sqlalchemy.url = {any_db.url}\n") == 2
    a, b, foreign = _diverge(repo)
    log = a.alembic("upgrade", "head", check=True).stderr
    assert "Migrating database engine1" in log and "Migrating database engine2" in log
    _assert_cant_locate(b, foreign)
    assert any_db.versions() == {foreign}


@pytest.mark.postgresql
def test_postgresql_database_is_private(postgresql_db: Database) -> None:
    postgresql_db.execute("CREATE TABLE marker (id integer)")
    assert postgresql_db.tables() == {"marker"}
    assert postgresql_db.versions() == set()
    (name,) = postgresql_db.execute("SELECT current_database()")[0]
    assert name == postgresql_db.name
