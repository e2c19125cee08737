"""Migrations found wherever git keeps them: branches, remotes, tags, stashes, other clones,
bare layouts, Git LFS (issue 3). Real repositories, real git, real SQLite databases.

The database is SQLite everywhere here: what is under test is where migrations are found,
which does not depend on the database (the repair itself is tested on every backend
elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import load_project
from alembic_autocopy.sources import gitobjects, index
from support import BASE_REV, Database, Repo, Worktree, make_repo, rev_ids, run

GIT = shutil.which("git") or "git"
HAS_GIT_LFS = shutil.which("git-lfs") is not None


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return document


def ok_json(worktree: Worktree, *args: str, env: dict[str, str | None] | None = None
            ) -> dict[str, Any]:
    result = worktree.autocopy(*args, "--json", env=env)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return as_json(result)


def brought(document: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(revision, location kind, ref) of each revision the plan brought in, parents first."""
    return [(c["revision"], c["location"]["kind"], c["location"]["ref"])
            for c in document["plan"]["bring"]]


def placed_files(worktree: Worktree) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in worktree.versions.glob("*.py")
            if not p.name.startswith(BASE_REV)}


def commit_of(worktree: Worktree, ref: str) -> str:
    return worktree.git("rev-parse", f"{ref}^{{commit}}").stdout.strip()


def applied_chain(repo: Repo, name: str, count: int, prefix: str,
                  commit: bool = True) -> tuple[Worktree, list[str], dict[str, bytes]]:
    """Worktree ``name`` writes a chain of ``count`` on the base, applies it to the shared
    database (with plain Alembic); returns it, the ids and the files' bytes."""
    worktree = repo.add_worktree(name)
    ids = worktree.chain(count, BASE_REV, prefix)
    if commit:
        worktree.commit(f"{count} steps")
    worktree.alembic("upgrade", "head", check=True)
    return worktree, ids, placed_files(worktree)


# --------------------------------------------------------------------------------------------
# Acceptance: a removed worktree's branch; a deleted but not pruned worktree.


@pytest.mark.parametrize("how", ["removed", "folder-deleted"])
def test_repair_from_the_branch_of_a_removed_worktree(
        sqlite_db: Database, tmp_path: Path, how: str) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    a, ids, contents = applied_chain(repo, "a", 3, "a")
    if how == "removed":
        repo.main.git("worktree", "remove", str(a.path))
    else:
        shutil.rmtree(a.path)  # gone, but git still lists it until `git worktree prune`
    b = repo.add_worktree("b")

    without_refs = b.autocopy("check", "--no-git-refs")
    assert without_refs.returncode == 1
    assert "found nowhere" in without_refs.stderr

    document = ok_json(b, "upgrade")
    assert brought(document) == [(rev, "branch", "refs/heads/a") for rev in ids]
    first = document["plan"]["bring"][0]["location"]
    assert first["commit"] == commit_of(repo.main, "a")
    assert first["commit_date"] == "2024-01-02T03:04:05+00:00"
    assert first["path"].startswith("migrations/versions/")
    assert placed_files(b) == contents  # the committed bytes, exactly
    assert sqlite_db.versions() == {ids[-1]}
    assert b.alembic("current", check=True).stdout.strip().startswith(ids[-1])
    if how == "folder-deleted":
        assert any("no longer exists" in w and "git worktree prune" in w
                   for w in document["warnings"])


# --------------------------------------------------------------------------------------------
# Acceptance: a colleague's push found with --fetch; offline, the local refs still serve.


def test_fetch_finds_what_another_clone_pushed_and_offline_goes_on(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    origin = tmp_path / "origin.git"
    run([GIT, "clone", "--quiet", "--bare", str(repo.root), str(origin)], cwd=tmp_path,
        check=True)
    repo.main.git("remote", "add", "origin", str(origin))
    repo.main.git("fetch", "--quiet", "origin")
    colleague = Worktree(path=tmp_path / "Colleague")
    run([GIT, "clone", "--quiet", str(origin), str(colleague.path)], cwd=tmp_path, check=True)
    colleague.git("switch", "--quiet", "-c", "feature")
    ids = colleague.chain(3, BASE_REV, "c")
    colleague.commit("colleague's work")
    colleague.git("push", "--quiet", "origin", "feature")
    colleague.alembic("upgrade", "head", check=True)

    before = repo.main.autocopy("upgrade", "--no-fetch")
    assert before.returncode == 1, before.stderr
    assert "found nowhere" in before.stderr

    document = ok_json(repo.main, "upgrade", "--fetch")
    assert brought(document) == [(rev, "remote", "refs/remotes/origin/feature") for rev in ids]
    assert sqlite_db.versions() == {ids[-1]}

    # One more step, fetched by hand earlier; then the remote becomes unreachable.
    colleague.write_migration("c00000000004", down=ids[-1])
    colleague.commit("one more")
    colleague.git("push", "--quiet", "origin", "feature")
    colleague.alembic("upgrade", "head", check=True)
    repo.main.git("fetch", "--quiet", "origin")
    origin.rename(tmp_path / "origin-moved.git")
    ini = repo.main.path / "alembic.ini"  # the setting, this time, instead of the flag
    ini.write_text(ini.read_text("utf-8") + "\n[alembic-autocopy]\nfetch = true\n", "utf-8")

    offline = ok_json(repo.main, "upgrade")
    assert brought(offline) == [("c00000000004", "remote", "refs/remotes/origin/feature")]
    assert any(w.startswith("offline:") and "git fetch" in w for w in offline["warnings"])
    assert sqlite_db.versions() == {"c00000000004"}


def test_fetch_that_hangs_is_stopped_after_the_time_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote that never answers: the fetch (and its helper) is stopped, the note says
    offline."""
    repo_path = tmp_path / "r"
    run([GIT, "init", "--quiet", str(repo_path)], cwd=tmp_path, check=True)
    helper = tmp_path / "git-remote-stall"  # git runs it for "stall::" URLs
    helper.write_text("#!/bin/sh\nexec sleep 600\n", "utf-8")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    run([GIT, "remote", "add", "origin", "stall::nowhere"], cwd=repo_path, check=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    note = gitobjects.fetch_all(repo_path, timeout=1.0)
    assert note is not None
    assert note.startswith("offline:") and "1 s" in note


# --------------------------------------------------------------------------------------------
# Acceptance: only in a stash entry; only in a tag.


def test_found_only_in_a_stash_entry(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    staged, untracked = rev_ids("5", 2)
    a.write_migration(staged, down=BASE_REV)
    a.git("add", "-A")  # in the stash's own tree
    a.write_migration(untracked, down=staged)  # in its untracked-files parent (stash -u)
    a.alembic("upgrade", "head", check=True)
    a.git("stash", "push", "--quiet", "--include-untracked")
    assert placed_files(a) == {}
    b = repo.add_worktree("b")

    document = ok_json(b, "upgrade")
    assert brought(document) == [(staged, "stash", "stash@{0}"),
                                 (untracked, "stash", "stash@{0}")]
    assert document["plan"]["bring"][0]["location"]["description"] == "stash stash@{0}"
    assert sqlite_db.versions() == {untracked}


def test_found_only_in_a_tag(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    a, ids, contents = applied_chain(repo, "a", 2, "7a")
    a.git("tag", "--annotate", "-m", "release 1", "release-1")
    repo.main.git("worktree", "remove", str(a.path))
    repo.main.git("branch", "--quiet", "-D", "a")
    b = repo.add_worktree("b")

    document = ok_json(b, "upgrade")
    assert brought(document) == [(rev, "tag", "refs/tags/release-1") for rev in ids]
    # the commit the (annotated) tag points at, not the tag object
    assert document["plan"]["bring"][0]["location"]["commit"] == commit_of(b, "release-1")
    assert placed_files(b) == contents
    assert sqlite_db.versions() == {ids[-1]}


# --------------------------------------------------------------------------------------------
# Acceptance: a bare repository with linked worktrees.


def test_bare_repository_with_linked_worktrees(sqlite_db: Database, tmp_path: Path) -> None:
    project = make_repo(tmp_path, sqlite_db)
    bare = tmp_path / "layout.git"
    run([GIT, "clone", "--quiet", "--bare", str(project.root), str(bare)], cwd=tmp_path,
        check=True)
    a, b = Worktree(path=tmp_path / "wt-a"), Worktree(path=tmp_path / "wt-b")
    for worktree, branch in ((a, "a"), (b, "b")):
        run([GIT, "worktree", "add", "--quiet", "-b", branch, str(worktree.path)], cwd=bare,
            check=True)
    ids = a.chain(2, BASE_REV, "ba")
    a.alembic("upgrade", "head", check=True)

    found = ok_json(b, "find", ids[0])
    assert [loc["location"]["kind"] for loc in found["locations"]] == ["worktree"]
    first = ok_json(b, "upgrade")
    assert brought(first) == [(rev, "worktree", None) for rev in ids]

    a.commit("two steps")
    a.write_migration("ba0000000003", down=ids[-1])
    a.commit("a third")
    a.alembic("upgrade", "head", check=True)
    run([GIT, "worktree", "remove", str(a.path)], cwd=bare, check=True)
    second = ok_json(b, "upgrade")
    assert brought(second) == [("ba0000000003", "branch", "refs/heads/a")]
    assert second["plan"]["bring"][0]["location"]["worktree"] == str(bare)
    assert sqlite_db.versions() == {"ba0000000003"}
    assert b.status_porcelain() == ""


# --------------------------------------------------------------------------------------------
# Acceptance: paths with spaces and non-ASCII characters.


def test_paths_with_spaces_and_non_ascii_characters(sqlite_db: Database, tmp_path: Path) -> None:
    parent = tmp_path / "dossier partagé"
    parent.mkdir()
    repo = make_repo(parent, sqlite_db, name="Projet à jour")
    a = repo.add_worktree("a", branch="fünf", path=parent / "wörk tree ä")
    ids = rev_ids("e0", 2)
    a.write_migration(ids[0], down=BASE_REV, message="añadir tabla ü")
    a.write_migration(ids[1], down=ids[0], message="zweite Änderung")
    a.commit("zwei Schritte")
    contents = placed_files(a)
    assert any("ñ" in name for name in contents)
    a.alembic("upgrade", "head", check=True)
    b = repo.add_worktree("b", path=parent / "b ü")

    found = ok_json(b, "find", ids[0])
    kinds = {(loc["location"]["kind"], loc["location"]["ref"]) for loc in found["locations"]}
    assert kinds == {("worktree", None), ("branch", "refs/heads/fünf")}
    worktree_location = next(loc["location"] for loc in found["locations"]
                             if loc["location"]["kind"] == "worktree")
    assert worktree_location["worktree"] == str(a.path)
    assert worktree_location["branch"] == "fünf"

    repo.main.git("worktree", "remove", str(a.path))
    document = ok_json(b, "upgrade")
    assert brought(document) == [(rev, "branch", "refs/heads/fünf") for rev in ids]
    assert placed_files(b) == contents
    assert sqlite_db.versions() == {ids[-1]}


# --------------------------------------------------------------------------------------------
# A versions folder that moved: each ref's own configuration is searched too.


def test_versions_folder_moved_since_the_branch(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    old, ids, contents = applied_chain(repo, "old", 2, "0d")
    repo.main.git("worktree", "remove", str(old.path))
    main = repo.main
    (main.path / "db").mkdir()
    main.git("mv", "migrations/versions", "db/versions")
    ini = main.path / "alembic.ini"
    text = ini.read_text("utf-8")
    anchor = "script_location = %(here)s/migrations\n"
    assert anchor in text
    ini.write_text(text.replace(anchor, anchor + "version_locations = %(here)s/db/versions\n"),
                   "utf-8")
    main.commit("versions now live in db/versions")
    b = repo.add_worktree("b")

    document = ok_json(b, "upgrade")
    assert brought(document) == [(rev, "branch", "refs/heads/old") for rev in ids]
    assert [c["location"]["path"] for c in document["plan"]["bring"]] == [
        f"migrations/versions/{name}" for name in sorted(contents)]
    moved = {p.name: p.read_bytes() for p in (b.path / "db" / "versions").glob("0d*.py")}
    assert moved == contents
    assert sqlite_db.versions() == {ids[-1]}


# --------------------------------------------------------------------------------------------
# Other clones (configured folders): their branches too; a bare clone as well.


def test_configured_clones_are_searched_with_their_refs(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    colleague = Worktree(path=tmp_path / "Colleague")
    run([GIT, "clone", "--quiet", str(repo.root), str(colleague.path)], cwd=tmp_path,
        check=True)
    colleague.git("switch", "--quiet", "-c", "feature")
    ids = colleague.chain(2, BASE_REV, "f0")
    colleague.commit("colleague's work")
    colleague.alembic("upgrade", "head", check=True)
    colleague.git("switch", "--quiet", "main")  # the files leave its worktree
    shared = tmp_path / "Shared.git"
    run([GIT, "clone", "--quiet", "--bare", str(colleague.path), str(shared)], cwd=tmp_path,
        check=True)
    # A linked worktree of the bare clone, with one more (uncommitted) step applied.
    extra = Worktree(path=tmp_path / "shared-extra")
    run([GIT, "worktree", "add", "--quiet", "-b", "extra", str(extra.path), "feature"],
        cwd=shared, check=True)
    extra.write_migration("f00000000003", down=ids[-1])
    extra.alembic("upgrade", "head", check=True)
    ini = repo.main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + f"\n[alembic-autocopy]\nsearch = {colleague.path}"
                   f", {shared}\n", "utf-8")

    found = ok_json(repo.main, "find", ids[0])
    places = {(loc["location"]["kind"], loc["location"]["worktree"], loc["location"]["ref"])
              for loc in found["locations"]}
    assert places == {("branch", str(colleague.path), "refs/heads/feature"),
                      ("branch", str(shared), "refs/heads/feature"),
                      ("branch", str(shared), "refs/heads/extra"),
                      ("clone", str(extra.path), None)}
    document = ok_json(repo.main, "upgrade")
    assert [(rev, kind) for rev, kind, _ in brought(document)] == [
        *((rev, "clone") for rev in ids), ("f00000000003", "clone")]
    assert sqlite_db.versions() == {"f00000000003"}


# --------------------------------------------------------------------------------------------
# Acceptance: find --json lists every location with kind, ref or path, commit and sha256.


def test_find_lists_every_location(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    origin = tmp_path / "origin.git"
    run([GIT, "init", "--quiet", "--bare", str(origin)], cwd=tmp_path, check=True)
    repo.main.git("remote", "add", "origin", str(origin))
    a = repo.add_worktree("a")
    rev = a.chain(1, BASE_REV, "11")[0]
    a.commit("one step")
    a.git("tag", "v1")
    a.git("push", "--quiet", "origin", "a")
    repo.main.git("fetch", "--quiet", "origin")
    a.write_migration("1100000000ff", down=rev)
    a.git("add", "-A")
    a.git("stash", "push", "--quiet")  # the stash holds `rev` too, with the base
    commit = commit_of(a, "a")

    document = ok_json(repo.main, "find", rev)
    assert document["revision"] == rev
    assert document["distinct_contents"] == 1
    locations = [c["location"] for c in document["locations"]]
    assert [loc["kind"] for loc in locations] == ["worktree", "branch", "remote", "tag",
                                                  "stash"]
    sha = {c["sha256"] for c in document["locations"]}
    assert len(sha) == 1 and len(sha.pop()) == 64
    for location in locations:
        assert location["commit"] == commit or location["kind"] == "stash"
        assert location["path"]
        if location["kind"] != "worktree":
            assert location["ref"] and location["commit_date"]
            assert location["path"].startswith("migrations/versions/")
    assert [loc["ref"] for loc in locations[1:]] == [
        "refs/heads/a", "refs/remotes/origin/a", "refs/tags/v1", "stash@{0}"]
    text = repo.main.autocopy("find", rev)
    assert text.returncode == 0
    assert f"remote origin/a: migrations/versions/{rev}_step_{rev}.py @ {commit[:10]}" \
           " (2024-01-02T03:04:05+00:00)" in text.stdout
    assert "tag v1" in text.stdout and "stash stash@{0}" in text.stdout


@pytest.mark.parametrize(("git_date", "shown"), [
    ("1704164645 -0530", "2024-01-01T21:34:05-05:30"),
    ("1704164645 +1345", "2024-01-02T16:49:05+13:45"),
    ("1704164645 -0000", "2024-01-02T03:04:05+00:00"),
])
def test_a_commit_date_is_shown_in_its_own_zone(
        sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        git_date: str, shown: str) -> None:
    """Git keeps each commit's zone: `find` shows the committer's time there, ISO 8601 as
    `git log --format=%cI` would (without loading datetime)."""
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    rev = a.chain(1, BASE_REV, "12")[0]
    monkeypatch.setenv("GIT_COMMITTER_DATE", git_date)
    a.commit("one step")
    assert a.git("log", "-1", "--format=%cI").stdout.strip() == shown

    document = ok_json(repo.main, "find", rev)
    dates = {c["location"]["ref"]: c["location"]["commit_date"] for c in document["locations"]
             if c["location"]["kind"] == "branch"}
    assert dates == {"refs/heads/a": shown}


# --------------------------------------------------------------------------------------------
# Acceptance: from inside a git hook, results are identical.


def test_results_are_identical_inside_a_git_hook(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    a.chain(2, BASE_REV, "4a")
    a.commit("two steps")
    a.write_migration("4a0000000003", down="4a0000000002")
    a.git("add", "-A")  # committed by the hook's commit below
    b = repo.add_worktree("b")
    b.chain(1, BASE_REV, "4b")
    command = ["list", "--no-db", "--json"]

    plain = ok_json(b, *command)
    assert {loc["kind"] for row in plain["revisions"] for loc in row["locations"]} >= {
        "here", "worktree", "branch"}

    elsewhere = Worktree(path=tmp_path / "Elsewhere")
    run([GIT, "init", "--quiet", str(elsewhere.path)], cwd=tmp_path, check=True)
    misdirected = ok_json(b, *command, env={
        "GIT_DIR": str(elsewhere.path / ".git"),
        "GIT_WORK_TREE": str(elsewhere.path),
        "GIT_INDEX_FILE": str(elsewhere.path / ".git" / "index"),
    })
    assert misdirected == plain

    hooks = Path(repo.main.git("rev-parse", "--path-format=absolute", "--git-path",
                               "hooks").stdout.strip())
    output, seen = tmp_path / "from-hook.json", tmp_path / "hook-env.txt"
    script = hooks / "pre-commit"
    script.write_text(
        "#!/bin/sh\n"
        f"env | grep '^GIT_' > '{seen}'\n"
        f"cd '{b.path}' && '{sys.executable}' -m alembic_autocopy {' '.join(command)} "
        f"> '{output}'\n", "utf-8")
    script.chmod(0o755)
    a.git("commit", "--quiet", "-m", "through the hook")
    hook_env = seen.read_text("utf-8")
    assert "GIT_DIR=" in hook_env and "GIT_INDEX_FILE=" in hook_env  # git set them
    assert json.loads(output.read_text("utf-8")) == plain


# --------------------------------------------------------------------------------------------
# Acceptance: Git LFS, with and without git-lfs.


@pytest.mark.skipif(not HAS_GIT_LFS and not os.environ.get("CI"),
                    reason="git-lfs is not installed (apt-get install git-lfs)")
def test_git_lfs_migrations(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.git("lfs", "install", "--local")
    repo.main.git("lfs", "track", "migrations/versions/1f*.py")
    repo.main.commit("migrations in Git LFS")
    a, ids, contents = applied_chain(repo, "a", 2, "1f")
    stored = a.git("cat-file", "-p", f"a:migrations/versions/{sorted(contents)[0]}").stdout
    assert stored.startswith("version https://git-lfs.github.com/spec/v1")  # a pointer
    repo.main.git("worktree", "remove", str(a.path))
    b = repo.add_worktree("b")

    # Without git-lfs: a clear message naming the file; nothing changed.
    no_lfs = tmp_path / "bin-without-lfs"
    no_lfs.mkdir()
    (no_lfs / "git").symlink_to(GIT)
    refused = b.autocopy("upgrade", env={"PATH": str(no_lfs)})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"migrations/versions/{sorted(contents)[0]}" in refused.stderr
    assert "Git LFS" in refused.stderr and "install git-lfs" in refused.stderr
    assert placed_files(b) == {}

    # With git-lfs: the content, never the pointer.
    document = ok_json(b, "upgrade")
    assert brought(document) == [(rev, "branch", "refs/heads/a") for rev in ids]
    assert {c["location"]["detail"] for c in document["plan"]["bring"]} == {"Git LFS"}
    assert placed_files(b) == contents
    assert sqlite_db.versions() == {ids[-1]}


# --------------------------------------------------------------------------------------------
# Acceptance: 30 branches x many migrations start a handful of git processes; identical
# blobs are read once.


def _fleet(tmp_path: Path, db: Database, name: str, branches: int, shared: int,
           own: int) -> Repo:
    """A repository whose ``branches`` branches each hold ``shared`` common migrations plus
    ``own`` of their own, written in one ``git fast-import``."""
    repo = make_repo(tmp_path, db, name=name)
    base = commit_of(repo.main, "main")
    stream: list[bytes] = []

    def migration(path: str, rev: str, down: str) -> None:
        body = (f'"""step {rev}"""\nrevision = {rev!r}\ndown_revision = {down!r}\n'
                "branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    pass\n\n\n"
                "def downgrade():\n    pass\n").encode()
        stream.append(b"M 100644 inline migrations/versions/%s\ndata %d\n%s\n"
                      % (path.encode(), len(body), body))

    def commit(ref: str, parent: str, message: str, mark: str = "") -> None:
        stream.append(b"commit %s\n%scommitter T <t@example.invalid> 1704164645 +0000\n"
                      b"data %d\n%s\nfrom %s\n" % (ref.encode(), mark.encode(), len(message),
                                                   message.encode(), parent.encode()))

    commit("refs/heads/fleet-base", base, "shared", mark="mark :1\n")
    shared_ids = rev_ids("5a", shared)
    for down, rev in zip([BASE_REV, *shared_ids], shared_ids, strict=False):
        migration(f"{rev}_step.py", rev, down)
    for number in range(branches):
        commit(f"refs/heads/fleet-{number:02d}", ":1", "own")
        own_ids = rev_ids(f"b{number:02d}", own)
        for down, rev in zip([shared_ids[-1], *own_ids], own_ids, strict=False):
            migration(f"{rev}_step.py", rev, down)
    run_input = subprocess.run([GIT, "fast-import", "--quiet"], cwd=repo.root,
                               input=b"".join(stream), capture_output=True, check=False)
    assert run_input.returncode == 0, run_input.stderr
    return repo


def _git_processes(worktree: Worktree, tmp_path: Path, *args: str) -> list[str]:
    """The git commands one run of the tool starts (a counting `git` first on PATH)."""
    shim_dir = tmp_path / f"shim-{worktree.path.name}"
    shim_dir.mkdir()
    log = tmp_path / f"git-{worktree.path.name}.log"
    shim = shim_dir / "git"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{GIT}" "$@"\n',
                    "utf-8")
    shim.chmod(0o755)
    ok_json(worktree, *args, env={"PATH": f"{shim_dir}{os.pathsep}{os.environ['PATH']}",
                                  index.DISABLE_VARIABLE: "1"})
    return log.read_text("utf-8").splitlines()


def test_git_processes_do_not_grow_with_refs_or_files(sqlite_db: Database,
                                                      tmp_path: Path) -> None:
    small = _fleet(tmp_path, sqlite_db, "Small", branches=2, shared=10, own=2)
    large = _fleet(tmp_path, sqlite_db, "Large", branches=30, shared=200, own=5)
    find = ("find", "5a0000000001")

    small_calls = _git_processes(small.main, tmp_path, *find)
    large_calls = _git_processes(large.main, tmp_path, *find)
    assert len(large_calls) == len(small_calls), (small_calls, large_calls)
    assert len(large_calls) <= 10, large_calls
    assert sum(call.startswith("cat-file") for call in large_calls) == 1
    document = ok_json(large.main, *find)
    assert len(document["locations"]) == 31  # fleet-base and each of the 30 branches


def test_identical_blobs_are_read_once(sqlite_db: Database, tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, sqlite_db, "Fleet", branches=6, shared=40, own=3)
    project = load_project(cwd=fleet.main.path)
    cache = index.MigrationIndex(None)

    first = gitobjects.search(project, cache=cache)
    distinct = 1 + 40 + 6 * 3  # the base, the shared chain, each branch's own
    assert first.stats.blobs_read == distinct
    assert first.stats.files_seen == 1 + (1 + 40) + 6 * (1 + 40 + 3)  # main, base, branches
    assert len(first.candidates) == first.stats.files_seen

    again = gitobjects.search(project, cache=cache)  # what the index knows is not read
    assert (again.stats.blobs_read, again.stats.trees_read) == (0, 0)
    assert sorted(c.location.blob or "" for c in again.candidates) == sorted(
        c.location.blob or "" for c in first.candidates)


# --------------------------------------------------------------------------------------------
# The pure pieces.


def test_commit_dates_keep_their_offset() -> None:
    facts = gitobjects.parse_commit("c" * 40, b"tree " + b"t" * 40 + b"\nparent " + b"p" * 40
                                    + b"\ncommitter A <a@b> 1704164645 -0230\n\nmessage\n")
    assert facts.tree == "t" * 40 and facts.parents == ("p" * 40,)
    assert facts.date == "2024-01-02T00:34:05-02:30"


def test_lfs_pointer_recognition() -> None:
    from alembic_autocopy.effects.git import is_lfs_pointer

    pointer = (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64
               + b"\nsize 12\n")
    assert is_lfs_pointer(pointer)
    assert not is_lfs_pointer(b'"""version https://git-lfs..."""\nrevision = "x"\n')
    assert not is_lfs_pointer(pointer + b"#" * 1024)


# --------------------------------------------------------------------------------------------
# Git calls started early (a warm `find` lists worktrees and refs while it reads the index).


def test_a_git_call_started_early_answers_once_and_nothing_is_left_running(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    root = repo.main.path
    expected = git.run_git(git.WORKTREE_LIST, root).stdout
    repo.main.git("branch", "early")
    git.start_early(gitobjects.TIP_LISTING, root)
    git.start_early(git.WORKTREE_LIST, root)
    git.start_early(["rev-parse", "HEAD"], tmp_path / "elsewhere")  # no such folder: run_git
    taken = git._STARTED[(git.WORKTREE_LIST, os.fspath(root))]  # says so when asked
    assert git.run_git(git.WORKTREE_LIST, root).stdout == expected
    assert taken.returncode == 0  # the answer was the started process's
    refs = [line.split("\0")[0] for line in
            git.run_git(gitobjects.TIP_LISTING, root).text.splitlines()]
    assert "refs/heads/early" in refs
    assert git._STARTED == {}  # both taken; the folder that does not exist started nothing
    with pytest.raises(AutocopyError, match=r"folder not found: .*elsewhere") as raised:
        git.run_git(["rev-parse", "HEAD"], tmp_path / "elsewhere")  # not "git is not installed"
    assert "moved or deleted" in (raised.value.hint or "")

    # One that no search asks for (a search that stopped early) is ended, not left behind.
    git.start_early(gitobjects.TIP_LISTING, root)
    left = git._STARTED[(gitobjects.TIP_LISTING, os.fspath(root))]
    git.end_started()
    assert git._STARTED == {} and left.returncode is not None
    # And a call asked again runs again: the early answer was used once.
    assert git.run_git(git.WORKTREE_LIST, root).stdout == expected
