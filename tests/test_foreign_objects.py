"""Issue 14 item 3: what a migration's upgrade() creates, read statically (never run)."""

from __future__ import annotations

from alembic_autocopy.core.foreign_objects import (
    CHECK,
    COLUMN,
    FOREIGN_KEY,
    INDEX,
    TABLE,
    UNIQUE,
    ForeignObjects,
    ForeignRevision,
    SchemaObject,
    read_effects,
)

EVERY_OP = '''
from alembic import op
import sqlalchemy as sa

revision = "a1"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("code", sa.String(length=20), nullable=False, unique=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code", "user_id", name="uq_orders_code_user"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_orders_owner"),
        sa.CheckConstraint("id > 0", name="ck_orders_positive"),
    )
    op.add_column("users", sa.Column("nickname", sa.String(50), nullable=False))
    op.add_column("users", sa.Column("bio", sa.Text(), nullable=False, server_default=""))
    op.create_index(op.f("ix_users_nickname"), "users", ["nickname"], unique=False)
    op.create_foreign_key("fk_users_order", "users", "orders", ["last_order"], ["id"])
    op.create_unique_constraint("uq_users_nickname", "users", ["nickname"])
    op.create_check_constraint("ck_users_nick", "users", "length(nickname) > 1")
    op.drop_column("users", "legacy")
    op.drop_table("old_stuff")
    op.drop_constraint("fk_x", "users", type_="foreignkey")
    op.drop_index("ix_gone", table_name="users")
    op.alter_column("users", "email", existing_type=sa.String(200), type_=sa.String(100),
                    nullable=False)
    op.rename_table("things", "gadgets")


def downgrade() -> None:
    op.drop_table("orders")
'''


def test_every_op_kind_of_upgrade_is_read() -> None:
    effects = read_effects(EVERY_OP)

    created = set(effects.objects_created())
    assert SchemaObject(TABLE, "orders") in created
    assert {SchemaObject(COLUMN, "orders", c) for c in ("id", "user_id", "code")} <= created
    assert SchemaObject(COLUMN, "users", "nickname") in created
    assert SchemaObject(FOREIGN_KEY, "orders", None, ("user_id",), "users") in created
    assert SchemaObject(UNIQUE, "orders", None, ("code",)) in created  # Column(unique=True)
    assert SchemaObject(UNIQUE, "orders", "uq_orders_code_user", ("code", "user_id")) in created
    assert SchemaObject(FOREIGN_KEY, "orders", "fk_orders_owner", ("user_id",), "users") in created
    assert SchemaObject(CHECK, "orders", "ck_orders_positive") in created
    assert SchemaObject(INDEX, "users", "ix_users_nickname", ("nickname",)) in created
    assert SchemaObject(FOREIGN_KEY, "users", "fk_users_order", ("last_order",),
                        "orders") in created
    assert SchemaObject(UNIQUE, "users", "uq_users_nickname", ("nickname",)) in created
    assert SchemaObject(CHECK, "users", "ck_users_nick") in created
    assert SchemaObject(TABLE, "gadgets") in created  # a rename's new name
    assert {d.describe() for d in effects.dropped} == {
        "column users.legacy", "table old_stuff", "foreign key constraint fk_x on users",
        "index ix_gone on users"}
    (altered,) = effects.altered_columns
    assert (altered.table, altered.column, altered.nullable, altered.type_text) == (
        "users", "email", False, "sa.String(100)")
    # Required columns added to an existing table: not the one with a server default, not
    # the new table's own columns.
    assert [(c.table, c.column) for c in effects.required_columns_added()] == [
        ("users", "nickname")]
    assert effects.unknown == []  # nothing in downgrade() is read


def test_batch_alter_table_blocks() -> None:
    effects = read_effects('''
def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("age", sa.Integer(), nullable=False))
        batch_op.create_index(batch_op.f("ix_users_age"), ["age"], unique=False)
        batch_op.create_foreign_key("fk_users_team", "teams", ["team_id"], ["id"])
        batch_op.create_unique_constraint("uq_users_age", ["age"])
        batch_op.create_check_constraint("ck_users_age", "age > 0")
        batch_op.drop_column("legacy")
        batch_op.alter_column("name", new_column_name="full_name")
''')

    assert {o.describe() for o in effects.objects_created()} == {
        "column users.age", "index ix_users_age on users",
        "foreign key constraint fk_users_team on users",
        "unique constraint uq_users_age on users", "check constraint ck_users_age on users",
        "column users.full_name"}
    assert [d.describe() for d in effects.dropped] == ["column users.legacy"]
    assert [(r.old, r.new) for r in effects.renamed] == [("name", "full_name")]


def test_raw_sql_is_unknown_never_guessed() -> None:
    effects = read_effects('''
def upgrade():
    op.execute("CREATE TABLE sneaky (id INTEGER)")
    op.get_bind().exec_driver_sql("ALTER TABLE users ADD COLUMN x INTEGER")
    name = "computed"
    op.create_table(name, sa.Column("id", sa.Integer()))
''')

    assert effects.objects_created() == []
    assert [(u.line, u.what) for u in effects.unknown] == [
        (3, "op.execute"), (4, "op.get_bind().exec_driver_sql"),
        (6, "op.create_table with a computed name")]


def test_created_then_renamed_or_dropped_in_the_same_upgrade() -> None:
    effects = read_effects('''
def upgrade_engine1():
    op.create_table("draft", sa.Column("id", sa.Integer()))
    op.rename_table("draft", "final")
    op.create_table("scratch", sa.Column("id", sa.Integer()))
    op.drop_table("scratch")
''')

    assert {o.describe() for o in effects.objects_created()} == {
        "table final", "column final.id"}


def test_unreadable_source_reads_nothing() -> None:
    effects = read_effects("def upgrade(:\n")
    assert not effects.readable and effects.objects_created() == []


def test_lookup_by_name_by_columns_and_through_the_table() -> None:
    foreign = ForeignObjects([ForeignRevision("a1", "worktree /p-a (a)", "a",
                                              read_effects(EVERY_OP))])

    assert foreign.owner_of_table("orders") is not None
    assert foreign.owner_of_table("users") is None  # B's table: only some columns are A's
    assert foreign.owner_of_column("users", "nickname") is not None
    assert foreign.owner_of_column("users", "email") is None
    assert foreign.owner_of(INDEX, "users", "ix_users_nickname") is not None
    assert foreign.owner_of(INDEX, "users", "ix_users_email", ("email",)) is None
    # SQLite reflects foreign keys unnamed: known by columns and referred table.
    assert foreign.owner_of(FOREIGN_KEY, "users", None, ("last_order",), "orders") is not None
    assert foreign.owner_of(UNIQUE, "users", None, ("nickname",)) is not None  # foreign column
    owner = foreign.owner_of_column("orders", "code")
    assert owner is not None and owner.revision == "a1"


def test_foreign_means_applied_but_not_in_this_worktree_s_own_lineage() -> None:
    from alembic_autocopy.core.model import Candidate, Location, LocationKind, MigrationHeader
    from alembic_autocopy.workflow.ownership import split_lineage

    def here(rev: str, parents: tuple[str, ...], committed: bool = True) -> Candidate:
        return Candidate(MigrationHeader(rev, parents), "s" + rev, 1, f"{rev}.py",
                         Location(LocationKind.HERE, path=f"/b/{rev}.py", committed=committed))

    def sibling(rev: str, parents: tuple[str, ...]) -> Candidate:
        return Candidate(MigrationHeader(rev, parents), "s" + rev, 1, f"{rev}.py",
                         Location(LocationKind.WORKTREE, path=f"/a/{rev}.py", worktree="/a",
                                  branch="a", committed=True))

    local = [here("base", ()), here("b1", ("base",), committed=False),
             here("a1", ("base",), committed=False)]  # a1: a copy placed here
    elsewhere = [sibling("base", ()), sibling("a1", ("base",)), sibling("a2", ("a1",))]

    lineage = split_lineage(local, elsewhere, ["/b/a1.py"], ["a2", "b1"])

    assert lineage.own == {"base", "b1"}
    assert lineage.foreign == ["a1", "a2"]  # a2: applied, no copy here yet
    assert lineage.readable["a1"].location.kind is LocationKind.HERE  # closest to read
    assert lineage.sources["a1"].location.worktree == "/a"  # named by its owner
    assert lineage.readable["a2"].location.path == "/a/a2.py"
    # After merging A's branch, its revisions are this worktree's own: nothing foreign.
    merged = [here("base", ()), here("b1", ("base",)), here("a1", ("base",)),
              here("a2", ("a1",))]
    assert split_lineage(merged, elsewhere, [], ["a2", "b1"]).foreign == []
