"""The package installs with pip and its first README command works; the code passes the
project's own quality gates (mypy --strict, ruff)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def site_dirs() -> list[str]:
    """The site-packages folders this interpreter really imports from (a virtualenv's own,
    and those a .pth file added), never the project's checkout."""
    return [entry for entry in dict.fromkeys(sys.path)
            if os.path.basename(entry) in ("site-packages", "dist-packages")
            and os.path.isdir(entry) and not Path(entry).resolve().is_relative_to(ROOT)]


def make_venv(path: Path, base_python: str | None = None) -> Path:
    """A virtual environment at ``path`` that sees THIS interpreter's packages (alembic,
    SQLAlchemy...) through a .pth file; its python.

    Not ``system_site_packages=True``: inside a virtualenv that gives the BASE interpreter's
    packages, not the virtualenv's, and the test dependencies are in the virtualenv."""
    if base_python is None:
        venv.EnvBuilder(with_pip=False).create(path)
    else:
        subprocess.run([base_python, "-m", "venv", "--without-pip", str(path)], check=True)
    (site,) = path.glob("lib/python3*/site-packages")
    (site / "_outer_packages.pth").write_text("\n".join(site_dirs()) + "\n", encoding="utf-8")
    return path / "bin" / "python"


def test_pip_install_then_demo(tmp_path: Path) -> None:
    """`pip install .` then `alembic-autocopy demo`: the README's first command.

    The virtual environment sees this interpreter's packages (alembic, SQLAlchemy), so the
    test needs no network; the package itself is really built and installed by pip.
    """
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache",
        ".hypothesis", "build", "dist", "tests", "bench"))
    environment = tmp_path / "venv"
    python = make_venv(environment)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--disable-pip-version-check", str(project)],
        capture_output=True, text=True, cwd=tmp_path, check=False)
    if install.returncode != 0 and "no such option: --python" in install.stderr:
        pytest.skip("this pip is too old for --python")
    assert install.returncode == 0, install.stdout + install.stderr
    script = environment / "bin" / "alembic-autocopy"
    assert script.exists()
    where = subprocess.run([str(python), "-c", "import alembic_autocopy; "
                            "print(alembic_autocopy.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, check=True, env=_without_pythonpath())
    assert where.stdout.startswith(str(environment)), where.stdout  # the installed copy

    demo = subprocess.run([str(script), "demo"], capture_output=True, text=True, cwd=tmp_path,
                          check=False, timeout=300, env=_without_pythonpath())

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Can't locate revision identified by" in demo.stdout
    assert "Demo done" in demo.stdout


def _without_pythonpath() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def _python_without_alembic() -> str | None:
    """Another interpreter of this Python version that lacks alembic: the base of a fresh
    virtualenv on a fresh machine (None when this machine has none)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.path.exists(candidate) or os.path.realpath(candidate) == os.path.realpath(
                sys.executable):
            continue
        probe = subprocess.run([candidate, "-c", "import venv, alembic"],
                               capture_output=True, text=True, check=False)
        if probe.returncode != 0 and "alembic" in probe.stderr:
            return candidate
    return None


def test_the_packaging_test_passes_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """The README's test command run inside a virtualenv whose base interpreter has none of
    the test dependencies (a fresh machine): the packaging test's own virtualenv must get
    them from the virtualenv, not from the base (issue 12 item 9). .ci/run does the same
    with a pip-installed virtualenv on a fresh Debian machine."""
    base = _python_without_alembic()
    if base is None:
        pytest.skip("no second interpreter of this version without alembic on this machine "
                    "(.ci/run checks a fresh virtualenv)")
    python = make_venv(tmp_path / "fresh", base)  # test deps as `pip install .[test]` would

    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "tests/test_packaging.py::test_pip_install_then_demo"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=600)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("arguments", [["--help"], ["-h", "find"], ["--json", "--help", "find"]])
def test_module_entry_point_prints_help(arguments: list[str]) -> None:
    # A verb on the line builds that verb's parser alone (cli.main.chosen_verb), except
    # after a help flag: the main help lists every verb.
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", *arguments],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for verb in ("upgrade", "check", "find", "list", "clean", "demo", "record"):
        assert f"\n    {verb} " in result.stdout, verb


def test_a_verb_parser_built_alone_still_reports_usage_errors() -> None:
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", "find", "--bogus", "x"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", "find", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: alembic-autocopy find ")


@pytest.mark.parametrize("columns", [50, 200])
def test_help_is_as_wide_as_argparse_makes_it(columns: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # cli.main.HelpFormatter finds the width itself (argparse imports shutil for it): the
    # text must be the one argparse's own formatter writes for the same terminal width.
    import argparse

    from alembic_autocopy.cli import main

    env = {**os.environ, "COLUMNS": str(columns)}
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", "find", "--help"],
                            capture_output=True, text=True, check=False, env=env)
    monkeypatch.setenv("COLUMNS", str(columns))
    verbs = next(action for action in main.build_parser(only="find")._actions
                 if isinstance(action, argparse._SubParsersAction))
    find = verbs.choices["find"]
    find.formatter_class = argparse.RawDescriptionHelpFormatter
    assert result.returncode == 0
    assert result.stdout == find.format_help()
    usage = result.stdout.split("\n\n")[0].splitlines()
    assert (len(usage) > 3) == (columns == 50)  # the width really changed the wrapping


def test_a_broken_alembic_install_is_one_clear_error(tmp_path: Path) -> None:
    # `check` and `upgrade` import Alembic first thing (cli.main): a failure there is an
    # internal error like any other (exit 3, a crash log), never a bare traceback.
    fake = tmp_path / "shadow" / "alembic"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('alembic is half installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fake.parent), os.environ.get("PYTHONPATH", "")]), "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "alembic_autocopy", "check"],
                            capture_output=True, text=True, check=False, env=env,
                            cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "internal error" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.glob("alembic-autocopy-crash-*.log"))


@pytest.mark.parametrize("tool", ["mypy", "ruff"])
def test_quality_gate(tool: str) -> None:
    if shutil.which(tool) is None and tool == "ruff":
        pytest.skip("ruff is not installed")
    command = ([sys.executable, "-m", "mypy"] if tool == "mypy"
               else ["ruff", "check", "src", "tests"])
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
