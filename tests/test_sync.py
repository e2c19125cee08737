"""`alembic-autocopy sync`: rebase onto the base branch, drop what git now brings, repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo


def _manifest(worktree: Worktree) -> list[dict[str, str]]:
    path = Path(worktree.git("rev-parse", "--path-format=absolute", "--git-path",
                             "alembic-autocopy/manifest.json").stdout.strip())
    if not path.exists():
        return []
    entries: list[dict[str, str]] = json.loads(path.read_text("utf-8"))["entries"]
    return entries


def _with_base_branch(repo: Repo, base: str) -> None:
    ini = repo.root / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + f"\n[alembic-autocopy]\nbase_branch = {base}\n",
                   encoding="utf-8")
    repo.main.commit("alembic-autocopy: rebase feature branches onto main")


@pytest.mark.parametrize(("how", "own_commits"), [("rebase", "1"), ("--merge", "2")])
def test_sync_after_the_other_branch_was_merged(sqlite_db: Database, tmp_path: Path, how: str,
                                                own_commits: str) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    _with_base_branch(repo, "main")
    a = repo.add_worktree("a")
    a_ids = a.chain(3, BASE_REV, "a")
    a.commit("feature a: three migrations")
    a.alembic("upgrade", "head", check=True)
    b = repo.add_worktree("b")
    own = "b00000000001"
    b.write_migration(own, down=BASE_REV, message="own")
    b.commit("feature b: its own migration")
    b.autocopy("upgrade", check=True)  # B holds a's three as copies, both heads applied
    assert [e["revision"] for e in _manifest(b)] == a_ids
    repo.main.git("merge", "--quiet", "--no-ff", "--no-edit", "a")  # a lands in main

    result = b.autocopy("sync", "--json", *([how] if how == "--merge" else []))

    assert result.returncode == 0, result
    document = json.loads(result.stdout)
    assert document["upstream"] == "refs/heads/main" and document["why"] == "base_branch main"
    assert sorted(e["revision"] for e in document["copies_now_from_git"]) == sorted(a_ids)
    main_head = repo.main.git("rev-parse", "main").stdout.strip()
    assert b.git("merge-base", "HEAD", "main").stdout.strip() == main_head  # on top of main
    # rebased: b's own commit alone on top; merged: b's commit and the merge commit
    assert b.git("rev-list", "--count", "main..HEAD").stdout.strip() == own_commits
    assert document["merge"] is (how == "--merge")
    assert _manifest(b) == []  # copies gone from the manifest
    assert not (b.versions / ".gitignore").exists()  # and the managed ignore file with them
    tracked = set(b.git("ls-files", "migrations/versions").stdout.split())
    assert {f"migrations/versions/{rev}_step_{rev}.py" for rev in a_ids} <= tracked
    assert b.status_porcelain() == ""
    assert sqlite_db.versions() == {a_ids[-1], own}  # the database is current
    assert document["applied"] == [] and sorted(document["heads_after"]) == sorted(
        [a_ids[-1], own])


def test_a_conflicting_rebase_stops_cleanly(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.add_worktree("b")
    b.git("branch", "--quiet", "--set-upstream-to=main")
    (b.path / "NOTES").write_text("b's words\n", encoding="utf-8")
    b.commit("b writes NOTES")
    (repo.main.path / "NOTES").write_text("main's words\n", encoding="utf-8")
    repo.main.commit("main writes NOTES")
    before = b.git("rev-parse", "HEAD").stdout.strip()

    result = b.autocopy("sync")

    assert result.returncode == 1
    assert "CONFLICT" in result.stderr  # git's own message
    assert "stopped on a conflict; the repository is as git left it" in result.stderr
    assert "git rebase --continue" in result.stderr and "git rebase --abort" in result.stderr
    assert "Traceback" not in result.stderr
    rebase_dir = b.git("rev-parse", "--git-path", "rebase-merge").stdout.strip()
    assert (b.path / rebase_dir).is_dir()  # still mid-rebase, as git left it
    assert sqlite_db.versions() == set()  # nothing was upgraded
    again = b.autocopy("sync")
    assert again.returncode == 1 and "a git rebase is in progress" in again.stderr
    b.git("rebase", "--abort")
    assert b.git("rev-parse", "HEAD").stdout.strip() == before


def test_no_upstream_is_a_clear_usage_error(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.add_worktree("b")
    result = b.autocopy("sync")
    assert result.returncode == 2
    assert "branch b has no upstream and no base branch is configured" in result.stderr
    assert "base_branch" in result.stderr and "Traceback" not in result.stderr
