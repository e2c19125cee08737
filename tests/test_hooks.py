"""Git hooks on a real repository with linked worktrees: they fire, chain, never block git."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from support import BASE_REV, Database, make_repo, run

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
    assert line.endswith("unable to open database file")
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
