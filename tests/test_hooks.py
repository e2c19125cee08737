"""Git hooks on a real repository with linked worktrees: they fire, chain, never block git."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from alembic_autocopy.effects.project import load_project
from alembic_autocopy.workflow import hooks
from alembic_autocopy.workflow.hooks import HOOK_TYPES
from support import BASE_REV, Database, Repo, Worktree, make_repo, run
from support.templates import render_migration

REPO_ROOT = Path(__file__).resolve().parents[1]
LEGACY_CHECKOUT = """#!/bin/sh
echo "legacy post-checkout $3" >> "{log}"
"""
LEGACY_REWRITE = """#!/bin/sh
echo "legacy post-rewrite $1 $(cat | wc -l)" >> "{log}"
exit 1
"""
OURS = "alembic-autocopy:"


def _write_hook(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return text


def _our_lines(output: str) -> list[str]:
    # git's progress ("Rebasing (1/1)") ends with a carriage return, not a newline
    return [line for line in re.split(r"[\r\n]", output) if line.startswith(OURS)]


def test_hooks_fire_in_every_worktree_and_chain_the_existing_ones(sqlite_db: Database,
                                                                 tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    hooks_dir = repo.root / ".git" / "hooks"
    log = tmp_path / "legacy.log"
    checkout_text = _write_hook(hooks_dir / "post-checkout", LEGACY_CHECKOUT.format(log=log))
    rewrite_text = _write_hook(hooks_dir / "post-rewrite", LEGACY_REWRITE.format(log=log))
    a = repo.add_worktree("a")
    b = repo.add_worktree("b")
    only_in_a = "a00000000001"
    a.write_migration(only_in_a, down=BASE_REV, message="only in a")
    a.commit("a: one migration")
    a.alembic("upgrade", "head", check=True)
    log.unlink()

    installed = json.loads(b.autocopy("install-hooks", "--json", check=True).stdout)

    assert installed["hooks_dir"] == str(hooks_dir) and installed["shared"] is True
    assert [h["action"] for h in installed["hooks"]] == ["installed"] * 3
    assert (hooks_dir / "post-checkout.legacy").read_text("utf-8") == checkout_text
    assert f"{sys.executable} -m alembic_autocopy.hooks" in (
        hooks_dir / "post-merge").read_text("utf-8")

    # checkout in worktree a: the branch lacks the migration the database holds
    switched = a.git("checkout", "--quiet", "-b", "side", "main")
    assert _our_lines(switched.stderr) == [
        f"{OURS} the database holds 1 revision(s) this worktree lacks ({only_in_a}): "
        "run `alembic-autocopy upgrade`"]
    assert log.read_text("utf-8") == "legacy post-checkout 1\n"  # the old hook still runs

    # merge in worktree b: brings the migration
    merged = b.git("merge", "--no-edit", "a")
    assert _our_lines(merged.stdout + merged.stderr) == [
        f"{OURS} OK, this worktree knows every revision the database applied ({only_in_a})"]

    # rebase in the main worktree: its own commit replayed onto a
    (repo.main.path / "NOTES").write_text("main\n", encoding="utf-8")
    repo.main.commit("main: notes")
    rebased = repo.main.git("rebase", "a")
    assert _our_lines(rebased.stdout + rebased.stderr) == [
        f"{OURS} OK, this worktree knows every revision the database applied ({only_in_a})"]
    assert "legacy post-rewrite rebase 1" in log.read_text("utf-8")  # got git's stdin

    # a checkout that changes no migration: answered without the database, in every worktree
    for worktree in (repo.main, a, b):
        quiet = worktree.git("checkout", "--quiet", "-b", f"tmp-{worktree.path.name}")
        assert _our_lines(quiet.stderr) == [f"{OURS} no migration changed; nothing to check"]

    _uninstall_puts_back(b, a, hooks_dir, checkout_text, rewrite_text)


def _uninstall_puts_back(b: Worktree, a: Worktree, hooks_dir: Path, checkout_text: str,
                         rewrite_text: str) -> None:
    removed = b.autocopy("uninstall-hooks", check=True)
    assert "Put back your post-checkout" in removed.stdout
    assert (hooks_dir / "post-checkout").read_text("utf-8") == checkout_text
    assert (hooks_dir / "post-rewrite").read_text("utf-8") == rewrite_text
    assert not (hooks_dir / "post-merge").exists()
    assert not list(hooks_dir.glob("*.legacy"))
    after = a.git("checkout", "--quiet", "-b", "after-uninstall")
    assert _our_lines(after.stderr) == []


def test_core_hooks_path_is_honoured(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    shared = tmp_path / "team-hooks"
    repo.main.git("config", "core.hooksPath", str(shared))
    a = repo.add_worktree("a")

    installed = json.loads(a.autocopy("install-hooks", "--json", check=True).stdout)

    assert installed["hooks_dir"] == str(shared)
    assert sorted(p.name for p in shared.iterdir()) == [
        "post-checkout", "post-merge", "post-rewrite"]
    assert not (repo.root / ".git" / "hooks" / "post-checkout").exists()
    switched = repo.main.git("checkout", "--quiet", "-b", "elsewhere")
    assert _our_lines(switched.stderr) == [f"{OURS} no migration changed; nothing to check"]


def test_a_failing_check_never_blocks_git(sqlite_db: Database, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.autocopy("install-hooks", check=True)
    main.git("checkout", "--quiet", "-b", "feature")
    main.write_migration("f00000000001", down=BASE_REV, message="feature")
    main.commit("feature: one migration")
    ini = main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8").replace(
        sqlite_db.url, f"sqlite:///{tmp_path}/no/such/folder/x.db"), encoding="utf-8")

    result = main.git("checkout", "main")  # check=True: git must succeed

    (line,) = _our_lines(result.stderr)  # one line, and git succeeded
    assert line.startswith(f"{OURS} check failed: cannot use the database")
    assert line.endswith("unable to open database file (`alembic-autocopy check` explains)")
    assert "Traceback" not in result.stderr


def test_install_refuses_when_a_legacy_hook_is_in_the_way(sqlite_db: Database,
                                                          tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    hooks_dir = repo.root / ".git" / "hooks"
    _write_hook(hooks_dir / "post-checkout", "#!/bin/sh\necho mine\n")
    _write_hook(hooks_dir / "post-checkout.legacy", "#!/bin/sh\necho older\n")

    result = repo.main.autocopy("install-hooks")

    assert result.returncode == 1
    assert "post-checkout.legacy exists too" in result.stderr
    assert not (hooks_dir / "post-merge").exists()  # nothing was changed
    assert (hooks_dir / "post-checkout").read_text("utf-8") == "#!/bin/sh\necho mine\n"


def test_pre_commit_framework_manifest_and_entry(sqlite_db: Database, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text("utf-8"))
    for hook in manifest:
        assert hook["stages"] == ["post-checkout", "post-merge", "post-rewrite"]
        assert hook["always_run"] is True and hook["pass_filenames"] is False
        assert hook["verbose"] is True  # pre-commit shows a passing hook's line
    repo = make_repo(tmp_path, sqlite_db)
    head = repo.main.git("rev-parse", "HEAD").stdout.strip()
    entry = manifest[0]["entry"].split()
    assert entry[0] == "python"
    environ = {"PRE_COMMIT_FROM_REF": head, "PRE_COMMIT_TO_REF": head,
               "PRE_COMMIT_CHECKOUT_TYPE": "1"}
    result = run([sys.executable, *entry[1:]], cwd=repo.root, check=True, env=environ)
    assert result.stdout == f"{OURS} no migration changed; nothing to check\n"
    file_checkout = run([sys.executable, *entry[1:]], cwd=repo.root, check=True,
                        env={**environ, "PRE_COMMIT_CHECKOUT_TYPE": "0"})
    assert file_checkout.stdout == ""
    assert os.environ.get("PRE_COMMIT_CHECKOUT_TYPE") is None  # nothing leaked into the tests


# --- the real pre-commit framework -----------------------------------------------------------

#: pip's words when it reached no package index (offline, index down): not this project's bug.
_INDEX_UNREACHABLE = ("(from versions: none)", "No matching distribution found")
ONLY_IN_A = "a00000000001"
LACKS_ONLY_IN_A = (f"{OURS} the database holds 1 revision(s) this worktree lacks "
                   f"({ONLY_IN_A}): run `alembic-autocopy upgrade`")
KNOWS_ONLY_IN_A = (f"{OURS} OK, this worktree knows every revision the database applied "
                   f"({ONLY_IN_A})")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this must work)", pytrace=False)
    pytest.skip(f"{reason} (set CI=1 to make this a failure)")


def _require_pre_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("pre_commit") is None:
        _unavailable("pre-commit is not installed (the test extra has it)")
    # its clones and environments, otherwise in ~/.cache/pre-commit
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))


def _hooks_repository(tmp_path: Path, *, with_package: bool) -> tuple[Path, str]:
    """A git repository of this checkout's files as they are now (committed or not): the
    manifest, and with ``with_package`` what `pip install .` needs. Returns its path (the
    ``repo:`` URL) and its commit (the ``rev:``)."""
    hooks_repo = tmp_path / "hooks-repo"
    hooks_repo.mkdir()
    tracked = run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True).stdout.split("\0")
    package = [name for name in tracked
               if name.startswith("src/") or name in ("pyproject.toml", "README.md")]
    wanted = [".pre-commit-hooks.yaml", *(package if with_package else [])]
    for name in wanted:
        if not (REPO_ROOT / name).is_file():
            continue  # deleted in the working tree, not yet committed
        (hooks_repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, hooks_repo / name)
    run(["git", "init", "--quiet"], cwd=hooks_repo, check=True)
    run(["git", "add", "-A"], cwd=hooks_repo, check=True)
    run(["git", "commit", "--quiet", "-m", "this checkout"], cwd=hooks_repo, check=True)
    head = run(["git", "rev-parse", "HEAD"], cwd=hooks_repo, check=True).stdout.strip()
    return hooks_repo, head


def _project_using_pre_commit(tmp_path: Path, db: Database, hook_id: str,
                              *, with_package: bool = False) -> tuple[Repo, Worktree, Worktree]:
    """The project commits a .pre-commit-config.yaml (the one docs/workflow.md shows) naming
    ``hook_id``; worktree a applied a migration the others lack. Returns (repo, a, b)."""
    hooks_repo, hooks_rev = _hooks_repository(tmp_path, with_package=with_package)
    repo = make_repo(tmp_path, db)
    (repo.root / ".pre-commit-config.yaml").write_text(
        "default_install_hook_types: [pre-commit, post-checkout, post-merge, post-rewrite]\n"
        "repos:\n"
        f"  - repo: {hooks_repo}\n"
        f"    rev: {hooks_rev}\n"
        "    hooks:\n"
        f"      - id: {hook_id}\n", encoding="utf-8")
    # committed: pre-commit refuses to run with an unstaged config, and the checkouts below
    # must find it
    repo.main.commit("pre-commit configuration")
    a = repo.add_worktree("a")
    b = repo.add_worktree("b")
    a.write_migration(ONLY_IN_A, down=BASE_REV, message="only in a")
    a.commit("a: one migration")
    a.alembic("upgrade", "head", check=True)
    return repo, a, b


def test_the_real_pre_commit_framework_runs_the_system_hook(sqlite_db: Database,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """`pre-commit install` with the documented config; real checkout, merge and rebase."""
    _require_pre_commit(tmp_path, monkeypatch)
    # `language: system` runs `python` from PATH, i.e. the project's activated environment:
    # here the interpreter running the tests (PYTHONPATH already points at this src/).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_hook(bin_dir / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    repo, a, b = _project_using_pre_commit(tmp_path, sqlite_db, "alembic-autocopy-system")

    run([sys.executable, "-m", "pre_commit", "install"], cwd=repo.root, check=True)

    hooks_dir = repo.root / ".git" / "hooks"  # the common folder: every worktree runs them
    for name in ("pre-commit", "post-checkout", "post-merge", "post-rewrite"):
        assert "pre-commit" in (hooks_dir / name).read_text("utf-8")

    # checkout in worktree a (post-checkout): the branch lacks the migration the database holds
    switched = a.git("checkout", "--quiet", "-b", "side", "main")  # check=True: git succeeds
    assert "alembic-autocopy check (project environment)....." in switched.stderr
    assert _our_lines(switched.stderr) == [LACKS_ONLY_IN_A]  # shown: the manifest's verbose

    # merge in worktree b (post-merge): brings the migration
    merged = b.git("merge", "--no-edit", "a")
    assert _our_lines(merged.stdout + merged.stderr) == [KNOWS_ONLY_IN_A]

    # rebase in the main worktree (post-rewrite): its own commit, made through pre-commit's
    # pre-commit hook (nothing to run there), replayed onto a
    (repo.main.path / "NOTES").write_text("main\n", encoding="utf-8")
    repo.main.commit("main: notes")
    rebased = repo.main.git("rebase", "a")
    assert _our_lines(rebased.stdout + rebased.stderr) == [KNOWS_ONLY_IN_A]

    # a checkout that changes no migration
    quiet = b.git("checkout", "--quiet", "-b", "elsewhere")
    assert _our_lines(quiet.stderr) == [f"{OURS} no migration changed; nothing to check"]


@pytest.mark.slow
def test_the_real_pre_commit_framework_installs_and_runs_the_python_hook(
        sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`language: python`: pre-commit builds a virtualenv and pip-installs this checkout from
    the package index (about 10 s), then the hook runs with that environment alone."""
    _require_pre_commit(tmp_path, monkeypatch)
    repo, a, _ = _project_using_pre_commit(tmp_path, sqlite_db, "alembic-autocopy",
                                           with_package=True)
    monkeypatch.delenv("PYTHONPATH")  # the hook must import the copy pip installed
    run([sys.executable, "-m", "pre_commit", "install"], cwd=repo.root, check=True)

    built = run([sys.executable, "-m", "pre_commit", "install-hooks"], cwd=repo.root,
                check=False, timeout=600)

    log = built.stdout + built.stderr
    unreachable = [line.strip() for line in log.splitlines()
                   if any(words in line for words in _INDEX_UNREACHABLE)]
    if built.returncode != 0 and unreachable:
        _unavailable(f"pre-commit's pip reached no package index: {unreachable[-1]}")
    assert built.returncode == 0, log
    switched = a.git("checkout", "--quiet", "-b", "side", "main")  # check=True: git succeeds
    assert "alembic-autocopy check....." in switched.stderr
    assert _our_lines(switched.stderr) == [LACKS_ONLY_IN_A]


# --- the script answers "no migration changed" itself, without starting Python ----------------

#: A version folder name that breaks any unquoted or badly quoted shell word.
HOSTILE_FOLDER = "mig ra'tions \"$HOME\" `x` *"


def _recording_python(tmp_path: Path) -> tuple[Path, Path]:
    """An interpreter that writes a line to a log each time it starts, then runs Python."""
    log = tmp_path / "python-starts.log"
    wrapper = tmp_path / "python-bin" / "python-recording"
    wrapper.parent.mkdir()
    _write_hook(wrapper, f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n'
                         f'exec {shlex.quote(sys.executable)} "$@"\n')
    return wrapper, log


def _hooks_run_with(hooks_dir: Path, python: str, instead_of: str = sys.executable) -> None:
    """Point the installed hooks at another interpreter (as if another one installed them)."""
    for name in HOOK_TYPES:
        path = hooks_dir / name
        text = path.read_text("utf-8")
        assert shlex.quote(instead_of) in text
        path.write_text(text.replace(shlex.quote(instead_of), shlex.quote(python)),
                        encoding="utf-8")


def _starts(log: Path) -> list[str]:
    """What Python was started for since the last call (and forget it)."""
    if not log.exists():
        return []
    lines = log.read_text("utf-8").splitlines()
    log.unlink()
    return lines


def _hostile_project(tmp_path: Path, db: Database) -> tuple[Repo, Path]:
    """The test project with its script folder renamed to HOSTILE_FOLDER; returns the repo
    and the new versions folder."""
    repo = make_repo(tmp_path, db)
    main = repo.main
    main.git("mv", "migrations", HOSTILE_FOLDER)
    ini = main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8").replace(
        "script_location = %(here)s/migrations",
        f"script_location = %(here)s/{HOSTILE_FOLDER}"), encoding="utf-8")
    main.commit("a folder name only a careful shell script survives")
    return repo, main.path / HOSTILE_FOLDER / "versions"


def _migration(versions: Path, rev: str, down: str) -> None:
    (versions / f"{rev}_step.py").write_text(
        render_migration(rev=rev, down=down, message=f"step {rev}", branch_labels=None,
                         depends_on=None, annotated=False), encoding="utf-8")


def test_a_checkout_that_changes_no_migration_does_not_start_python(
        sqlite_db: Database, tmp_path: Path) -> None:
    repo, versions = _hostile_project(tmp_path, sqlite_db)
    main = repo.main
    main.alembic("upgrade", "head", check=True)
    installed = json.loads(main.autocopy("install-hooks", "--json", check=True).stdout)
    assert installed["without_python"] is True
    hooks_dir = repo.root / ".git" / "hooks"
    python, log = _recording_python(tmp_path)
    _hooks_run_with(hooks_dir, str(python))
    (main.path / "NOTES").write_text("notes\n", encoding="utf-8")
    main.commit("notes")
    main.git("branch", "notes")
    main.git("reset", "--quiet", "--hard", "HEAD~1")
    quiet = [f"{OURS} no migration changed; nothing to check"]

    # post-checkout (a branch switch), post-merge, post-rewrite (amend, then rebase)
    switched = main.git("checkout", "--quiet", "-b", "side")
    assert _our_lines(switched.stderr) == quiet
    merged = main.git("merge", "--no-edit", "notes")
    assert _our_lines(merged.stdout + merged.stderr) == quiet
    amended = main.git("commit", "--amend", "--quiet", "-m", "notes, reworded")
    assert _our_lines(amended.stdout + amended.stderr) == quiet
    (main.path / "MORE").write_text("more\n", encoding="utf-8")
    main.commit("more notes")
    rebased = main.git("rebase", "notes")
    assert _our_lines(rebased.stdout + rebased.stderr) == quiet  # post-checkout said nothing
    file_checkout = main.git("checkout", "notes", "--", "NOTES")
    assert _our_lines(file_checkout.stdout + file_checkout.stderr) == []
    assert _starts(log) == []  # Python never started

    # a migration changed: the full check, by Python
    main.git("checkout", "--quiet", "-b", "newer")
    _migration(versions, "b00000000001", BASE_REV)
    main.commit("one more migration")
    main.git("checkout", "--quiet", "side")
    assert _starts(log)
    back = main.git("checkout", "--quiet", "newer")
    assert _our_lines(back.stderr) == [
        f"{OURS} OK, this worktree knows every revision the database applied ({BASE_REV})"]
    assert [line.split()[2] for line in _starts(log)] == ["post-checkout"]

    # python gone: the quiet answer still comes, exit 0; a migration change says what to do
    gone = tmp_path / "no" / "python"
    _hooks_run_with(hooks_dir, str(gone), instead_of=str(python))
    (main.path / "NOTES").write_text("newer notes\n", encoding="utf-8")
    main.commit("newer: notes")
    assert _our_lines(main.git("checkout", "--quiet", "HEAD~1").stderr) == quiet
    assert _our_lines(main.git("checkout", "--quiet", "side").stderr) == [
        f"{OURS} hook skipped: {gone} is gone; run `alembic-autocopy install-hooks` again"]


def test_a_configuration_change_still_starts_python(sqlite_db: Database,
                                                     tmp_path: Path) -> None:
    """The configuration decides where migrations are: changed between the two commits, or
    since install-hooks read it, the script cannot answer for Python."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.autocopy("install-hooks", check=True)
    python, log = _recording_python(tmp_path)
    _hooks_run_with(repo.root / ".git" / "hooks", str(python))
    main.git("checkout", "--quiet", "-b", "configured")
    ini = main.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + "\n# a comment: the file changed\n", "utf-8")
    main.commit("configuration changed")

    across = main.git("checkout", "--quiet", "main")  # differs in alembic.ini only

    assert _our_lines(across.stderr) == [f"{OURS} no migration changed; nothing to check"]
    assert [line.split()[2] for line in _starts(log)] == ["post-checkout"]
    # both commits now hold the new configuration, unlike the one install-hooks read
    main.git("checkout", "--quiet", "configured")
    _starts(log)
    main.git("checkout", "--quiet", "-b", "configured-2")
    assert [line.split()[2] for line in _starts(log)] == ["post-checkout"]
    # env.py changed: Python too
    env_py = main.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text("utf-8") + "\n# changed\n", "utf-8")
    main.commit("env.py changed")
    main.autocopy("install-hooks", check=True)  # reads the configuration again
    _hooks_run_with(repo.root / ".git" / "hooks", str(python))
    main.git("checkout", "--quiet", "configured")
    assert [line.split()[2] for line in _starts(log)] == ["post-checkout"]
    main.git("checkout", "--quiet", "-b", "configured-3")
    assert _starts(log) == []  # the same configuration as install-hooks read: no Python


def test_what_the_shell_cannot_express_is_left_to_python(sqlite_db: Database,
                                                          tmp_path: Path) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    root = repo.main.path
    ini = root / "alembic.ini"
    text = ini.read_text("utf-8")
    assert hooks.fast_path(root, load_project(cwd=root)) is not None
    assert hooks.fast_path(root, load_project(cwd=root),
                           environ={"ALEMBIC_CONFIG": "alembic.ini"}) is None
    # a folder named by its absolute path, with a newline in its name, or outside the worktree
    (root / "mig\nrations").mkdir()
    (root.parent / "elsewhere").mkdir()  # Alembic (and the tool) refuse a missing one
    for folder in (f"{root}/migrations", "%(here)s/mig\n  rations", "%(here)s/../elsewhere"):
        ini.write_text(text.replace("script_location = %(here)s/migrations",
                                    f"script_location = {folder}"), encoding="utf-8")
        assert hooks.fast_path(root, load_project(cwd=root)) is None, folder
    ini.write_text(text, encoding="utf-8")
    installed = json.loads(repo.main.autocopy(
        "install-hooks", "--json", check=True, env={"ALEMBIC_CONFIG": "alembic.ini"}).stdout)
    assert installed["without_python"] is False
    switched = repo.main.git("checkout", "--quiet", "-b", "elsewhere")
    assert _our_lines(switched.stderr) == [f"{OURS} no migration changed; nothing to check"]
