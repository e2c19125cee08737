"""`alembic-autocopy run -- CMD`: real worktrees, a real SQLite database, the real `alembic`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from support import BASE_REV, Database, Repo, Worktree, make_repo

ALEMBIC = [sys.executable, "-m", "alembic"]
CANT_LOCATE = "Can't locate revision identified by"


def _five_applied_elsewhere(repo: Repo) -> tuple[Worktree, list[str]]:
    """Worktree a writes and applies a chain of five; returns (a, the five ids)."""
    a = repo.add_worktree("a")
    ids = a.chain(5, BASE_REV, "a")
    a.commit("five migrations")
    a.alembic("upgrade", "head", check=True)
    return a, ids


def test_run_repairs_a_chain_of_five_and_returns_zero(sqlite_db: Database,
                                                       tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    _, ids = _five_applied_elsewhere(repo)
    b = repo.add_worktree("b")

    result = b.autocopy("run", "--json", "--", *ALEMBIC, "upgrade", "head")

    assert result.returncode == 0, result
    document = json.loads(result.stdout)  # with --json, stdout holds only our document
    assert [a["exit_code"] for a in document["attempts"]] == [255, 0]
    assert document["attempts"][0]["missing"] == [ids[-1]]
    assert document["repairs"][0]["brought_in"] == ids  # the whole chain, in one repair
    assert f"{CANT_LOCATE} '{ids[-1]}'" in result.stderr  # the first run's own output
    assert sqlite_db.versions() == {ids[-1]}
    assert {f"t_{rev}" for rev in ids} <= sqlite_db.tables()
    assert {p.name.split("_")[0] for p in b.versions.glob("*.py")} == {BASE_REV, *ids}
    assert b.status_porcelain() == ""  # the copies are invisible to git


def test_half_present_chain_keyerror_is_repaired(sqlite_db: Database, tmp_path: Path) -> None:
    """Only the last file was copied by hand: Alembic's bare KeyError names its parent."""
    repo = make_repo(tmp_path, sqlite_db)
    a, ids = _five_applied_elsewhere(repo)
    b = repo.add_worktree("b")
    last = next(a.versions.glob(f"{ids[-1]}_*.py"))
    shutil.copy(last, b.versions / last.name)
    plain = b.alembic("upgrade", "head")
    assert f"KeyError: '{ids[-2]}'" in plain.stderr  # FINDINGS: not "Can't locate" again

    result = b.autocopy("run", "--", *ALEMBIC, "upgrade", "head")

    assert result.returncode == 0, result
    assert "brought in 4 migration(s)" in result.stderr
    assert sqlite_db.versions() == {ids[-1]}


def test_other_failure_is_not_retried_and_its_exit_code_returned(sqlite_db: Database,
                                                                   tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    counter = tmp_path / "runs"
    script = (f"import sys; open({str(counter)!r}, 'a').write('x'); "
              "print('boom'); print('KeyError: \\'nope\\'', file=sys.stderr); sys.exit(7)")

    result = repo.main.autocopy("run", "--", sys.executable, "-c", script)

    assert result.returncode == 7
    assert result.stdout == "boom\n"  # passed through unchanged, nothing of ours added
    assert counter.read_text() == "x"  # ran once
    assert "not a revision the database needs" in result.stderr


def test_a_typo_is_not_repaired(sqlite_db: Database, tmp_path: Path) -> None:
    """`alembic upgrade zzzz` prints the same text as a missing revision: leave it alone."""
    repo = make_repo(tmp_path, sqlite_db)
    _five_applied_elsewhere(repo)
    b = repo.add_worktree("b")

    result = b.autocopy("run", "--", *ALEMBIC, "upgrade", "zzzz")

    assert result.returncode == 255
    assert result.stdout.count("FAILED") == 1  # ran once
    assert f"{CANT_LOCATE} 'zzzz'" in result.stdout
    assert "zzzz is not a revision the database needs" in result.stderr
    assert sorted(p.name for p in b.versions.iterdir() if p.suffix == ".py") == [
        f"{BASE_REV}_base.py"]


def test_usage_errors(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    empty = repo.main.autocopy("run", "--")
    assert empty.returncode == 2
    assert "no command to run" in empty.stderr and "Traceback" not in empty.stderr
    for nothing in (["run"], ["run", "--max-attempts", "2"]):  # no `--` at all
        bare = repo.main.autocopy(*nothing)
        assert bare.returncode == 2, nothing
        assert bare.stderr.splitlines() == [
            "error: no command to run", "hint: alembic-autocopy run -- alembic upgrade head"]
        assert bare.stdout == ""  # not the top-level help, as if no verb had been given
    missing = repo.main.autocopy("run", "--", "no-such-command-anywhere")
    assert missing.returncode == 2
    assert "command not found: no-such-command-anywhere" in missing.stderr
