"""Issue 13 (items 1, 2, 3, 8, 10) and issue 12 (item 5): the tool touches only its own files.

Confinement of every write to the version folders (hostile names in git trees and records),
clean after a worktree or repository move, .gitignore ownership, full and read-only file
systems, tracked hook folders, sparse checkouts, ``clean --dry-run`` / ``--all``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from alembic_autocopy.core import names
from support import BASE_REV, Database, Repo, Worktree, make_repo, run
from test_records import applied_then_gone

MANIFEST = "alembic-autocopy/manifest.json"


def setup_pair(tmp_path: Path, db: Database) -> tuple[Repo, Worktree, Worktree]:
    """Main worktree B (base applied) and worktree A (branch ``a``)."""
    repo = make_repo(tmp_path, db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    return repo, repo.add_worktree("a"), b


def no_crash(result: subprocess.CompletedProcess[str]) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    assert "crash" not in text.lower(), text


def manifest_of(worktree: Worktree) -> dict[str, object]:
    path = worktree.git("rev-parse", "--path-format=absolute", "--git-path", MANIFEST)
    return json.loads(Path(path.stdout.strip()).read_text())  # type: ignore[no-any-return]


def manifest_paths(worktree: Worktree) -> list[Path]:
    """The manifest's entries as absolute paths (they are stored relative to the root)."""
    entries = manifest_of(worktree)["entries"]
    assert isinstance(entries, list)
    return [worktree.path / entry["path"] for entry in entries]


def ignore_listed(folder: Path) -> list[Path]:
    """The files a managed .gitignore of ``folder`` lists (none when it is absent)."""
    path = folder / ".gitignore"
    if not path.exists():
        return []
    return [folder / line[1:] for line in path.read_text().splitlines()
            if line.startswith("/") and line != "/.gitignore" and "aac-tmp" not in line]


def assert_consistent(worktree: Worktree) -> None:
    """Manifest and managed .gitignore list only files that exist."""
    for path in manifest_paths(worktree):
        assert path.exists(), f"manifest lists {path}, which does not exist"
    for path in ignore_listed(worktree.versions):
        assert path.exists(), f".gitignore lists {path}, which does not exist"


def tree_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every symlink) under ``roots``."""
    found: dict[str, str] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in [*files, *dirs]:
                path = Path(folder) / name
                if path.is_symlink():
                    found[str(path)] = "-> " + os.readlink(path)
                elif path.is_file():
                    found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    found[str(path)] = "dir"
    return found


def padded(worktree: Worktree, revision: str, down: str, size: int) -> Path:
    """A migration of about ``size`` bytes (a long comment at its end)."""
    path = worktree.write_migration(revision, down=down, message=f"step {revision}")
    path.write_text(path.read_text() + "\n" + ("# padding " + "x" * 70 + "\n") * (size // 81))
    return path


# --- names from outside -----------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "..", ".", "../x.py", "a/../../x.py", "/etc/x.py", "__init__.py", "__init__x.py",
    "x.txt", ".#x.py", "a\nb.py", "a\x1b[2Jb.py", "a\\b.py", "", "sub/__pycache__/x.py",
])
def test_unsafe_names_are_refused(name: str) -> None:
    assert names.refusal(name, recursive=True) is not None


@pytest.mark.parametrize("name", ["a1_x.py", "sub/a1_x.py", "2024/01/a1.py"])
def test_plain_names_are_accepted(name: str) -> None:
    assert names.refusal(name, recursive=True) is None
    assert (names.refusal(name, recursive=False) is None) == ("/" not in name)


def test_a_temporary_file_never_opens_a_planted_name(tmp_path: Path) -> None:
    """Temporary names are predictable (process id, then a number): a file or a symlink
    planted under the next one is skipped, never written through; a killed run's names are
    the ones the next run removes, and a live run's are kept."""
    from alembic_autocopy.effects import placement, temporary

    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    number = next(temporary._NUMBERS)
    stem = f".a1_x.py.{os.getpid()}"
    (tmp_path / f"{stem}.{number + 1}{placement.TEMP_SUFFIX}").write_text("planted\n")
    (tmp_path / f"{stem}.{number + 2}{placement.TEMP_SUFFIX}").symlink_to(target)
    descriptor, made = temporary.new_temporary(tmp_path, "a1_x.py")
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(b"copy\n")
    assert Path(made).name == f"{stem}.{number + 3}{placement.TEMP_SUFFIX}"
    assert target.read_text() == "not yours\n"
    assert (tmp_path / f"{stem}.{number + 1}{placement.TEMP_SUFFIX}").read_text() == "planted\n"
    dead = tmp_path / f".a2_y.py.{2**22 + 1}.0{placement.TEMP_SUFFIX}"  # above pid_max
    dead.write_text("left by a killed run\n")
    assert placement.remove_stale_temporaries([tmp_path]) == [dead]
    assert Path(made).read_bytes() == b"copy\n"


def test_a_state_file_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    """The index, the notices given and the folders env.py chose are all written through
    one writer: a temporary beside the file, then a rename; a failure leaves no temporary."""
    from alembic_autocopy.effects import temporary

    state = tmp_path / "notices.json"
    state.write_text("old\n")
    temporary.write_replacing(state, b"new\n")
    assert state.read_text() == "new\n"
    taken = tmp_path / "a-folder"  # os.replace cannot put a file over a folder
    (taken / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        temporary.write_replacing(taken, b"never\n")
    assert (taken / "inside").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder", "notices.json"]


def mktree(worktree: Worktree, lines: list[str]) -> str:
    return subprocess.run(["git", "mktree"], cwd=worktree.path,
                          input="".join(f"{line}\n" for line in lines),
                          capture_output=True, text=True, check=True).stdout.strip()


def tree_lines(worktree: Worktree, treeish: str) -> list[str]:
    return worktree.git("ls-tree", treeish).stdout.splitlines()


def replace_entry(lines: list[str], name: str, oid: str) -> list[str]:
    kept = [line for line in lines if line.split("\t", 1)[1] != name]
    return [*kept, f"040000 tree {oid}\t{name}"]


def test_dotdot_entries_in_a_git_tree_write_nothing_outside(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """A branch built with `git mktree` holding migrations/versions/../../../x.py, whose
    revision the database applied: nothing is written outside the versions folder and one
    warning names the ref."""
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ini = b.path / "alembic.ini"
    ini.write_text(ini.read_text().replace(
        "script_location = %(here)s/migrations\n",
        "script_location = %(here)s/migrations\nrecursive_version_locations = true\n", 1))
    b.commit("recursive version locations")
    rev = "e7000000000e"
    written = a.write_migration(rev, down=BASE_REV, message="hostile")
    a.alembic("upgrade", "head", check=True)
    content = written.read_bytes()
    written.unlink()  # the hostile ref is the only place that holds it

    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=b.path, input=content,
                          capture_output=True, check=True).stdout.decode().strip()
    inner = mktree(b, [f"100644 blob {blob}\tx.py"])
    for _ in range(2):
        inner = mktree(b, [f"040000 tree {inner}\t.."])
    versions = mktree(b, replace_entry(tree_lines(b, "HEAD:migrations/versions"), "..", inner))
    migrations = mktree(b, replace_entry(tree_lines(b, "HEAD:migrations"), "versions",
                                         versions))
    root = mktree(b, replace_entry(tree_lines(b, "HEAD^{tree}"), "migrations", migrations))
    commit = b.git("commit-tree", root, "-p", "HEAD", "-m", "hostile").stdout.strip()
    b.git("update-ref", "refs/heads/hostile", commit)
    listed = b.git("ls-tree", "-r", "--name-only", "hostile").stdout
    assert "migrations/versions/../../../x.py" in listed  # git really holds it
    outside = tmp_path  # where versions/../../../x.py would land
    before = tree_hashes(outside)

    for command in ("check", "upgrade"):
        result = b.autocopy(command)
        no_crash(result)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "branch hostile: migrations/versions/../../../x.py" in result.stderr
        assert "unsafe name refused" in result.stderr
        assert rev in result.stderr  # still needed, found nowhere usable

    after = tree_hashes(outside)
    new = {path for path in set(after) - set(before)
           if not path.startswith(str(b.path / ".git"))
           and "__pycache__" not in path and not path.endswith(".sqlite")}
    assert new == set(), new
    assert not (outside / "x.py").exists()
    assert repo.applied_versions() == {rev}


def test_a_sibling_file_with_a_control_character_in_its_name_is_refused(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    rev = "c0000000000c"
    a.write_migration(rev, down=BASE_REV, filename="c0\tforged.py")
    a.alembic("upgrade", "head", check=True)
    before = sorted(p.name for p in b.versions.iterdir())

    result = b.autocopy("upgrade")

    no_crash(result)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unsafe name refused (control character in the name)" in result.stderr
    assert str(a.versions) in result.stderr  # names the path it came from
    assert sorted(p.name for p in b.versions.iterdir()) == before
    assert repo.applied_versions() == {rev}


def test_a_record_named_init_is_refused(tmp_path: Path, sqlite_db: Database) -> None:
    repo, ids = applied_then_gone(tmp_path, sqlite_db)  # only the record table holds them
    with sqlite_db.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_autocopy_scripts SET filename = '__init__.py'"
                                   " WHERE revision = :revision"), {"revision": ids[0]})
    b = repo.main

    result = b.autocopy("upgrade", "--from-database")

    no_crash(result)
    assert result.returncode == 0, result.stderr
    assert (f"record of revision {ids[0]} in table alembic_autocopy_scripts: file name "
            "'__init__.py' refused") in result.stderr
    assert not (b.versions / "__init__.py").exists()
    assert (b.versions / f"{ids[0]}_recorded.py").exists()
    assert ids[-1] in b.alembic("current", check=True).stdout


# --- clean after a move ------------------------------------------------------------------------

def legacy_manifest(worktree: Worktree) -> None:
    """Rewrite the manifest as version 1 wrote it: absolute paths."""
    path = Path(worktree.git("rev-parse", "--path-format=absolute", "--git-path",
                             MANIFEST).stdout.strip())
    data = json.loads(path.read_text())
    data["version"] = 1
    for entry in data["entries"]:
        entry["path"] = str(worktree.path / entry["path"])
    data.pop("ignores", None)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("manifest", ["current", "legacy"])
def test_clean_after_worktree_move_leaves_the_new_checkout_alone(
    tmp_path: Path, sqlite_db: Database, manifest: str
) -> None:
    repo, a, _main = setup_pair(tmp_path, sqlite_db)
    ids = a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    a.commit("A's migrations")
    b = repo.add_worktree("b", branch="b")
    assert b.autocopy("upgrade").returncode == 0
    copies = sorted(b.versions.glob("a0*.py"))
    assert len(copies) == 2
    if manifest == "legacy":
        legacy_manifest(b)
    old_path = b.path
    moved = Worktree(tmp_path / "Proj-b-old")
    repo.main.git("worktree", "move", str(old_path), str(moved.path))
    newcomer = Worktree(old_path)
    repo.main.git("worktree", "add", "--quiet", "-b", "b2", str(old_path), "a")
    tracked = sorted(newcomer.versions.glob("a0*.py"))
    assert len(tracked) == 2
    hashes = tree_hashes(newcomer.path)

    result = moved.autocopy("clean", "--all")

    no_crash(result)
    assert result.returncode == 0, result.stderr
    assert tree_hashes(newcomer.path) == hashes
    assert newcomer.status_porcelain() == ""
    assert ids[-1] in newcomer.alembic("current", check=True).stdout
    if manifest == "current":  # relative paths: the moved worktree's own copies went
        assert not any(moved.versions.glob("a0*.py"))
        assert moved.status_porcelain() == ""


def test_clean_after_moving_the_whole_repository_leaves_a_fresh_clone_alone(
    tmp_path: Path, sqlite_db: Database
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    repo = make_repo(work, sqlite_db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    a.commit("A's migrations")
    assert b.autocopy("upgrade").returncode == 0
    legacy_manifest(b)  # the worst case: absolute paths, as version 1 wrote them

    os.rename(work, tmp_path / "work-old")
    moved = Worktree(tmp_path / "work-old" / "Proj")
    run(["git", "clone", "--quiet", "--branch", "a", str(moved.path), str(b.path)],
        cwd=tmp_path, check=True)
    clone = Worktree(b.path)
    hashes = tree_hashes(clone.path)

    result = moved.autocopy("clean", "--all")

    no_crash(result)
    assert result.returncode == 0, result.stderr
    assert tree_hashes(clone.path) == hashes
    assert clone.status_porcelain() == ""


# --- .gitignore ownership ------------------------------------------------------------------------

def test_a_tracked_gitignore_brought_by_a_merge_is_never_rewritten(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = a.chain(3, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    assert b.autocopy("upgrade").returncode == 0
    user_rules = "# the team's rules\n*.bak\n"
    (a.versions / ".gitignore").write_text(user_rules)
    a.git("add", "migrations/versions/.gitignore",
          *(f"migrations/versions/{p.name}" for p in sorted(a.versions.glob("a0*.py"))[:2]))
    a.git("commit", "--quiet", "-m", "two migrations and the team's .gitignore")
    merge = b.git("merge", "--no-edit", "a", check=False)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert (b.versions / ".gitignore").read_text() == user_rules
    third = next(b.versions.glob(f"{ids[2]}_*.py"))
    assert f"?? migrations/versions/{third.name}" in b.status_porcelain()  # the bug's start

    result = b.autocopy("clean")

    no_crash(result)
    assert result.returncode == 0, result.stderr
    assert (b.versions / ".gitignore").read_text() == user_rules  # intact
    assert third.exists() and "the database needs it" in result.stdout
    assert b.status_porcelain() == ""  # the kept copy is hidden one folder up
    b.git("add", "-A")
    assert b.git("diff", "--cached", "--name-only").stdout == ""
    assert ids[2] in b.alembic("current", check=True).stdout

    removed = b.autocopy("clean", "--all")

    assert removed.returncode == 0, removed.stderr
    assert not third.exists()
    assert (b.versions / ".gitignore").read_text() == user_rules
    assert not (b.versions.parent / ".gitignore").exists()  # ours, gone with the last copy
    assert b.status_porcelain() == ""


def test_a_gitignore_edited_by_the_user_is_left_alone(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    assert b.autocopy("upgrade").returncode == 0
    ignore = b.versions / ".gitignore"
    edited = ignore.read_text() + "my-notes.txt\n"
    ignore.write_text(edited)

    assert b.autocopy("clean", "--all").returncode == 0

    assert ignore.read_text() == edited  # not rewritten, not removed


# --- clean --dry-run, keeping what the database needs ------------------------------------------

def test_clean_dry_run_changes_no_byte_and_clean_keeps_what_the_database_needs(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    assert b.autocopy("upgrade").returncode == 0
    copies = sorted(b.versions.glob("a0*.py"))
    git_dir = Path(b.git("rev-parse", "--path-format=absolute", "--git-common-dir")
                   .stdout.strip())
    before = tree_hashes(b.path, git_dir)

    for args in (("clean", "--dry-run"), ("clean", "--dry-run", "--all")):
        dry = b.autocopy(*args)
        assert dry.returncode == 0, dry.stderr
        assert tree_hashes(b.path, git_dir) == before, args
        if "--all" not in args:  # it says what it would do, not what it did
            assert dry.stdout.count("Would keep ") == 2 and "Kept" not in dry.stdout
            assert "; keep 0 modified, 2 needed by the database." in dry.stdout
    assert "Would remove" in dry.stdout

    kept = b.autocopy("clean")

    assert kept.returncode == 0, kept.stderr
    assert all(copy.exists() for copy in copies)
    assert kept.stdout.count("the database needs it") == 2
    assert ids[-1] in b.alembic("current", check=True).stdout  # still works

    removed = b.autocopy("clean", "--all")

    assert removed.returncode == 0, removed.stderr
    assert not any(copy.exists() for copy in copies)
    assert not (b.versions / ".gitignore").exists()
    assert manifest_of(b)["entries"] == []
    assert repo.applied_versions() == {ids[-1]}


def test_clean_after_a_merge_says_it_would_forget_then_counts_what_it_forgot(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """A merge brought the real file of a copy: ``--dry-run`` said "Forgot ...: git now
    tracks it" as if it had acted, and neither summary counted the forgotten entries."""
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    (revision,) = a.chain(1, BASE_REV, "a")
    a.commit("a: one migration")
    a.alembic("upgrade", "head", check=True)
    assert b.autocopy("upgrade").returncode == 0
    (copy,) = b.versions.glob("a0*.py")
    b.git("merge", "--no-edit", "a")  # the copy's path is now git's
    before = manifest_of(b)

    dry = b.autocopy("clean", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"Would forget {copy}: git now tracks it",
        "Would remove 0 copy(ies), forget 1 (now tracked by git or gone); keep 0 modified, "
        "0 needed by the database."]
    assert manifest_of(b) == before

    done = b.autocopy("clean")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Forgot {copy}: git now tracks it",
        "Removed 0 copy(ies), forgot 1 (now tracked by git or gone); kept 0 modified, "
        "0 needed by the database."]
    assert manifest_of(b)["entries"] == [] and copy.exists()
    assert revision in b.alembic("current", check=True).stdout


def test_clean_removes_copies_the_database_no_longer_needs(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    a.chain(1, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    assert b.autocopy("upgrade").returncode == 0
    b.alembic("downgrade", BASE_REV, check=True)

    result = b.autocopy("clean")

    assert result.returncode == 0, result.stderr
    assert not any(b.versions.glob("a0*.py"))


# --- faults: full and read-only file systems --------------------------------------------------

@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``folder`` with its files copied in (False: cannot)."""
    saved = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True, check=False)
    if mounted.returncode != 0:
        yield False
        return
    try:
        for name, content in saved.items():
            (folder / name).write_bytes(content)
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until about ``leave`` bytes remain."""
    filler = folder / ".filler"
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    filler.write_bytes(b"\0" * max(free - leave, 0))
    return filler


def file_size_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.parametrize("how", ["tmpfs", "RLIMIT_FSIZE"])
def test_a_full_file_system_is_exit_1_and_leaves_everything_consistent(
    tmp_path: Path, sqlite_db: Database, how: str
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    padded(a, "a00000000001", BASE_REV, 12_000)
    padded(a, "a00000000002", "a00000000001", 12_000)
    padded(a, "a00000000003", "a00000000002", 40_000)
    a.alembic("upgrade", "head", check=True)

    with contextlib.ExitStack() as stack:
        filler = None
        if how == "tmpfs":
            if not stack.enter_context(small_tmpfs(b.versions, "96k")):
                pytest.skip("mounting a tmpfs is not allowed here (the RLIMIT_FSIZE case runs)")
            filler = fill(b.versions, 36_000)  # room for the .gitignore and a copy or two
            result = b.autocopy("upgrade")
        else:  # a per-file size limit: the 40 kB copy fails with EFBIG, the others fit
            argv = [sys.executable, "-m", "alembic_autocopy", "upgrade"]
            result = subprocess.run(argv, cwd=b.path, capture_output=True, text=True,
                                    preexec_fn=file_size_limit(30_000), check=False)

        no_crash(result)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"cannot write in {b.versions}" in result.stderr
        assert ("No space left on device" in result.stderr
                or "File too large" in result.stderr), result.stderr
        assert_consistent(b)
        assert not any(b.versions.glob("a0*.py"))  # the partial set was taken back
        assert not list(b.versions.glob(".*aac-tmp"))

        if filler is not None:
            filler.unlink()  # the fix
        done = b.autocopy("upgrade")
        assert done.returncode == 0, done.stderr
        assert len(list(b.versions.glob("a0*.py"))) == 3
        assert_consistent(b)
        assert "a00000000003" in b.alembic("current", check=True).stdout
        assert b.status_porcelain() == ""
    assert repo.applied_versions() == {"a00000000003"}


def without_root_privileges() -> list[str]:
    """Run a command without root's right to write anywhere (tests run as root in CI)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.parametrize("how", ["permissions", "read-only mount"])
def test_a_read_only_versions_folder_is_exit_1_and_consistent(
    tmp_path: Path, sqlite_db: Database, how: str
) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    a.chain(2, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    argv = [sys.executable, "-m", "alembic_autocopy", "upgrade"]
    if how == "permissions":
        b.versions.chmod(0o555)
        argv = [*without_root_privileges(), *argv]
        undo = [["chmod", "755", str(b.versions)]]
    else:
        bind = subprocess.run(["mount", "--bind", str(b.versions), str(b.versions)],
                              capture_output=True, check=False)
        if bind.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(b.versions)], check=True)
        undo = [["umount", "-l", str(b.versions)]]
    try:
        result = run(argv, cwd=b.path, check=False)

        no_crash(result)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"cannot write in {b.versions}" in result.stderr
        cause = "Permission denied" if how == "permissions" else "Read-only file system"
        assert cause in result.stderr
        assert_consistent(b)
        assert manifest_paths(b) == []
    finally:
        for command in undo:
            subprocess.run(command, check=True)

    done = b.autocopy("upgrade")  # after the fix
    assert done.returncode == 0, done.stderr
    assert len(list(b.versions.glob("a0*.py"))) == 2
    assert_consistent(b)
    assert b.status_porcelain() == ""


# --- hooks and sparse checkouts --------------------------------------------------------------

def test_a_tracked_core_hooks_path_is_refused(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    hooks = b.path / ".githooks"
    hooks.mkdir()
    (hooks / "post-merge").write_text("#!/bin/sh\necho team hook\n")
    (hooks / "post-merge").chmod(0o755)
    b.commit("the team's hooks")
    b.git("config", "core.hooksPath", ".githooks")

    for command in ("install-hooks", "uninstall-hooks"):
        result = b.autocopy(command)
        no_crash(result)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"refusing to write hooks into {hooks}" in result.stderr
        assert "git tracks" in result.stderr
    assert (hooks / "post-merge").read_text() == "#!/bin/sh\necho team hook\n"
    assert sorted(p.name for p in hooks.iterdir()) == ["post-merge"]
    assert b.status_porcelain() == ""


def test_a_sparse_checkout_never_gets_a_copy_on_a_tracked_path(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    (rev,) = main.chain(1, BASE_REV, "a")
    main.commit("a migration")
    main.alembic("upgrade", "head", check=True)
    b = repo.add_worktree("b")
    b.git("sparse-checkout", "set", "--no-cone", "/*", f"!/migrations/versions/{rev}_*")
    assert not any(b.versions.glob(f"{rev}_*"))
    skip_bits = b.git("ls-files", "-v", "migrations/versions").stdout

    result = b.autocopy("upgrade")

    no_crash(result)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "git tracks that path" in result.stderr and "sparse-checkout" in result.stderr
    assert not any(b.versions.glob(f"{rev}_*"))
    assert b.git("ls-files", "-v", "migrations/versions").stdout == skip_bits
    assert b.status_porcelain() == ""
