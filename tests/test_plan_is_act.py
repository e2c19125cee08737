"""Issue 12 item 4: `check` and `upgrade --dry-run` refuse what `upgrade` refuses, in the same
words; unreadable files are one grouped warning; `find`/`list` mark broken files."""

from __future__ import annotations

import json
from pathlib import Path

from support import BASE_REV, Database, Worktree, make_repo

BROKEN_BODY = "\n\ndef upgrade() -> None:\n    op.execute('x'\n"


def _break_body(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + BROKEN_BODY, encoding="utf-8")


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def test_a_needed_migration_with_a_syntax_error_is_refused_alike(
        tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    ids = a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    broken = next(a.versions.glob(f"{ids[0]}*.py"))
    _break_body(broken)  # applied already; broken afterwards (a bad edit, a bad merge)
    b = repo.main

    results = [b.autocopy(*command) for command in
               (["check"], ["upgrade", "--dry-run"], ["upgrade"])]

    refusals = [_errors(result.stderr) for result in results]
    assert [result.returncode for result in results] == [1, 1, 1], refusals
    assert refusals[0] == refusals[1] == refusals[2]
    assert f"revision {ids[0]} in {broken} is not a loadable migration: syntax error" in (
        refusals[0][0])
    for result in results:
        assert "would bring in" not in result.stdout.lower()
        assert "Traceback" not in result.stderr
    assert not list(b.versions.glob("a*.py"))  # nothing written


def _sibling_with_chain(tmp_path: Path, db: Database) -> tuple[Worktree, Worktree, list[str]]:
    repo = make_repo(tmp_path, db)
    repo.main.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    ids = a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    return repo.main, a, ids


def test_unneeded_broken_files_give_one_warning_line_per_kind(
        tmp_path: Path, sqlite_db: Database) -> None:
    b, a, _ids = _sibling_with_chain(tmp_path, sqlite_db)
    junk = []
    for number in range(3):  # never a migration: a syntax error in its header
        path = a.versions / f"junk_{number}.py"
        path.write_text(f"revision = 'junk{number}'\ndown_revision = (\n", encoding="utf-8")
        junk.append(path)

    result = b.autocopy("upgrade")

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: skipped ") and "syntax error" in warnings[0]
    assert "and 2 more file(s) skipped for the same reason; -v lists them" in warnings[0]
    assert set(b.autocopy("check").stdout.split()) >= {"OK:"}

    listed = b.autocopy("list", "--no-db", "-v")
    skipped = [line for line in listed.stderr.splitlines() if line.startswith("warning: skip")]
    assert sorted(skipped) == sorted(
        f"warning: skipped {path}: {skipped[0].split(': ', 2)[2]}" for path in junk)


def test_find_and_list_mark_a_file_that_does_not_compile(
        tmp_path: Path, sqlite_db: Database) -> None:
    b, a, ids = _sibling_with_chain(tmp_path, sqlite_db)
    broken = next(a.versions.glob(f"{ids[1]}*.py"))
    _break_body(broken)

    found = b.autocopy("find", ids[1])
    assert found.returncode == 0, found.stderr
    assert "broken: syntax error" in found.stdout
    document = json.loads(b.autocopy("find", ids[1], "--json").stdout)
    assert document["locations"][0]["broken"].startswith("syntax error")

    listed = b.autocopy("list", "--no-db")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(ids[1]))
    assert "broken: syntax error" in row
    rows = json.loads(b.autocopy("list", "--no-db", "--json").stdout)["revisions"]
    assert next(r for r in rows if r["revision"] == ids[1])["broken"].startswith("syntax error")
    assert next(r for r in rows if r["revision"] == ids[0])["broken"] is None


def test_an_unneeded_file_broken_below_its_header_is_one_warning(
        tmp_path: Path, sqlite_db: Database) -> None:
    b, a, ids = _sibling_with_chain(tmp_path, sqlite_db)
    unrelated = a.write_migration("e00000000001", down=ids[1], message="unfinished")
    _break_body(unrelated)  # a work in progress, never applied: nobody needs it

    for command in (["check"], ["upgrade", "--dry-run"], ["upgrade"]):
        result = b.autocopy(*command)
        assert result.returncode == (1 if command == ["check"] else 0), result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"warning: skipped {unrelated}: syntax error"), warnings
    assert b.alembic("current").returncode == 0
