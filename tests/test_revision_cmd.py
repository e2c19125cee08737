"""`alembic-autocopy revision`: `alembic revision` on this worktree's own head while other
worktrees' revisions are present, and the autogenerate check for foreign tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

from alembic_autocopy.cli.commands.revision import SchemaChanges, foreign_drops, schema_changes
from support import BASE_REV, Database, Worktree, integrate_env_py, make_repo

MULTIPLE_HEADS = "Multiple heads are present"


def down_revision_of(path: Path) -> str | None:
    match = re.search(r"^down_revision[^=]*= (.*)$", path.read_text("utf-8"), re.MULTILINE)
    assert match, path
    value = match.group(1).strip()
    return None if value == "None" else value.strip("'\"")


def repaired_pair(tmp_path: Path, db: Database, own: int) -> tuple[Worktree, Worktree,
                                                                    list[str], list[str]]:
    """Worktree A applied a chain of 2; worktree B (main) has ``own`` revisions of its own,
    then `alembic-autocopy upgrade` copied A's chain into B: B holds a foreign head."""
    repo = make_repo(tmp_path, db)
    b = repo.main
    a = repo.add_worktree("a")
    foreign = a.chain(2, BASE_REV, "a")
    a.commit("a: two migrations")
    a.alembic("upgrade", "head", check=True)
    mine = b.chain(own, BASE_REV, "b") if own else []
    if own:
        b.commit("b: own migrations")
    b.autocopy("upgrade", check=True)
    return a, b, foreign, mine


def test_revision_is_based_on_own_head_with_foreign_head_present(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _, b, foreign, mine = repaired_pair(tmp_path, sqlite_db, own=1)
    plain = b.alembic("revision", "-m", "plain")
    assert plain.returncode != 0
    assert MULTIPLE_HEADS in plain.stdout + plain.stderr

    result = b.autocopy("revision", "-m", "add notes", "--rev-id", "c0ffee000001", "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["head_passed"] == mine[0]
    assert document["own_heads"] == mine
    assert document["foreign_heads"] == [foreign[-1]]
    (created,) = document["revisions"]
    assert created["revision"] == "c0ffee000001"
    assert created["down_revisions"] == [mine[0]]
    path = Path(created["path"])
    assert path.parent == b.versions and path.is_file()
    assert down_revision_of(path) == mine[0]
    heads = b.alembic("heads", check=True).stdout
    assert "c0ffee000001 (head)" in heads and f"{foreign[-1]} (head)" in heads
    # the new file is this branch's own work: git sees it, the copies stay hidden
    assert b.status_porcelain().strip() == f"?? migrations/versions/{path.name}"


def test_own_head_below_a_foreign_chain_is_not_skipped(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """B has no revision of its own above the base: plain Alembic would base the new file on
    A's head, a revision B's branch does not have in git."""
    _, b, foreign, _ = repaired_pair(tmp_path, sqlite_db, own=0)
    plain_heads = b.alembic("heads", check=True).stdout
    assert plain_heads.strip() == f"{foreign[-1]} (head)"  # plain revision would use it

    result = b.autocopy("revision", "-m", "on the base", "--rev-id", "c0ffee000002")

    assert result.returncode == 0, result.stderr
    assert "Created revision c0ffee000002 on " + BASE_REV in result.stdout
    created = next(b.versions.glob("c0ffee000002_*.py"))
    assert down_revision_of(created) == BASE_REV
    assert b.autocopy("upgrade", check=True).returncode == 0
    assert "c0ffee000002" in b.alembic("current", check=True).stdout


def test_explicit_head_is_passed_through(tmp_path: Path, sqlite_db: Database) -> None:
    _, b, foreign, _ = repaired_pair(tmp_path, sqlite_db, own=1)
    result = b.autocopy("revision", "-m", "on theirs", "--head", foreign[-1],
                        "--rev-id", "c0ffee000003")
    assert result.returncode == 0, result.stderr
    assert down_revision_of(next(b.versions.glob("c0ffee000003_*.py"))) == foreign[-1]


def test_several_own_heads_is_a_usage_error(tmp_path: Path, sqlite_db: Database) -> None:
    _, b, _, mine = repaired_pair(tmp_path, sqlite_db, own=1)
    b.write_migration("b0000000000f", down=BASE_REV, message="second own branch")
    before = sorted(p.name for p in b.versions.iterdir())

    result = b.autocopy("revision", "-m", "x")

    assert result.returncode == 2
    assert f"2 heads of its own: {mine[0]}, b0000000000f" in result.stderr
    assert "--head" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in b.versions.iterdir()) == before


MODELS_ENV = """
import sqlalchemy as sa
target_metadata = sa.MetaData()
sa.Table("t_{base}", target_metadata, sa.Column("id", sa.Integer(), primary_key=True))
"""


def test_autogenerate_leaves_out_foreign_tables(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _, b, foreign, _ = repaired_pair(tmp_path, sqlite_db, own=0)
    env_py = b.path / "migrations" / "env.py"
    text = env_py.read_text("utf-8")
    assert "target_metadata = None\n" in text
    env_py.write_text(text.replace("target_metadata = None\n",
                                   MODELS_ENV.format(base=BASE_REV)), "utf-8")

    result = b.autocopy("revision", "--autogenerate", "-m", "models", "--rev-id",
                        "c0ffee000004", "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    # Issue 14: the same filter as the env.py line's, even without the line in env.py.
    assert sorted(document["left_out"]) == sorted(f"table t_{rev}" for rev in foreign)
    assert document["foreign_drops"] == []
    created = Path(document["revisions"][0]["path"])
    assert down_revision_of(created) == BASE_REV
    text = created.read_text("utf-8")
    for rev in foreign:
        assert f"t_{rev}" not in text
        assert (f"left out of autogenerate: table t_{rev}, created by revision {rev}"
                in result.stderr)
    assert f"t_{BASE_REV}" not in " ".join(document["left_out"])


def test_autogenerate_before_the_repair_says_what_to_do(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    a.chain(1, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    before = sorted(p.name for p in repo.main.versions.iterdir())

    result = repo.main.autocopy("revision", "--autogenerate", "-m", "x")

    assert result.returncode == 1
    assert "Can't locate revision" in result.stderr
    assert "alembic-autocopy upgrade" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in repo.main.versions.iterdir()) == before


UPGRADE_SOURCE = '''
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.create_table("orders", sa.Column("id", sa.Integer()), sa.Column("total", sa.Numeric()))
    op.add_column("users", sa.Column("nickname", sa.String()))
    op.add_column(table_name="users", column=sa.Column("age", sa.Integer()))
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.add_column(sa.Column("iban", sa.String()))
        batch_op.drop_column("legacy")

def downgrade():
    op.drop_table("orders")
'''


def test_plain_alembic_revision_through_env_py_starts_from_own_head(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """With env.py's line, a heal leaves the foreign chain as the worktree's only head:
    plain `alembic revision` based the new file on it, a revision this branch lacks in git,
    without a word. When the run goes through env.py (--autogenerate, or
    revision_environment = true) the line's hook bases it on the worktree's own head."""
    repo = make_repo(tmp_path, sqlite_db)
    integrate_env_py(repo, metadata_code=MODELS_ENV.format(base=BASE_REV))
    b = repo.main
    ini = b.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8").replace(
        "[alembic]\n", "[alembic]\nrevision_environment = true\n", 1), "utf-8")
    b.commit("revision_environment")
    a = repo.add_worktree("a")
    foreign = a.chain(2, BASE_REV, "a")
    a.commit("a: two migrations")
    a.alembic("upgrade", "head", check=True)
    b.alembic("upgrade", "head", check=True)  # healed: A's chain copied into B
    assert b.alembic("heads", check=True).stdout.strip() == f"{foreign[-1]} (head)"

    plain = b.alembic("revision", "-m", "plain", "--rev-id", "c0ffee000010", check=True)
    first = next(b.versions.glob("c0ffee000010_*.py"))
    assert down_revision_of(first) == BASE_REV, plain.stdout + plain.stderr
    assert (f"new revision based on {BASE_REV}, this worktree's own head, not on "
            f"{foreign[-1]}") in plain.stdout + plain.stderr
    first.unlink()  # autogenerate wants the database at every head
    b.alembic("revision", "--autogenerate", "-m", "models", "--rev-id", "c0ffee000011",
              check=True)
    created = next(b.versions.glob("c0ffee000011_*.py"))
    assert down_revision_of(created) == BASE_REV
    assert all(f"t_{rev}" not in created.read_text("utf-8") for rev in foreign)
    chosen = b.alembic("revision", "-m", "theirs", "--head", foreign[-1],
                       "--rev-id", "c0ffee000012", check=True)
    # an explicit --head is the user's choice: left alone, no warning
    assert down_revision_of(next(b.versions.glob("c0ffee000012_*.py"))) == foreign[-1]
    assert "based on" not in chosen.stdout + chosen.stderr


def test_a_copy_whose_real_file_was_merged_is_this_branchs_own(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """After `git merge` brought the real files of the copies (before `clean` forgot them),
    they are this branch's revisions: the new one goes on top of them, not below them as a
    spliced branch."""
    _, b, foreign, _ = repaired_pair(tmp_path, sqlite_db, own=0)
    b.git("merge", "--quiet", "a")
    assert b.status_porcelain() == ""

    result = b.autocopy("revision", "-m", "after the merge", "--rev-id", "c0ffee000030",
                        "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["foreign_heads"] == [] and document["own_heads"] == [foreign[-1]]
    assert down_revision_of(next(b.versions.glob("c0ffee000030_*.py"))) == foreign[-1]


def test_schema_changes_read_upgrade_only() -> None:
    changes = schema_changes(UPGRADE_SOURCE)
    assert changes.created_tables == {"orders"}
    assert changes.added_columns == {("orders", "id"), ("orders", "total"),
                                     ("users", "nickname"), ("users", "age"),
                                     ("accounts", "iban")}
    assert changes.dropped_tables == set()  # downgrade() is not read
    assert changes.dropped_columns == {("accounts", "legacy")}
    assert schema_changes(b"def upgrade(:\n") == SchemaChanges()


def test_foreign_drops_names_the_owner() -> None:
    new_file = SchemaChanges(dropped_tables={"orders", "mine"},
                             dropped_columns={("users", "nickname"), ("users", "email")})
    owners = {"a1": schema_changes(UPGRADE_SOURCE)}
    found = {(d.what, d.revision) for d in foreign_drops(new_file, owners)}
    assert found == {("table orders", "a1"), ("column users.nickname", "a1")}
