"""Issue 12 item 8: output a user can follow: the plan before Alembic's lines, -q quiet,
one line with nothing to do, heads in the graph's order, a notice given once, copies labelled
as copies (and the plan naming the real owner), the `alembic merge` hint after sync, and an
empty database said plainly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import BASE_REV, Database, Repo, Worktree, make_repo

INFO = "INFO  [alembic"


def _merged_output(worktree: Worktree, *args: str) -> str:
    """stdout and stderr as a terminal shows them: one stream, in the order written."""
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", *args],
                            cwd=worktree.path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, encoding="utf-8", check=False)
    assert result.returncode == 0, result.stdout
    return result.stdout


def _pair(tmp_path: Path, db: Database) -> tuple[Repo, Worktree, Worktree, list[str]]:
    """Main worktree B (its own migration, not applied) and worktree A whose chain of two
    is applied: B's upgrade brings in two and applies its own."""
    repo = make_repo(tmp_path, db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    ids = a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    b.write_migration("b00000000001", down=BASE_REV, message="own")
    return repo, a, b, ids


def test_the_plan_comes_before_alembics_lines(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, _a, b, _ids = _pair(tmp_path, sqlite_db)

    lines = _merged_output(b, "upgrade").splitlines()

    brought = next(i for i, line in enumerate(lines) if line.startswith("Brought in 2"))
    every_head = next(i for i, line in enumerate(lines) if "to every head" in line)
    running = next(i for i, line in enumerate(lines) if "Running upgrade" in line)
    done = next(i for i, line in enumerate(lines) if line.startswith("Done."))
    assert brought < every_head < running < done, lines


def test_quiet_hides_alembics_info_lines_but_not_errors(tmp_path: Path,
                                                        sqlite_db: Database) -> None:
    _repo, _a, b, _ids = _pair(tmp_path, sqlite_db)

    quiet = b.autocopy("upgrade", "-q")

    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no "INFO  [alembic.runtime.migration] Running upgrade ..."
    assert quiet.stdout.splitlines() == [
        "Done. Database heads: a00000000002, b00000000001 (several heads: each branch of "
        "work is applied)"]
    failed = b.autocopy("upgrade", "-q", "zzzz")
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")


def test_nothing_to_do_is_one_line_and_heads_keep_the_graphs_order(
        tmp_path: Path, sqlite_db: Database) -> None:
    _repo, _a, b, ids = _pair(tmp_path, sqlite_db)
    b.autocopy("upgrade", check=True)
    heads = ["a00000000002", "b00000000001"]  # graph order: a's branch sorts first

    outputs = []
    for rows in (heads, heads[::-1]):  # the database returns its rows in any order
        sqlite_db.execute("DELETE FROM alembic_version")
        for head in rows:
            sqlite_db.execute(f"INSERT INTO alembic_version VALUES ('{head}')")
        again = b.autocopy("upgrade")
        assert again.returncode == 0, again.stderr
        outputs.append(again.stdout)
        checked = b.autocopy("check")
        assert f"({', '.join(heads)})" in checked.stdout
        status = json.loads(b.autocopy("upgrade", "--json").stdout)
        assert status["heads_after"] == heads
    assert outputs[0] == outputs[1] == (
        f"Nothing to do: the database is at {', '.join(heads)}.\n")
    assert ids[-1] == heads[0]


def test_a_notice_is_given_once(tmp_path: Path, sqlite_db: Database) -> None:
    from support.project import integrate_env_py

    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.alembic("upgrade", "head", check=True)
    integrate_env_py(repo)
    main.autocopy("record", check=True)  # the record table exists
    env_py = main.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text("utf-8").replace(
        ", **alembic_autocopy.integration.options()", "").replace(
        "import alembic_autocopy.integration\n", ""), "utf-8")  # the line removed again
    first = main.chain(1, BASE_REV, "p")
    main.alembic("upgrade", "head", check=True)  # plain alembic: not recorded

    told = [main.autocopy("check").stderr for _ in range(2)]

    notice = "exists but env.py does not have"
    assert notice in told[0] and f"applied but not recorded: {first[0]}" in told[0]
    assert notice not in told[1]  # not on every run
    assert notice in main.autocopy("check", "-v").stderr  # -v repeats it
    later = main.chain(1, first[0], "q")
    main.alembic("upgrade", "head", check=True)
    newer = main.autocopy("check").stderr  # a revision newly unrecorded: said again
    assert notice in newer and later[0] in newer


def test_copies_are_labelled_and_the_plan_names_the_owner(tmp_path: Path,
                                                          sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.alembic("upgrade", "head", check=True)
    owner = repo.add_worktree("z")  # Proj-z sorts after Proj, which will only hold copies
    ids = owner.chain(2, BASE_REV, "z")
    owner.alembic("upgrade", "head", check=True)
    main.autocopy("upgrade", check=True)  # main now holds z's two as copies
    c = repo.add_worktree("c")

    planned = c.autocopy("check")

    assert planned.returncode == 1
    assert f"from worktree {owner.path} (z): {owner.versions}" in planned.stdout
    assert f"worktree {main.path} " not in planned.stdout
    found = c.autocopy("find", ids[0])
    copy_line = next(line for line in found.stdout.splitlines() if str(main.path) + "/" in line)
    assert "(copy placed by alembic-autocopy)" in copy_line
    assert "copy placed by alembic-autocopy, " in copy_line or copy_line.endswith(
        "copy placed by alembic-autocopy)")
    assert "not committed" not in copy_line
    owner_line = next(line for line in found.stdout.splitlines() if str(owner.path) in line)
    assert "copy" not in owner_line and "not committed" in owner_line
    # the owner gone: the copy is what there is, and it says so
    owner.git("stash", "--include-untracked", "--quiet")
    planned = c.autocopy("check", "--no-git-refs")
    assert f"{main.versions}" in planned.stdout and "(copy placed by alembic-autocopy)" in (
        planned.stdout)


def test_sync_names_the_alembic_merge_to_run(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    ini = repo.root / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + "\n[alembic-autocopy]\nbase_branch = main\n",
                   encoding="utf-8")
    repo.main.commit("base branch")
    b = repo.add_worktree("b")
    b.write_migration("b00000000001", down=BASE_REV, message="own")
    b.commit("b: own migration")
    repo.main.write_migration("c00000000001", down=BASE_REV, message="main's")
    repo.main.commit("main: a migration too")

    synced = b.autocopy("sync")

    assert synced.returncode == 1, synced.stderr  # Alembic refuses `head` with two heads
    assert ('`alembic merge -m "merge" b00000000001 c00000000001`' in synced.stderr), (
        synced.stderr)
    merged = b.alembic("merge", "-m", "merge", "b00000000001", "c00000000001")
    assert merged.returncode == 0, merged.stderr
    b.commit("merge")
    again = b.autocopy("sync")
    assert again.returncode == 0, again.stderr
    assert "alembic merge" not in again.stderr


def test_check_on_an_empty_database_says_so(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)

    checked = repo.main.autocopy("check")

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == (
        "OK: the database is empty (no revision applied yet); nothing to bring in.\n")
    assert "(empty)" not in checked.stdout



def test_a_removed_worktree_is_warned_about_once_on_its_own_line(
        tmp_path: Path, sqlite_db: Database) -> None:
    """A worktree deleted with `rm -rf` (not `git worktree remove`) held the only file of a
    revision the database applied: check, upgrade, upgrade --dry-run and status each say so
    once, on its own `warning:` line, never glued onto the hint; --json lists it once."""
    import shutil

    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    gone = repo.add_worktree("gone")
    gone.write_migration("e00000000001", down=BASE_REV, message="lost")  # never committed
    gone.alembic("upgrade", "head", check=True)
    shutil.rmtree(gone.path)
    gone_text = f"worktree {gone.path} no longer exists"

    for args in (["check"], ["upgrade"], ["upgrade", "--dry-run"], ["status"]):
        result = main.autocopy(*args)
        lines = (result.stdout + result.stderr).splitlines()
        mentions = [line for line in lines if gone_text in line]
        assert len(mentions) == 1, (args, lines)
        assert mentions[0].startswith(f"warning: {gone_text}: skipped"), (args, lines)
        assert any(line.startswith("hint: ") for line in lines) or args == ["status"]

        document = json.loads(main.autocopy(*args, "--json").stdout)
        warnings = [w if isinstance(w, str) else w["message"]
                    for w in document.get("warnings", [])]
        assert sum(gone_text in w for w in warnings) == 1, (args, document)
        assert gone_text not in (document.get("hint") or ""), (args, document)
    status = main.autocopy("status").stdout
    assert status.rstrip().endswith("thing(s) need attention (1 warning(s) above).")
