"""Stress: many worktrees start their upgrade at the same moment against ONE database.

Each round builds a fresh project: a foreign worktree applied a chain of 3 migrations that the
other worktrees lack; each of 4 worktrees has one new migration of its own; 8 processes (2 per
worktree) start `alembic-autocopy upgrade` at the same instant (a barrier after the imports,
so they really collide). A round passes when every process exits 0, every migration ran
exactly once (each one logs itself into a table), and the final heads are the union.

The same rounds are then run with plain `alembic upgrade heads`, given every file it needs
(the foreign chain and every other worktree's migration copied in by hand), so that its only
failures are the races Alembic does not guard against.

    python bench/stress.py                         # 20 rounds x 3 databases x 2 tools
    python bench/stress.py --rounds 2 --backends sqlite --no-docs

Writes docs/stress.md itself (unless --no-docs). The PostgreSQL and MariaDB servers are the
test suite's (127.0.0.1, see tests/support/databases.py). tests/test_safety_stress.py runs a
small round of the same scenario in CI.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT / "tests"))

from support import BASE_REV, Database, Repo, Worktree, make_repo  # noqa: E402
from support.databases import BACKENDS, Backend, temporary_database  # noqa: E402
from support.environment import hermetic_overrides  # noqa: E402

FOREIGN_CHAIN = 3
START_MARGIN = 4.0  # seconds for every process to import everything before the barrier
ROUND_TIMEOUT = 600.0

# Each process imports everything first, then waits for the same instant: the collisions
# happen in the work, not in the interpreters' start-up.
LAUNCHER = r"""
import sys, time, traceback
tool, start = sys.argv[1], float(sys.argv[2])
if tool == "autocopy":
    import alembic.runtime.environment, alembic.script
    import alembic_autocopy.effects.database, alembic_autocopy.effects.locking
    import alembic_autocopy.repair
    from alembic_autocopy.cli.main import main
    run = lambda: main(["upgrade", "-q"])
else:
    import alembic.config
    run = lambda: alembic.config.main(argv=["upgrade", "heads"]) or 0
time.sleep(max(0.0, start - time.time()))
try:
    code = run()
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else 1
except BaseException:
    traceback.print_exc()
    code = 1
sys.exit(code)
"""

LOG_TABLE = "stress_log"


@dataclass
class RoundResult:
    backend: str
    tool: str
    processes: int
    exit_codes: list[int]
    problems: list[str]  # integrity: ran twice, never ran, wrong heads
    errors: list[str]  # first error line of each failed process
    seconds: float

    @property
    def failed_processes(self) -> int:
        return sum(1 for code in self.exit_codes if code != 0)

    @property
    def ok(self) -> bool:
        return self.failed_processes == 0 and not self.problems


def log_applied(path: Path, rev: str) -> None:
    """Make the migration at ``path`` log each run of its upgrade() in LOG_TABLE."""
    text = path.read_text()
    anchor = "def upgrade() -> None:\n"
    line = f"    op.execute(\"INSERT INTO {LOG_TABLE} (rev) VALUES ('{rev}')\")\n"
    path.write_text(text.replace(anchor, anchor + line, 1))


@dataclass
class Scenario:
    repo: Repo
    workers: list[Worktree]
    expected_heads: set[str]
    every_rev: list[str] = field(default_factory=list)


def build(db: Database, workdir: Path, worktrees: int, files_everywhere: bool,
          symlinked: bool = False) -> Scenario:
    """The project of one round (``files_everywhere``: for plain Alembic, every worktree
    already holds every migration; ``symlinked``: SQLite only, every other worktree reaches
    the database file through a symlink, as a project whose path goes through a linked
    folder would)."""
    repo = make_repo(workdir, db)
    db.execute(f"CREATE TABLE {LOG_TABLE} (rev VARCHAR(32) NOT NULL)")
    repo.main.alembic("upgrade", "head", check=True)
    foreign = repo.add_worktree("foreign")
    chain = foreign.chain(FOREIGN_CHAIN, BASE_REV, "f")
    for rev in chain:
        log_applied(next(foreign.versions.glob(f"{rev}_*.py")), rev)
    foreign.alembic("upgrade", "head", check=True)
    workers, own = [], []
    for index in range(worktrees):
        worker = repo.add_worktree(f"w{index}")
        rev = f"c{index:011x}"
        log_applied(worker.write_migration(rev, down=BASE_REV, message=f"own {index}"), rev)
        workers.append(worker)
        own.append(rev)
        if symlinked and index % 2 == 1:
            through_link(worker, db, workdir / f"link-{index}.sqlite")
    if files_everywhere:
        files = [*foreign.versions.glob("f*.py"), *(p for w in workers
                                                      for p in w.versions.glob("c*.py"))]
        for worker in workers:
            for path in files:
                if not (worker.versions / path.name).exists():
                    shutil.copyfile(path, worker.versions / path.name)
    return Scenario(repo, workers, {chain[-1], *own}, [BASE_REV, *chain, *own])


def through_link(worker: Worktree, db: Database, link: Path) -> None:
    """Point ``worker``'s alembic.ini at ``link``, a symlink to ``db``'s file."""
    if db.backend != "sqlite":
        raise ValueError("--symlinked is for SQLite only")
    real = db.url.removeprefix("sqlite:///")
    link.symlink_to(real)
    ini = worker.path / "alembic.ini"
    text = ini.read_text(encoding="utf-8")
    if f"sqlite:///{real}" not in text:
        raise RuntimeError(f"{ini} does not name {real}")
    ini.write_text(text.replace(f"sqlite:///{real}", f"sqlite:///{link}"), encoding="utf-8")


def collide(scenario: Scenario, processes: int, tool: str) -> tuple[list[int], list[str]]:
    """Start ``processes`` upgrades (round-robin over the worktrees) at one instant."""
    start = time.time() + START_MARGIN
    running = []
    for index in range(processes):
        worker = scenario.workers[index % len(scenario.workers)]
        running.append(subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, tool, repr(start)], cwd=worker.path,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace"))
    codes, errors = [], []
    for process in running:
        try:
            stdout, stderr = process.communicate(timeout=ROUND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        codes.append(process.returncode)
        if process.returncode != 0:
            errors.append(first_error(stdout + stderr))
    return codes, errors


def first_error(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED:", "error:")) or "Error" in line.split(":")[0]:
            return line.strip()[:160]
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip()[:160] if lines else "(no output)"


def check(db: Database, scenario: Scenario) -> list[str]:
    problems = []
    heads = db.versions()
    if heads != scenario.expected_heads:
        problems.append(f"final heads {sorted(heads)}, expected {sorted(scenario.expected_heads)}")
    runs = collections.Counter(row[0] for row in db.execute(f"SELECT rev FROM {LOG_TABLE}"))
    for rev in scenario.every_rev[1:]:  # the base migration does not log itself
        if runs[rev] != 1:
            problems.append(f"{rev} ran {runs[rev]} times")
    return problems


def run_round(db: Database, workdir: Path, processes: int = 8, worktrees: int = 4,
              tool: str = "autocopy", symlinked: bool = False) -> RoundResult:
    """One round on the empty database ``db``, in ``workdir`` (made if needed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = build(db, workdir, worktrees, files_everywhere=tool == "alembic",
                     symlinked=symlinked)
    started = time.monotonic()
    codes, errors = collide(scenario, processes, tool)
    seconds = time.monotonic() - started - START_MARGIN
    return RoundResult(db.backend, tool, processes, codes, check(db, scenario), errors,
                       seconds)


def run_rounds(backend: Backend, tool: str, rounds: int, processes: int, worktrees: int,
               workdir: Path, symlinked: bool = False) -> list[RoundResult]:
    results = []
    for number in range(rounds):
        folder = workdir / f"{backend}-{tool}-{number}"
        folder.mkdir(parents=True)
        with temporary_database(backend, folder) as db:
            result = run_round(db, folder, processes, worktrees, tool, symlinked)
        shutil.rmtree(folder, ignore_errors=True)
        results.append(result)
        state = "ok" if result.ok else (f"{result.failed_processes} failed, "
                                        f"{len(result.problems)} problem(s)")
        print(f"{backend:10} {tool:8} round {number + 1:2}/{rounds}: {state} "
              f"({result.seconds:.1f} s)", flush=True)
    return results


def kind_of(error: str) -> str:
    """A short name for an error line: the exception class or Alembic's message."""
    error = re.sub(r"[0-9a-f]{12}", "<rev>", error)  # one kind, whichever table it hit
    match = re.search(r"\((?:[\w.]+\.)?(\w+(?:Error|Violation|Table|Exception))\)", error)
    if match:
        return match.group(1)
    if "expected to match one row" in error:
        return "UPDATE expected to match one row"
    if "database is locked" in error:
        return "database is locked"
    return error[:80]


def write_docs(results: Sequence[RoundResult], rounds: int, processes: int, worktrees: int,
               path: Path) -> None:
    by_key: dict[tuple[str, str], list[RoundResult]] = collections.defaultdict(list)
    for result in results:
        by_key[(result.backend, result.tool)].append(result)
    lines = [
        "# Parallel upgrades from many worktrees: stress results",
        "",
        f"Written by `bench/stress.py` on {datetime.date.today().isoformat()} "
        f"({platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}).",
        "",
        f"Each round: a fresh project and database; a foreign worktree applied a chain of "
        f"{FOREIGN_CHAIN} migrations the others lack; {worktrees} worktrees each have one new "
        f"migration of their own; {processes} processes ({processes // worktrees} per "
        "worktree) start at the same instant (a barrier after the imports). A round passes "
        "when every process exits 0, every migration ran exactly once (each logs itself "
        "into a table) and the final heads are the union.",
        "",
        "Plain Alembic runs `alembic upgrade heads` with every file it needs already copied "
        "into every worktree, so its failures are only the races it does not guard against "
        "(without the copies, every one of its processes fails with \"Can't locate "
        "revision\").",
        "",
        "| database | tool | rounds | rounds failed | processes failed | migrations run "
        "twice or never | median round | slowest round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (backend, tool), group in sorted(by_key.items()):
        label = "alembic-autocopy upgrade" if tool == "autocopy" else "alembic upgrade heads"
        failed_rounds = sum(1 for r in group if not r.ok)
        failed = sum(r.failed_processes for r in group)
        total = sum(r.processes for r in group)
        integrity = sum(len(r.problems) for r in group)
        times = [r.seconds for r in group]
        lines.append(f"| {backend} | {label} | {len(group)} | {failed_rounds} | "
                     f"{failed} of {total} | {integrity} | {statistics.median(times):.1f} s | "
                     f"{max(times):.1f} s |")
    lines += ["", "## How they failed", ""]
    any_failure = False
    for (backend, tool), group in sorted(by_key.items()):
        kinds = collections.Counter(kind_of(e) for r in group for e in r.errors)
        problems = collections.Counter(re.sub(r"^\w+ ", "", p) for r in group
                                       for p in r.problems)
        if not kinds and not problems:
            continue
        any_failure = True
        label = "alembic-autocopy" if tool == "autocopy" else "plain Alembic"
        lines.append(f"- {backend}, {label}: " + "; ".join(
            [f"{count} x {kind}" for kind, count in kinds.most_common()]
            + [f"{count} x migration {problem}" for problem, count in problems.most_common()]))
    if not any_failure:
        lines.append("No failure in any round.")
    lines += ["", f"Command: `python bench/stress.py --rounds {rounds} --processes "
                  f"{processes} --worktrees {worktrees}`", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def hermetic(home: Path) -> None:
    for name, value in hermetic_overrides(home, os.environ).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--worktrees", type=int, default=4)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--tools", default="autocopy,alembic")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--symlinked", action="store_true",
                        help="SQLite: half the worktrees reach the file through a symlink "
                             "(prints the results; docs/stress.md is not rewritten)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="aac-stress-"))
    hermetic(workdir / "home")
    results: list[RoundResult] = []
    try:
        for backend in args.backends.split(","):
            for tool in args.tools.split(","):
                results += run_rounds(backend, tool, args.rounds,  # type: ignore[arg-type]
                                      args.processes, args.worktrees, workdir,
                                      args.symlinked)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.no_docs and not args.symlinked:
        write_docs(results, args.rounds, args.processes, args.worktrees,
                   CHECKOUT / "docs" / "stress.md")
    ours = [r for r in results if r.tool == "autocopy"]
    return 0 if all(r.ok for r in ours) else 1


if __name__ == "__main__":
    sys.exit(main())
