"""How the tool reads a fleet's folders: speed of `find`, `check`, `list --no-db`, and `check`'s
peak memory next to plain Alembic (issue 15, "one way to read a folder").

Builds fleets with bench/fleet.py's helpers (reused by later runs), then measures whole
processes in alternation (A B C, A B C...) and prints medians: wall time, CPU time (user +
system of the process and its children) and peak RSS.

    python bench/reading.py                            # this checkout's code
    python bench/reading.py --baseline-src /tmp/base   # and another copy, alternating
    python bench/reading.py --sizes 4x30,10x300 --runs 9

``--baseline-src`` takes the ``src`` folder of another version (e.g. ``git archive main src``)
and measures each of its rows twice: as it is, and with its worker processes disabled
(``ALEMBIC_AUTOCOPY_PARALLEL_MIN_FILES`` set very high), which is how the decision to keep or
drop parallel reading was made. Versions with different index formats rewrite each other's
index: each version's rows run as one block per turn, starting with the cold ``find`` (which
deletes the index anyway), so every "warm" row follows a run of the same version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet as fleets

NO_WORKERS = {"ALEMBIC_AUTOCOPY_PARALLEL_MIN_FILES": str(10**9)}


@dataclass
class Result:
    label: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)

    def cells(self) -> str:
        wall, cpu = statistics.median(self.wall) * 1000, statistics.median(self.cpu) * 1000
        peak = statistics.median(self.peak_kib) / 1024
        return f"{wall:8.0f} {cpu:8.0f} {peak:8.1f}  {sorted(self.codes)}"


@dataclass
class Case:
    label: str
    args: Sequence[str | Path]
    cwd: Path
    env: dict[str, str]
    before: Callable[[], None] | None = None


def run_once(case: Case) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak RSS KiB, exit code) of one whole process."""
    if case.before is not None:
        case.before()
    start = time.perf_counter()
    process = subprocess.Popen([str(a) for a in case.args], cwd=case.cwd, env=case.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    # ru_* of wait4 include the process's own waited-for children (git, forked workers).
    return (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
            os.waitstatus_to_exitcode(status))


def alternate(cases: Sequence[Case], runs: int) -> list[Result]:
    results = [Result(case.label) for case in cases]
    for case in cases:  # one warm-up each (bytecode, page cache, the index when warm)
        run_once(case)
    for _ in range(runs):
        for case, result in zip(cases, results, strict=True):
            wall, cpu, peak, code = run_once(case)
            result.wall.append(wall)
            result.cpu.append(cpu)
            result.peak_kib.append(peak)
            result.codes.add(code)
    return results


def print_table(title: str, results: Sequence[Result]) -> None:
    print(f"\n{title}")
    print(f"  {'row':<64} {'wall ms':>8} {'cpu ms':>8} {'peak MB':>8}  exit")
    for result in results:
        print(f"  {result.label:<64} {result.cells()}")
    sys.stdout.flush()


def variants(baseline: Path | None, env: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(name, environment) of each version of the code to compare."""
    found = [("new", env)]
    if baseline is not None:
        paths = env["PYTHONPATH"].split(os.pathsep)
        base = {**env, "PYTHONPATH": os.pathsep.join([str(baseline), *paths[1:]])}
        found += [("base", base), ("base, no workers", {**base, **NO_WORKERS})]
    return found


def measure(size: str, root: Path, runs: int, baseline: Path | None,
            env: dict[str, str]) -> None:
    worktrees, migrations = (int(part) for part in size.split("x"))
    print(f"building {size} in {root / size} ...", flush=True)
    fleet = fleets.build_fleet(root / size, worktrees, worktrees, migrations, 10, env)
    py = fleets.python(site=False)
    ours = [*py, "-c", fleets.OUR_MAIN]
    target = fleet.missing[len(fleet.missing) // 2]
    forget = fleets.remove(fleet.index_file)
    chain_dirs = [fleet.chain_worktree / "migrations" / "versions"]
    cases: list[Case] = []
    for name, code_env in variants(baseline, env):
        cases += [
            Case(f"[{name}] find {target}, cold", [*ours, "find", target], fleet.here,
                 code_env, forget),
            Case(f"[{name}] find {target}, warm", [*ours, "find", target], fleet.here, code_env),
            Case(f"[{name}] check, plans (10 missing), warm", [*ours, "check"], fleet.here,
                 code_env),
            Case(f"[{name}] check, nothing to do, warm", [*ours, "check"],
                 fleet.chain_worktree, code_env),
            Case(f"[{name}] list --no-db, warm", [*ours, "list", "--no-db"], fleet.here,
                 code_env),
        ]
    cases += [
        Case("alembic heads", [*py, "-m", "alembic", "heads"], fleet.chain_worktree, env,
             fleets.keep_bytecode(chain_dirs, fleet.root)),
        Case("alembic current", [*py, "-m", "alembic", "current"], fleet.chain_worktree, env,
             fleets.keep_bytecode(chain_dirs, fleet.root)),
    ]
    print_table(f"{size} ({worktrees} worktrees x {migrations} migrations), medians of {runs}",
                alternate(cases, runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "aac-reading")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="4x30,10x300,20x1000,40x1000")
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args(argv)
    env = fleets.clean_env(site=False)
    for size in args.sizes.split(","):
        measure(size, args.dir, args.runs, args.baseline_src, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
