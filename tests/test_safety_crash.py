"""Issue 5: killed at any moment, interrupted, or cut off from the database, a run leaves
nothing half done that the next run cannot finish."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Imported before forking (see run_forked): the children start with them loaded.
import alembic.runtime.environment
import alembic.script  # noqa: F401
import pytest

import alembic_autocopy.effects.database
import alembic_autocopy.repair  # noqa: F401
from alembic_autocopy.cli import main
from alembic_autocopy.effects import locking, placement
from alembic_autocopy.effects.project import load_project
from support import BASE_REV, Database, Repo, Worktree, make_repo, run
from support.process import merged_env

KILLS = 100
MARKER = "# alembic-autocopy: managed file"

# SQLite runs DDL in a transaction only when the driver leaves BEGIN to SQLAlchemy (the
# recipe of SQLAlchemy's SQLite dialect documentation). Without it, a CREATE TABLE commits at
# once and a kill before the version row is written breaks the next run, with or without
# this tool: the project has to ask for transactional DDL.
TRANSACTIONAL_SQLITE = """
    from sqlalchemy import event

    @event.listens_for(connectable, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @event.listens_for(connectable, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")

"""


def make_sqlite_transactional(repo: Repo) -> None:
    env_py = repo.main.path / "migrations" / "env.py"
    anchor = "    with connectable.connect() as connection:\n"
    text = env_py.read_text()
    assert text.count(anchor) == 1
    env_py.write_text(text.replace(anchor, TRANSACTIONAL_SQLITE + anchor))
    repo.main.commit("transactional DDL on SQLite")


def with_upgrade_prologue(path: Path, lines: str) -> None:
    """Insert ``lines`` (4-space indented) at the start of the migration's upgrade()."""
    text = path.read_text()
    anchor = "def upgrade() -> None:\n"
    assert text.count(anchor) == 1
    path.write_text(text.replace(anchor, anchor + lines))


@dataclass
class Scene:
    """B (main worktree) lacks A's applied chain and has its own unapplied chain."""

    repo: Repo
    a: Worktree
    b: Worktree
    foreign: dict[str, bytes]  # file name -> content, in A
    originals: dict[str, bytes]  # B's own files
    heads: set[str]


def build_scene(tmp_path: Path, db: Database, foreign: int, own: int, slow: str) -> Scene:
    repo = make_repo(tmp_path, db)
    if db.backend == "sqlite":
        make_sqlite_transactional(repo)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    foreign_ids = a.chain(foreign, BASE_REV, "a")
    a.alembic("upgrade", "head", check=True)
    own_ids = b.chain(own, BASE_REV, "b")
    for path in b.versions.glob("b0000*.py"):
        with_upgrade_prologue(path, slow)
    b.commit("B's own migrations")
    return Scene(
        repo, a, b,
        foreign={p.name: p.read_bytes() for p in a.versions.glob("a0000*.py")},
        originals={p.name: p.read_bytes() for p in b.versions.glob("*.py")},
        heads={foreign_ids[-1], own_ids[-1]},
    )


def run_forked(cwd: Path, argv: list[str]) -> int:
    """Start ``alembic-autocopy <argv>`` in a forked child; return its pid.

    A fork starts in microseconds with alembic and SQLAlchemy already imported, so the
    random kill moments fall in the work (scan, placement, upgrade), not in start-up.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (pytest's capture)
            code = main.main(argv)
        finally:
            os._exit(code)
    return pid


def wait_exit(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def temporaries(scene: Scene) -> list[Path]:
    """Temporary files anywhere a run writes them."""
    manifest_dir = manifest_file(scene).parent
    found = []
    for folder in (scene.b.versions, manifest_dir, manifest_dir / placement.SCRATCH_NAME):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.name.endswith(placement.TEMP_SUFFIX)]
    return found


def manifest_file(scene: Scene) -> Path:
    return placement.manifest_path(load_project(cwd=scene.b.path), scene.b.path)


def assert_no_partial_or_orphan_file(scene: Scene) -> None:
    """What a kill may leave: whole copies, each listed in the manifest; nothing else."""
    copies = set()
    for path in scene.b.versions.iterdir():
        if path.name in scene.originals:
            assert path.read_bytes() == scene.originals[path.name]
        elif path.name in scene.foreign:
            assert path.read_bytes() == scene.foreign[path.name], f"partial copy {path}"
            copies.add(str(path))
        elif path.name == ".gitignore":
            assert path.read_text().startswith(MARKER)
        else:
            assert path.name == "__pycache__", f"orphan file {path}"
    if copies:
        listed = {str(scene.b.path / e["path"])  # relative to the worktree
                  for e in json.loads(manifest_file(scene).read_text())["entries"]}
        assert copies <= listed, "a copy the manifest does not know"
    assert scene.b.status_porcelain() == ""


def assert_completed(scene: Scene, db: Database, code: int) -> None:
    assert code == 0
    assert db.versions() == scene.heads
    present = {p.name for p in scene.b.versions.glob("*.py")}
    assert present == set(scene.originals) | set(scene.foreign)
    listed = {Path(e["path"]).name
              for e in json.loads(manifest_file(scene).read_text())["entries"]}
    assert listed == set(scene.foreign)
    assert temporaries(scene) == []
    assert not Path(db.url.removeprefix("sqlite:///") + locking.LOCK_FILE_SUFFIX).exists()
    assert scene.b.status_porcelain() == ""


def test_sigkill_at_random_moments_never_leaves_a_partial_file(
    tmp_path: Path, sqlite_db: Database
) -> None:
    scene = build_scene(tmp_path, sqlite_db, foreign=4, own=3,
                        slow="    import time\n    time.sleep(0.02)\n")
    db_file = Path(sqlite_db.url.removeprefix("sqlite:///"))
    template = tmp_path / "template.sqlite"
    shutil.copyfile(db_file, template)
    manifest = manifest_file(scene)

    def reset() -> None:
        shutil.copyfile(template, db_file)
        for path in scene.b.versions.iterdir():
            if path.is_file() and path.name not in scene.originals:
                path.unlink()
        manifest.unlink(missing_ok=True)

    # The kill moments span the quickest of three warm runs (the first run also builds the
    # index and writes bytecode, and warm runs vary by half on a loaded machine): a kill
    # then lands before the run it targets has finished, whatever the load.
    assert_completed(scene, sqlite_db, wait_exit(run_forked(scene.b.path, ["upgrade"])))
    durations = []
    for _ in range(3):
        reset()
        started = time.monotonic()
        assert_completed(scene, sqlite_db, wait_exit(run_forked(scene.b.path, ["upgrade"])))
        durations.append(time.monotonic() - started)
    typical = min(durations)
    moments = random.Random(20261124)
    finished_before_kill = 0
    for _ in range(KILLS):
        reset()
        pid = run_forked(scene.b.path, ["upgrade", "-q"])
        time.sleep(moments.uniform(0, typical))
        os.kill(pid, signal.SIGKILL)
        if wait_exit(pid) == 0:
            finished_before_kill += 1
        assert_no_partial_or_orphan_file(scene)
        assert_completed(scene, sqlite_db, wait_exit(run_forked(scene.b.path, ["upgrade"])))
    assert finished_before_kill < KILLS // 2  # most kills really interrupted a run


# Runs the command with os.fsync and os.link logged (to the file AAC_TEST_LOG names), each
# by inode, once done: when each file is on disk, when it gets a name. With AAC_TEST_NO_THREADS,
# no thread can be started (a platform with a thread or process limit reached).
LOGGED_FLUSHES = """
import hashlib, json, os, sys, threading

log = []
real_fsync, real_link = os.fsync, os.link

def content(descriptor):
    try:
        return hashlib.sha256(os.pread(descriptor, 1 << 20, 0)).hexdigest()
    except OSError:  # a folder, or a file open for writing only
        return None

def fsync(descriptor):
    real_fsync(descriptor)
    log.append(["fsync", os.fstat(descriptor).st_ino, content(descriptor),
                threading.current_thread().name])

def link(source, destination, **options):
    real_link(source, destination, **options)
    descriptor = os.open(destination, os.O_RDONLY)
    log.append(["link", os.fstat(descriptor).st_ino, content(descriptor),
                os.fspath(destination)])
    os.close(descriptor)

def refuse(thread):
    raise RuntimeError("can't start new thread")

os.fsync, os.link = fsync, link
if os.environ.get("AAC_TEST_NO_THREADS"):
    threading.Thread.start = refuse
from alembic_autocopy.cli.main import main
try:
    code = main(sys.argv[1:])
finally:
    with open(os.environ["AAC_TEST_LOG"], "w") as handle:
        json.dump(log, handle)
sys.exit(code)
"""


@pytest.mark.parametrize("threads", ["threads", "no thread can start"])
def test_each_copy_is_on_disk_before_its_name_appears(
    tmp_path: Path, sqlite_db: Database, threads: str
) -> None:
    """A power cut never leaves a copy's name on a partial file: each copy's data is flushed
    by an ``fsync`` of its own (the one call every file system honours) before the hard link
    that names it, and the folder after the last link. The flushes run in worker threads
    (concurrent, they share journal commits); where none can start, one after another."""
    scene = build_scene(tmp_path, sqlite_db, foreign=6, own=1, slow="")
    script, log = tmp_path / "logged_flushes.py", tmp_path / "flushes.json"
    script.write_text(LOGGED_FLUSHES, encoding="utf-8")
    env = {"AAC_TEST_LOG": str(log),
           "AAC_TEST_NO_THREADS": "1" if threads == "no thread can start" else None}
    result = run([sys.executable, str(script), "upgrade"], cwd=scene.b.path, env=env,
                 check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_completed(scene, sqlite_db, result.returncode)

    events = json.loads(log.read_text())
    flushed: dict[tuple[int, str | None], str] = {}  # (inode, sha256) -> thread that did it
    named: list[tuple[int, str | None]] = []
    for kind, inode, digest, detail in events:
        if kind == "fsync":
            flushed.setdefault((inode, digest), detail)
        else:
            assert (inode, digest) in flushed, f"{detail} was named before it was on disk"
            named.append((inode, digest))
    linked = [Path(detail) for kind, _, _, detail in events if kind == "link"]
    assert sorted(path.name for path in linked) == sorted(scene.foreign)
    assert {path.parent for path in linked} == {scene.b.versions}
    last_link = max(i for i, event in enumerate(events) if event[0] == "link")
    folder = os.stat(scene.b.versions).st_ino
    assert ["fsync", folder] in [event[:2] for event in events[last_link:]]
    workers = {flushed[key] for key in named}
    if threads == "threads":
        assert "MainThread" not in workers
    else:
        assert workers == {"MainThread"}


def test_ctrl_c_exits_130_after_cleaning_up(tmp_path: Path, sqlite_db: Database) -> None:
    marker = tmp_path / "upgrade-started"
    scene = build_scene(
        tmp_path, sqlite_db, foreign=2, own=1,
        slow=("    import os, pathlib, time\n"
              "    if os.environ.get('AAC_TEST_SLOW'):\n"
              f"        pathlib.Path({str(marker)!r}).write_text('x')\n"
              "        time.sleep(60)\n"))
    process = subprocess.Popen(
        [sys.executable, "-m", "alembic_autocopy", "upgrade"], cwd=scene.b.path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=merged_env({"AAC_TEST_SLOW": "1"}))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the upgrade never started"
        time.sleep(0.05)

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr + stdout
    assert_no_partial_or_orphan_file(scene)
    assert temporaries(scene) == []
    foreign_head = next(rev for rev in scene.heads if rev.startswith("a"))
    assert sqlite_db.versions() == {foreign_head}  # B's own upgrade was rolled back
    done = scene.b.autocopy("upgrade")
    assert_completed(scene, sqlite_db, done.returncode)


def test_connection_dropped_mid_upgrade_is_one_clear_error(
    tmp_path: Path, postgresql_db: Database
) -> None:
    scene = build_scene(
        tmp_path, postgresql_db, foreign=2, own=1,
        slow=("    import os\n"
              "    if os.environ.get('AAC_TEST_SLOW'):\n"
              "        op.execute('SELECT pg_sleep(60)')\n"))
    process = subprocess.Popen(
        [sys.executable, "-m", "alembic_autocopy", "upgrade"], cwd=scene.b.path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=merged_env({"AAC_TEST_SLOW": "1"}))
    sleeping = (f"SELECT pid FROM pg_stat_activity WHERE datname = '{postgresql_db.name}' "
                "AND query LIKE 'SELECT pg_sleep%'")
    deadline = time.monotonic() + 120
    while not (pids := postgresql_db.execute(sleeping)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the migration never started"
        time.sleep(0.05)

    postgresql_db.execute(f"SELECT pg_terminate_backend({pids[0][0]})")
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr + stdout
    assert "connection to the database was lost during the upgrade" in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    own_head = next(rev for rev in scene.heads if rev.startswith("b"))
    assert own_head not in postgresql_db.versions()  # nothing recorded that did not happen
    assert f"t_{own_head}" not in postgresql_db.tables()
    done = scene.b.autocopy("upgrade")
    assert done.returncode == 0, done.stderr
    assert postgresql_db.versions() == scene.heads

