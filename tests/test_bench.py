"""The benchmark's own logic that needs no timing: the scan that finds import tricks, and
the harness's alternation (bench/run.py measures; these only check what it counts)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import imports  # noqa: E402


def test_the_scan_finds_deferred_imports_and_type_checking_stand_ins(tmp_path: Path) -> None:
    package = tmp_path / "alembic_autocopy"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "tool.py").write_text(
        "TYPE_CHECKING = False\n"
        "import os\n"
        "def run() -> None:\n"
        "    import json\n"
        "    from . import other\n"
        "    from .other import thing\n", encoding="utf-8")
    (package / "other.py").write_text("thing = 1\n", encoding="utf-8")
    original = imports.SRC
    imports.SRC = tmp_path
    try:
        found = {(trick.where, trick.module) for trick in imports.scan(package)}
    finally:
        imports.SRC = original
    assert found == {
        ("alembic_autocopy/tool.py:1 (TYPE_CHECKING = False)", "typing"),
        ("alembic_autocopy/tool.py:4 (run)", "json"),
        ("alembic_autocopy/tool.py:5 (run)", "alembic_autocopy.other"),
        ("alembic_autocopy/tool.py:6 (run)", "alembic_autocopy.other"),
    }


def test_the_real_package_has_tricks_to_measure() -> None:
    modules = {trick.module for trick in imports.scan()}
    assert "alembic_autocopy.effects.placement" in modules  # deferred where files are placed
    assert "typing" not in modules  # no hand-made TYPE_CHECKING stand-in is left
    assert all(module for module in modules)


def test_alternation_runs_each_command_in_turn(tmp_path: Path) -> None:
    log = tmp_path / "log"
    env = harness.measured_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env

    def command(key: str) -> harness.Command:
        return harness.Command(key, key, ["sh", "-c", f"echo {key} >> {log}"], tmp_path, env,
                               warmup=0)

    samples = harness.alternate([command("a"), command("b")], runs=3, show=False)
    assert log.read_text().split() == ["a", "b", "a", "b", "a", "b"]
    assert len(samples["a"].times) == len(samples["b"].cpu) == 3
    assert samples["a"].peak_mb > 0
