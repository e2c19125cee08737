"""The benchmark's own logic that needs no timing: the scan that finds import tricks, and
the harness's alternation (bench/run.py measures; these only check what it counts); and that
every bench script still starts (none imports a helper that was deleted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

# The scripts run as `python bench/x.py`; the other modules are helpers they import.
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py")
                 if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8"))

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


def test_a_targeted_ratio_is_the_median_of_each_turns_ratio() -> None:
    # Turn by turn, b costs twice a; the load doubles both from some turn on. Each turn's
    # ratio says 0.5; when the load changes at another turn for one side's median than for
    # the other's (`shifted`), the ratio of the two medians says 1.0.
    a = harness.Sample("a", times=[1.0, 1.0, 2.0, 2.0, 2.0], cpu=[1.0, 1.0, 1.0, 1.0, 1.0])
    b = harness.Sample("b", times=[2.0, 2.0, 4.0, 4.0, 4.0], cpu=[1.0, 1.0, 3.0, 3.0, 3.0])
    assert harness.paired_ratio(a, b) == 0.5
    assert harness.ratio(a.median_ms, b.median_ms) == 0.5  # (the medians agree here)
    shifted = harness.Sample("b", times=[2.0, 2.0, 2.0, 4.0, 4.0])
    assert harness.paired_ratio(harness.Sample("a", times=[1.0, 1.0, 2.0, 2.0, 2.0]),
                                shifted) == 0.5
    assert harness.ratio(2.0, 2.0) == 1.0  # what the medians say: a costs as much as b
    assert harness.paired_ratio(a, b, cpu=True) == 1 / 3
    uneven = harness.Sample("c", times=[4.0, 4.0])
    assert harness.paired_ratio(a, uneven) == 0.5  # unequal counts: the medians' ratio


def test_the_scripts_are_found() -> None:
    assert "run.py" in SCRIPTS and "reading.py" in SCRIPTS
    assert "harness.py" not in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_starts(script: str, tmp_path: Path) -> None:
    # `--help` imports everything a run imports and builds the parser, measuring nothing: a
    # script importing a deleted helper (bench/reading.py after fleet.py went) fails here.
    src = str(BENCH.parent / "src")
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, str(BENCH / script), "--help"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
