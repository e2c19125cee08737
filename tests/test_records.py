"""Issue 4: the database remembers its migrations (record table, recovery, drift), on real
worktrees, real databases and the real `alembic` command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alembic_autocopy.core import drift
from alembic_autocopy.core.model import Candidate, Location, LocationKind, MigrationHeader
from alembic_autocopy.workflow import integration
from support import BASE_REV, Database, Repo, Worktree, integrate_env_py, make_repo, rev_id
from support.databases import Backend

TABLE = "alembic_autocopy_scripts"


# --- helpers -----------------------------------------------------------------------------------

def record_rows(db: Database, schema: str | None = None) -> dict[str, dict[str, Any]]:
    """Every row of the record table by revision (empty when the table does not exist)."""
    if TABLE not in db.tables(schema=schema):
        return {}
    with db.engine.connect() as connection:
        table = sa.Table(TABLE, sa.MetaData(), autoload_with=connection, schema=schema)
        rows = connection.execute(sa.select(table)).mappings().all()
    return {row["revision"]: {**row, "content": bytes(row["content"])} for row in rows}


def set_content(db: Database, revision: str, content: bytes) -> None:
    with db.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {TABLE} SET content = :content "
                                   "WHERE revision = :revision"),
                           {"content": content, "revision": revision})


def file_of(worktree: Worktree, revision: str) -> Path:
    (path,) = worktree.versions.glob(f"{revision}_*.py")
    return path


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"not JSON:\n{result.stdout}\n{result.stderr}") from None
    return document


def fail_on_upgrade(path: Path) -> None:
    """Make a migration raise after its CREATE TABLE."""
    text = path.read_text(encoding="utf-8")
    anchor = "\n\ndef downgrade()"
    assert text.count(anchor) == 1
    text = text.replace(anchor, "\n    raise RuntimeError('boom in the middle')\n" + anchor)
    path.write_text(text, encoding="utf-8")


def applied_then_gone(tmp_path: Path, db: Database) -> tuple[Repo, list[str]]:
    """Worktree A applies 3 uncommitted migrations with alembic-autocopy, then A's worktree
    and branch are deleted: only the database still knows them."""
    repo = make_repo(tmp_path, db)
    integrate_env_py(repo)  # the record table is opt-in: env.py's line
    a = repo.add_worktree("a")
    ids = a.chain(3, BASE_REV, "a")
    a.autocopy("upgrade", check=True)
    repo.main.git("worktree", "remove", "--force", str(a.path))
    repo.main.git("branch", "-D", "a")
    assert repo.applied_versions() == {ids[-1]}
    return repo, ids


# --- acceptance ----------------------------------------------------------------------------

def test_recovery_from_the_record_table_needs_trust(tmp_path: Path, sqlite_db: Database) -> None:
    repo, ids = applied_then_gone(tmp_path, sqlite_db)
    rows = record_rows(sqlite_db)
    assert set(rows) == {BASE_REV, *ids}
    assert rows[ids[1]]["parents"] == ids[0]
    assert rows[ids[0]]["branch"] == "a" and rows[ids[0]]["worktree"].endswith("Proj-a")
    assert b"revision = 'a00000000002'" in rows[ids[1]]["content"]
    b = repo.main
    untouched = sorted(p.name for p in b.versions.iterdir())

    for command in ("check", "upgrade"):
        refused = b.autocopy(command)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"the database holds {', '.join(ids)} in its record table {TABLE}" in (
            refused.stderr)
        assert "--from-database" in refused.stderr and "trust_database = true" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in b.versions.iterdir()) == untouched  # nothing changed
    assert repo.applied_versions() == {ids[-1]}

    repaired = b.autocopy("upgrade", "--from-database", "--json")

    assert repaired.returncode == 0, repaired.stderr
    report = json_of(repaired)
    assert [c["revision"] for c in report["plan"]["bring"]] == ids
    description = report["plan"]["bring"][0]["location"]["description"]
    assert description.startswith("database (recorded by ") and " at " in description
    for revision in ids:
        assert file_of(b, revision).read_bytes() == rows[revision]["content"]
    assert b.status_porcelain() == ""  # the copies are hidden from git
    current = b.alembic("current", check=True)
    assert ids[-1] in current.stdout
    # The branch that applied them is gone: reported as a candidate for cleanup.
    gone = json_of(b.autocopy("check", "--json"))["drift"]["branch_gone"]
    assert {g["revision"] for g in gone} == set(ids)  # the base is committed on main
    assert {g["branch"] for g in gone} == {"a"}


def test_trust_from_the_configuration(tmp_path: Path, sqlite_db: Database) -> None:
    repo, _ = applied_then_gone(tmp_path, sqlite_db)
    ini = repo.main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + "\n[alembic-autocopy]\ntrust_database = true\n",
                   encoding="utf-8")

    result = repo.main.autocopy("check")

    assert result.returncode == 1  # check changes nothing: it shows the plan
    assert "would bring in 3 migration(s)" in result.stdout
    assert result.stdout.count("from database (recorded by ") == 3


def test_a_record_that_does_not_match_its_sha256_is_refused(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, ids = applied_then_gone(tmp_path, sqlite_db)
    original = record_rows(sqlite_db)[ids[1]]["content"]
    set_content(sqlite_db, ids[1], original + b"# changed in the table\n")
    b = repo.main
    untouched = sorted(p.name for p in b.versions.iterdir())

    result = b.autocopy("upgrade", "--from-database")

    assert result.returncode == 1
    assert (f"the database record of {ids[1]} in table {TABLE} was refused: its content "
            "does not match its sha256") in result.stderr
    check = repo.main.autocopy("check", "--from-database")  # check names it as well
    assert check.returncode == 1
    assert (f"skipped database record of {ids[1]} in table {TABLE}: its content does not "
            "match its sha256") in check.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in b.versions.iterdir()) == untouched
    assert repo.applied_versions() == {ids[-1]}


@pytest.mark.postgresql
def test_a_migration_that_fails_midway_leaves_no_record(
    tmp_path: Path, postgresql_db: Database
) -> None:
    repo = make_repo(tmp_path, postgresql_db)
    integrate_env_py(repo)
    good, bad = repo.main.chain(2, BASE_REV, "f")
    fail_on_upgrade(file_of(repo.main, bad))

    result = repo.main.autocopy("upgrade")

    assert result.returncode == 1
    assert "boom in the middle" in result.stderr and "Traceback" not in result.stderr
    # One transaction for the migrations, the version table and the records: all rolled back.
    assert repo.applied_versions() == set()
    assert f"t_{good}" not in postgresql_db.tables()
    assert record_rows(postgresql_db) == {}
    # The same project without the failing step records both, proving the test can fail.
    file_of(repo.main, bad).unlink()
    repo.main.autocopy("upgrade", check=True)
    assert set(record_rows(postgresql_db)) == {BASE_REV, good}


@pytest.mark.postgresql
def test_table_beside_the_version_table_with_its_configured_name(
    tmp_path: Path, postgresql_db: Database
) -> None:
    repo = make_repo(tmp_path, postgresql_db, env="custom_version_table")
    assert repo.version_table_schema == "alembic_meta"
    integrate_env_py(repo)
    ini = repo.main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + "\n[alembic-autocopy]\nrecord_table = my_records\n",
                   encoding="utf-8")

    repo.main.autocopy("upgrade", check=True)

    assert "my_records" in postgresql_db.tables(schema="alembic_meta")
    assert TABLE not in postgresql_db.tables() | postgresql_db.tables(schema="alembic_meta")
    rows = postgresql_db.execute("SELECT revision FROM alembic_meta.my_records")
    assert rows == [(BASE_REV,)]
    report = json_of(repo.main.autocopy("check", "--json"))
    assert report["record_table"]["name"] == "alembic_meta.my_records"
    assert report["record_table"]["records"] == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgresql)])
def test_env_py_integration_records_plain_alembic(
    tmp_path: Path, request: pytest.FixtureRequest, backend: Backend
) -> None:
    db: Database = request.getfixturevalue(f"{backend}_db")
    # async env.py on PostgreSQL: the records are written and read through it
    repo = make_repo(tmp_path, db, env="async" if backend == "postgresql" else "sync")
    integrate_env_py(repo)
    ids = repo.main.chain(2, BASE_REV, "e")

    repo.main.alembic("upgrade", "head", check=True)

    rows = record_rows(db)
    assert set(rows) == {BASE_REV, *ids}
    for revision in ids:
        assert rows[revision]["content"] == file_of(repo.main, revision).read_bytes()
        assert rows[revision]["branch"] == "main"
        assert "@" in rows[revision]["applied_by"]
    # A downgrade forgets the revision: the table describes what is applied.
    repo.main.alembic("downgrade", "-1", check=True)
    assert set(record_rows(db)) == {BASE_REV, ids[0]}
    # Read back through the same (async) env.py: no drift, nothing unrecorded.
    report = json_of(repo.main.autocopy("check", "--json"))
    assert report["record_table"]["records"] == 2
    assert report["record_table"]["unrecorded"] == []
    assert report["record_table"]["env_py_integration"] is True


@pytest.mark.parametrize("where", ["alembic.ini", "pyproject.toml", "both"])
def test_plain_alembic_records_in_the_configured_table(
    tmp_path: Path, sqlite_db: Database, where: str
) -> None:
    # Alembic's command line names pyproject.toml in its Config even when the file is absent:
    # the settings of alembic.ini alone must still be read on the env.py side.
    repo = make_repo(tmp_path, sqlite_db)
    integrate_env_py(repo)
    main = repo.main
    if where in ("alembic.ini", "both"):
        ini = main.path / "alembic.ini"
        name = "my_records" if where == "alembic.ini" else "ini_records"
        ini.write_text(ini.read_text("utf-8") + f"\n[alembic-autocopy]\nrecord_table = {name}\n",
                       encoding="utf-8")
    if where in ("pyproject.toml", "both"):  # pyproject.toml wins a key set in both
        (main.path / "pyproject.toml").write_text(
            '[tool.alembic-autocopy]\nrecord_table = "my_records"\n', encoding="utf-8")
    assert (main.path / "pyproject.toml").exists() == (where != "alembic.ini")
    ids = main.chain(2, BASE_REV, "n")

    main.alembic("upgrade", "head", check=True)

    assert TABLE not in sqlite_db.tables() and "ini_records" not in sqlite_db.tables()
    rows = sqlite_db.execute("SELECT revision FROM my_records ORDER BY revision")
    assert {revision for (revision,) in rows} == {BASE_REV, *ids}
    main.alembic("downgrade", "-1", check=True)  # forgotten in the same table
    rows = sqlite_db.execute("SELECT revision FROM my_records")
    assert {revision for (revision,) in rows} == {BASE_REV, ids[0]}
    assert json_of(main.autocopy("check", "--json"))["record_table"]["records"] == 2


def test_record_false_turns_off_env_py_recording_too(tmp_path: Path, sqlite_db: Database
                                                    ) -> None:
    # `record = false` was honoured by `alembic-autocopy upgrade` only: env.py's recorder
    # (the integration line) stored every migration anyway, for both commands.
    repo = make_repo(tmp_path, sqlite_db)
    integrate_env_py(repo)
    main = repo.main
    ini = main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + "\n[alembic-autocopy]\nrecord = false\n",
                   encoding="utf-8")
    first = main.chain(1, BASE_REV, "n")
    main.alembic("upgrade", "head", check=True)
    second = main.chain(1, first[0], "b")
    main.autocopy("upgrade", check=True)

    assert repo.applied_versions() == set(second)
    assert TABLE not in sqlite_db.tables()


def test_edited_and_reparented_after_apply_are_reported(
    tmp_path: Path, any_db: Database
) -> None:
    repo = make_repo(tmp_path, any_db)
    integrate_env_py(repo)
    main = repo.main
    first, second, third = main.chain(3, BASE_REV, "d")
    main.autocopy("upgrade", check=True)
    # Edited after apply.
    third_path = file_of(main, third)
    third_path.write_text(third_path.read_text("utf-8") + "# edited after apply\n", "utf-8")
    # Re-parented after apply: a new revision slipped in under the applied `second`.
    inserted = rev_id("inserted")
    main.write_migration(inserted, down=first, message="slipped in")
    second_path = file_of(main, second)
    text = second_path.read_text("utf-8")
    assert text.count(f"down_revision = '{first}'") == 1
    second_path.write_text(text.replace(f"down_revision = '{first}'",
                                        f"down_revision = '{inserted}'"), "utf-8")

    result = main.autocopy("check", "--json", "--diff")

    assert result.returncode == 0, result.stderr  # nothing is missing: drift is a warning
    drift = json_of(result)["drift"]
    edited = {e["revision"]: e for e in drift["edited_after_apply"]}
    assert set(edited) == {second, third}
    assert "+# edited after apply" in edited[third]["diff"]
    (moved,) = drift["reparented_after_apply"]
    assert moved["revision"] == second
    assert moved["applied_parents"] == [first]
    assert moved["file_parents"] == [inserted]
    assert moved["never_ran"] == [inserted]
    warnings = "\n".join(json_of(result)["warnings"])
    assert f"revision {third}: {third_path} was edited after it was applied" in warnings
    assert (f"revision {second} was applied on top of {first}; its file {second_path} now "
            f"says {inserted}; Alembic counts {inserted} as applied but its upgrade() never "
            "ran") in warnings
    assert f"t_{inserted}" not in any_db.tables()  # indeed never ran

    if any_db.backend == "sqlite":  # the text output, and `list` and `upgrade` show it too
        text_check = main.autocopy("check", "--diff")
        assert f"revision {third}: {third_path} was edited" in text_check.stderr
        assert "+# edited after apply" in text_check.stdout
        listing = main.autocopy("list")
        assert f"revision {second} was applied on top of {first}" in listing.stderr
        upgrade = main.autocopy("upgrade")
        assert upgrade.returncode == 0, upgrade.stderr
        assert f"revision {third}: {third_path} was edited" in upgrade.stderr


def test_record_backfills_and_check_notices_unrecorded(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    ids = main.chain(2, BASE_REV, "b")
    main.alembic("upgrade", "head", check=True)  # plain alembic, no integration
    main.autocopy("upgrade", check=True)  # nor alembic-autocopy: no env.py line, no table
    assert TABLE not in sqlite_db.tables()
    refused = main.autocopy("record")
    assert refused.returncode == 1
    assert "**alembic_autocopy.integration.options()," in refused.stderr
    assert TABLE not in sqlite_db.tables()
    integrate_env_py(repo)

    first = json_of(main.autocopy("record", "--json"))

    assert sorted(first["recorded"]) == sorted([BASE_REV, *ids])
    rows = record_rows(sqlite_db)
    assert rows[ids[1]]["content"] == file_of(main, ids[1]).read_bytes()
    assert rows[ids[1]]["parents"] == ids[0]
    again = json_of(main.autocopy("record", "--json"))
    assert again["recorded"] == [] and len(again["already_recorded"]) == 3
    # The line removed again, a later plain `alembic upgrade`: check says so, with the line.
    env_py = main.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text("utf-8").replace(
        ", **alembic_autocopy.integration.options()", "").replace(
        "import alembic_autocopy.integration\n", ""), "utf-8")
    later = main.write_migration(rev_id("later"), down=ids[1], message="later")
    main.alembic("upgrade", "head", check=True)
    check = main.autocopy("check")
    assert check.returncode == 0
    assert f"the record table {TABLE} exists but env.py does not have" in check.stderr
    assert f"applied but not recorded: {rev_id('later')}" in check.stderr
    assert ("`import alembic_autocopy.integration` at the top of env.py and "
            "`**alembic_autocopy.integration.options(),`") in check.stderr
    assert later.exists()


def test_autogenerate_ignores_the_record_table(tmp_path: Path, sqlite_db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    metadata_code = ("import sqlalchemy as sa\ntarget_metadata = sa.MetaData()\n"
                     "sa.Table('users', target_metadata, sa.Column('id', sa.Integer, "
                     "primary_key=True))\n")
    repo = make_repo(tmp_path, sqlite_db)
    integrate_env_py(repo, metadata_code)
    repo.main.autocopy("upgrade", check=True)
    assert TABLE in sqlite_db.tables()

    repo.main.alembic("revision", "--autogenerate", "-m", "auto", "--rev-id", "a070000000000",
                      check=True)

    generated = file_of(repo.main, "a070000000000").read_text("utf-8")
    assert "op.create_table('users'" in generated  # autogenerate did run
    assert TABLE not in generated
    # Without the hooks the table would be dropped: the test can fail.
    with sqlite_db.engine.connect() as connection:
        plain = compare_metadata(MigrationContext.configure(connection), sa.MetaData())
        hooked = compare_metadata(MigrationContext.configure(connection, opts={
            "include_object": integration.include_object,
            "include_name": integration.include_name}), sa.MetaData())
    assert any(op[0] == "remove_table" and op[1].name == TABLE for op in plain)
    assert not any(op[0] == "remove_table" and op[1].name == TABLE for op in hooked)


# --- the pure parts ----------------------------------------------------------------------------

def _here(revision: str, parents: tuple[str, ...], sha: str, committed: bool = True) -> Candidate:
    return Candidate(MigrationHeader(revision, parents), sha, 1, f"{revision}.py",
                     Location(LocationKind.HERE, path=f"/w/{revision}.py", committed=committed))


def _record(revision: str, parents: tuple[str, ...], sha: str, branch: str = "main",
            by: str = "ann@box") -> drift.Record:
    return drift.Record(revision, parents, sha, f"{revision}.py", "2026-01-01T00:00:00+00:00",
                        by, "/w", branch)


def test_drift_follows_what_was_applied() -> None:
    local = [_here("a", (), "sa"), _here("n", ("a",), "sn"), _here("b", ("n",), "sb2"),
             _here("c", ("b",), "sc", committed=False)]
    records = [_record("a", (), "sa"), _record("b", ("a",), "sb1"),
               _record("c", ("b",), "sc", branch="gone"),
               _record("z", ("c",), "sz")]  # left by a downgrade that was not recorded
    headers = [c.header for c in local]

    found = drift.detect(local, records, ["c"], headers, {"main"}, "box")

    assert [e.revision for e in found.edited] == ["b"]
    (moved,) = found.reparented
    assert (moved.revision, moved.recorded_parents, moved.file_parents) == ("b", ("a",), ("n",))
    assert moved.skipped == ("n",) and moved.skipped_parents == (("a",),)
    assert [g.revision for g in found.branch_gone] == ["c"]
    # Another machine's branches are not ours to judge; a branch-held revision is not gone.
    assert not drift.detect(local, records, ["c"], headers, {"main"}, "other").branch_gone
    assert not drift.detect(local, records, ["c"], headers, {"main"}, "box",
                            committed={"c"}).branch_gone
    # Nothing applied: nothing drifted.
    assert not drift.detect(local, records, [], headers, {"main"}, "box")
    # Another worktree's copy of the skipped revision, with other parents, does not
    # override this worktree's file (headers come local first, as drift_of gives them).
    elsewhere = MigrationHeader("n", ("x",))
    again = drift.detect(local, records, ["c"], [*headers, elsewhere], {"main"}, "box")
    assert again.reparented[0].skipped_parents == (("a",),)


def test_integration_options_chain_the_projects_own_hooks() -> None:
    seen: list[str | None] = []

    def theirs(object_: object, name: str | None, type_: str, reflected: bool,
               compare_to: object) -> bool:
        seen.append(name)
        return name != "legacy"

    options = integration.options(include_object=theirs)
    include = options["include_object"]

    assert options["on_version_apply"] == [integration.record_applied]
    assert include(None, TABLE, "table", True, None) is False
    assert include(None, "legacy", "table", True, None) is False
    assert include(None, "users", "table", True, None) is True
    assert include(None, TABLE, "column", True, None) is True
    assert seen == ["legacy", "users", TABLE]
    assert options["include_name"](TABLE, "table", {}) is False
