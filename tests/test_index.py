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
from alembic_autocopy.sources import scanning
from alembic_autocopy.sources.index import MigrationIndex
from alembic_autocopy.sources.scanning import ReadFile
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
    names = sorted(p.name for p in folder.iterdir())
    results = index.read_folder(str(folder), names, 1_000_000)
    return dict(zip(names, results, strict=True))


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
        store.write_bytes(data.replace(index_module.SCHEMA_TAG, b"0/0.0.0/0", 1))
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
    tables = index_module.decode(store.read_bytes())
    assert not isinstance(tables, str)
    folders = tables[0]
    assert folders[str(versions)][0] == ("bbbb00000002_step.py",)


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
    by_entry = seen(scanning.scan(project, MigrationIndex(None).read_file,
                                  folder_reader=MigrationIndex(None).read_folder))
    cache = MigrationIndex(tmp_path / "index")
    first = seen(scanning.scan(project, cache.read_file, cache.committed_blobs,
                               cache.read_folder, listing_reader=cache.read_listed))
    assert cache.save()
    warm_cache = MigrationIndex(tmp_path / "index")
    warm = seen(scanning.scan(project, warm_cache.read_file, warm_cache.committed_blobs,
                              warm_cache.read_folder, listing_reader=warm_cache.read_listed))

    assert by_entry == first == warm
    assert warm_cache.stats.parses == 0  # the symlinked migration is answered from it too
    local, skipped = first
    assert local == plain[0]
    assert len(local) == 3  # the base and the two steps; link.py is the second step again
    assert skipped == plain[1]  # the same reasons too (a symlink to a folder included)
    assert [name for name, _ in skipped] == [
        "dangling.py", "junk.py", "pipe.py", "to_folder.py"]


# ------------------------------------------------------------------- parallel stat checks


def _odd_folder(folder: Path, prefix: str) -> list[str]:
    """Three migrations, one of each odd entry a worker must leave to the parent."""
    ids = rev_ids(prefix, 4)
    for down, rev in zip([None, *ids[:3]], ids[:3], strict=False):
        write(folder, rev, down)
    (folder / "junk.py").write_text("not a migration (\n", encoding="utf-8")
    (folder / "sub.py").mkdir()
    (folder / "link.py").symlink_to(f"{ids[0]}_step.py")
    return ids


def _as_comparable(results: list[tuple[list[str], set[str], list[object]]]) -> list[object]:
    return [(kept, sorted(linked),
             [facts.header.revision if isinstance(facts, ReadFile) else type(facts).__name__
              for facts in found])
            for kept, linked, found in results]


def test_stat_checks_shared_with_worker_processes_agree_with_one_process(
        tmp_path: Path, later_clock: None) -> None:
    folders = [tmp_path / f"wt{n}" / "versions" for n in range(4)]
    ids = [_odd_folder(folder, f"{n}") for n, folder in enumerate(folders)]
    # Indexed now, unlistable later (a worker's share: the index knows it).
    unlistable = tmp_path / "wt4" / "versions"
    write(unlistable, rev_ids("4", 1)[0])
    store = tmp_path / "index"

    def listing() -> dict[str, list[str]]:
        return {str(folder): sorted(os.listdir(folder)) for folder in [*folders, unlistable]}

    cold = MigrationIndex(store)
    cold.read_listings(list(listing()), 1_000_000, listing().get, workers=0)
    assert cold.save()
    # After indexing, in every folder (the workers' share included): an edit that keeps
    # the size and the mtime, a new file, a file gone between listing and checking.
    listed = listing()
    for folder, folder_ids in zip(folders, ids, strict=True):
        edited = folder / f"{folder_ids[2]}_step.py"
        before = edited.stat()
        text = edited.read_text(encoding="utf-8")
        edited.write_text(text.replace(f"step {folder_ids[2]}", f"STEP {folder_ids[2]}"),
                          encoding="utf-8")
        os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert edited.stat().st_size == before.st_size
        write(folder, folder_ids[3], folder_ids[2])
        (folder / f"{folder_ids[0]}_step.py").rename(folder / "moved_away.txt")
        listed[str(folder)] = sorted({*listed[str(folder)], f"{folder_ids[3]}_step.py"})
    # Folders that cannot be listed: one the index knows (its worker leaves it to this
    # process, which says so) and one it does not (listed here first, to size it: once).
    unlisted = str(tmp_path / "unlisted")
    listed.pop(str(unlistable))
    reported: list[str] = []

    def names_of(folder: str) -> list[str] | None:
        if folder in (unlisted, str(unlistable)):
            reported.append(folder)
            return None
        return listed[folder]

    order = [*listed, str(unlistable), unlisted]
    alone, shared = MigrationIndex(store), MigrationIndex(store)
    done: list[str] = []
    expected = alone.read_listings(order, 1_000_000, names_of, workers=0)
    alone_reported = reported[:]
    got = shared.read_listings(order, 1_000_000, names_of, done.append, workers=1)

    assert shared.stats.workers == 1 and alone.stats.workers == 0
    assert _as_comparable(got) == _as_comparable(expected)
    assert sorted(done) == sorted(order)
    # Each reported once per run (the worker's own attempt happened in its own memory).
    assert sorted(alone_reported) == sorted(reported[len(alone_reported):]) == sorted(
        [unlisted, str(unlistable)])
    assert got[-2:] == [([], set(), []), ([], set(), [])]
    assert (shared.stats.hits, shared.stats.reads, shared.stats.parses) == (
        alone.stats.hits, alone.stats.reads, alone.stats.parses)
    assert shared.stats.worker_reads > 0  # the edited and new files of its share
    for kept, _linked, found in got[:-2]:
        by_name = dict(zip(kept, found, strict=True))
        edited = next(facts for name, facts in by_name.items()
                      if isinstance(facts, ReadFile) and name.endswith("3_step.py")
                      and facts.header.message and "STEP" in facts.header.message)
        assert edited is not None  # the same-size, same-mtime edit was read again
        assert "sub.py" not in kept  # a folder is no file
        assert isinstance(by_name["link.py"], OSError)  # its target was moved away
    assert shared.stats.hits == 4 * 1  # per folder only the untouched second step


def _exactly(results: list[tuple[list[str], set[str], list[object]]]) -> list[object]:
    """Everything a reading gives, errors by type and message."""
    return [(kept, sorted(linked),
             [facts if isinstance(facts, ReadFile) else (type(facts).__name__, str(facts))
              for facts in found])
            for kept, linked, found in results]


def _stats(index: MigrationIndex) -> tuple[int, int, int]:
    return index.stats.hits, index.stats.reads, index.stats.parses


@pytest.mark.parametrize("later", [True, False], ids=["settled", "racily-clean"])
def test_a_cold_reading_shared_with_worker_processes_agrees_with_one_process(
        tmp_path: Path, request: pytest.FixtureRequest, later: bool) -> None:
    # No index yet: the workers read and parse (this process records what they read). Every
    # odd entry, in every folder, so that each side meets each one.
    if later:
        request.getfixturevalue("later_clock")
    max_bytes = 4000
    folders = [tmp_path / f"wt{n}" / "versions" for n in range(4)]
    for n, folder in enumerate(folders):
        ids = _odd_folder(folder, f"{n}")
        # The same file in every folder: one content, parsed once.
        write(folder, "eeee00000001", None, name="shared_step.py")
        os.mkfifo(folder / "pipe.py")
        big = write(folder, ids[3], ids[2], name="big.py")
        big.write_text(big.read_text(encoding="utf-8") + "#" * max_bytes, encoding="utf-8")
        broken = write(folder, f"bad{n}00000001", ids[2], name="broken.py")
        broken.write_text(broken.read_text(encoding="utf-8") + "def broken(:\n",
                          encoding="utf-8")
    listed = {str(folder): sorted(os.listdir(folder)) for folder in folders}
    order = list(listed)

    outcomes = []
    for workers in (0, 1):
        store = tmp_path / f"index-{workers}"
        cold = MigrationIndex(store)
        found = cold.read_listings(order, max_bytes, listed.get, workers=workers)
        cold_stats = _stats(cold)
        saved = cold.save()
        tables = index_module.decode(store.read_bytes())
        assert not isinstance(tables, str)
        files = {folder: index_module._rows(columns) for folder, columns in tables[0].items()}
        warm = MigrationIndex(store)
        warm_found = warm.read_listings(order, max_bytes, listed.get, workers=workers)
        outcomes.append((_exactly(found), cold_stats, saved, files, tables[1], tables[2],
                         _exactly(warm_found), _stats(warm)))
        assert cold.stats.workers == workers
        if workers:
            assert cold.stats.worker_reads > 0  # the workers did read, not only check

    assert outcomes[1] == outcomes[0]
    found, (hits, reads, parses), saved, files, contents, failures, _, warm_stats = outcomes[0]
    migrations = 3 + 1 + 1  # per folder: the chain, the shared one, broken.py's header
    kinds = [[type(facts).__name__ for facts in results] for _kept, _linked, results in found]
    assert all(kind.count("ReadFile") == migrations + 1 for kind in kinds)  # link.py too
    assert (hits, parses) == (0, 4 * 3 + 1 + 4 + 1)  # junk.py's content: once, too
    assert saved  # contents learnt, whether or not any file could be trusted
    assert len(contents) == parses - 1 and len(failures) == 1
    if later:
        # Every regular file recorded but the FIFO and the one larger than max_bytes.
        assert sorted(len(entries) for entries in files.values()) == [7, 7, 7, 7]
        assert warm_stats == (4 * 6, 4 * 2, 0)  # junk.py: known as no migration, no hit
    else:
        assert files == {}  # all racily clean: none recorded, all read again
        assert warm_stats == (0, reads, 0)


def test_worker_processes_are_forked_only_when_they_pay_and_it_is_safe(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(index_module.PARALLEL_VARIABLE, raising=False)
    big = index_module.PARALLEL_MIN_FILES
    assert index_module.parallel_workers(big - 1, 20) == 0  # too few files to pay
    assert index_module.parallel_workers(big, 1) == 0  # one folder: nothing to share
    # This test process runs threads (pytest-xdist's), so it must never fork.
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        assert index_module.parallel_workers(big * 10, 20) == 0
    finally:
        stop.set()
        helper.join()
    # A single-threaded process forks one worker per spare core, three at most.
    code = ("import os, sys; from alembic_autocopy.sources import index; "
            "print(index.parallel_workers(int(sys.argv[1]), 20))")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    expected = max(0, min((cores or 1) - 1, index_module.MAX_WORKERS))

    def workers_for(files: int, minimum: str) -> str:
        return run([sys.executable, "-c", code, str(files)], cwd=tmp_path, check=True,
                   env={index_module.PARALLEL_VARIABLE: minimum}).stdout.strip()

    assert workers_for(10, "10") == str(expected)
    assert workers_for(9, "10") == "0"
    assert workers_for(big, "not a number") == str(expected)  # ignored: the default applies


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
