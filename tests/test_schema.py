"""Issue 14 items 3 and 4, issue 12 item 3: autogenerate and the shared schema stay honest.

Real worktrees, real databases, the real `alembic` command line: worktree A applies
revisions that create and drop objects; worktree B's autogenerate must leave A's objects
alone, and `check --schema` must say what of B's models the shared database broke.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from alembic_autocopy.core.foreign_objects import ForeignRevision, read_effects
from alembic_autocopy.workflow.schema_check import (
    ColumnShape,
    TableShape,
    TypeShape,
    compare,
    narrowed,
)
from support import BASE_REV, Database, Repo, Worktree, make_repo
from support.templates import migration_filename

TABLE = "alembic_autocopy_scripts"
USERS_REV = "c0000000000u"

BASE_MODELS = f"""
import sqlalchemy as sa

target_metadata = sa.MetaData()
sa.Table("t_{BASE_REV}", target_metadata, sa.Column("id", sa.Integer(), primary_key=True))
users = sa.Table(
    "users", target_metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("legacy", sa.String(20)),
)
# (end of the users table: changes above and additions below merge cleanly)


# (additions below)
"""


def write_revision(worktree: Worktree, rev: str, down: str | None, upgrade: str,
                   message: str = "change") -> Path:
    """A migration with the given upgrade() body (downgrade() does nothing)."""
    path = worktree.versions / migration_filename(worktree.file_template, rev, message)
    body = textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")
    path.write_text(f'''"""{message}"""
from alembic import op
import sqlalchemy as sa

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
''', encoding="utf-8")
    return path


def add_models(worktree: Worktree, extra: str) -> None:
    path = worktree.path / "models.py"
    path.write_text(path.read_text("utf-8") + textwrap.dedent(extra), encoding="utf-8")


def integrate(repo: Repo, line: bool = True) -> None:
    """env.py reads target_metadata from models.py (and, with ``line``, has the env.py
    line); main gets a `users` table revision and its model. Committed."""
    main = repo.main
    env_py = main.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    text = text.replace("target_metadata = None\n", "from models import target_metadata\n", 1)
    if line:
        marker = "target_metadata=target_metadata"
        assert text.count(marker) == 2, "Alembic's env.py template changed shape"
        text = text.replace(marker, f"{marker}, **alembic_autocopy.integration.options()")
        text = "import alembic_autocopy.integration\n" + text
    env_py.write_text(text, encoding="utf-8")
    (main.path / "models.py").write_text(BASE_MODELS, encoding="utf-8")
    write_revision(main, USERS_REV, BASE_REV, """
        op.create_table("users", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("name", sa.String(50)), sa.Column("legacy", sa.String(20)))
    """, "users")
    main.commit("models and env.py")


def without_line(worktree: Worktree) -> None:
    env_py = worktree.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    text = text.replace(", **alembic_autocopy.integration.options()", "")
    env_py.write_text(text, encoding="utf-8")


A_CREATES = """
    op.create_table("orders", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id")))
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("nickname", sa.String(40), nullable=True))
        batch_op.create_index("ix_users_nickname", ["nickname"], unique=False)
        batch_op.add_column(sa.Column("best_order_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_users_best_order", "orders", ["best_order_id"],
                                    ["id"])
    op.execute("UPDATE users SET nickname = name")
"""


def test_autogenerate_in_b_leaves_a_s_objects_alone(tmp_path: Path, any_db: Database) -> None:
    repo = make_repo(tmp_path, any_db)
    integrate(repo)
    a = repo.add_worktree("a")
    b = repo.add_worktree("b")
    write_revision(a, "a00000000001", USERS_REV, A_CREATES, "a creates")
    a.commit("A's objects")
    a.alembic("upgrade", "head", check=True)  # plain alembic, with the env.py line
    write_revision(b, "b00000000001", USERS_REV,
                   'op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))',
                   "notes")
    add_models(b, """
        sa.Table("notes", target_metadata, sa.Column("id", sa.Integer(), primary_key=True))
        users.append_column(sa.Column("email", sa.String(100)))  # B's own model change
    """)
    b.commit("B's notes")
    b.autocopy("upgrade", check=True)  # brings A's revision in, applies B's

    generated = b.alembic("revision", "--autogenerate", "-m", "mine", "--head",
                          "b00000000001", "--rev-id", "b00000000002", check=True)

    text = next(b.versions.glob("b00000000002_*.py")).read_text("utf-8")
    upgrade_part = text.split("def downgrade")[0]
    assert "op.add_column('email'" in upgrade_part or "sa.Column('email'" in upgrade_part
    for foreign in ("orders", "nickname", "best_order_id", "ix_users_nickname",
                    "fk_users_best_order", TABLE):
        assert foreign not in text, text
    log = generated.stderr

    for line in ("left out of autogenerate: table orders, created by revision a00000000001",
                 "left out of autogenerate: column users.nickname",
                 "left out of autogenerate: column users.best_order_id",
                 "left out of autogenerate: index ix_users_nickname on users",
                 "left out of autogenerate: foreign key constraint fk_users_best_order on users"):
        assert log.count(line) == 1, log
    assert f"({a.path}" in log or "(a)" in log  # where A's revision comes from
    assert "op.execute at line" in log and "objects unknown" in log

    if any_db.backend != "sqlite":
        return  # the rest reads the same on every backend: once is enough
    # `alembic check` with the line: B's migration applied, nothing else to do.
    b.alembic("upgrade", "heads", check=True)
    checked = b.alembic("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Without the line, plain Alembic proposes to drop A's objects (the test can fail),
    # while `alembic-autocopy revision --autogenerate` still leaves them out.
    without_line(b)
    plain = b.alembic("check")
    assert plain.returncode != 0 and "orders" in plain.stdout + plain.stderr
    ours = b.autocopy("revision", "--autogenerate", "-m", "again", "--rev-id",
                      "b00000000003", "--json")
    assert ours.returncode == 0, ours.stderr
    again = next(b.versions.glob("b00000000003_*.py")).read_text("utf-8")
    for foreign in ("orders", "nickname", "best_order_id", TABLE):
        assert foreign not in again, again
    assert "table orders" in json.loads(ours.stdout)["left_out"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_upgrade_without_the_env_py_line_leaves_autogenerate_clean(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db: Database = request.getfixturevalue(f"{backend}_db")
    repo = make_repo(tmp_path, db)
    integrate(repo, line=False)
    a = repo.add_worktree("a")
    write_revision(a, "a00000000001", USERS_REV,
                   'op.create_table("orders", sa.Column("id", sa.Integer(), primary_key=True))')
    a.commit("A's table")
    a.autocopy("upgrade", check=True)
    main = repo.main
    main.autocopy("upgrade", check=True)  # brings A's revision in and applies
    assert TABLE not in db.tables()  # no record table without the opt-in

    main.alembic("revision", "--autogenerate", "-m", "auto", "--rev-id", "c00000000002",
                 check=True)

    text = next(main.versions.glob("c00000000002_*.py")).read_text("utf-8")
    assert "op.drop_table('orders')" in text  # autogenerate did compare (A's table)
    assert TABLE not in text


A_BREAKS = """
    with op.batch_alter_table("users", recreate="always") as batch_op:
        batch_op.drop_column("legacy")
        batch_op.add_column(sa.Column("age", sa.Integer(), nullable=False))
"""

# MariaDB's strict mode refuses the batch copy of rows into a NOT NULL column: plain ALTERs.
A_BREAKS_PLAIN = """
    op.drop_column("users", "legacy")
    op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))
"""


def test_check_schema_names_what_a_foreign_revision_broke(tmp_path: Path,
                                                           any_db: Database) -> None:
    repo = make_repo(tmp_path, any_db)
    integrate(repo)
    a = repo.add_worktree("a")
    b = repo.add_worktree("b")
    write_revision(a, "a00000000001", USERS_REV,
                   A_BREAKS if any_db.backend == "sqlite" else A_BREAKS_PLAIN, "a breaks")
    models = a.path / "models.py"
    models.write_text(models.read_text("utf-8").replace(
        'sa.Column("legacy", sa.String(20))', 'sa.Column("age", sa.Integer(), nullable=False)'),
        "utf-8")
    a.commit("A drops legacy, adds a required age")
    a.alembic("upgrade", "head", check=True)
    write_revision(b, "b00000000001", USERS_REV,
                   'op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))',
                   "notes")
    add_models(b, """
        sa.Table("notes", target_metadata, sa.Column("id", sa.Integer(), primary_key=True))
    """)
    b.commit("B's notes")
    b.autocopy("upgrade", check=True)

    result = b.autocopy("check", "--schema", "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    findings = {(f["kind"], f["table"], f["column"]): f for f in report["schema"]["findings"]}
    assert set(findings) == {("missing_column", "users", "legacy"),
                             ("required_column_unknown", "users", "age")}
    for finding in findings.values():
        (who,) = finding["responsible"]
        assert who["revision"] == "a00000000001" and who["branch"] == "a"
        assert str(a.path) in who["source"]
    assert findings[("missing_column", "users", "legacy")]["responsible"][0][
        "operation"] == "drop_column users.legacy"
    text = b.autocopy("check", "--schema")
    assert text.returncode == 1
    assert ("column users.legacy, used by this worktree's models, is missing from the "
            "database; by revision a00000000001") in text.stderr
    assert ("column users.age is NOT NULL without a server default and this worktree's "
            "models do not know it: inserts into users will fail") in text.stderr
    assert "branch a:" in text.stderr
    assert "merge the branch(es) responsible (a)" in text.stdout

    b.git("merge", "--quiet", "--no-edit", "a")  # B takes A's branch: models match again

    merged = b.autocopy("check", "--schema", "--json")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert json.loads(merged.stdout)["schema"]["findings"] == []


def test_narrowed_types_and_who_narrowed_them() -> None:
    assert narrowed(TypeShape("string", 100), TypeShape("string", 50))
    assert not narrowed(TypeShape("string", 50), TypeShape("string", 100))
    assert narrowed(TypeShape("text"), TypeShape("string", 255))
    assert not narrowed(TypeShape("string", 10), TypeShape("text"))
    assert narrowed(TypeShape("integer", 8), TypeShape("integer", 4))
    assert narrowed(TypeShape("numeric", 12, 4), TypeShape("numeric", 10, 2))
    assert not narrowed(TypeShape("boolean"), TypeShape("integer", 4))
    foreign = [ForeignRevision("x1", "branch x", "x", read_effects('''
def upgrade():
    op.alter_column("users", "email", type_=sa.String(50), existing_nullable=True)
    op.alter_column("users", "name", nullable=False)
    op.rename_table("teams", "squads")
'''))]
    models = [TableShape("users", None, (
        ColumnShape("id", TypeShape("integer", 4), False, False, True),
        ColumnShape("email", TypeShape("string", 100)),
        ColumnShape("name", TypeShape("string", 20)))),
        TableShape("teams", None, (ColumnShape("id", TypeShape("integer", 4)),))]
    database = {(None, "users"): TableShape("users", None, (
        ColumnShape("id", TypeShape("integer", 4), False, True, True),
        ColumnShape("email", TypeShape("string", 50)),
        ColumnShape("name", TypeShape("string", 20), nullable=False)))}

    found = {(f.kind, f.table, f.column): f for f in compare(models, database, foreign)}

    assert set(found) == {("type_narrowed", "users", "email"),
                          ("made_not_null", "users", "name"),
                          ("missing_table", "teams", None)}
    assert [r.what for r in found[("type_narrowed", "users", "email")].responsible] == [
        "alter_column users.email type_=sa.String(50)"]
    assert [r.what for r in found[("missing_table", "teams", None)].responsible] == [
        "rename_table teams -> squads"]
    assert found[("made_not_null", "users", "name")].responsible[0].revision == "x1"


def test_check_schema_through_an_async_env_py(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db, env="async")  # aiosqlite: env.py's own driver
    integrate(repo)
    a = repo.add_worktree("a")
    write_revision(a, "a00000000001", USERS_REV, 'op.rename_table("users", "people")',
                   "rename users")
    a.commit("A renames users")
    a.alembic("upgrade", "head", check=True)
    repo.main.autocopy("upgrade", check=True)

    result = repo.main.autocopy("check", "--schema", "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    (finding,) = json.loads(result.stdout)["schema"]["findings"]
    assert (finding["kind"], finding["table"]) == ("missing_table", "users")
    (who,) = finding["responsible"]
    assert (who["revision"], who["branch"], who["operation"]) == (
        "a00000000001", "a", "rename_table users -> people")
