"""Issue 12 item 2: a FastAPI-style layout (backend/alembic.ini, prepend_sys_path = ., env.py
importing the local package backend/app): hooks installed from backend/ check and repair
from the worktree root, where git runs them; every command they suggest works verbatim there.
The FastAPI template's own layout (``script_location = app/alembic``, relative to the current
folder): refused where Alembic refuses it, hooks still run where they were installed."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo, run
from support.templates import render_migration

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


def _c_applied_what_main_lacks(tmp_path: Path, sqlite_db: Database, merged: int
                               ) -> tuple[Repo, Worktree, list[str]]:
    """backend/ layout: worktree c merged a's ``merged`` committed migrations, added one of
    its own and applied all; main (its database at the base) lacks what c applied."""
    repo, main = backend_repo(tmp_path, sqlite_db)
    main.alembic("upgrade", "head", check=True)
    a = Worktree(repo.add_worktree("a").path / "backend")
    ids = a.chain(merged, BASE_REV, "a")
    a.commit(f"a: {merged} migration(s)")
    c = Worktree(repo.add_worktree("c", branch="c").path / "backend")
    c.git("merge", "--quiet", "a")
    c_only = c.chain(1, ids[-1], "c")
    c.alembic("upgrade", "head", check=True)
    return repo, main, c_only


@pytest.mark.parametrize("auto_upgrade", [False, True])
def test_hooks_installed_from_backend_check_and_repair_from_the_root(
        tmp_path: Path, sqlite_db: Database, auto_upgrade: bool) -> None:
    repo, main, c_only = _c_applied_what_main_lacks(tmp_path, sqlite_db, 2)
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


@pytest.mark.parametrize(("git_folder", "hint"), [
    ("", "cd backend && alembic-autocopy upgrade"),
    ("backend", "alembic-autocopy upgrade"),
    ("backend/migrations/versions", "cd ../.. && alembic-autocopy upgrade"),
])
def test_the_hook_hint_works_in_the_folder_git_was_run_in(
        tmp_path: Path, sqlite_db: Database, git_folder: str, hint: str) -> None:
    """git runs hooks at the worktree root but the user typed the command elsewhere: the
    hint leads from there (GIT_PREFIX) to backend/, and works typed verbatim there."""
    repo, main, c_only = _c_applied_what_main_lacks(tmp_path, sqlite_db, 1)
    bin_dir = command_on_path(tmp_path)
    main.autocopy("install-hooks", check=True)
    where = repo.main.path / git_folder

    merged = Worktree(where).git("merge", "--no-edit", "a")

    lines = _our_lines(merged.stdout + merged.stderr)
    assert lines == [f"{OURS} the database holds 1 revision(s) this worktree lacks "
                     f"({c_only[0]}): run `{hint}`"], merged.stdout + merged.stderr
    shell_from(where, hint, bin_dir)
    assert main.alembic("current").returncode == 0
    assert main.autocopy("check").returncode == 0


def test_the_hook_hint_without_git_prefix_names_the_project_folder_absolutely(
        tmp_path: Path) -> None:
    """Another program ran the hook (no GIT_PREFIX): a path right from any folder."""
    from alembic_autocopy.workflow.hooks import folder_from_user

    assert folder_from_user(tmp_path, "backend", None) == str((tmp_path / "backend").resolve())
    assert folder_from_user(tmp_path, "backend", "") == "backend"
    assert folder_from_user(tmp_path, "backend", "backend/app/alembic/") == "../.."


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


CONSOLE_SCRIPT = """\
#!{python}
import sys
from {module} import main
sys.exit(main())
"""


def console_script(tmp_path: Path, name: str, module: str) -> Path:
    """A script like the one pip writes for ``[project.scripts]``: sys.path[0] is its own
    folder, never the current one (``python -m`` would put the current folder there)."""
    bin_dir = tmp_path / "console-bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(CONSOLE_SCRIPT.format(python=sys.executable, module=module),
                      encoding="utf-8")
    script.chmod(0o755)
    return script


def test_a_local_package_without_prepend_sys_path_is_told_as_not_set(
        tmp_path: Path, sqlite_db: Database) -> None:
    """No prepend_sys_path in backend/alembic.ini, run from backend/ by the console script:
    the message says it is not set (it used to say it "gave" backend/) and the hint does not
    say to cd where the user already is."""
    repo, backend = backend_repo(tmp_path, sqlite_db)
    ini = backend.path / "alembic.ini"
    ini.write_text(ini.read_text(encoding="utf-8").replace("\nprepend_sys_path = .\n", "\n"),
                   encoding="utf-8")
    alembic_script = console_script(tmp_path, "alembic", "alembic.config")
    autocopy_script = console_script(tmp_path, "alembic-autocopy", "alembic_autocopy.cli.main")
    # Plain alembic's console script fails the same way: only prepend_sys_path puts a folder
    # on sys.path (`python -m alembic` would find app through the current folder).
    plain = run([alembic_script, "check"], cwd=backend.path, check=False)
    assert plain.returncode != 0 and "No module named 'app'" in plain.stderr, plain.stderr

    result = run([autocopy_script, "check"], cwd=backend.path, check=False)

    assert result.returncode == 1, result.stderr
    assert (f"error: env.py imports app, a local package in {backend.path / 'app'}, but "
            f"{backend.path} is not on sys.path here (prepend_sys_path is not set in {ini}, "
            "and the alembic command puts no other folder on sys.path)\n") in result.stderr
    assert "gave:" not in result.stderr and "cd there" not in result.stderr
    assert (f"hint: add `prepend_sys_path = .` to the [alembic] section of {ini} "
            "(Alembic's template has it), or install the project in this environment "
            "(`pip install -e .`, `uv sync`)\n") in result.stderr, result.stderr

    # From the worktree root the hint adds where to run from: `.` is the current folder.
    from_root = run([autocopy_script, "-c", "backend/alembic.ini", "check"],
                    cwd=repo.main.path, check=False)
    assert from_root.returncode == 1
    assert f"prepend_sys_path is not set in {ini}" in from_root.stderr
    assert (f"hint: add `prepend_sys_path = .` to the [alembic] section of {ini} and run the "
            f"command from {backend.path}, or install the project") in from_root.stderr


def fastapi_template_repo(tmp_path: Path, db: Database) -> tuple[Repo, Worktree]:
    """The full-stack FastAPI template's layout: backend/alembic.ini with the relative
    ``script_location = app/alembic`` (Alembic resolves it from the current folder, not from
    the ini's), env.py and versions/ in backend/app/alembic."""
    repo = make_repo(tmp_path, db)
    root = repo.main.path
    (root / "backend" / "app").mkdir(parents=True)
    repo.main.git("mv", "alembic.ini", "backend/")
    repo.main.git("mv", "migrations", "backend/app/alembic")
    ini = root / "backend" / "alembic.ini"
    text = ini.read_text(encoding="utf-8")
    assert "\nscript_location = %(here)s/migrations\n" in text
    ini.write_text(text.replace("\nscript_location = %(here)s/migrations\n",
                                "\nscript_location = app/alembic\n"), encoding="utf-8")
    repo.main.commit("FastAPI template layout")
    return repo, Worktree(root / "backend")


def every_file(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``folder`` (.git included): its size and modification time."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*") if path.is_file()}


ENSURE_FROM_APP = """\
import json
from alembic_autocopy import AutocopyFailed, ensure_database_current
try:
    ensure_database_current("../alembic.ini")
except AutocopyFailed as error:
    print(json.dumps({"message": error.message, "hint": error.hint,
                      "exit_code": error.exit_code}))
"""


def test_a_relative_script_location_that_does_not_resolve_here_is_refused_as_alembic_does(
        tmp_path: Path, sqlite_db: Database) -> None:
    repo, backend = fastapi_template_repo(tmp_path, sqlite_db)
    app = Worktree(backend.path / "app")
    missing = app.path / "app" / "alembic"  # app/alembic from backend/app
    plain = app.alembic("-c", "../alembic.ini", "current")
    assert plain.returncode != 0 and "Path doesn't exist: app/alembic" in plain.stdout
    before = every_file(repo.main.path)

    for argv in (["list", "--no-db"], ["find", BASE_REV], ["status", "--no-db"], ["check"],
                 ["upgrade"], ["clean"], ["install-hooks"]):
        result = app.autocopy("-c", "../alembic.ini", *argv)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert result.stderr.startswith(
            f"error: the script folder does not exist: {missing} (script_location = "
            f"app/alembic in {backend.path / 'alembic.ini'})\n"), (argv, result.stderr)
        assert (f"hint: Alembic resolves a relative script_location from the current folder "
                f"({app.path}), not from the config file's: run from {backend.path}, where it "
                f"resolves to {backend.path / 'app' / 'alembic'}, or write "
                "`script_location = %(here)s/app/alembic`") in result.stderr, result.stderr
        assert "revision(s)" not in result.stdout and "found nowhere" not in result.stderr
    api = json.loads(run([sys.executable, "-c", ENSURE_FROM_APP], cwd=app.path,
                         check=True).stdout)
    assert api["exit_code"] == 2 and api["message"].startswith(
        f"the script folder does not exist: {missing} ")
    assert f"run from {backend.path}" in api["hint"]

    assert every_file(repo.main.path) == before  # nothing written, not even under .git
    assert repo.main.status_porcelain() == ""
    assert repo.applied_versions() == set()

    # From backend/, where `alembic` is run, the same configuration works.
    listed = backend.autocopy("list", "--no-db", check=True)
    assert "1 revision(s), 1 in this worktree" in listed.stdout
    assert backend.autocopy("-c", "alembic.ini", "find", BASE_REV).returncode == 0
    assert backend.autocopy("upgrade").returncode == 0
    assert repo.applied_versions() == {BASE_REV}


def test_hooks_of_a_relative_script_location_run_where_they_were_installed(
        tmp_path: Path, sqlite_db: Database) -> None:
    repo, backend = fastapi_template_repo(tmp_path, sqlite_db)
    backend.alembic("upgrade", "head", check=True)
    a_root = repo.add_worktree("a").path
    a = Worktree(a_root / "backend")
    added = a.path / "app" / "alembic" / "versions" / "a00000000001_step.py"
    added.write_text(render_migration(rev="a00000000001", down=BASE_REV, message="step",
                                      branch_labels=None, depends_on=None, annotated=False),
                     encoding="utf-8")
    a.commit("a: one migration")
    installed = json.loads(backend.autocopy("install-hooks", "--json", check=True).stdout)
    assert installed["project_dir"] == "backend"

    merged = repo.main.git("merge", "--no-edit", "a")  # git runs the hook at the root

    # Python checked (a migration changed), from backend/, where app/alembic resolves
    assert _our_lines(merged.stdout + merged.stderr) == [
        f"{OURS} OK, this worktree knows every revision the database applied ({BASE_REV})"]
