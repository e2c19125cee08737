"""Issue 13 item 9: every command survives a malformed revision graph in any source (a cycle,
a parent found nowhere, one id in two files), reporting it as a warning that names the
revisions and the files: exit 0 or 1, never 3 (an internal error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alembic_autocopy.core.graphfaults import graph_faults
from alembic_autocopy.core.model import Candidate, Location, LocationKind, MigrationHeader
from support import BASE_REV, Database, Worktree, make_repo

CYCLE = ("c00000000001", "c00000000002")
ORPHAN, NOWHERE = "d00000000001", "ffff00000000"
TWICE = "e00000000001"
COMMANDS = (["list"], ["status"], ["graph"], ["check"], ["find", TWICE], ["upgrade"])


def write_faults(worktree: Worktree, parent: str) -> list[Path]:
    """A cycle, a revision whose parent exists nowhere, and one id in two files."""
    return [
        worktree.write_migration(CYCLE[0], down=CYCLE[1], message="cyc one"),
        worktree.write_migration(CYCLE[1], down=CYCLE[0], message="cyc two"),
        worktree.write_migration(ORPHAN, down=NOWHERE, message="orphan"),
        worktree.write_migration(TWICE, down=parent, message="first"),
        worktree.write_migration(TWICE, down=parent, message="second",
                                 filename=f"{TWICE}_again.py"),
    ]


def run_all(b: Worktree, commands: tuple[list[str], ...] = COMMANDS) -> dict[str, tuple[
        int, str]]:
    results = {}
    for args in commands:
        result = b.autocopy(*args)
        assert "internal error" not in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode in (0, 1), (args, result.stdout, result.stderr)
        results[args[0]] = (result.returncode, result.stderr)
    return results


def assert_named(stderr: str, files: list[str]) -> None:
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    cycle = [w for w in warnings if "form a cycle" in w]
    assert cycle and all(rev in cycle[0] for rev in CYCLE), stderr
    assert any(name in cycle[0] for name in files[:2])
    orphan = [w for w in warnings if NOWHERE in w]
    assert orphan and ORPHAN in orphan[0] and files[2] in orphan[0], stderr
    twice = [w for w in warnings if f"revision {TWICE} is defined by 2 files" in w]
    assert twice and files[3] in twice[0] and files[4] in twice[0], stderr


def test_a_sibling_worktree_with_a_cycle_a_missing_parent_and_a_duplicate_id(
        tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    a = repo.add_worktree("a")
    applied = a.chain(1, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)  # B's check must read A: it needs a...1
    written = write_faults(a, applied[-1])
    a.commit("a: broken migrations")

    results = run_all(b)

    names = [str(path) for path in written]
    for command in ("list", "status", "graph", "check"):
        assert_named(results[command][1], names)
    assert f"revision {TWICE} is defined by 2 files" in results["find"][1]
    assert b.alembic("current").returncode == 0  # the upgrade brought in a...1 alone


def test_a_git_ref_with_a_cycle_and_a_missing_parent(tmp_path: Path,
                                                     sqlite_db: Database) -> None:
    """The faults only in a branch no worktree has checked out."""
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    bad = repo.add_worktree("bad")
    written = write_faults(bad, BASE_REV)
    bad.commit("bad: broken migrations")
    b.git("worktree", "remove", "--force", str(bad.path))

    results = run_all(b, (["list"], ["status"], ["graph"], ["check"]))

    names = [f"bad:{path.relative_to(bad.path)}" for path in written]
    for command in ("list", "status", "graph"):
        assert_named(results[command][1], names)


def test_the_database_at_a_revision_of_a_cycle(tmp_path: Path, sqlite_db: Database) -> None:
    """The database holds a revision whose only files form a cycle: nothing can repair it,
    every command says so and exits 1 at most."""
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    write_faults(a, BASE_REV)
    a.commit("a: broken migrations")
    sqlite_db.execute(f"UPDATE alembic_version SET version_num = '{CYCLE[0]}'")

    results = run_all(b, (["list"], ["status"], ["graph"], ["check"], ["upgrade"]))

    assert results["check"][0] == 1 and results["upgrade"][0] == 1
    assert "form a cycle" in results["list"][1]
    listed = json.loads(b.autocopy("list", "--json").stdout)
    assert {r["revision"] for r in listed["revisions"] if r["applied"]} >= set(CYCLE)


def candidate(revision: str, *down: str, where: str = "/w", name: str | None = None,
              kind: LocationKind = LocationKind.WORKTREE, ref: str | None = None) -> Candidate:
    filename = name or f"{revision}.py"
    return Candidate(MigrationHeader(revision, tuple(down)), sha256=filename, size=1,
                     filename=filename, relative_path=filename,
                     location=Location(kind, path=f"{where}/{filename}", worktree=where,
                                       ref=ref))


@pytest.mark.parametrize("length", [1, 2, 3000])
def test_cycles_of_any_length_are_found_without_recursion(length: int) -> None:
    ids = [f"r{index:011d}" for index in range(length)]
    found = [candidate(rev, ids[index - 1]) for index, rev in enumerate(ids)]
    faults = graph_faults([candidate("base"), *found])
    assert len(faults) == 1 and "form a cycle" in faults[0]


def test_a_sound_graph_has_no_fault_and_copies_in_two_sources_are_not_duplicates() -> None:
    here = [candidate("a", where="/here"), candidate("b", "a", where="/here")]
    there = [candidate("a", where="/there"), candidate("b", "a", where="/there"),
             candidate("c", "b", where="/there")]
    assert graph_faults([*here, *there]) == []
    # find keeps only some ids: a parent it did not keep is not "missing"
    assert graph_faults([candidate("c", "b")], every_id_known=False) == []
    assert "is in no source" in graph_faults([candidate("c", "b")])[0]


def test_this_worktree_with_a_missing_parent(tmp_path: Path, sqlite_db: Database) -> None:
    """Alembic itself cannot load this worktree: `revision` (which runs Alembic) says which
    parent is missing instead of "env.py failed: KeyError"."""
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    b.write_migration(ORPHAN, down=NOWHERE, message="orphan")

    results = run_all(b, (["list"], ["status"], ["check"], ["revision", "-m", "next"]))

    assert f"revision {NOWHERE} is named as a parent" in results["revision"][1]
    assert "KeyError" not in results["revision"][1]
    assert NOWHERE in results["list"][1] and ORPHAN in results["list"][1]
