"""The persistent index: exact invalidation, rebuilt when damaged, where it lives; and the
repair of a missing chain of any length in exactly one Alembic upgrade.

Files are real files; the only thing replaced is the clock the index compares ctimes with
(files written a moment ago are "racily clean" and deliberately not trusted).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.effects.project import load_project
from alembic_autocopy.sources import index as index_module
from alembic_autocopy.sources import indexfile, scanning
from alembic_autocopy.sources.folders import ReadFile
from alembic_autocopy.sources.index import MigrationIndex
from support import Database, make_repo, rev_ids, run
from support.templates import render_migration

ONE_HOUR_NS = 3600 * 10**9


@pytest.fixture
def later_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the index an hour from now: files written by the test are no longer racy."""
    real = index_module.clock
    monkeypatch.setattr(index_module, "clock", lambda: real() + ONE_HOUR_NS)
    yield


def write(folder: Path, rev: str, down: str | None = None, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{rev}_step.py")
    path.write_text(render_migration(rev=rev, down=down, message=f"step {rev}",
                                     branch_labels=None, depends_on=None, annotated=False),
                    encoding="utf-8")
    return path


def read_all(index: MigrationIndex, folder: Path) -> dict[str, ReadFile | Exception]:
    read = index.read_folder(str(folder), 1_000_000)
    return dict(zip(read.names, read.results, strict=True))


def revisions(results: dict[str, ReadFile | Exception]) -> dict[str, str]:
    return {name: facts.header.revision for name, facts in results.items()
            if isinstance(facts, ReadFile)}


def test_unchanged_files_are_answered_without_reading(tmp_path: Path, later_clock: None) -> None:
    versions = tmp_path / "versions"
    ids = rev_ids("a", 3)
    for down, rev in zip([None, *ids], ids, strict=False):
        write(versions, rev, down)
    store = tmp_path / "index"
    first = MigrationIndex(store)
    assert revisions(read_all(first, versions)) == {f"{r}_step.py": r for r in ids}
    assert (first.stats.reads, first.stats.parses) == (3, 3)
    assert first.save() and store.is_file()

    second = MigrationIndex(store)
    assert revisions(read_all(second, versions)) == {f"{r}_step.py": r for r in ids}
    assert (second.stats.hits, second.stats.reads, second.stats.parses) == (3, 0, 0)
    assert second.save() is False  # nothing learnt: a warm run writes nothing


def test_same_size_edit_with_the_same_mtime_is_read_again(tmp_path: Path,
                                                          later_clock: None) -> None:
    versions = tmp_path / "versions"
    path = write(versions, "aaaa00000001")
    before = os.stat(path)
    store = tmp_path / "index"
    first = MigrationIndex(store)
    read_all(first, versions)
    first.save()

    # Another revision id of the same length: same size; mtime put back to the nanosecond.
    path.write_text(path.read_text(encoding="utf-8").replace("aaaa00000001", "bbbb00000002"),
                    encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)

    second = MigrationIndex(store)
    assert revisions(read_all(second, versions)) == {path.name: "bbbb00000002"}
    assert second.stats.reads == 1


def test_a_file_written_a_moment_ago_is_not_trusted(tmp_path: Path) -> None:
    # No clock change: the file's ctime is within the racy window, as after a fresh edit.
    versions = tmp_path / "versions"
    write(versions, "aaaa00000001")
    store = tmp_path / "index"
    first = MigrationIndex(store)
    read_all(first, versions)
    first.save()
    second = MigrationIndex(store)
    assert revisions(read_all(second, versions)) == {"aaaa00000001_step.py": "aaaa00000001"}
    assert (second.stats.hits, second.stats.reads) == (0, 1)
    assert second.stats.parses == 0  # its content was known: parsed once only


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_version", "deleted"])
def test_a_damaged_or_missing_index_is_rebuilt_silently(tmp_path: Path, later_clock: None,
                                                        damage: str) -> None:
    versions = tmp_path / "versions"
    write(versions, "aaaa00000001")
    store = tmp_path / "index"
    first = MigrationIndex(store)
    read_all(first, versions)
    first.save()
    data = store.read_bytes()
    if damage == "garbage":
        store.write_bytes(b"\x00\xffnot an index at all")
    elif damage == "truncated":
        store.write_bytes(data[: len(data) // 2])
    elif damage == "other_version":
        store.write_bytes(data.replace(indexfile.SCHEMA_TAG, b"0/0.0.0/0", 1))
    else:
        store.unlink()

    rebuilt = MigrationIndex(store)
    assert rebuilt.stats.rebuilt is not None
    assert revisions(read_all(rebuilt, versions)) == {"aaaa00000001_step.py": "aaaa00000001"}
    assert rebuilt.stats.reads == 1
    assert rebuilt.save()
    again = MigrationIndex(store)
    assert again.stats.rebuilt is None
    read_all(again, versions)
    assert (again.stats.hits, again.stats.reads) == (1, 0)


def test_a_file_that_is_no_migration_is_remembered_as_such(tmp_path: Path,
                                                           later_clock: None) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "helpers.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    store = tmp_path / "index"
    first = MigrationIndex(store)
    assert isinstance(read_all(first, versions)["helpers.py"], MigrationParseError)
    first.save()
    second = MigrationIndex(store)
    result = read_all(second, versions)["helpers.py"]
    assert isinstance(result, MigrationParseError)
    assert second.stats.reads == 0


def test_deleted_files_are_forgotten_and_new_ones_learnt(tmp_path: Path,
                                                         later_clock: None) -> None:
    versions = tmp_path / "versions"
    gone = write(versions, "aaaa00000001")
    store = tmp_path / "index"
    first = MigrationIndex(store)
    read_all(first, versions)
    first.save()
    gone.unlink()
    write(versions, "bbbb00000002")
    second = MigrationIndex(store)
    assert revisions(read_all(second, versions)) == {"bbbb00000002_step.py": "bbbb00000002"}
    second.save()
    stored = indexfile.open_index(store)
    assert stored.folders[str(versions)].load()[0] == ("bbbb00000002_step.py",)


def test_git_blobs_and_trees_are_kept_by_id(tmp_path: Path) -> None:
    store = tmp_path / "index"
    content = render_migration(rev="cccc00000003", down=None, message="from git",
                               branch_labels=None, depends_on=None, annotated=True).encode()
    blob = "0123456789abcdef0123456789abcdef01234567"
    first = MigrationIndex(store)
    assert first.blob(blob) is None
    assert first.parse_blob(blob, content).header.revision == "cccc00000003"
    first.remember_tree("f" * 40, {"migrations/versions/c.py": blob})
    assert first.save()
    second = MigrationIndex(store)
    facts = second.blob(blob)
    assert facts is not None and facts.header.revision == "cccc00000003"
    assert second.tree("f" * 40) == {"migrations/versions/c.py": blob}
    assert second.tree("e" * 40) is None
    assert second.stats.parses == 0


def test_concurrent_writers_keep_what_each_learnt(tmp_path: Path, later_clock: None) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, "aaaa00000001")
    write(two, "bbbb00000002")
    store = tmp_path / "index"
    writers = [MigrationIndex(store), MigrationIndex(store)]
    read_all(writers[0], one)
    read_all(writers[1], two)
    threads = [threading.Thread(target=writer.save) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(writer.stats.saved for writer in writers)
    merged = MigrationIndex(store)
    read_all(merged, one)
    read_all(merged, two)
    assert (merged.stats.hits, merged.stats.reads) == (2, 0)


def test_index_lives_in_the_common_git_dir(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    other = repo.add_worktree("feature")
    other.chain(2, repo.base_rev, "f")
    result = other.autocopy("list", "--no-db", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["revisions"]) == 3
    common = Path(other.git("rev-parse", "--path-format=absolute", "--git-common-dir")
                  .stdout.strip())
    assert (common / "alembic-autocopy" / "index").is_file()
    assert common == repo.root / ".git"
    assert "alembic-autocopy" not in other.status_porcelain()


def test_outside_git_the_index_goes_to_the_user_cache(sqlite_db: Database,
                                                      tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("alembic.ini", "migrations"):
        source = repo.root / name
        if source.is_dir():
            shutil.copytree(source, plain / name)
        else:
            (plain / name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    cache = tmp_path / "cache"
    result = run([sys.executable, "-m", "alembic_autocopy", "list", "--no-db", "--json"],
                 cwd=plain, check=False, env={"XDG_CACHE_HOME": str(cache),
                                              "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert [r["revision"] for r in json.loads(result.stdout)["revisions"]] == [repo.base_rev]
    assert [p.name for p in (cache / "alembic-autocopy").glob("index-*")
            if not p.name.endswith(".lock")]


def test_a_listing_read_through_the_index_finds_what_a_plain_scan_finds(
        sqlite_db: Database, tmp_path: Path, later_clock: None) -> None:
    # The index reads folders from a bare name listing and tells entries apart by the lstat
    # it compares with; the plain scan looks at each directory entry. Both must agree on
    # every odd entry a versions folder can hold.
    repo = make_repo(tmp_path, sqlite_db)
    versions = repo.main.versions
    ids = rev_ids("b", 2)
    write(versions, ids[0], repo.base_rev)
    write(versions, ids[1], ids[0])
    (versions / "folder.py").mkdir()  # a folder with a migration's name is no file
    (versions / "link.py").symlink_to(f"{ids[1]}_step.py")  # the same file, twice
    (versions / "dangling.py").symlink_to("nowhere.py")
    (versions / "to_folder.py").symlink_to("folder.py", target_is_directory=True)
    (versions / "junk.py").write_text("not a migration (\n", encoding="utf-8")
    (versions / "__init__.py").write_text("", encoding="utf-8")
    (versions / ".#lock.py").write_text("", encoding="utf-8")
    os.mkfifo(versions / "pipe.py")
    project = load_project(cwd=repo.main.path)

    def seen(found: scanning.Inventory) -> tuple[list[str], list[tuple[str, str]]]:
        local = sorted(c.location.path or "" for c in found.local)
        skipped = sorted((Path(s.path).name, s.reason) for s in found.skipped)
        return local, skipped

    plain = seen(scanning.scan(project))
    cache = MigrationIndex(tmp_path / "index")
    first = seen(scanning.scan(project, cache))
    assert cache.save()
    warm_cache = MigrationIndex(tmp_path / "index")
    warm = seen(scanning.scan(project, warm_cache))

    assert first == warm
    assert warm_cache.stats.parses == 0  # the symlinked migration is answered from it too
    local, skipped = first
    assert local == plain[0]
    assert len(local) == 3  # the base and the two steps; link.py is the second step again
    assert skipped == plain[1]  # the same reasons too (a symlink to a folder included)
    assert [name for name, _ in skipped] == [
        "dangling.py", "junk.py", "pipe.py", "to_folder.py"]


# ------------------------------------------------------------------- odd entries, sections


def test_a_warm_reading_sees_every_change_and_every_odd_entry(tmp_path: Path,
                                                              later_clock: None) -> None:
    # After indexing: an edit that keeps size and mtime, a new file, a file gone (and the
    # symlink to it broken), a folder named like a migration; each said as a cold read says it.
    folder = tmp_path / "versions"
    ids = rev_ids("e", 4)
    for down, rev in zip([None, *ids[:3]], ids[:3], strict=False):
        write(folder, rev, down)
    (folder / "junk.py").write_text("not a migration (\n", encoding="utf-8")
    (folder / "sub.py").mkdir()
    (folder / "link.py").symlink_to(f"{ids[0]}_step.py")
    store = tmp_path / "index"
    cold = MigrationIndex(store)
    read_all(cold, folder)
    assert cold.save()

    edited = folder / f"{ids[2]}_step.py"
    before = edited.stat()
    text = edited.read_text(encoding="utf-8")
    edited.write_text(text.replace(f"step {ids[2]}", f"STEP {ids[2]}"), encoding="utf-8")
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert edited.stat().st_size == before.st_size
    write(folder, ids[3], ids[2])
    (folder / f"{ids[0]}_step.py").rename(folder / "moved_away.txt")

    warm = MigrationIndex(store)
    found = read_all(warm, folder)
    fresh = read_all(MigrationIndex(None), folder)
    assert sorted(found) == sorted(fresh) == sorted(
        ["junk.py", "link.py", f"{ids[1]}_step.py", f"{ids[2]}_step.py", f"{ids[3]}_step.py"])
    again = found[edited.name]
    assert isinstance(again, ReadFile) and "STEP" in (again.header.message or "")
    assert isinstance(found["link.py"], OSError)  # its target was moved away
    assert isinstance(found["junk.py"], MigrationParseError)
    assert (warm.stats.hits, warm.stats.reads, warm.stats.parses) == (1, 2, 2)


def test_sub_folders_are_read_only_when_recursive(tmp_path: Path, later_clock: None) -> None:
    folder = tmp_path / "versions"
    write(folder, "aaaa00000001")
    write(folder / "later", "bbbb00000002", "aaaa00000001")
    write(folder / "__pycache__", "cccc00000003")
    store = tmp_path / "index"
    flat = MigrationIndex(store).read_folder(str(folder), 1_000_000)
    assert flat.names == ["aaaa00000001_step.py"]
    for _ in range(2):  # cold, then warm from the index
        index = MigrationIndex(store)
        deep = index.read_folder(str(folder), 1_000_000, recursive=True)
        assert deep.names == ["aaaa00000001_step.py", os.path.join("later", "bbbb00000002_step.py")]
        assert deep.linked == {os.path.join("later", "bbbb00000002_step.py")}
        index.save()
    assert index.stats.hits == 2


def test_a_run_decodes_only_the_folders_it_reads(tmp_path: Path, later_clock: None) -> None:
    # The fleet's other folders stay encoded on disk (check's memory does not grow with
    # the fleet), and are written back untouched when this run saves what it learnt.
    folders = [tmp_path / f"wt{n}" / "versions" for n in range(3)]
    for n, folder in enumerate(folders):
        write(folder, rev_ids(str(n), 1)[0])
    store = tmp_path / "index"
    first = MigrationIndex(store)
    for folder in folders:
        read_all(first, folder)
    assert first.save()

    one = MigrationIndex(store)
    write(folders[0], "ffff00000009", rev_ids("0", 1)[0])
    assert len(read_all(one, folders[0])) == 2
    assert set(one._lookup) == {str(folders[0])}
    assert one.save()
    after = MigrationIndex(store)
    for folder in folders:
        read_all(after, folder)
    assert (after.stats.hits, after.stats.reads) == (4, 0)


def test_a_damaged_section_is_read_again_and_rewritten(tmp_path: Path, later_clock: None) -> None:
    folder = tmp_path / "versions"
    write(folder, "aaaa00000001")
    store = tmp_path / "index"
    first = MigrationIndex(store)
    read_all(first, folder)
    assert first.save()
    data = bytearray(store.read_bytes())
    data[-3] ^= 0xFF  # inside the last section (the contents)
    store.write_bytes(bytes(data))
    damaged = MigrationIndex(store)
    assert revisions(read_all(damaged, folder)) == {"aaaa00000001_step.py": "aaaa00000001"}
    assert damaged.stats.rebuilt is not None
    assert damaged.save()
    again = MigrationIndex(store)
    read_all(again, folder)
    assert (again.stats.hits, again.stats.reads, again.stats.rebuilt) == (1, 0, None)


# -------------------------------------------------------------------------- one upgrade

# Appended to env.py's online branch: one line per run, saying whether it only read.
_COUNTING = """
            import os as _os
            _opts = context.get_context().opts
            with open(_os.environ["ENV_RUNS_LOG"], "a", encoding="utf-8") as _log:
                _log.write(("read" if _opts.get("dont_mutate") else "upgrade") + "\\n")
"""


@pytest.mark.parametrize("chain_length", [1, 25])
def test_one_upgrade_whatever_the_chain_length(sqlite_db: Database, tmp_path: Path,
                                               chain_length: int) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    feature = repo.add_worktree("feature")
    chain = feature.chain(chain_length, repo.base_rev, "c")
    feature.commit("a chain of migrations")
    assert feature.alembic("upgrade", "head").returncode == 0
    env_py = repo.main.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    anchor = "        with context.begin_transaction():\n            context.run_migrations()\n"
    assert text.count(anchor) == 1
    env_py.write_text(text.replace(anchor, anchor.replace(
        "            context.run_migrations()\n",
        "            context.run_migrations()" + _COUNTING)), encoding="utf-8")
    log = tmp_path / "env-runs.log"

    result = repo.main.autocopy("upgrade", "--json", env={"ENV_RUNS_LOG": str(log)})

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [entry["revision"] for entry in report["placed"]] == chain
    runs = log.read_text(encoding="utf-8").split()
    assert runs.count("upgrade") == 1, runs
    assert set(runs) == {"read", "upgrade"} and runs[-1] == "upgrade", runs
    assert repo.applied_versions() == {chain[-1]}
