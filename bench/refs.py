"""`list --no-db` on a repository with 3,000 refs holding 150 migrations (issue 11).

Builds, in a temporary folder, a git repository whose Alembic project has 150 migrations
(plus 200 pre-Alembic files on an old branch) and 3,000 refs (1,500 branches, 1,500 tags)
at its tip, then measures, in the same run and alternately, warm whole-process times of:

* ``alembic-autocopy list --no-db`` (text output: the closest places of each row, the rest
  counted), and its output size;
* ``alembic history`` (Alembic imports the 150 files; no database either).

The target: the warm ``list --no-db`` at most 2x ``alembic history``. The result goes to
docs/benchmarks.md, in a section of its own (bench/run.py keeps it when it rewrites the
file). Run: ``python3 bench/refs.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT / "tests"))

from support import BASE_REV, make_repo, run  # noqa: E402
from support.databases import temporary_database  # noqa: E402
from support.environment import hermetic_overrides  # noqa: E402

REFS = 3000
MIGRATIONS = 150
LEGACY = 200
MARKER = "<!-- section written by bench/refs.py -->"


def build(root: Path) -> Path:
    with temporary_database("sqlite", root) as db:
        repo = make_repo(root, db)
    main = repo.main
    for number in range(LEGACY):
        (main.versions / f"legacy_{number:03}.py").write_text(f"# before Alembic {number}\n")
    main.commit("pre-Alembic scripts")
    main.git("branch", "release-0.1")
    for number in range(LEGACY):
        (main.versions / f"legacy_{number:03}.py").unlink()
    main.chain(MIGRATIONS - 1, BASE_REV, "m")
    main.commit(f"{MIGRATIONS} migrations")
    head = main.git("rev-parse", "HEAD").stdout.strip()
    half = REFS // 2
    refs = "".join(f"create refs/heads/feature-{n:04} {head}\n" for n in range(half))
    refs += "".join(f"create refs/tags/v{n:04} {head}\n" for n in range(REFS - half))
    run(["git", "update-ref", "--stdin"], cwd=main.path, check=True, input=refs)
    return main.path


def timed(argv: list[str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - started, len(result.stdout) + len(result.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=CHECKOUT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="autocopy-refs-"))
    try:
        for name, value in hermetic_overrides(root / "home", os.environ).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        project = build(root)
        ours = [sys.executable, "-m", "alembic_autocopy", "list", "--no-db"]
        alembic = [sys.executable, "-m", "alembic", "history"]
        timed(ours, project)  # cold: fills the index
        timed(alembic, project)  # writes the bytecode cache, as a developer's runs do
        times: dict[str, list[float]] = {"ours": [], "alembic": []}
        size = 0
        for _ in range(args.runs):
            elapsed, size = timed(ours, project)
            times["ours"].append(elapsed)
            times["alembic"].append(timed(alembic, project)[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ours_ms = statistics.median(times["ours"]) * 1000
    alembic_ms = statistics.median(times["alembic"]) * 1000
    ratio = ours_ms / alembic_ms
    verdict = "pass" if ratio <= 2 else "**FAIL**"
    section = "\n".join([
        MARKER,
        "## 3,000 refs holding 150 migrations (bench/refs.py, issue 11)",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; medians of "
        f"{args.runs} warm runs each, alternating; {REFS:,} refs at the tip, {LEGACY} "
        f"pre-Alembic files on an old branch; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (both commands share it).",
        "",
        "| what | median | range | output |",
        "|---|---:|---:|---:|",
        f"| alembic-autocopy list --no-db, warm | {ours_ms:.0f} ms | "
        f"{min(times['ours']) * 1000:.0f}–{max(times['ours']) * 1000:.0f} ms | "
        f"{size / 1000:.1f} KB |",
        f"| alembic history (bytecode cached) | {alembic_ms:.0f} ms | "
        f"{min(times['alembic']) * 1000:.0f}–{max(times['alembic']) * 1000:.0f} ms | |",
        "",
        f"Target: warm `list --no-db` ≤ 2× `alembic history`: {ratio:.2f}× ({verdict}); "
        f"output under 200 KB: {size / 1000:.1f} KB "
        f"({'pass' if size < 200_000 else '**FAIL**'}).",
        "",
    ])
    try:
        text = args.output.read_text(encoding="utf-8")
    except OSError:
        text = "# Benchmarks\n"
    at = text.find(MARKER)
    if at >= 0:
        end = text.find("<!-- section written by ", at + len(MARKER))
        text = text[:at] + section + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    args.output.write_text(text, encoding="utf-8")
    print(section)
    return 0 if ratio <= 2 and size < 200_000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
