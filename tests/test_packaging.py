"""The package installs with pip and its first README command works; the code passes the
project's own quality gates (mypy --strict, ruff)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pip_install_then_demo(tmp_path: Path) -> None:
    """`pip install .` then `alembic-autocopy demo`: the README's first command.

    The virtual environment sees this machine's site-packages (alembic, SQLAlchemy), so the
    test needs no network; the package itself is really built and installed by pip.
    """
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache",
        ".hypothesis", "build", "dist", "tests", "bench"))
    environment = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--disable-pip-version-check", str(project)],
        capture_output=True, text=True, cwd=tmp_path, check=False)
    if install.returncode != 0 and "no such option: --python" in install.stderr:
        pytest.skip("this pip is too old for --python")
    assert install.returncode == 0, install.stdout + install.stderr
    script = environment / "bin" / "alembic-autocopy"
    assert script.exists()

    demo = subprocess.run([str(script), "demo"], capture_output=True, text=True, cwd=tmp_path,
                          check=False, timeout=300)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Can't locate revision identified by" in demo.stdout
    assert "Demo done" in demo.stdout


def test_module_entry_point_prints_help() -> None:
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for verb in ("upgrade", "check", "find", "list", "clean", "demo"):
        assert verb in result.stdout


@pytest.mark.parametrize("tool", ["mypy", "ruff"])
def test_quality_gate(tool: str) -> None:
    if shutil.which(tool) is None and tool == "ruff":
        pytest.skip("ruff is not installed")
    command = ([sys.executable, "-m", "mypy"] if tool == "mypy"
               else ["ruff", "check", "src", "tests"])
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
