"""Issue 5: safe under load, crashes and hostile input.

Database lock, worktree lock, untrusted sources, hostile files, faults of the database.
SIGKILL/Ctrl-C: tests/test_safety_crash.py. Parallel worktrees: tests/test_safety_stress.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alembic_autocopy.effects import locking
from support import BASE_REV, Database, Repo, Worktree, make_repo, run
from support.process import merged_env

WAITING = "waiting for another upgrade of this database"


def setup_pair(tmp_path: Path, db: Database) -> tuple[Repo, Worktree, Worktree]:
    """Repo with main worktree B (base applied) and worktree A (branch ``a``)."""
    repo = make_repo(tmp_path, db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    return repo, repo.add_worktree("a"), b


def apply_chain_in(a: Worktree, n: int, prefix: str = "a") -> list[str]:
    ids = a.chain(n, BASE_REV, prefix)
    a.alembic("upgrade", "head", check=True)
    return ids


def add_tool_settings(worktree: Worktree, **settings: str) -> None:
    """Add ``key = value`` lines to the ini's [alembic-autocopy] section (made if needed)."""
    ini = worktree.path / "alembic.ini"
    text = ini.read_text()
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    header = "[alembic-autocopy]\n"
    if header not in text:
        text += "\n" + header
    ini.write_text(text.replace(header, header + lines, 1))


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


def unprivileged() -> list[str]:
    """Run a command without root's right to read anything (tests run as root in CI
    containers; file permissions must then really apply)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def autocopy_unprivileged(worktree: Worktree, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*unprivileged(), sys.executable, "-m", "alembic_autocopy", *args]
    return run(argv, cwd=worktree.path, check=False, timeout=120)


# --- untrusted sources ---------------------------------------------------------------------

def foreign_revision_in_folder(tmp_path: Path, repo: Repo, a: Worktree,
                               b: Worktree) -> tuple[str, Path]:
    """The database holds X; the only file holding X is in the configured folder ``shared``."""
    rev = "5a0000000001"
    written = a.write_migration(rev, down=BASE_REV, message="shared")
    a.alembic("upgrade", "head", check=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    moved = shared / written.name
    moved.write_bytes(written.read_bytes())
    written.unlink()
    add_tool_settings(b, search=str(shared))
    return rev, moved


@pytest.mark.parametrize("how", ["flag", "config"])
def test_world_writable_folder_is_refused_then_accepted_on_request(
    tmp_path: Path, sqlite_db: Database, how: str
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    rev, source = foreign_revision_in_folder(tmp_path, repo, a, b)
    source.parent.chmod(0o777)
    before = sorted(p.name for p in b.versions.iterdir())

    refused = b.autocopy("upgrade")

    assert refused.returncode == 1
    no_traceback(refused)
    assert rev in refused.stderr and str(source) in refused.stderr
    assert "writable by every user" in refused.stderr
    assert "--allow-untrusted-source" in refused.stderr
    assert sorted(p.name for p in b.versions.iterdir()) == before
    assert repo.applied_versions() == {rev}

    if how == "flag":
        accepted = b.autocopy("upgrade", "--allow-untrusted-source")
    else:
        add_tool_settings(b, allow_untrusted_source="true")
        accepted = b.autocopy("upgrade")
    assert accepted.returncode == 0, accepted.stderr
    assert (b.versions / source.name).read_bytes() == source.read_bytes()
    assert b.alembic("current").returncode == 0


def test_world_writable_file_in_a_trusted_folder_is_refused(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    rev, source = foreign_revision_in_folder(tmp_path, repo, a, b)
    source.chmod(0o666)

    refused = b.autocopy("upgrade")

    assert refused.returncode == 1
    no_traceback(refused)
    assert f"refusing to copy revision {rev} from {source}" in refused.stderr
    assert not (b.versions / source.name).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_folder_owned_by_another_user_is_refused(tmp_path: Path, sqlite_db: Database) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    _rev, source = foreign_revision_in_folder(tmp_path, repo, a, b)
    os.chown(source.parent, 65534, 65534)

    refused = b.autocopy("upgrade")

    assert refused.returncode == 1
    no_traceback(refused)
    assert "uid 65534" in refused.stderr and str(source.parent) in refused.stderr


def test_symlink_leading_out_of_a_worktree_is_not_followed(
    tmp_path: Path, sqlite_db: Database
) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    rev = "5a0000000002"
    written = a.write_migration(rev, down=BASE_REV, message="linked")
    target = outside / written.name
    target.write_bytes(written.read_bytes())
    written.unlink()
    written.symlink_to(target)
    a.alembic("upgrade", "head", check=True)  # Alembic itself follows the link

    refused = b.autocopy("upgrade")

    assert refused.returncode == 1
    no_traceback(refused)
    assert "symlink leading out of" in refused.stderr and rev in refused.stderr
    assert not (b.versions / written.name).exists()


# --- hostile and broken sources ---------------------------------------------------------------

def test_symlink_loop_and_unreadable_folder_warn_and_the_repair_completes(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 2)
    loop = a.versions / "loop.py"
    loop.symlink_to(loop.name)  # loop.py -> loop.py
    (a.versions / "again").symlink_to(".", target_is_directory=True)  # a folder loop
    c = repo.add_worktree("c")
    c.versions.chmod(0)

    try:
        result = autocopy_unprivileged(b, "upgrade")
    finally:
        c.versions.chmod(0o755)

    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert result.stderr.count(str(loop)) == 1
    assert result.stderr.count(str(c.versions)) == 1
    assert repo.applied_versions() == {ids[-1]}
    assert b.alembic("current").returncode == 0


def hostile_files(folder: Path) -> list[Path]:
    """Files no migration reader should choke on (one of each kind)."""
    generator = random.Random(5)
    files = {
        "nul_bytes.py": b"revision = 'aaaa'\x00\x00\x00down_revision = None\n",
        "random_bytes.py": generator.randbytes(20_000),
        "not_utf8.py": "revision = 'caf\u00e9'\n".encode("latin-1") + b"\xff\xfe\n",
        "deeply_nested.py": b"revision = " + b"(" * 100_000 + b"'x'" + b")" * 100_000,
        "needs_code.py": b"revision = f()\ndown_revision = None\n",
        "unterminated.py": b'"""\nrevision = "abc"\n',
    }
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    huge = folder / "huge.py"
    with open(huge, "wb") as handle:  # 50 MB, sparse: costs no disk
        handle.truncate(50 * 1024 * 1024)
    paths.append(huge)
    fifo = folder / "fifo.py"
    os.mkfifo(fifo)  # open() would wait forever for a writer
    paths.append(fifo)
    return paths


def test_hostile_files_are_skipped_with_one_warning_each(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 2)
    bad = hostile_files(a.versions)

    # -v: one warning per file (without it, one line per kind of reason)
    result = run([sys.executable, "-m", "alembic_autocopy", "upgrade", "-v"], cwd=b.path,
                 check=False, timeout=120)  # a hang fails here

    assert result.returncode == 0, result.stderr
    no_traceback(result)
    for path in bad:
        assert result.stderr.count(str(path)) == 1, (path, result.stderr)
    assert repo.applied_versions() == {ids[-1]}


def test_a_worktree_that_disappears_is_a_note_not_a_failure(
    tmp_path: Path, sqlite_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, sqlite_db)
    ids = apply_chain_in(a, 1)
    gone = repo.add_worktree("gone")
    gone.write_migration("9a0000000001", down=BASE_REV)
    os.rename(gone.path, tmp_path / "moved-away")  # git still lists it

    result = b.autocopy("upgrade")

    assert result.returncode == 0, result.stderr
    assert str(gone.path) in result.stderr
    assert repo.applied_versions() == {ids[-1]}


# --- the database lock -----------------------------------------------------------------------

HOLD_DATABASE_LOCK = textwrap.dedent("""
    import sys
    from alembic_autocopy.effects import database, locking
    from alembic_autocopy.effects.project import load_project

    state = database.read_state(load_project())
    with locking.database_lock(state.endpoints, locking.Waiting(30)):
        print("locked", flush=True)
        sys.stdin.readline()
""")

HOLD_WORKTREE_LOCK = textwrap.dedent("""
    import sys
    from alembic_autocopy.effects import locking, placement
    from alembic_autocopy.sources import scanning
    from alembic_autocopy.effects.project import load_project

    project = load_project()
    path = placement.manifest_path(project, scanning.this_worktree(project))
    with locking.worktree_lock(locking.worktree_lock_path(path), locking.Waiting(30)):
        print("locked", flush=True)
        sys.stdin.readline()
""")


@contextlib.contextmanager
def holding(worktree: Worktree, script: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holds a lock while the block runs (it is killed afterwards)."""
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=worktree.path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=merged_env(None))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_upgrade_waits_for_the_database_lock_then_gives_up(
    tmp_path: Path, any_db: Database
) -> None:
    repo, a, b = setup_pair(tmp_path, any_db)
    ids = apply_chain_in(a, 2)

    with holding(a, HOLD_DATABASE_LOCK):
        result = b.autocopy("upgrade", "--lock-timeout", "1.5")
        # The lock is held from before the heads are read: nothing moved.
        assert not list(b.versions.glob("a0000*.py"))

    assert result.returncode == 1
    no_traceback(result)
    assert WAITING in result.stderr
    assert "gave up after" in result.stderr and "--lock-timeout" in result.stderr
    # The holder was killed without releasing anything: its lock died with it.
    after = b.autocopy("upgrade", "--lock-timeout", "5")
    assert after.returncode == 0, after.stderr
    assert WAITING not in after.stderr
    assert repo.applied_versions() == {ids[-1]}
    assert not list(any_db_lock_files(any_db))


def test_losing_the_lock_connection_while_waiting_is_one_clear_error(
    tmp_path: Path, postgresql_db: Database
) -> None:
    _repo, a, b = setup_pair(tmp_path, postgresql_db)
    apply_chain_in(a, 1)
    holder_pid = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted")
    waiting = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
               "AND query LIKE '%pg_try_advisory_lock%' AND pid <> pg_backend_pid() "
               "AND pid NOT IN (" + holder_pid + ")")

    with holding(a, HOLD_DATABASE_LOCK):
        waiter = subprocess.Popen(
            [sys.executable, "-m", "alembic_autocopy", "upgrade", "--lock-timeout", "60"],
            cwd=b.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=merged_env(None))
        deadline = time.monotonic() + 60
        while not (pids := postgresql_db.execute(waiting)):
            assert waiter.poll() is None, waiter.communicate()
            assert time.monotonic() < deadline, "the waiter never connected"
            time.sleep(0.05)
        for (pid,) in pids:
            postgresql_db.execute(f"SELECT pg_terminate_backend({pid})")
        stdout, stderr = waiter.communicate(timeout=60)

    assert waiter.returncode == 1, stderr
    no_traceback(subprocess.CompletedProcess([], 1, stdout, stderr))
    assert "the lock connection to postgresql" in stderr


def any_db_lock_files(db: Database) -> Iterator[Path]:
    if db.backend == "sqlite":
        path = Path(db.url.removeprefix("sqlite:///") + locking.LOCK_FILE_SUFFIX)
        if path.exists():
            yield path


def test_async_env_lock_goes_through_the_async_driver(
    tmp_path: Path, postgresql_db: Database
) -> None:
    repo = make_repo(tmp_path, postgresql_db, env="async")
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    ids = apply_chain_in(a, 1)

    with holding(a, HOLD_DATABASE_LOCK):
        waited = b.autocopy("upgrade", "--lock-timeout", "1.5")
    done = b.autocopy("upgrade")

    assert waited.returncode == 1 and WAITING in waited.stderr
    assert done.returncode == 0, done.stderr
    assert repo.applied_versions() == {ids[-1]}


def test_the_worktree_lock_keeps_two_runs_apart(tmp_path: Path, sqlite_db: Database) -> None:
    _repo, a, b = setup_pair(tmp_path, sqlite_db)
    apply_chain_in(a, 1)
    add_tool_settings(b, lock_timeout="2")

    with holding(b, HOLD_WORKTREE_LOCK) as holder:
        upgrade = b.autocopy("upgrade")
        clean = b.autocopy("clean")

    for result in (upgrade, clean):
        assert result.returncode == 1
        no_traceback(result)
        assert "another alembic-autocopy run is changing this worktree" in result.stderr
        assert f"process {holder.pid} " in result.stderr  # who holds it
    assert "waiting for another alembic-autocopy run in this worktree" in upgrade.stderr
    assert b.autocopy("upgrade").returncode == 0


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_lock_timeout_must_be_seconds(tmp_path: Path, sqlite_db: Database, value: str) -> None:
    _repo, _a, b = setup_pair(tmp_path, sqlite_db)
    result = b.autocopy("upgrade", f"--lock-timeout={value}")
    assert result.returncode == 2
    assert "--lock-timeout" in result.stderr


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_is_announced_once_after_a_second_and_ends_at_the_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock"
    held = locking.FileLock(path)
    assert held.try_acquire()
    clock = FakeClock()
    notices: list[str] = []
    waiting = locking.Waiting(5.0, notices.append, clock, clock.sleep)

    def timed_out(waited: float, holder: str | None) -> locking.LockTimeout:
        return locking.LockTimeout(f"{waited} {holder}")

    with pytest.raises(locking.LockTimeout) as raised, locking.holding(
            locking.FileLock(path), waiting, locking.WAITING_FOR_DATABASE, timed_out):
        pytest.fail("the lock was taken twice")

    assert len(notices) == 1 and notices[0].startswith(locking.WAITING_FOR_DATABASE)
    assert f"process {os.getpid()}" in notices[0]  # who holds it
    assert raised.value.message.startswith("5.0 process")
    assert max(clock.sleeps) <= 0.25  # polled, so Ctrl-C and the notice are never late
    held.release()
    with locking.holding(locking.FileLock(path), waiting, "", locking.LockTimeout):
        pass


def test_transient_lock_file_is_removed_and_never_shared(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite.alembic-autocopy.lock"
    first = locking.FileLock(path, transient=True)
    assert first.try_acquire()
    second = locking.FileLock(path, transient=True)
    assert not second.try_acquire()
    first.release()
    assert not path.exists()
    assert second.try_acquire()
    assert not locking.FileLock(path, transient=True).try_acquire()
    second.release()
    assert not path.exists()


# --- database faults ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_unreachable_database_names_the_host_and_masks_the_password(
    tmp_path: Path, sqlite_db: Database, backend: str
) -> None:
    _repo, _a, b = setup_pair(tmp_path, sqlite_db)
    url = {"postgresql": "postgresql+psycopg://bob:s3cret@127.0.0.1:9/nowhere",
           "mariadb": "mysql+pymysql://bob:s3cret@127.0.0.1:9/nowhere"}[backend]
    ini = b.path / "alembic.ini"
    lines = [f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line
             for line in ini.read_text().splitlines()]
    ini.write_text("\n".join(lines) + "\n")

    result = b.autocopy("upgrade")

    assert result.returncode == 1
    no_traceback(result)
    assert "127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
