"""Issue 5: worktrees upgrading one database at the same moment (a CI-sized round of
bench/stress.py; the full 8-process, 20-round figures are in docs/stress.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from support import Database
from support.databases import temporary_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import stress


def test_simultaneous_upgrades_from_several_worktrees(tmp_path: Path, any_db: Database) -> None:
    """4 processes (2 per worktree) start together: all exit 0, every migration runs exactly
    once, the final heads are the union. Two rounds: the fixture's database, then a new one."""
    first = stress.run_round(any_db, tmp_path / "round-1", processes=4, worktrees=2)
    with temporary_database(any_db.backend, tmp_path) as db:
        second = stress.run_round(db, tmp_path / "round-2", processes=4, worktrees=2)

    for result in (first, second):
        assert result.exit_codes == [0, 0, 0, 0], result.errors
        assert result.problems == []
