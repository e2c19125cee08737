"""Search lazily (issue 6): with nothing to do, a run reads this worktree and the database,
and no other worktree, folder or git ref; planning keeps only what a plan can use, while
find and list still show every location. Real repositories, real git, real SQLite.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from alembic_autocopy import repair
from alembic_autocopy.core.drift import Record
from alembic_autocopy.core.model import Candidate, Location, LocationKind, MigrationHeader
from alembic_autocopy.effects.project import load_project
from alembic_autocopy.sources import gitobjects, index, inventory, scanning
from alembic_autocopy.sources.records import RecordSet
from support import BASE_REV, Database, Repo, integrate_env_py, make_repo

JUNK = "this is not a migration (\n"


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (exit {result.returncode}):\n{result.stdout}\n"
                             f"{result.stderr}") from None
    return document


def skipped_paths(document: dict[str, Any]) -> list[str]:
    return [item["path"] for item in document["skipped"]]


def junk_elsewhere(repo: Repo) -> None:
    """A junk ``.py`` in a sibling worktree's versions folder, and another one that only a
    branch holds (its worktree removed): reading either would warn about it."""
    sibling = repo.add_worktree("sibling")
    (sibling.versions / "zz_sibling_junk.py").write_text(JUNK, encoding="utf-8")
    gone = repo.add_worktree("gone")
    (gone.versions / "zz_branch_junk.py").write_text(JUNK, encoding="utf-8")
    gone.commit("junk on a branch")
    repo.main.git("worktree", "remove", "--force", str(gone.path))


def test_nothing_to_do_reads_no_other_worktree_nor_git_ref(sqlite_db: Database,
                                                            tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.alembic("upgrade", "head", check=True)
    junk_elsewhere(repo)

    quiet = repo.main.autocopy("check", "--json")

    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert as_json(quiet)["ok"] is True
    assert skipped_paths(as_json(quiet)) == []
    assert "junk" not in quiet.stderr

    # Once the database holds something this worktree lacks, the other worktrees are
    # searched (and their junk reported); they hold it all, so git refs are not.
    feature = repo.add_worktree("feature")
    ids = feature.chain(2, BASE_REV, "fe")
    feature.commit("two steps")
    feature.alembic("upgrade", "head", check=True)

    searched = repo.main.autocopy("check", "--json")

    assert searched.returncode == 1
    document = as_json(searched)
    assert [(c["revision"], c["location"]["kind"]) for c in document["plan"]["bring"]] == [
        (rev, "worktree") for rev in ids]
    reported = " ".join(skipped_paths(document))
    assert "zz_sibling_junk.py" in reported and "zz_branch_junk.py" not in reported

    # Only a branch holds them now: git refs are searched too.
    repo.main.git("worktree", "remove", "--force", str(feature.path))
    from_git = as_json(repo.main.autocopy("check", "--json"))

    assert [(c["revision"], c["location"]["kind"]) for c in from_git["plan"]["bring"]] == [
        (rev, "branch") for rev in ids]
    reported = " ".join(skipped_paths(from_git))
    assert "zz_sibling_junk.py" in reported and "zz_branch_junk.py" in reported


def test_upgrade_with_nothing_to_do_stays_in_this_worktree(sqlite_db: Database,
                                                           tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    junk_elsewhere(repo)

    result = repo.main.autocopy("upgrade", "--json")  # the database is behind: upgrade only

    assert result.returncode == 0, result.stdout + result.stderr
    document = as_json(result)
    assert document["heads_after"] == [BASE_REV]
    assert skipped_paths(document) == [] and document["notes"] == []


def test_planning_keeps_the_closest_copy_while_find_lists_every_location(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    feature = repo.add_worktree("feature")
    (rev,) = feature.chain(1, BASE_REV, "c1")
    feature.commit("one step")
    feature.git("tag", "v1")
    feature.alembic("upgrade", "head", check=True)

    plan = as_json(repo.main.autocopy("upgrade", "--dry-run", "--json"))["plan"]
    found = as_json(repo.main.autocopy("find", rev, "--json"))
    listed = as_json(repo.main.autocopy("list", "--no-db", "--json"))

    assert [(c["revision"], c["location"]["kind"]) for c in plan["bring"]] == [
        (rev, "worktree")]
    # The branch and the tag hold the very same content: no plan can use them.
    assert plan["also_found"] == {}
    every = ["worktree", "branch", "tag"]
    assert [c["location"]["kind"] for c in found["locations"]] == every
    (row,) = [r for r in listed["revisions"] if r["revision"] == rev]
    assert [loc["kind"] for loc in row["locations"]] == every


def test_a_branch_gone_is_reported_only_when_no_source_holds_the_revision(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    integrate_env_py(repo)  # the record table is created only with env.py's line
    a = repo.add_worktree("a")
    (rev,) = a.chain(1, BASE_REV, "a1")
    a.commit("one step")
    a.git("branch", "keep")  # another branch holds the revision
    a.autocopy("upgrade", check=True)  # recorded as applied from branch `a`
    repo.main.autocopy("upgrade", check=True)  # main gets an (uncommitted) copy
    repo.main.git("worktree", "remove", "--force", str(a.path))
    repo.main.git("branch", "-D", "a")

    kept = as_json(repo.main.autocopy("check", "--json"))

    assert kept["ok"] is True
    assert kept["drift"]["branch_gone"] == []

    repo.main.git("branch", "-D", "keep")
    gone = as_json(repo.main.autocopy("check", "--json"))["drift"]["branch_gone"]

    assert [(g["revision"], g["branch"]) for g in gone] == [(rev, "a")]


# --------------------------------------------------------------------------------------------
# The pieces, in process.


def _candidate(revision: str, *parents: str) -> Candidate:
    return Candidate(header=MigrationHeader(revision, parents), sha256="s" + revision,
                     size=1, filename=f"{revision}.py",
                     location=Location(kind=LocationKind.HERE, path=f"/v/{revision}.py"))


def _records(**parents: tuple[str, ...]) -> RecordSet:
    recorded = RecordSet("alembic_autocopy_scripts", exists=True)
    for revision, recorded_parents in parents.items():
        recorded.records[revision] = Record(revision, recorded_parents, "s" + revision,
                                            f"{revision}.py")
    return recorded


def test_more_sources_are_needed_only_when_what_was_read_leaves_the_plan_open() -> None:
    here = scanning.Inventory(local=[_candidate("a1"), _candidate("b1", "a1")])
    options = repair.Options()

    def needs(found: scanning.Inventory, applied: list[str], recorded: RecordSet | None = None,
              chosen: repair.Options = options) -> bool:
        return repair._needs_more_sources(found, applied, recorded, chosen)  # under test

    assert not needs(here, ["b1"])
    assert not needs(here, [])
    assert not needs(here, ["b1"], _records(b1=("a1",)))
    assert needs(here, ["c1"])  # the database holds a revision unknown here
    half = scanning.Inventory(local=[_candidate("b1", "a1")])
    assert needs(half, ["b1"])  # a revision here lacks its parent
    # b1 was applied on top of x1, which only another place may still hold (re-pointed).
    assert needs(here, ["b1"], _records(b1=("x1",)))

    # Files elsewhere hold c1 and its parent: a git copy could not change the plan...
    c1 = _candidate("c1", "b1")._replace(location=Location(kind=LocationKind.WORKTREE,
                                                          path="/w/c1.py"))
    found = scanning.Inventory(local=here.local, elsewhere=[c1])
    assert not needs(found, ["c1"])
    # ... unless --prefer may pick another copy, or a parent is still missing.
    assert needs(found, ["c1"], chosen=repair.Options(prefer=("feature",)))
    d1 = _candidate("d1", "x9")._replace(location=c1.location)
    assert needs(scanning.Inventory(local=here.local, elsewhere=[d1]), ["d1"])


def test_git_objects_build_candidates_only_for_what_is_wanted(sqlite_db: Database,
                                                              tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    for name, prefix in (("one", "e1"), ("two", "e2")):
        worktree = repo.add_worktree(name)
        worktree.chain(2, BASE_REV, prefix)
        worktree.commit(f"branch {name}")
    project = load_project(cwd=repo.main.path)
    cache = index.MigrationIndex(None)

    everything = gitobjects.search(project, cache=cache)
    some = gitobjects.search(project, cache=cache,
                             wanted=lambda revision, _blob: revision.startswith("e2"))

    assert some.stats.files_seen == everything.stats.files_seen  # every file still listed
    assert sorted({c.revision for c in everything.candidates}) == sorted(
        [BASE_REV, "e10000000001", "e10000000002", "e20000000001", "e20000000002"])
    assert sorted((c.revision, c.location.ref) for c in some.candidates) == [
        ("e20000000001", "refs/heads/two"), ("e20000000002", "refs/heads/two")]


def test_the_prefix_and_closest_only_reach_git_objects(sqlite_db: Database,
                                                       tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    other = repo.add_worktree("other")
    other.chain(1, BASE_REV, "d1")
    other.commit("one step")
    project = load_project(cwd=repo.main.path)

    def kinds(options: repair.Options) -> list[tuple[str, str]]:
        found = inventory.gather(project, options)
        ordered = sorted(found.all, key=lambda c: (c.revision, c.location.kind.rank))
        return [(c.revision, c.location.kind.value) for c in ordered]

    assert kinds(repair.Options(revision_prefix="d1")) == [
        ("d10000000001", "worktree"), ("d10000000001", "branch")]
    # Planning: the base is here (no copy elsewhere matters), d1's branch copy is the
    # worktree's content (the worktree is closer)...
    assert kinds(repair.Options(closest_only=True)) == [
        (BASE_REV, "here"), ("d10000000001", "worktree")]
    # ... unless --prefer may name the branch: then it stays, and so do the copies of this
    # worktree's own ids (a preference naming one of them is refused, not ignored).
    assert kinds(repair.Options(closest_only=True, prefer=("other",))) == [
        (BASE_REV, "here"), (BASE_REV, "worktree"), (BASE_REV, "branch"),
        (BASE_REV, "branch"), ("d10000000001", "worktree"), ("d10000000001", "branch")]
    assert kinds(repair.Options()) == [
        (BASE_REV, "here"), (BASE_REV, "worktree"), (BASE_REV, "branch"),
        (BASE_REV, "branch"), ("d10000000001", "worktree"), ("d10000000001", "branch")]


def test_verbose_says_what_was_searched_and_what_the_index_saved(sqlite_db: Database,
                                                                  tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.alembic("upgrade", "head", check=True)
    feature = repo.add_worktree("feature")
    ids = feature.chain(3, BASE_REV, "fv")
    feature.commit("three steps")

    nothing_to_do = repo.main.autocopy("check", "-v", check=True).stdout
    assert "searched this worktree only (nothing was needed from elsewhere)" in nothing_to_do

    # find looks everywhere. Files written a moment ago are read every time (the index
    # does not trust them yet), so the counts are reads, then the same reads again.
    first = repo.main.autocopy("find", ids[0], "-v", check=True).stdout
    assert "searched this worktree and 1 other worktree(s) or folder(s), " in first
    assert " git ref(s); index: " in first and " parsed" in first

    # Once the files are older than the racy window, a run records them and the next one
    # answers from the index.
    time.sleep(index.RACY_WINDOW_NS / 1e9 + 0.2)
    repo.main.autocopy("find", ids[0], check=True)
    warm = repo.main.autocopy("find", ids[0], "-v", check=True).stdout
    assert " 0 read, 0 parsed" in warm
    assert warm.splitlines()[1:] == first.splitlines()[1:]

