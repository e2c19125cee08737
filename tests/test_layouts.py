"""Issue 12 item 2: a FastAPI-style layout (backend/alembic.ini, prepend_sys_path = ., env.py
importing the local package backend/app): hooks installed from backend/ check and repair
from the worktree root, where git runs them; every command they suggest works verbatim there."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo, run

OURS = "alembic-autocopy:"
MODELS = """\
from sqlalchemy import Column, Integer, MetaData, Table

metadata = MetaData()
Table("users", metadata, Column("id", Integer, primary_key=True))
"""


def _our_lines(output: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", output) if line.startswith(OURS)]


def backend_repo(tmp_path: Path, db: Database) -> tuple[Repo, Worktree]:
    """The repository with alembic.ini, migrations/ and app/ under backend/; env.py imports
    app.models, found only through alembic.ini's ``prepend_sys_path = .``."""
    repo = make_repo(tmp_path, db)
    root = repo.main.path
    (root / "backend").mkdir()
    repo.main.git("mv", "alembic.ini", "migrations", "backend/")
    app = root / "backend" / "app"
    app.mkdir()
    (app / "__init__.py").write_text("", encoding="utf-8")
    (app / "models.py").write_text(MODELS, encoding="utf-8")
    ini = (root / "backend" / "alembic.ini").read_text(encoding="utf-8")
    assert "\nprepend_sys_path = .\n" in ini  # Alembic's own template says so
    env_py = root / "backend" / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    assert "target_metadata = None" in text
    env_py.write_text(text.replace("target_metadata = None",
                                   "from app.models import metadata\n"
                                   "target_metadata = metadata"), encoding="utf-8")
    repo.main.commit("backend layout")
    return repo, Worktree(root / "backend")


def shell_from(root: Path, command: str, bin_dir: Path) -> None:
    """Run ``command`` as a user would type it at ``root``."""
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = run(["sh", "-c", command], cwd=root, check=False, env=env)
    assert result.returncode == 0, (command, result.stdout, result.stderr)


def command_on_path(tmp_path: Path) -> Path:
    """``alembic-autocopy`` on PATH, running this checkout (as the installed script would)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "alembic-autocopy"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m alembic_autocopy "$@"\n',
                      encoding="utf-8")
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("auto_upgrade", [False, True])
def test_hooks_installed_from_backend_check_and_repair_from_the_root(
        tmp_path: Path, sqlite_db: Database, auto_upgrade: bool) -> None:
    repo, main = backend_repo(tmp_path, sqlite_db)
    main.alembic("upgrade", "head", check=True)
    a_root = repo.add_worktree("a").path
    a = Worktree(a_root / "backend")
    ids = a.chain(2, BASE_REV, "a")
    a.commit("a: two migrations")
    c_root = repo.add_worktree("c", branch="c").path
    c = Worktree(c_root / "backend")
    c.git("merge", "--quiet", "a")
    c_only = c.chain(1, ids[-1], "c")
    c.alembic("upgrade", "head", check=True)  # the database: a1, a2, c1
    bin_dir = command_on_path(tmp_path)
    flags = ["--auto-upgrade"] if auto_upgrade else []
    installed = json.loads(main.autocopy("install-hooks", "--json", *flags, check=True).stdout)
    assert installed["project_dir"] == "backend" and installed["without_python"] is True

    merged = repo.main.git("merge", "--no-edit", "a")  # git runs the hook at the root

    lines = _our_lines(merged.stdout + merged.stderr)
    assert len(lines) == 1, merged.stdout + merged.stderr
    assert "not installed" not in lines[0] and "check failed" not in lines[0]
    if auto_upgrade:
        assert lines[0] == (f"{OURS} brought in 1 migration(s), applied 0; database heads: "
                            f"{c_only[0]}")
        assert main.alembic("current").returncode == 0
    else:
        assert lines[0] == (f"{OURS} the database holds 1 revision(s) this worktree lacks "
                            f"({c_only[0]}): run `cd backend && alembic-autocopy upgrade`")
    for hint in re.findall(r"`([^`]+)`", lines[0]):
        shell_from(repo.main.path, hint, bin_dir)  # verbatim, where the user stands
    assert main.alembic("current").returncode == 0
    assert repo.applied_versions() == {c_only[0]}
    # nothing changed: the script says so itself, from the root, for backend/
    quiet = repo.main.git("checkout", "--quiet", "-b", "quiet")
    assert _our_lines(quiet.stderr) == [f"{OURS} no migration changed; nothing to check"]


def test_a_local_package_off_sys_path_is_told_apart_from_a_missing_distribution(
        tmp_path: Path, sqlite_db: Database) -> None:
    repo, main = backend_repo(tmp_path, sqlite_db)
    main.alembic("upgrade", "head", check=True)
    root = Worktree(repo.main.path)

    from_root = root.autocopy("-c", "backend/alembic.ini", "check")

    assert from_root.returncode == 1
    backend = repo.main.path / "backend"
    assert (f"env.py imports app, a local package in {backend / 'app'}, but "
            f"{backend} is not on sys.path here") in from_root.stderr
    assert f"gave: {repo.main.path}" in from_root.stderr  # where it looked
    assert f"run the command from {backend}" in from_root.stderr
    assert "pip install" not in from_root.stderr

    models = backend / "app" / "models.py"
    models.write_text("import no_such_distribution_xyz\n" + MODELS, encoding="utf-8")
    missing = main.autocopy("check")
    assert missing.returncode == 1
    assert "env.py needs a module that is not installed: no_such_distribution_xyz" in (
        missing.stderr)
    assert "pip install no_such_distribution_xyz" in missing.stderr
