"""Issue 2 acceptance: one `alembic-autocopy upgrade` repairs a shared database, end to end,
on real worktrees and real databases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo, use_the_application_engine


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (but .git and caches) with its content."""
    snapshot: dict[str, bytes] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__")]
        for name in files:
            path = Path(folder) / name
            snapshot[str(path.relative_to(root))] = path.read_bytes()
    return snapshot


def setup_pair(tmp_path: Path, db: Database, **options: str) -> tuple[Repo, Worktree, Worktree]:
    """Repo with main worktree B (base applied) and worktree A (branch ``a``)."""
    repo = make_repo(tmp_path, db, **options)  # type: ignore[arg-type]
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    return repo, a, b


def apply_chain_in(a: Worktree, n: int, prefix: str = "a") -> list[str]:
    ids = a.chain(n, BASE_REV, prefix)
    a.commit(f"{n} migrations")
    a.alembic("upgrade", "head", check=True)
    return ids


def assert_repaired(repo: Repo, b: Worktree, expected_heads: set[str]) -> None:
    assert repo.applied_versions() == expected_heads
    current = b.alembic("current")
    assert current.returncode == 0, current.stdout + current.stderr
    for head in expected_heads:
        assert head in current.stdout
    upgrade = b.alembic("upgrade", "heads")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr


@pytest.mark.parametrize("length", [1, 5, 40])
def test_chain_applied_elsewhere_is_repaired_in_one_upgrade(
    tmp_path: Path, any_db: Database, length: int
) -> None:
    repo, a, b = setup_pair(tmp_path, any_db)
    ids = apply_chain_in(a, length)
    before = b.alembic("upgrade", "head")
    assert before.returncode != 0
    assert "Can't locate revision identified by" in before.stdout + before.stderr

    result = b.autocopy("upgrade", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [item["revision"] for item in report["plan"]["bring"]] == ids
    assert report["applied"] == []  # the database already had them all
    assert_repaired(repo, b, {ids[-1]})
    for rev in ids:
        assert rev in any_db.tables() or f"t_{rev}" in any_db.tables()


def test_file_template_without_revision_id(tmp_path: Path, sqlite_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db, file_template="%%(year)d_%%(slug)s")
    first = a.write_migration(
        "c0ffee000001", down=BASE_REV, message="add orders", filename="2026_add_orders.py"
    )
    a.write_migration(
        "c0ffee000002", down="c0ffee000001", message="add refunds", filename="2026_add_refunds.py"
    )
    assert "c0ffee" not in first.name
    a.commit("two migrations, named without their ids")
    a.alembic("upgrade", "head", check=True)

    result = b.autocopy("upgrade")

    assert result.returncode == 0, result.stderr
    assert (b.versions / "2026_add_orders.py").exists()
    assert (b.versions / "2026_add_refunds.py").exists()
    assert_repaired(repo, b, {"c0ffee000002"})


def test_async_env_on_sqlite(tmp_path: Path, sqlite_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db, env="async")
    ids = apply_chain_in(a, 3)
    result = b.autocopy("upgrade")
    assert result.returncode == 0, result.stderr
    assert_repaired(repo, b, {ids[-1]})


def test_async_env_on_postgresql(tmp_path: Path, postgresql_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, postgresql_db, env="async")
    ids = apply_chain_in(a, 3)
    result = b.autocopy("upgrade")
    assert result.returncode == 0, result.stderr
    assert_repaired(repo, b, {ids[-1]})


def test_async_env_on_the_applications_pooled_engine(tmp_path: Path,
                                                     postgresql_db: Database) -> None:
    # env.py imports the application's asyncpg engine (pooled, never disposed), as FastAPI
    # projects do: a repair runs env.py three times in one process, each on a new event loop,
    # and the second was handed the first's connection ("attached to a different loop").
    repo = make_repo(tmp_path, postgresql_db, env="async")
    use_the_application_engine(repo)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    ids = apply_chain_in(a, 3)
    result = b.autocopy("upgrade")
    assert result.returncode == 0, result.stderr
    assert_repaired(repo, b, {ids[-1]})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_custom_version_table(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue(f"{backend}_db")
    repo, a, b = setup_pair(tmp_path, db, env="custom_version_table")
    ids = apply_chain_in(a, 2)
    assert "alembic_version" not in db.tables()
    result = b.autocopy("upgrade")
    assert result.returncode == 0, result.stderr
    assert_repaired(repo, b, {ids[-1]})


def test_env_py_with_one_context_per_engine(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db, env="multi_engine")
    ids = apply_chain_in(a, 2)
    result = b.autocopy("check", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["plan"]["unknown_applied"] == [ids[-1]]
    assert b.autocopy("upgrade").returncode == 0
    assert b.autocopy("check").returncode == 0


def test_merge_revision_and_depends_on_are_resolved(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    a.write_migration("d00000000001", down=BASE_REV, message="left")
    a.write_migration("d00000000002", down=BASE_REV, message="right")
    a.write_migration("d00000000003", down=None, message="other branch", branch_labels="reports")
    a.write_migration(
        "d00000000004",
        down=("d00000000001", "d00000000002"),
        message="merge",
        depends_on="d00000000003",
    )
    a.commit("merge + depends_on")
    a.alembic("upgrade", "heads", check=True)

    result = b.autocopy("upgrade", "--json")

    assert result.returncode == 0, result.stderr
    brought = {item["revision"] for item in json.loads(result.stdout)["plan"]["bring"]}
    assert brought == {"d00000000001", "d00000000002", "d00000000003", "d00000000004"}
    assert b.alembic("current").returncode == 0


def test_own_pending_migration_and_foreign_head_both_applied(
    tmp_path: Path, any_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, any_db)
    foreign = apply_chain_in(a, 2)
    b.write_migration("b0000000000f", down=BASE_REV, message="mine")
    b.commit("my own migration")

    result = b.autocopy("upgrade")

    assert result.returncode == 0, result.stderr
    assert repo.applied_versions() == {foreign[-1], "b0000000000f"}
    assert "every head" in result.stdout
    assert "b0000000000f" in result.stdout and foreign[-1] in result.stdout
    assert "t_b0000000000f" in any_db.tables()


def test_same_id_different_contents_is_a_conflict(tmp_path: Path, sqlite_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    apply_chain_in(a, 1, prefix="e")
    other = repo.add_worktree("other")
    other.write_migration("e00000000001", down=BASE_REV, message="a different body")
    other.commit("same id, other content")
    before_files, before_db = tree_snapshot(b.path), repo.applied_versions()

    result = b.autocopy("upgrade")

    assert result.returncode == 1
    assert str(a.path) in result.stderr and str(other.path) in result.stderr
    assert "different contents" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_snapshot(b.path) == before_files
    assert repo.applied_versions() == before_db

    chosen = b.autocopy("upgrade", "--prefer", str(a.path))
    assert chosen.returncode == 0, chosen.stderr
    copied = next(b.versions.glob("e00000000001*.py")).read_bytes()
    assert copied == next(a.versions.glob("e00000000001*.py")).read_bytes()
    assert b.alembic("current").returncode == 0


def test_a_prefer_matching_several_contents_says_how_to_name_one(
        tmp_path: Path, sqlite_db: Database) -> None:
    # `feature` names both the worktree on branch feature (whose file was edited since) and
    # the branch's commit: two contents. The refusal says so and names each one exactly
    # (it repeated "exists with different contents ... choose one with --prefer").
    repo, _a, b = setup_pair(tmp_path, sqlite_db)
    feature = repo.add_worktree("feature")
    apply_chain_in(feature, 1, prefix="e")
    edited = next(feature.versions.glob("e00000000001*.py"))
    committed = edited.read_bytes()
    edited.write_bytes(committed + b"\n# edited after the commit\n")
    before_files, before_db = tree_snapshot(b.path), repo.applied_versions()

    result = b.autocopy("upgrade", "--prefer", "feature")

    assert result.returncode == 1, result.stderr
    assert ("--prefer feature matches 2 different contents of revision e00000000001"
            in result.stderr)
    assert "--prefer refs/heads/feature (branch feature" in result.stderr
    assert f"--prefer {edited} (worktree {feature.path} (feature))" in result.stderr
    assert "choose one with" not in result.stderr
    assert tree_snapshot(b.path) == before_files
    assert repo.applied_versions() == before_db

    # Each exact name the hint gives is taken.
    chosen = b.autocopy("upgrade", "--prefer", "refs/heads/feature")
    assert chosen.returncode == 0, chosen.stderr
    assert next(b.versions.glob("e00000000001*.py")).read_bytes() == committed
    # The option and the hints give what it takes one name.
    assert "--prefer PATH_OR_REF" in b.autocopy("upgrade", "--help", check=True).stdout


def test_identical_copies_are_one_candidate(tmp_path: Path, sqlite_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 1)
    twin = repo.add_worktree("twin", branch="twin")
    twin.git("merge", "--quiet", "a")  # the very same file, from the same commit
    result = b.autocopy("upgrade")
    assert result.returncode == 0, result.stderr
    assert_repaired(repo, b, {ids[-1]})


def test_applied_id_found_nowhere(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 1)
    a.git("worktree", "remove", "--force", str(a.path))
    assert not a.path.exists()
    b.git("branch", "-D", "a")
    before = tree_snapshot(b.path)

    result = b.autocopy("upgrade")  # every worktree, folder and git ref is searched

    assert result.returncode == 1
    assert ids[0] in result.stderr
    assert "found nowhere" in result.stderr
    assert tree_snapshot(b.path) == before


@pytest.mark.parametrize("junk", [b"def broken(:\n", bytes(range(256)) * 4])
def test_unreadable_sibling_file_is_skipped_with_a_warning(
    tmp_path: Path, sqlite_db: Database, junk: bytes
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 2)
    bad = a.versions / "zz_broken.py"
    bad.write_bytes(junk)

    result = b.autocopy("upgrade")

    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and str(bad) in result.stderr
    assert_repaired(repo, b, {ids[-1]})


def test_dry_run_changes_nothing_and_lists_the_plan(tmp_path: Path, any_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, any_db)
    ids = apply_chain_in(a, 3)
    b.write_migration("b0000000000f", down=BASE_REV, message="mine")
    files, status, versions = tree_snapshot(b.path), b.status_porcelain(), repo.applied_versions()
    tables = any_db.tables()

    result = b.autocopy("upgrade", "--dry-run")

    assert result.returncode == 0, result.stderr
    for rev in ids:
        assert rev in result.stdout
    assert result.stdout.count(f"from worktree {a.path}") == len(ids)
    assert tree_snapshot(b.path) == files
    assert b.status_porcelain() == status
    assert repo.applied_versions() == versions
    assert any_db.tables() == tables


def test_after_repair_git_stays_clean_and_merges_work(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    a.write_migration("f00000000001", down=BASE_REV, message="uncommitted in A")
    a.alembic("upgrade", "head", check=True)
    a_status_before = a.status_porcelain()
    assert "f00000000001" in a_status_before  # A's own new file shows in A

    assert b.autocopy("upgrade").returncode == 0
    assert b.status_porcelain() == ""
    assert a.status_porcelain() == a_status_before
    b.git("add", "-A")
    assert b.git("diff", "--cached", "--name-only").stdout == ""  # add -A picked nothing

    a.commit("A commits its migration")
    merge = b.git("merge", "--no-edit", "a", check=False)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert b.status_porcelain() == ""
    assert b.alembic("current").returncode == 0


def test_rebase_onto_the_owning_branch_succeeds(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    apply_chain_in(a, 2)
    b.write_migration("b0000000000f", down=BASE_REV, message="mine")
    b.commit("mine")
    assert b.autocopy("upgrade").returncode == 0
    rebase = b.git("rebase", "a", check=False)
    assert rebase.returncode == 0, rebase.stdout + rebase.stderr
    assert b.status_porcelain() == ""


def test_clean_removes_unchanged_copies_and_keeps_modified(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 3)
    assert b.autocopy("upgrade").returncode == 0
    copies = sorted(b.versions.glob("a0000*.py"))
    assert len(copies) == 3
    copies[1].write_text(copies[1].read_text() + "\n# edited by hand\n")

    result = b.autocopy("clean", "--all")  # the database needs them: --all removes them

    assert result.returncode == 0, result.stderr
    assert not copies[0].exists() and not copies[2].exists()
    assert copies[1].exists()
    assert str(copies[1]) in result.stderr and ids[1] in result.stderr
    assert b.status_porcelain() == ""  # the kept copy is still hidden from git


def test_unreachable_database_is_one_clear_line(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, _a, b = setup_pair(tmp_path, sqlite_db)
    ini = b.path / "alembic.ini"
    text = ini.read_text()
    url_line = next(line for line in text.splitlines() if line.startswith("sqlalchemy.url"))
    unreachable = "postgresql+psycopg://bob:s3cret@127.0.0.1:9/nowhere?connect_timeout=2"
    ini.write_text(text.replace(url_line, f"sqlalchemy.url = {unreachable}"))

    result = b.autocopy("check")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "s3cret" not in result.stderr + result.stdout
    assert "127.0.0.1" in result.stderr
    assert "error:" in result.stderr


def test_wrong_url_is_a_configuration_error(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, _a, b = setup_pair(tmp_path, sqlite_db)
    ini = b.path / "alembic.ini"
    text = ini.read_text()
    url_line = next(line for line in text.splitlines() if line.startswith("sqlalchemy.url"))
    ini.write_text(text.replace(url_line, "sqlalchemy.url = nosuchdialect://x/y"))
    result = b.autocopy("upgrade")
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_missing_config_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = Worktree(empty).autocopy("upgrade")
    assert result.returncode == 2
    assert "no Alembic configuration found" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_copy_broken_below_its_header_is_refused_before_anything_is_written(
        tmp_path: Path, sqlite_db: Database) -> None:
    """Scanning reads headers only; what is copied must compile, or every Alembic command in
    this worktree would break on it."""
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 2)
    broken = next(a.versions.glob(f"{ids[0]}*.py"))
    broken.write_text(broken.read_text() + "\ndef upgrade(:\n    pass\n")
    before = tree_snapshot(b.path)

    result = b.autocopy("upgrade")

    assert result.returncode == 1
    assert str(broken) in result.stderr and "not a loadable migration" in result.stderr
    assert tree_snapshot(b.path) == before
    assert repo.applied_versions() == {ids[-1]}


def test_lfs_pointer_checked_out_as_a_file_says_to_install_git_lfs() -> None:
    from alembic_autocopy.core.errors import MigrationParseError
    from alembic_autocopy.core.parsing import parse_migration

    pointer = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               b"size 12345\n")
    with pytest.raises(MigrationParseError, match="git-lfs"):
        parse_migration(pointer)
