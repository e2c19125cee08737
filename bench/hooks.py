"""What the installed git hooks add to a checkout; writes docs/hooks-overhead.md.

Builds, in a temporary folder, a git repository holding an Alembic project (SQLite, a chain
of migrations, applied) and two linked worktrees, then times whole ``git checkout``
processes there, switching between two branches at every run. Every row runs in turn
(A B C ..., A B C ...), as in bench/fleet.py, so a change of the machine's load reaches
every row alike. The rows differ only in ``git -c core.hooksPath=FOLDER``:

- no hooks (an empty folder);
- the hooks ``alembic-autocopy install-hooks`` writes;
- the same hooks without their shell check (Python answers every time: the hooks before
  this change), for comparison;

for two pairs of branches: one that differs in a file that is not a migration (the common
checkout: the hook has nothing to do), one that differs by a migration (the hook runs the full
``check``, for information). ``python -c pass`` runs in the same turns: the target is that,
with nothing to do, the hook adds at most 0.5x the start of Python.

Bytecode: these machines set PYTHONDONTWRITEBYTECODE; it is removed from every measured
process, so the caches exist as on a user's machine (one warm-up run per row writes them).

    python bench/hooks.py               # 21 runs per row
    python bench/hooks.py --runs 41 --out /tmp/hooks.md

``measure(runs)`` returns the rows, ``render(rows, ...)`` the document: a main benchmark
may import both.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
SRC = CHECKOUT / "src"
TARGET = 0.5  # hook added time / `python -c pass`, nothing to do
HOOKS = ("post-checkout", "post-merge", "post-rewrite")

MIGRATION = '''"""step {rev}"""
from alembic import op
import sqlalchemy as sa

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("t_{rev}", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("t_{rev}")
'''


@dataclass
class Row:
    """One measured row: seconds (wall and CPU, the process and all it waited for) per run."""

    key: str
    label: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    printed: str = ""  # what the last run printed (the hook's line)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


@dataclass(frozen=True)
class _Plan:
    key: str
    label: str
    command: Callable[[], list[str]]  # the next run's arguments (a checkout flips branches)
    cwd: Path


def environment(home: Path) -> dict[str, str]:
    """The measured processes' environment: hermetic git, this checkout's package, and no
    PYTHONDONTWRITEBYTECODE (a user's Python writes its bytecode caches)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("GIT_")
           and key not in ("PYTHONDONTWRITEBYTECODE", "ALEMBIC_CONFIG", "PYTHONPATH")}
    env.update({
        "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8",
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "PYTHONPATH": str(SRC),
    })
    return env


def call(args: Sequence[str | Path], cwd: Path,
         env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True)


def build(root: Path, env: dict[str, str], chain: int) -> tuple[Path, dict[str, Path]]:
    """A project whose ``chain`` migrations are applied; returns the main worktree and two
    linked ones ("quiet", "migration"), detached at feature. Branches: feature; docs
    (feature + a file that is not a migration); newer (feature + one migration)."""
    main = root / "Proj"
    main.mkdir(parents=True)
    call(["git", "init", "-q", "-b", "main"], main, env)
    call([sys.executable, "-m", "alembic", "init", "migrations"], main, env)
    ini = main / "alembic.ini"
    text = ini.read_text("utf-8").replace("driver://user:pass@localhost/dbname",
                                          f"sqlite:///{root / 'shared.db'}")
    ini.write_text(text, "utf-8")
    (main / ".gitignore").write_text("__pycache__/\n", "utf-8")
    down = None
    for index in range(1, chain + 1):
        rev = f"{index:012x}"
        (main / "migrations" / "versions" / f"{rev}_step.py").write_text(
            MIGRATION.format(rev=rev, down=down), "utf-8")
        down = rev
    call(["git", "add", "-A"], main, env)
    call(["git", "commit", "-q", "-m", "project"], main, env)
    call([sys.executable, "-m", "alembic", "upgrade", "head"], main, env)
    worktree = root / "Proj-feature"
    call(["git", "worktree", "add", "-q", "-b", "feature", str(worktree)], main, env)
    call(["git", "checkout", "-q", "-b", "docs"], worktree, env)
    (worktree / "NOTES.md").write_text("notes\n", "utf-8")
    call(["git", "add", "-A"], worktree, env)
    call(["git", "commit", "-q", "-m", "notes"], worktree, env)
    call(["git", "checkout", "-q", "-b", "newer", "feature"], worktree, env)
    (worktree / "migrations" / "versions" / "ffff00000001_step.py").write_text(
        MIGRATION.format(rev="ffff00000001", down=down), "utf-8")
    call(["git", "add", "-A"], worktree, env)
    call(["git", "commit", "-q", "-m", "one more migration"], worktree, env)
    call(["git", "checkout", "-q", "--detach", "feature"], worktree, env)
    second = root / "Proj-migration"
    call(["git", "worktree", "add", "-q", "--detach", str(second), "feature"], main, env)
    return main, {"quiet": worktree, "migration": second}


def hook_folders(root: Path, main: Path, env: dict[str, str]) -> dict[str, Path]:
    """Three hooks folders: none, what install-hooks writes, and the same hooks answered by
    Python every time (the hooks before the shell check)."""
    call([sys.executable, "-m", "alembic_autocopy", "install-hooks"], main, env)
    installed = Path(call(["git", "rev-parse", "--path-format=absolute", "--git-path",
                           "hooks"], main, env).stdout.strip())
    folders = {"none": root / "hooks-none", "shell": root / "hooks-shell",
               "python": root / "hooks-python"}
    for folder in folders.values():
        folder.mkdir()
    for name in HOOKS:
        shutil.copy2(installed / name, folders["shell"] / name)
        shutil.copy2(installed / name, folders["python"] / name)
        script = folders["python"] / name
        text = script.read_text("utf-8")
        start = text.index("alembic_autocopy_unchanged() {")
        end = text.index("\n}\n", start)
        body = text[start:end]
        keep = [line for line in body.splitlines() if '"$3" = 0' in line]
        script.write_text(text[:start] + "\n".join(["alembic_autocopy_unchanged() {", *keep,
                                                    "    return 2"]) + text[end:], "utf-8")
    call([sys.executable, "-m", "alembic_autocopy", "uninstall-hooks"], main, env)
    return folders


def _checkouts(folder: Path, branches: tuple[str, str],
               current: dict[str, str]) -> Callable[[], list[str]]:
    """Arguments of the next checkout: to whichever of ``branches`` the worktree is not on
    (detached: two worktrees may then stand on the same branch)."""
    def command() -> list[str]:
        target = branches[1] if current["at"] == branches[0] else branches[0]
        current["at"] = target
        return ["git", "-c", f"core.hooksPath={folder}", "checkout", "-q", "--detach", target]
    return command


def _plans(worktrees: dict[str, Path], folders: dict[str, Path]) -> list[_Plan]:
    """The rows in their turn's order; each pair of branches in a worktree of its own."""
    plans = []
    for pair, branches in (("quiet", ("docs", "feature")), ("migration", ("newer", "feature"))):
        what = ("nothing to do (a file that is not a migration)" if pair == "quiet"
                else "a migration changed")
        current = {"at": "feature"}  # shared by the pair's rows: each checkout flips it
        for hook, words in (("none", "no hook"), ("shell", "hook"),
                            ("python", "hook without its shell check (before)")):
            plans.append(_Plan(f"{pair}_{hook}", f"git checkout, {what}, {words}",
                               _checkouts(folders[hook], branches, current),
                               worktrees[pair]))
    plans.insert(3, _Plan("python_start", "python -c pass",
                          lambda: [sys.executable, "-c", "pass"], CHECKOUT))
    return plans


def run_once(plan: _Plan, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and all it waited for, its output)."""
    start = time.perf_counter()
    process = subprocess.Popen(plan.command(), cwd=plan.cwd, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {plan.label}\n{output.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, output.decode(errors="replace").strip()


def measure(runs: int, chain: int = 50) -> list[Row]:
    """Every row, ``runs`` alternating runs each after one warm-up run (bytecode written)."""
    with tempfile.TemporaryDirectory(prefix="alembic-autocopy-hooks-bench-") as folder:
        root = Path(folder)
        (root / "home").mkdir()
        env = environment(root / "home")
        main, worktrees = build(root, env, chain)
        plans = _plans(worktrees, hook_folders(root, main, env))
        rows = {plan.key: Row(plan.key, plan.label) for plan in plans}
        for turn in range(runs + 1):  # turn 0: warm-up
            for plan in plans:
                wall, cpu, printed = run_once(plan, env)
                if turn:
                    row = rows[plan.key]
                    row.wall.append(wall)
                    row.cpu.append(cpu)
                    row.printed = printed
    return list(rows.values())


@dataclass(frozen=True)
class Verdict:
    added: float  # seconds the hook adds, nothing to do (medians)
    added_cpu: float
    start: float  # python -c pass
    start_cpu: float
    before: float  # what the hook added before this change (Python every time)

    @property
    def ratio(self) -> float:
        return self.added / self.start

    @property
    def ratio_cpu(self) -> float:
        return self.added_cpu / self.start_cpu

    @property
    def met(self) -> bool:
        return self.ratio <= TARGET


def verdict(rows: Sequence[Row]) -> Verdict:
    by_key = {row.key: row for row in rows}
    none, shell = by_key["quiet_none"], by_key["quiet_shell"]
    start = by_key["python_start"]
    return Verdict(shell.median - none.median, shell.median_cpu - none.median_cpu,
                   start.median, start.median_cpu,
                   by_key["quiet_python"].median - none.median)


def render(rows: Sequence[Row], runs: int, chain: int) -> str:
    """docs/hooks-overhead.md from the rows."""
    result = verdict(rows)
    by_key = {row.key: row for row in rows}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ms = 1000
    lines = [
        "# What the git hooks add to a checkout",
        "",
        f"Written by `python bench/hooks.py` on {datetime.date.today().isoformat()}: "
        f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores "
        f"(load average {load:.1f} when it ended). {runs} runs per row after one warm-up run, "
        "rows in alternation (A B C, A B C, ...); whole processes; medians. A project of "
        f"{chain} migrations on SQLite, checked out in two linked worktrees (one per pair of "
        "branches); the rows differ only in `git -c core.hooksPath=FOLDER`. "
        "PYTHONDONTWRITEBYTECODE is removed from every measured process (bytecode cached, as "
        "on a user's machine). CPU: the process and every process it waited for.",
        "",
        "| ratio | measured | target |",
        "|---|---|---|",
        f"| hook added time / `python -c pass`, nothing to do (wall) | **{result.ratio:.2f}x** "
        f"({result.added * ms:.1f} ms / {result.start * ms:.1f} ms) | <= {TARGET}x: "
        f"{'met' if result.met else 'NOT MET'} |",
        f"| the same in CPU time | {result.ratio_cpu:.2f}x ({result.added_cpu * ms:.1f} ms / "
        f"{result.start_cpu * ms:.1f} ms) | |",
        f"| before this change (Python answered every time) | "
        f"{result.before / result.start:.2f}x ({result.before * ms:.1f} ms) | |",
        "",
        "| row | median | min - max | CPU (median) | added by the hook |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        base = by_key.get(row.key.rsplit("_", 1)[0] + "_none")
        added = (f"{(row.median - base.median) * ms:.1f} ms"
                 if base is not None and base is not row else "")
        lines.append(f"| {row.label} | {row.median * ms:.1f} ms | {min(row.wall) * ms:.1f} - "
                     f"{max(row.wall) * ms:.1f} ms | {row.median_cpu * ms:.1f} ms | {added} |")
    lines += [
        "",
        "What the hook printed (last run of each row with hooks):",
        "",
        "```",
        *[f"{row.key}: {row.printed}" for row in rows
          if row.printed and row.key.endswith(("_shell", "_python"))],
        "```",
        "",
        "Why it is cheap when nothing changed: install-hooks writes into the script the paths "
        "that matter, relative to the worktree root (the version folders, the configuration "
        "files and env.py) and the blob id of each configuration file it read. The script "
        "checks the configuration is still that one (`git hash-object`), asks git whether any "
        "of those paths differs from the commit before the operation (`git diff --quiet`), "
        "and, for a checkout, that no rebase is under way (`git rev-parse`): three git "
        "processes, and Python never starts. When a path did change, or the script cannot be "
        "sure (ALEMBIC_CONFIG set, a folder given as a package or an absolute path, an "
        "unknown previous commit), Python runs as before; when a migration changed it runs "
        "the full `check`: Alembic and SQLAlchemy are imported and env.py reads the version "
        "table, which costs what `alembic current` costs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--chain", type=int, default=50, help="migrations in the project")
    parser.add_argument("--out", type=Path, default=CHECKOUT / "docs" / "hooks-overhead.md")
    args = parser.parse_args(argv)
    rows = measure(args.runs, args.chain)
    text = render(rows, args.runs, args.chain)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0 if verdict(rows).met else 1


if __name__ == "__main__":
    sys.exit(main())
