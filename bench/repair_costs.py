"""What a nothing-to-do ``upgrade`` and a repair cost, each next to its floor (issue 15).

Two groups of rows, each measured in alternation (A B, A B, ...), medians of wall time and of
CPU time (user + system of the child process, from ``wait4``):

- **nothing to do**: one worktree of N migrations (30, 2,000, 5,000), the database at its
  head. ``alembic-autocopy upgrade`` against ``alembic-autocopy check`` (target: at most
  1.05x): both read the heads through env.py and this worktree's folders; ``upgrade`` must
  decide "already current" without paying for Alembic's ``RevisionMap`` of the whole graph.
- **a repair bringing in 500 migrations**: worktree ``Proj`` (30 migrations) lacks the 500
  that worktree ``Feature`` applied; ``alembic-autocopy upgrade`` in ``Proj`` copies them in
  and runs one Alembic upgrade that has nothing to apply. Its floor: plain
  ``alembic upgrade head`` in a copy of the project where the same 500 files just arrived
  (written before the run, no bytecode) and nothing is to apply (target: at most 1.3x).
  Before each of our runs the copies and their bytecode are removed (``clean --all``).

Every Python process runs with ``-S`` and site-packages on PYTHONPATH (see bench/fleet.py).
The projects are built once under --dir and reused.

    python bench/repair_costs.py                      # 9 runs per row, every group
    python bench/repair_costs.py --runs 5 --sizes 30,2000 --no-repair
    python bench/repair_costs.py --src /path/to/other/checkout/src   # another version's code
    python bench/repair_costs.py --json out.json      # the rows, for the main benchmark
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet  # bench/fleet.py: the project builders and the environment

PYTHON = sys.executable
OUR_MAIN = fleet.OUR_MAIN
BRING = 500  # migrations the repair brings in
BASE = 30  # migrations both worktrees share


@dataclass
class Row:
    key: str
    label: str
    args: Sequence[str | Path]
    cwd: Path
    before: Callable[[], None] | None = None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)

    @property
    def wall_ms(self) -> float:
        return statistics.median(self.wall) * 1000

    @property
    def cpu_ms(self) -> float:
        return statistics.median(self.cpu) * 1000


def run_once(row: Row, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one run of ``row``."""
    if row.before is not None:
        row.before()
    start = time.perf_counter()
    process = subprocess.Popen([str(a) for a in row.args], cwd=row.cwd, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{row.label} failed ({code}):\n{errors.decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime, code


def alternate(rows: Sequence[Row], runs: int, env: dict[str, str]) -> None:
    for row in rows:  # one warm-up each: indexes and bytecode caches written
        run_once(row, env)
    for _ in range(runs):
        for row in rows:
            wall, cpu, code = run_once(row, env)
            row.wall.append(wall)
            row.cpu.append(cpu)
            row.codes.add(code)


def solo(root: Path, migrations: int, env: dict[str, str]) -> Path:
    """One worktree of ``migrations``, the database at its head (bench/fleet.py's solo)."""
    return fleet.build_solo(root / f"solo-{migrations}", migrations, env).here


@dataclass
class RepairProject:
    here: Path  # lacks the 500
    feature: Path  # applied them
    plain: Path  # a copy of ``here`` without git: where plain Alembic runs
    files: list[Path]  # the 500, in ``feature``

    @property
    def versions(self) -> Path:
        return self.here / "migrations" / "versions"


def build_repair(root: Path, env: dict[str, str]) -> RepairProject:
    base = root / "repair"
    here, feature, plain = base / "Proj", base / "Feature", base / "Plain"
    versions = Path("migrations") / "versions"
    marker = base / "complete"
    if not marker.exists():
        if base.exists():
            shutil.rmtree(base)
        head = fleet.init_project(here, base / "shared.db", BASE, env)
        fleet.run(["git", "worktree", "add", "-q", "-b", "feature", str(feature)], here, env)
        down = head
        for number in range(1, BRING + 1):
            rev_id = fleet.rev("f", number)
            text = fleet.migration(rev_id, down, f"feature step {number}")
            (feature / versions / f"{rev_id}_feature_{number}.py").write_text(
                text, encoding="utf-8")
            down = rev_id
        fleet.run(["git", "add", "-A"], feature, env)
        fleet.run(["git", "commit", "-q", "-m", "500 migrations"], feature, env)
        fleet.run([PYTHON, "-m", "alembic", "upgrade", "head"], feature, env)
        shutil.copytree(here, plain, ignore=shutil.ignore_patterns(".git"))
        marker.write_text("built\n", encoding="utf-8")
    files = sorted((feature / versions).glob("f*.py"))
    return RepairProject(here, feature, plain, files)


def drop_bytecode_of(folder: Path, prefix: str) -> None:
    cache = folder / "__pycache__"
    if cache.is_dir():
        for pyc in cache.glob(f"{prefix}*.pyc"):
            pyc.unlink()


def remove_copies(project: RepairProject, py: list[str], env: dict[str, str]) -> Callable[[], None]:
    def action() -> None:
        fleet.run([*py, "-c", OUR_MAIN, "clean", "--all"], project.here, env)
        drop_bytecode_of(project.versions, "f")
        left = list(project.versions.glob("f*.py"))
        if left:
            raise SystemExit(f"copies left after clean: {left[:3]}")
    return action


def files_arrive(project: RepairProject) -> Callable[[], None]:
    """The 500 files appear in the plain copy (as a pull would write them), no bytecode."""
    versions = project.plain / "migrations" / "versions"

    def action() -> None:
        for old in versions.glob("f*.py"):
            old.unlink()
        drop_bytecode_of(versions, "f")
        for path in project.files:
            shutil.copyfile(path, versions / path.name)
    return action


@dataclass
class Result:
    key: str
    label: str
    ours: Row
    floor: Row
    limit: float

    @property
    def wall_ratio(self) -> float:
        return self.ours.wall_ms / self.floor.wall_ms

    @property
    def cpu_ratio(self) -> float:
        return self.ours.cpu_ms / self.floor.cpu_ms

    def line(self) -> str:
        verdict = "met" if self.wall_ratio <= self.limit else "NOT met"
        return (f"| {self.label} | {self.ours.wall_ms:.0f} / {self.ours.cpu_ms:.0f} | "
                f"{self.floor.wall_ms:.0f} / {self.floor.cpu_ms:.0f} | "
                f"{self.wall_ratio:.2f}x / {self.cpu_ratio:.2f}x | <= {self.limit}x | "
                f"{verdict} |")

    def as_json(self) -> dict[str, object]:
        return {"key": self.key, "label": self.label, "limit": self.limit,
                "ours": {"label": self.ours.label, "wall_ms": self.ours.wall_ms,
                         "cpu_ms": self.ours.cpu_ms, "runs": len(self.ours.wall)},
                "floor": {"label": self.floor.label, "wall_ms": self.floor.wall_ms,
                          "cpu_ms": self.floor.cpu_ms, "runs": len(self.floor.wall)},
                "wall_ratio": self.wall_ratio, "cpu_ratio": self.cpu_ratio}


def measure_nothing_to_do(root: Path, sizes: Sequence[int], runs: int, py: list[str],
                          env: dict[str, str]) -> list[Result]:
    results = []
    for size in sizes:
        here = solo(root, size, env)
        ours = [*py, "-c", OUR_MAIN]
        check = Row(f"check_{size}", f"check, {size} migrations", [*ours, "check"], here)
        upgrade = Row(f"upgrade_{size}", f"upgrade, {size} migrations", [*ours, "upgrade"], here)
        alternate([upgrade, check], runs, env)
        results.append(Result(f"nothing_to_do_upgrade_{size}",
                              f"nothing-to-do `upgrade` vs `check`, {size:,} migrations",
                              upgrade, check, 1.05))
        print(results[-1].line(), flush=True)
    return results


def measure_repair(root: Path, runs: int, py: list[str], env: dict[str, str]) -> Result:
    project = build_repair(root, env)
    ours = Row("repair_500", f"alembic-autocopy upgrade bringing in {BRING}",
               [*py, "-c", OUR_MAIN, "upgrade"], project.here,
               before=remove_copies(project, py, env))
    plain = Row("plain_500", f"alembic upgrade head, {BRING} files just arrived",
                [*py, "-m", "alembic", "upgrade", "head"], project.plain,
                before=files_arrive(project))
    alternate([ours, plain], runs, env)
    result = Result("repair_500", f"repair bringing in {BRING} vs plain `alembic upgrade "
                    f"head` ({BRING} files just arrived, nothing to apply)", ours, plain, 1.3)
    print(result.line(), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/aac-repair-costs"))
    parser.add_argument("--sizes", default="30,2000,5000")
    parser.add_argument("--no-repair", action="store_true")
    parser.add_argument("--no-nothing-to-do", action="store_true")
    parser.add_argument("--src", type=Path, help="the package's source folder to measure "
                        "(default: this checkout's src)")
    parser.add_argument("--json", type=Path, help="also write the rows there")
    args = parser.parse_args(argv)
    env = fleet.clean_env(site=False)
    if args.src is not None:
        paths = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join([str(args.src.resolve()), *paths[1:]])
    py = fleet.python(site=False)
    args.dir.mkdir(parents=True, exist_ok=True)
    print("| row | ours: wall / CPU ms | floor: wall / CPU ms | ratio wall / CPU | target "
          "| |\n|---|---|---|---|---|---|", flush=True)
    results: list[Result] = []
    if not args.no_nothing_to_do:
        sizes = [int(size) for size in args.sizes.split(",") if size]
        results += measure_nothing_to_do(args.dir, sizes, args.runs, py, env)
    if not args.no_repair:
        results.append(measure_repair(args.dir, args.runs, py, env))
    if args.json is not None:
        args.json.write_text(json.dumps([r.as_json() for r in results], indent=1) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
