"""How the tool reads a fleet's folders: `find` (cold and warm), `check` and `list --no-db`,
with their peak memory, next to plain Alembic's `heads` and `current` (issue 15, "one way
to read a folder").

Each fleet is bench/projects.py's: W worktrees of a chain of M migrations, all at main, and
W branches of 3 migrations of their own in git objects. Here the last worktree then checks
out the first branch and the shared database is stamped at that branch's head: every other
worktree lacks 3 applied migrations that a sibling worktree holds, so `check` in the main
worktree has a plan to make, as after a teammate's upgrade. Built once under --dir, reused.

Rows run through bench/harness.py: whole processes in alternation (A B C, A B C, ...) after
one warm-up run each; medians of wall time, CPU time (the process and the children it
waited for: git) and peak RSS.

    python bench/reading.py                                  # this checkout's code
    python bench/reading.py --baseline-src /tmp/base/src     # and another version's
    python bench/reading.py --sizes 4x30,10x300 --runs 9

``--baseline-src`` takes the ``src`` folder of another version (``git archive COMMIT src |
tar -x -C /tmp/base``) and measures its rows beside this checkout's, with each row's ratio
turn by turn (this code ÷ the baseline): e.g. 6605b25's, the last version that read with
worker processes. They were dropped after this script measured that version with its
workers on and off (through an environment variable since removed with them): they never
saved the 20% they had to on 10 worktrees × 300 or 40 × 1,000 (docs/performance.md).
Versions with different index formats rewrite each other's index: each version's rows run
as one block per turn, starting with the cold `find` (which deletes the index anyway), so
every "warm" row follows a run of the same version.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import projects
from harness import (
    OUR_MAIN,
    Command,
    Sample,
    alternate,
    call,
    measured_env,
    paired_ratio,
    python_command,
)

SIZES = "4x30,10x300,20x1000,40x1000"
APPLIED = 3  # migrations of a branch (projects.fleet): what `check` finds missing


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"10x300,40x1000"`` -> [(10, 300), (40, 1000)]: worktrees × migrations."""
    sizes = []
    for part in text.split(","):
        worktrees, _, migrations = part.strip().partition("x")
        if not (worktrees.isdigit() and migrations.isdigit()):
            raise argparse.ArgumentTypeError(f"{part!r} is not WORKTREESxMIGRATIONS")
        if int(worktrees) < 2 or int(migrations) < 2:
            raise argparse.ArgumentTypeError(f"{part!r}: at least 2 worktrees × 2 migrations")
        sizes.append((int(worktrees), int(migrations)))
    return sizes


def branch_applied(root: Path, worktrees: int, migrations: int,
                   env: Mapping[str, str]) -> tuple[projects.Project, Path]:
    """The fleet, its last worktree on branch ``br01`` with the database at that branch's
    head; (the fleet, that worktree)."""
    fleet = projects.fleet(root, worktrees, migrations, worktrees, env)
    sibling = fleet.worktrees[-1]
    marker = root / "branch-applied"
    if not marker.exists():
        call(["git", "checkout", "-q", "br01"], sibling, env)
        projects.stamp_heads(sibling, env)
        marker.write_text("built\n", encoding="utf-8")
    return fleet, sibling


def our_rows(name: str, env: Mapping[str, str], fleet: projects.Project, sibling: Path,
             target: str) -> list[Command]:
    """One version's rows, the cold `find` first (see the module's docstring)."""
    ours = [*python_command(), "-c", OUR_MAIN]
    here = fleet.here
    index = here / call(["git", "rev-parse", "--git-path", "alembic-autocopy/index"], here,
                        env).strip()
    return [
        Command(f"{name}:find_cold", f"[{name}] find {target}, cold (index deleted)",
                [*ours, "find", target], here, env,
                before=lambda: index.unlink(missing_ok=True)),
        Command(f"{name}:find_warm", f"[{name}] find {target}, warm", [*ours, "find", target],
                here, env),
        Command(f"{name}:check_plan", f"[{name}] check, plans ({APPLIED} missing), warm",
                [*ours, "check"], here, env, codes=(1,)),
        Command(f"{name}:check_current", f"[{name}] check, nothing to do, warm",
                [*ours, "check"], sibling, env),
        Command(f"{name}:list", f"[{name}] list --no-db, warm", [*ours, "list", "--no-db"],
                here, env),
    ]


def measure(root: Path, worktrees: int, migrations: int, runs: int,
            baseline: Path | None) -> dict[str, Sample]:
    env = measured_env()
    size = f"{worktrees}x{migrations}"
    print(f"{size}: building or reusing {root / size} ...", flush=True)
    fleet, sibling = branch_applied(root / size, worktrees, migrations, env)
    target = projects.rev("b01", 2)  # in the sibling worktree and in git (branch br01)
    commands = our_rows("new", env, fleet, sibling, target)
    if baseline is not None:
        commands += our_rows("base", measured_env(src=baseline), fleet, sibling, target)
    py = python_command()
    commands += [
        Command("heads", "alembic heads", [*py, "-m", "alembic", "heads"], sibling, env),
        Command("current", "alembic current", [*py, "-m", "alembic", "current"], sibling,
                env),
    ]
    print(f"{size} ({worktrees} worktrees × {migrations:,} migrations), medians of {runs} "
          "runs: wall, CPU, peak memory", flush=True)
    samples = alternate(commands, runs)
    if baseline is not None:
        for command in commands:
            if command.key.startswith("new:"):
                row = command.key.removeprefix("new:")
                new, base = samples[command.key], samples[f"base:{row}"]
                print(f"    new ÷ base, {row:<14} wall {paired_ratio(new, base):.2f}×  "
                      f"cpu {paired_ratio(new, base, cpu=True):.2f}×  "
                      f"peak {new.peak_mb - base.peak_mb:+.1f} MB", flush=True)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "aac-reading",
                        help="where the fleets are built and kept (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="runs per row (default 5)")
    parser.add_argument("--sizes", type=parse_sizes, default=SIZES,
                        help=f"WORKTREESxMIGRATIONS, comma-separated (default {SIZES})")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="another version's src folder, measured beside this checkout's")
    args = parser.parse_args(argv)
    baseline = args.baseline_src.resolve() if args.baseline_src is not None else None
    if baseline is not None and not (baseline / "alembic_autocopy").is_dir():
        parser.error(f"--baseline-src {args.baseline_src}: no alembic_autocopy package in it")
    for worktrees, migrations in args.sizes:
        measure(args.dir.resolve(), worktrees, migrations, args.runs, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
