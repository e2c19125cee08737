"""Benchmark alembic-autocopy on a fleet of worktrees, against Alembic and the original script.

Builds (once, reused by later runs unless --rebuild) a git repository holding an Alembic
project with a chain of 1,000 migrations, 20 worktrees of it, 30 branches that exist only in
git objects (3 migrations of their own each), and one worktree whose 10 extra migrations are
applied in the shared SQLite database; the main worktree lacks those 10. Then measures
whole-process medians of every row of issue 6 and writes docs/benchmarks.md itself.

    python bench/fleet.py                # 1x and 2x fleets, 5 runs per row
    python bench/fleet.py --with-4x      # and the 4x fleet (80 worktrees; a few minutes more)
    python bench/fleet.py --runs 9 --dir /tmp/fleet --rebuild
    python bench/fleet.py --rerender     # the report again from the last run's measurements

Every run also keeps its raw measurements in bench/last-run.json, so the report (and the
notes in bench/notes.md, whose numbers are filled in from the run) can be written again
without measuring again.

Alembic's own rows (``alembic current`` and loading the fleet with ``ScriptDirectory``) are
measured under two conditions, and the targets that compare us with them are judged under
both. "No bytecode cache, as issue 6 measured": issue 6's numbers come from machines whose
shell sets PYTHONDONTWRITEBYTECODE=1, so Alembic compiled every migration at every run; these
rows run with it set, and every ``__pycache__`` of the version folders they load is taken
away before each run. "Bytecode cached": the caches a plain shell leaves behind (the harsher
baseline for us); these rows put the caches back before each run and check they are there.
Only the version folders' caches differ; env.py's (one file, which our commands load too) is
left alone. Our rows have one condition, the one any install has: our package's own bytecode
is cached, and we never import a migration file.

Every Python process (ours and Alembic's alike) runs with ``-S`` and site-packages on
PYTHONPATH unless --site is given: some machines (this project's sandboxes) install ``.pth``
start-up hooks that add ~45 ms to every interpreter start, a cost users do not pay. Both
start-up costs are reported in the output, so the choice is visible.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import json
import os
import platform
import py_compile
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]
SRC = CHECKOUT / "src"
PYTHON = sys.executable
OUR_MAIN = "import sys; from alembic_autocopy.cli.main import main; sys.exit(main())"
GIT_DATE = "1704164645 +0000"  # 2024-01-02T03:04:05Z, fixed so every build is the same

MIGRATION = '''"""{message}

Revision ID: {rev}
Revises: {down_text}
Create Date: 2024-01-02 03:04:05.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
'''

SCRIPT_DIRECTORY_LOAD = """
import sys
from alembic.config import Config
from alembic.script import ScriptDirectory
total = 0
for ini in sys.argv[1:]:
    script = ScriptDirectory.from_config(Config(ini))
    total += len(list(script.walk_revisions()))
print(total)
"""

# The least a Python tool with exact invalidation pays per file: list each folder, keep the
# names Alembic loads, stat each one (no index, no comparison, nothing kept).
PYTHON_STAT_WALK = """
import os, re, sys
rule = re.compile(r"(?!\\.\\#|__init__)(.*\\.py)$")
for folder in sys.argv[1:]:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        for name in os.listdir(folder):
            if rule.match(name):
                os.stat(name, dir_fd=descriptor)
    finally:
        os.close(descriptor)
"""

BARE_SELECT = """
import sys
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
engine = sa.create_engine(sys.argv[1])
with engine.connect() as connection:
    print(MigrationContext.configure(connection).get_current_heads())
"""


# ------------------------------------------------------------------------------------ fleet


@dataclass
class Fleet:
    root: Path
    worktrees: list[Path]
    here: Path  # the worktree that lacks the applied chain (main)
    chain_worktree: Path  # the worktree that applied it
    missing: list[str]  # the chain, oldest first
    database: Path
    branches: int

    @property
    def version_dirs(self) -> list[Path]:
        return [w / "migrations" / "versions" for w in self.worktrees]

    @property
    def index_file(self) -> Path:
        return self.here / ".git" / "alembic-autocopy" / "index"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.database}"


def clean_env(site: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_")
           and k not in ("ALEMBIC_CONFIG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    paths = [str(SRC)]
    if not site:
        paths.append(sysconfig.get_paths()["purelib"])
        platlib = sysconfig.get_paths()["platlib"]
        if platlib not in paths:
            paths.append(platlib)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update({"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
                "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE,
                "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"})
    return env


def run(args: Sequence[str | Path], cwd: Path, env: dict[str, str],
        stdin: bytes | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, args))}\n"
                         f"{done.stdout.decode(errors='replace')}"
                         f"{done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def rev(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{12 - len(prefix)}x}"


def migration(rev_id: str, down: str | None, message: str) -> str:
    return MIGRATION.format(rev=rev_id, down=down, down_text=down or "", message=message)


def init_project(repo: Path, database: Path, migrations: int, env: dict[str, str]) -> str:
    """An Alembic project (``alembic init``) with a chain of ``migrations``; returns its head."""
    repo.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], repo, env)
    run([PYTHON, "-m", "alembic", "init", "migrations"], repo, env)
    ini = repo / "alembic.ini"
    text = ini.read_text(encoding="utf-8").replace(
        "sqlalchemy.url = driver://user:pass@localhost/dbname",
        f"sqlalchemy.url = sqlite:///{database}")
    ini.write_text(text, encoding="utf-8")
    (repo / ".gitignore").write_text("__pycache__/\n*.py[cod]\n", encoding="utf-8")
    versions = repo / "migrations" / "versions"
    down = None
    for number in range(1, migrations + 1):
        rev_id = rev("a", number)
        message = f"step {number} of the main line"
        name = f"{rev_id}_step_{number}_of_the_main_line.py"
        (versions / name).write_text(migration(rev_id, down, message), encoding="utf-8")
        down = rev_id
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "Alembic project"], repo, env)
    assert down is not None
    return down


def fast_import_branch(branch: str, files: dict[str, str], message: str) -> bytes:
    """A git fast-import command: commit ``files`` on top of main as ``branch``."""
    out = [f"commit refs/heads/{branch}\n",
           f"committer Bench <bench@example.invalid> {GIT_DATE}\n"]
    data = message.encode()
    out.append(f"data {len(data)}\n")
    chunks = [b"".join(part.encode() for part in out) + data + b"\n",
              b"from refs/heads/main^0\n"]
    for path, text in files.items():
        body = text.encode()
        chunks.append(f"M 100644 inline {path}\ndata {len(body)}\n".encode() + body + b"\n")
    chunks.append(b"\n")
    return b"".join(chunks)


def build_fleet(root: Path, worktrees: int, branches: int, migrations: int, chain: int,
                env: dict[str, str]) -> Fleet:
    marker = root / "fleet-complete"
    here = root / "Proj"
    names = [here] + [root / f"Proj-wt{n:02d}" for n in range(1, worktrees)]
    missing = [rev("c", n) for n in range(1, chain + 1)]
    fleet = Fleet(root, names, here, names[1], missing, root / "shared.db", branches)
    if marker.exists():
        return fleet
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    head = init_project(here, fleet.database, migrations, env)
    versions = "migrations/versions"
    stream = []
    files = {}
    down = head
    for number, rev_id in enumerate(missing, 1):
        files[f"{versions}/{rev_id}_chain_{number}.py"] = migration(rev_id, down, f"chain {number}")
        down = rev_id
    stream.append(fast_import_branch("wt01", files, "a chain applied by wt01"))
    for branch in range(1, branches + 1):
        own = {}
        down = head
        for number in range(1, 4):
            rev_id = rev(f"b{branch:02d}", number)
            own[f"{versions}/{rev_id}_branch_{branch}_{number}.py"] = migration(
                rev_id, down, f"branch {branch} step {number}")
            down = rev_id
        stream.append(fast_import_branch(f"br{branch:02d}", own, f"branch {branch}"))
    run(["git", "fast-import", "--quiet"], here, env, stdin=b"".join(stream))
    for number, path in enumerate(names[1:], 1):
        if number == 1:
            run(["git", "worktree", "add", "-q", str(path), "wt01"], here, env)
        else:
            run(["git", "worktree", "add", "-q", "-b", f"wt{number:02d}", str(path), "main"],
                here, env)
    run([PYTHON, "-m", "alembic", "upgrade", "head"], fleet.chain_worktree, env)
    marker.write_text(f"built in {time.perf_counter() - started:.1f} s\n", encoding="utf-8")
    return fleet


def build_solo(root: Path, migrations: int, env: dict[str, str]) -> Fleet:
    """One worktree, ``migrations`` migrations, the database at its head: nothing to do."""
    marker = root / "solo-complete"
    here = root / "Solo"
    fleet = Fleet(root, [here], here, here, [], root / "solo.db", 0)
    if marker.exists():
        return fleet
    if root.exists():
        shutil.rmtree(root)
    init_project(here, fleet.database, migrations, env)
    run([PYTHON, "-m", "alembic", "upgrade", "head"], here, env)
    marker.write_text("built\n", encoding="utf-8")
    return fleet


# ------------------------------------------------------------------------------ measurement


@dataclass
class Sample:
    label: str
    times: list[float] = field(default_factory=list)  # seconds
    peak_kib: int = 0
    exit_codes: set[int] = field(default_factory=set)
    ours: bool = False

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def spread(self) -> str:
        return f"{min(self.times) * 1000:.0f}–{max(self.times) * 1000:.0f}"


@dataclass
class Row:
    """One row to measure: a whole process, ``runs`` times after ``warmup`` runs."""

    key: str
    label: str
    args: Sequence[str | Path]
    cwd: Path
    runs: int
    before: Callable[[], None] | None = None  # e.g. delete the index (cold rows)
    warmup: int = 1
    ours: bool = False
    env: dict[str, str] | None = None  # instead of the group's (e.g. no bytecode written)


def run_once(row: Row, env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in KiB) of one run of ``row``."""
    if row.before is not None:
        row.before()
    start = time.perf_counter()
    process = subprocess.Popen([str(a) for a in row.args], cwd=row.cwd,
                               env=env if row.env is None else row.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, process.returncode, usage.ru_maxrss


def measure_together(rows: Sequence[Row], env: dict[str, str]) -> dict[str, Sample]:
    """Measure rows that are compared with one another in alternation (A B C, A B C...):
    the machine is shared and its load drifts within minutes, so each row of a comparison
    sees the same conditions, run after run."""
    samples = {row.key: Sample(row.label, ours=row.ours) for row in rows}
    for row in rows:
        for _ in range(row.warmup):
            run_once(row, env)
    for turn in range(max(row.runs for row in rows)):
        for row in rows:
            if turn >= row.runs:
                continue
            elapsed, code, peak = run_once(row, env)
            sample = samples[row.key]
            sample.times.append(elapsed)
            sample.peak_kib = max(sample.peak_kib, peak)
            sample.exit_codes.add(code)
    for sample in samples.values():
        print(f"  {sample.label:<58} {sample.median_ms:8.0f} ms  "
              f"(exit {sorted(sample.exit_codes)})", flush=True)
    return samples


def python(site: bool) -> list[str]:
    return [PYTHON] if site else [PYTHON, "-S"]


def remove(path: Path) -> Callable[[], None]:
    def action() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return action


def without_bytecode_writes(env: dict[str, str]) -> dict[str, str]:
    """``env`` as on the machines issue 6 measured: the shell sets PYTHONDONTWRITEBYTECODE."""
    return {**env, "PYTHONDONTWRITEBYTECODE": "1"}


def _stashed(cache: Path, root: Path) -> Path:
    return root / "bytecode-stash" / cache.relative_to(root)


def drop_bytecode(version_dirs: Sequence[Path], root: Path) -> Callable[[], None]:
    """Before a "no bytecode cache" run: take every ``__pycache__`` out of ``version_dirs``.

    Moved aside under ``root`` rather than deleted, so that ``keep_bytecode`` can give the
    cached rows of the next turn exactly the caches Alembic wrote, at the cost of a rename."""
    def action() -> None:
        for folder in version_dirs:
            cache = folder / "__pycache__"
            if not cache.is_dir():
                continue
            stash = _stashed(cache, root)
            if stash.exists():
                shutil.rmtree(stash)
            stash.parent.mkdir(parents=True, exist_ok=True)
            cache.rename(stash)
    return action


def keep_bytecode(version_dirs: Sequence[Path], root: Path) -> Callable[[], None]:
    """Before a "bytecode cached" run: make sure every folder has its ``__pycache__`` (a
    "no bytecode cache" row of the previous turn took it away), and check that it does."""
    def action() -> None:
        for folder in version_dirs:
            cache = folder / "__pycache__"
            stash = _stashed(cache, root)
            if not cache.is_dir() and stash.is_dir():
                stash.rename(cache)
            elif not cache.is_dir():  # never loaded yet: compile as the import system would
                compileall.compile_dir(folder, maxlevels=0, quiet=1,
                                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
            if not any(cache.glob("*.pyc")):
                raise SystemExit(f"no bytecode cache in {folder} for a cached row")
    return action


def measure_fleet(fleet: Fleet, runs: int, site: bool, env: dict[str, str],
                  full: bool) -> dict[str, Sample]:
    py = python(site)
    ours = [*py, "-c", OUR_MAIN]
    target = fleet.missing[len(fleet.missing) // 2]
    here = fleet.here
    dirs = [str(d) for d in fleet.version_dirs]
    # Cold first in each turn (it deletes the index, and writes it again for the warm rows).
    rows = measure_together([
        Row("find_cold", f"alembic-autocopy find {target}, cold (no index)",
            [*ours, "find", target], here, runs, before=remove(fleet.index_file), warmup=0,
            ours=True),
        Row("find_warm", f"alembic-autocopy find {target}, warm", [*ours, "find", target],
            here, runs, ours=True),
        Row("list_warm", "alembic-autocopy list --no-db, warm", [*ours, "list", "--no-db"],
            here, runs, ours=True),
        Row("name_find", "original script: find <root>/*/versions -name 'REV*.py'",
            ["find", *dirs, "-name", f"{target}*.py"], here, runs),
        Row("stat_walk", "floor: find ... -printf '%s %T@' (stat walk)",
            ["find", *dirs, "-name", "*.py", "-printf", "%s %T@\n"], here, runs),
        Row("py_stat_walk", "floor in Python: listdir + os.stat of every file",
            [*py, "-c", PYTHON_STAT_WALK, *dirs], here, runs),
        Row("cat_all", "floor: cat every file once",
            ["find", *dirs, "-name", "*.py", "-exec", "cat", "{}", "+"], here, runs),
    ], env)
    if not full:
        return rows
    inis = [str(w / "alembic.ini") for w in fleet.worktrees]
    loaded = f"Alembic ScriptDirectory loading all {len(inis)} worktrees (one process)"
    current = "alembic current (one worktree, 1,010 migrations)"
    chain_dirs = [fleet.chain_worktree / "migrations" / "versions"]
    no_writes = without_bytecode_writes(env)
    # Alembic's rows under both conditions (see the module's docstring). The cached rows
    # come first in each turn and put the caches back; the uncached rows, last, take them
    # away again (and write none, PYTHONDONTWRITEBYTECODE being set).
    rows.update(measure_together([
        Row("check_warm", "alembic-autocopy check, warm (plan: 10 missing)", [*ours, "check"],
            here, runs, ours=True),
        Row("dry_run_warm", "alembic-autocopy upgrade --dry-run, warm",
            [*ours, "upgrade", "--dry-run"], here, runs, ours=True),
        Row("alembic_current", f"{current}, bytecode cached",
            [*py, "-m", "alembic", "current"], fleet.chain_worktree, runs,
            before=keep_bytecode(chain_dirs, fleet.root)),
        Row("bare_select", "bare script: import alembic + SQLAlchemy, select heads",
            [*py, "-c", BARE_SELECT, fleet.url], here, runs),
        Row("script_directory", f"{loaded}, bytecode cached",
            [*py, "-c", SCRIPT_DIRECTORY_LOAD, *inis], here, max(3, runs // 2),
            before=keep_bytecode(fleet.version_dirs, fleet.root)),
        Row("alembic_current_nocache", f"{current}, no bytecode cache (as issue 6 measured)",
            [*py, "-m", "alembic", "current"], fleet.chain_worktree, runs,
            before=drop_bytecode(chain_dirs, fleet.root), env=no_writes),
        Row("script_directory_nocache", f"{loaded}, no bytecode cache (as issue 6 measured)",
            [*py, "-c", SCRIPT_DIRECTORY_LOAD, *inis], here, max(3, runs // 2),
            before=drop_bytecode(fleet.version_dirs, fleet.root), env=no_writes),
    ], env))
    return rows


def measure_solo(solo: Fleet, runs: int, site: bool, env: dict[str, str]) -> dict[str, Sample]:
    py = python(site)
    ours = [*py, "-c", OUR_MAIN]
    return measure_together([
        Row("check", "alembic-autocopy check, nothing to do, warm", [*ours, "check"],
            solo.here, runs, ours=True),
        Row("alembic_current", "alembic current, bytecode cached",
            [*py, "-m", "alembic", "current"], solo.here, runs,
            before=keep_bytecode(solo.version_dirs, solo.root)),
        Row("bare_select", "bare script: import alembic + SQLAlchemy, select heads",
            [*py, "-c", BARE_SELECT, solo.url], solo.here, runs),
        Row("alembic_current_nocache", "alembic current, no bytecode cache (as issue 6 measured)",
            [*py, "-m", "alembic", "current"], solo.here, runs,
            before=drop_bytecode(solo.version_dirs, solo.root),
            env=without_bytecode_writes(env)),
    ], env)


def start_up(runs: int, env: dict[str, str]) -> dict[str, Sample]:
    return measure_together([
        Row("site", "python -c pass", [PYTHON, "-c", "pass"], CHECKOUT, runs),
        Row("no_site", "python -S -c pass", [PYTHON, "-S", "-c", "pass"], CHECKOUT, runs),
    ], env)


# ---------------------------------------------------------------------------------- report


@dataclass
class Target:
    text: str
    ratio: float | None
    limit: str
    passed: bool | None
    note: str = ""
    best: str = ""  # the best any tool could measure here: a floor measured in the same run


# Alembic's rows are measured under two conditions: (key suffix, how the report names it).
CONDITIONS = (("_nocache", "no bytecode cache, as issue 6 measured"),
              ("", "migrations' bytecode cached"))


def targets(main: dict[str, Sample], solo: dict[str, Sample],
            scaled: dict[int, dict[str, Sample]]) -> list[Target]:
    found: list[Target] = []

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("inf")

    r = ratio(main["find_warm"].median_ms, main["name_find"].median_ms)
    walk = ratio(main["stat_walk"].median_ms, main["name_find"].median_ms)
    found.append(Target("Warm `find` ≤ 1.5× the original name-only `find`", r, "≤ 1.5×",
                        r <= 1.5, best=f"≥ {walk:.2f}× (one stat per file, in C)"))
    r = ratio(main["find_cold"].median_ms, main["cat_all"].median_ms)
    found.append(Target("Cold `find` ≤ 3× `cat` of every file", r, "≤ 3×", r <= 3))
    # Alembic's rows under both conditions; a run written before the uncached rows existed
    # has only the cached ones, and its report shows only those lines.
    for key, label in (("check_warm", "check"), ("dry_run_warm", "upgrade --dry-run")):
        for alembic, condition in CONDITIONS:
            directory = main.get(f"script_directory{alembic}")
            if directory is None:
                continue
            r = ratio(directory.median_ms, main[key].median_ms)
            ceiling = ratio(directory.median_ms, main["bare_select"].median_ms)
            found.append(Target(
                f"Warm `{label}` ≥ 10× faster than ScriptDirectory on the fleet ({condition})",
                r, "≥ 10×", r >= 10, best=f"≤ {ceiling:.2f}× (the bare select alone)"))
    r = ratio(solo["check"].median_ms, solo["bare_select"].median_ms)
    found.append(Target("`check`, nothing to do ≤ 1.3× the bare select script", r, "≤ 1.3×",
                        r <= 1.3, best="≥ 1.00× (the bare select itself)"))
    for alembic, condition in CONDITIONS:
        current = solo.get(f"alembic_current{alembic}")
        if current is None:
            continue
        r = ratio(current.median_ms, solo["check"].median_ms)
        ceiling = ratio(current.median_ms, solo["bare_select"].median_ms)
        found.append(Target(
            f"`check`, nothing to do ≥ 2× faster than `alembic current` ({condition})", r,
            "≥ 2×", r >= 2, best=f"≤ {ceiling:.2f}× (the bare select alone)"))
    peak = max(s.peak_kib for s in main.values() if s.ours) / 1024
    found.append(Target("Peak memory of ours < 150 MB on the 20 × 1,000 fleet", None,
                        "< 150 MB", peak < 150, f"{peak:.0f} MB"))
    base = scaled.get(1)
    for factor in sorted(k for k in scaled if k > 1):
        rows = scaled[factor]
        if base is None:
            continue
        r = ratio(rows["find_cold"].median_ms, base["find_cold"].median_ms)
        found.append(Target(f"Cold `find` at {factor}× the fleet ≤ {factor}× the 1× time", r,
                            f"≤ {factor}×", r <= factor))
        warm_growth = rows["find_warm"].median_ms - base["find_warm"].median_ms
        walk_growth = rows["stat_walk"].median_ms - base["stat_walk"].median_ms
        python_growth = rows["py_stat_walk"].median_ms - base["py_stat_walk"].median_ms
        growth = ratio(warm_growth, walk_growth) if walk_growth > 0 else None
        allowed = 1.5 * max(walk_growth, 1.0) + 0.1 * base["find_warm"].median_ms
        passed = warm_growth <= allowed
        python_ratio = (f"{ratio(python_growth, walk_growth):.2f}×, " if walk_growth > 0
                        else "")
        found.append(Target(
            f"Warm `find` at {factor}× grows only with the stat walk", growth,
            "growth ≈ stat walk growth", passed,
            f"warm +{warm_growth:.0f} ms, stat walk +{walk_growth:.0f} ms; allowed: "
            f"+{allowed:.0f} ms",
            best=f"{python_ratio}+{python_growth:.0f} ms (the Python stat loop alone)"))
    return found


def machine(env: dict[str, str]) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = subprocess.run(
        [PYTHON, "-S", "-c", "import alembic, sqlalchemy; "
                             "print(alembic.__version__, sqlalchemy.__version__)"],
        env=env, capture_output=True, text=True, check=False).stdout.split()
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average at start "
        f"{load[0]:.2f} (the machine is shared: medians, not minimums, are reported)",
        f"- OS: {platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"{git_version}; Alembic {versions[0] if versions else '?'}; "
        f"SQLAlchemy {versions[1] if len(versions) > 1 else '?'}",
    ]


def table(rows: dict[str, Sample]) -> list[str]:
    lines = ["| what | median | range | peak memory |", "|---|---:|---:|---:|"]
    for sample in rows.values():
        memory = f"{sample.peak_kib / 1024:.0f} MB" if sample.ours else ""
        lines.append(f"| {sample.label} | {sample.median_ms:.0f} ms | {sample.spread} ms | "
                     f"{memory} |")
    return lines


def render(args: argparse.Namespace, written: str, machine_lines: list[str],
           starts: dict[str, Sample], scaled: dict[int, dict[str, Sample]],
           solo: dict[str, Sample], sizes: dict[int, tuple[int, int]],
           results: list[Target]) -> str:
    main = scaled[1]
    mode = ("as installed (site on)" if args.site else
            "with `-S` and site-packages on PYTHONPATH (no `.pth` start-up hooks)")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `python bench/fleet.py` ({written}); do not edit by hand: run it again.",
        "",
        "Other pages: what the env.py line costs plain `alembic upgrade head` "
        "([benchmarks-integration.md](benchmarks-integration.md), `bench/integration.py`); "
        "what the git hooks add to a checkout ([hooks-overhead.md](hooks-overhead.md)).",
        "",
        "## Machine",
        "",
        *machine_lines,
        f"- Every Python process, ours and Alembic's alike, runs {mode}. Interpreter start "
        f"here: `python -c pass` {starts['site'].median_ms:.0f} ms, `python -S -c pass` "
        f"{starts['no_site'].median_ms:.0f} ms.",
        f"- {args.runs} runs per row after one warm-up run (cold rows: no warm-up, the index "
        "is deleted before each run); whole processes, wall clock. Rows compared with one "
        "another are run in alternation (A B C, A B C, ...), so a change of load affects "
        "them alike.",
        "- Alembic's own rows (`alembic current`, `ScriptDirectory`) run under two conditions, "
        "both judged in the targets: \"no bytecode cache (as issue 6 measured)\" "
        "(`PYTHONDONTWRITEBYTECODE=1`, every `__pycache__` of the version folders removed "
        "before each run, so every migration is compiled) and \"bytecode cached\" (the "
        "caches a plain shell leaves behind, checked present before each run). Ours never "
        "imports a migration file, so it has one condition.",
        "",
        "## The fleet",
        "",
        "An Alembic project (`alembic init`, SQLite) with a chain of 1,000 migrations in "
        f"{sizes[1][0]} worktrees, {sizes[1][1]} branches that exist only in git objects "
        "(3 migrations each), and a chain of 10 migrations applied in the shared database by "
        "one worktree; the main worktree, where every command runs, lacks those 10. The "
        "original script's `find` and the floors look at the same worktrees.",
        "",
        "## Results (1× fleet)",
        "",
        *table(main),
        "",
        "## One worktree, 1,000 migrations, database at head (nothing to do)",
        "",
        *table(solo),
        "",
        "## Scaling",
        "",
        "| fleet | worktrees | branches | find cold | find warm | stat walk | stat walk "
        "(Python) | cat all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for factor in sorted(scaled):
        rows = scaled[factor]
        count, branches = sizes[factor]
        lines.append(f"| {factor}× | {count} | {branches} | {rows['find_cold'].median_ms:.0f} ms"
                     f" | {rows['find_warm'].median_ms:.0f} ms | "
                     f"{rows['stat_walk'].median_ms:.0f} ms | "
                     f"{rows['py_stat_walk'].median_ms:.0f} ms | "
                     f"{rows['cat_all'].median_ms:.0f} ms |")
    if 4 not in scaled:
        lines += ["", "The 4× row is measured with `--with-4x` (it builds 80 worktrees)."]
    lines += ["", "## Targets (issue 6)", "",
              "\"Best possible here\" is what the floor rows of this same run allow any tool "
              "that works the same way (exact invalidation; the database read through env.py) "
              "to reach.", "",
              "| target | measured | limit | best possible here | result |",
              "|---|---:|---:|---:|---|"]
    for target in results:
        measured = f"{target.ratio:.2f}×" if target.ratio is not None else ""
        if target.note:
            measured = f"{measured} ({target.note})" if measured else target.note
        verdict = {True: "pass", False: "**FAIL**", None: "n/a"}[target.passed]
        lines.append(f"| {target.text} | {measured} | {target.limit} | {target.best} | "
                     f"{verdict} |")
    lines += ["", "Repairing a missing chain of K migrations runs exactly one Alembic upgrade, "
              "whatever K: proven by `tests/test_index.py::test_one_upgrade_whatever_the_chain"
              "_length` (not a timing).", ""]
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        text = notes.read_text(encoding="utf-8").strip()
        lines += [text.format_map(measured_values(starts, scaled, solo)), ""]
    return "\n".join(lines)


class _Values(dict[str, str]):
    """Numbers for bench/notes.md's ``{placeholders}``; one not measured shows as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


def measured_values(starts: dict[str, Sample], scaled: dict[int, dict[str, Sample]],
                    solo: dict[str, Sample]) -> _Values:
    """Every median of this run, as ``x1_find_warm``, ``solo_check``, ``start_no_site``...
    (milliseconds, rounded), plus a few ratios the notes quote."""
    medians: dict[str, float] = {}
    for factor, rows in scaled.items():
        for key, sample in rows.items():
            medians[f"x{factor}_{key}"] = sample.median_ms
    for key, sample in solo.items():
        medians[f"solo_{key}"] = sample.median_ms
    for key, sample in starts.items():
        medians[f"start_{key}"] = sample.median_ms
    values = _Values({key: f"{median:.0f}" for key, median in medians.items()})

    def ratio(a: str, b: str) -> str:
        if a not in medians or b not in medians or medians[b] == 0:
            return "?"
        return f"{medians[a] / medians[b]:.2f}"

    def difference(a: str, b: str) -> str:
        if a not in medians or b not in medians:
            return "?"
        return f"{medians[a] - medians[b]:.0f}"

    def reach(a: str, b: str, limit: float) -> str:
        """Whether the floor leaves room for ``limit``: the notes must not claim it does not
        in a run where it does."""
        if a not in medians or b not in medians or medians[b] == 0:
            return "?"
        if medians[a] / medians[b] < limit:
            return (f"below {limit:g}×, so the target fails there for any tool that reads the "
                    "heads through env.py")
        return f"not below {limit:g}×, so the target is within reach there"

    values["walk_over_name"] = ratio("x1_stat_walk", "x1_name_find")
    values["python_walk_over_name"] = ratio("x1_py_stat_walk", "x1_name_find")
    values["directory_over_bare"] = ratio("x1_script_directory", "x1_bare_select")
    values["directory_nocache_over_bare"] = ratio("x1_script_directory_nocache",
                                                  "x1_bare_select")
    values["directory_cached_reach"] = reach("x1_script_directory", "x1_bare_select", 10)
    needed = ("x1_script_directory", "x1_bare_select", "x1_stat_walk")
    if all(key in medians for key in needed):
        floor = medians["x1_bare_select"] + medians["x1_stat_walk"]
        values["directory_over_bare_and_walk"] = f"{medians['x1_script_directory'] / floor:.2f}"
    values["directory_nocache_over_check"] = ratio("x1_script_directory_nocache",
                                                   "x1_check_warm")
    values["directory_nocache_over_dry_run"] = ratio("x1_script_directory_nocache",
                                                     "x1_dry_run_warm")
    values["fleet_check_over_bare"] = difference("x1_check_warm", "x1_bare_select")
    values["fleet_find_over_python_walk"] = difference("x1_find_warm", "x1_py_stat_walk")
    values["current_over_bare"] = ratio("solo_alembic_current", "solo_bare_select")
    values["current_nocache_over_bare"] = ratio("solo_alembic_current_nocache",
                                                "solo_bare_select")
    values["current_cached_reach"] = reach("solo_alembic_current", "solo_bare_select", 2)
    values["current_nocache_over_check"] = ratio("solo_alembic_current_nocache", "solo_check")
    values["solo_check_over_bare"] = difference("solo_check", "solo_bare_select")
    for factor in scaled:
        if factor == 1:
            continue
        for key in ("find_warm", "stat_walk", "py_stat_walk", "find_cold", "cat_all"):
            values[f"x{factor}_{key}_growth"] = difference(f"x{factor}_{key}", f"x1_{key}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "aac-fleet")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--with-4x", action="store_true", help="also measure the 4x fleet")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--site", action="store_true",
                        help="run Python as installed (with site-packages .pth hooks)")
    parser.add_argument("--output", type=Path, default=CHECKOUT / "docs" / "benchmarks.md")
    parser.add_argument("--data", type=Path, default=Path(__file__).with_name("last-run.json"),
                        help="where the raw measurements are kept (default: %(default)s)")
    parser.add_argument("--rerender", action="store_true",
                        help="write the report from --data again, measuring nothing")
    args = parser.parse_args(argv)
    if args.rerender:
        return write_report(args, json.loads(args.data.read_text(encoding="utf-8")))
    env = clean_env(args.site)
    written = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
    machine_lines = machine(env)  # the load average at the start of the run
    if args.rebuild and args.dir.exists():
        shutil.rmtree(args.dir)
    factors = [1, 2, 4] if args.with_4x else [1, 2]
    fleets: dict[int, Fleet] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for factor in factors:
        print(f"building the {factor}x fleet in {args.dir}/x{factor} ...", flush=True)
        fleets[factor] = build_fleet(args.dir / f"x{factor}", 20 * factor, 30 * factor, 1000,
                                     10, env)
        sizes[factor] = (20 * factor, 30 * factor)
    solo = build_solo(args.dir / "solo", 1000, env)
    print("interpreter start-up:")
    starts = start_up(args.runs, env)
    scaled: dict[int, dict[str, Sample]] = {}
    for factor in factors:
        print(f"{factor}x fleet:")
        scaled[factor] = measure_fleet(fleets[factor], args.runs, args.site, env,
                                       full=factor == 1)
    print("one worktree, nothing to do:")
    solo_rows = measure_solo(solo, args.runs, args.site, env)
    run_data = {
        "written": written, "machine": machine_lines, "runs": args.runs, "site": args.site,
        "sizes": {str(factor): list(size) for factor, size in sizes.items()},
        "starts": _samples_json(starts), "solo": _samples_json(solo_rows),
        "scaled": {str(factor): _samples_json(rows) for factor, rows in scaled.items()},
    }
    args.data.write_text(json.dumps(run_data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.data}")
    return write_report(args, run_data)


def write_report(args: argparse.Namespace, run_data: dict[str, Any]) -> int:
    """Judge the targets and write the report from one run's measurements."""
    args.runs, args.site = run_data["runs"], run_data["site"]
    starts = _samples(run_data["starts"])
    solo_rows = _samples(run_data["solo"])
    scaled = {int(factor): _samples(rows) for factor, rows in run_data["scaled"].items()}
    sizes = {int(factor): (size[0], size[1]) for factor, size in run_data["sizes"].items()}
    results = targets(scaled[1], solo_rows, scaled)
    for target in results:
        print(f"  {'PASS' if target.passed else 'FAIL'}  {target.text}: "
              f"{'' if target.ratio is None else f'{target.ratio:.2f}x'} {target.note}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = render(args, run_data["written"], run_data["machine"], starts, scaled, solo_rows,
                  sizes, results)
    args.output.write_text(text + kept_sections(args.output), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


# Sections other bench scripts write into the same report (bench/refs.py): kept as they are.
SECTION_START = "<!-- section written by "


def kept_sections(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    at = text.find(SECTION_START)
    return "\n" + text[at:] if at >= 0 else ""


def _samples_json(rows: dict[str, Sample]) -> dict[str, dict[str, Any]]:
    return {key: {"label": s.label, "times": s.times, "peak_kib": s.peak_kib,
                  "exit_codes": sorted(s.exit_codes), "ours": s.ours}
            for key, s in rows.items()}


def _samples(rows: dict[str, dict[str, Any]]) -> dict[str, Sample]:
    return {key: Sample(row["label"], list(row["times"]), row["peak_kib"],
                        set(row["exit_codes"]), row["ours"]) for key, row in rows.items()}


if __name__ == "__main__":
    raise SystemExit(main())
