"""What a repair costs in Alembic revision graphs and compilations (issue 15): counted in a
real repair through the Python API, never timed."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

from support import BASE_REV, Database, Worktree, make_repo, run

# Counts the revision graphs Alembic really builds (``RevisionMap._revision_map``, the
# memoized walk over every revision; constructing a RevisionMap builds nothing), each by
# the module that constructed the map: ``alembic_autocopy.core.revisions`` (our adapter, the
# only module of ours that makes one) or ``alembic.script.base`` (Alembic's own
# ``ScriptDirectory``, which the one upgrade of a repair needs, as plain `alembic upgrade`
# does). It also counts the migration files Python compiled from source during the run.
COUNTING = """
import importlib._bootstrap_external as external
import json, os, sys
from alembic.script import revision as alembic_revision
from alembic import util

built = []
original_init = alembic_revision.RevisionMap.__init__
original_build = alembic_revision.RevisionMap.__dict__["_revision_map"].fget

def counting_init(self, generator):
    original_init(self, generator)
    self._made_by = sys._getframe(1).f_globals.get("__name__")

def _revision_map(self):
    built.append(self._made_by)
    return original_build(self)

alembic_revision.RevisionMap.__init__ = counting_init
alembic_revision.RevisionMap._revision_map = util.memoized_property(_revision_map)

compiled = []
original_source_to_code = external.SourceFileLoader.source_to_code

def source_to_code(self, data, path, *, _optimize=-1):
    compiled.append(os.path.basename(path))
    return original_source_to_code(self, data, path, _optimize=_optimize)

external.SourceFileLoader.source_to_code = source_to_code

import alembic_autocopy
report = alembic_autocopy.ensure_database_current("alembic.ini")
print(json.dumps({"brought_in": [item.revision for item in report.brought_in],
                  "built": built, "compiled": compiled}))
"""


def _repair(worktree: Worktree) -> dict[str, Any]:
    path = worktree.path.parent / "count_maps.py"
    path.write_text(textwrap.dedent(COUNTING), encoding="utf-8")
    result = run([sys.executable, str(path)], cwd=worktree.path, check=True,
                 env={"PYTHONDONTWRITEBYTECODE": None})
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


def _three_applied_elsewhere(sqlite_db: Database, tmp_path: Path) -> tuple[list[str], Worktree]:
    """Worktree ``a`` committed and applied three migrations; worktree ``b`` lacks them."""
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    ids = a.chain(3, BASE_REV, "a")
    a.commit("three")
    a.alembic("upgrade", "head", check=True)
    return ids, repo.add_worktree("b")


def test_a_repair_builds_one_revision_graph_of_its_own_and_compiles_each_copy_once(
        sqlite_db: Database, tmp_path: Path) -> None:
    """A repair that brings in 3 migrations (and a second head) validates the final graph
    with ONE RevisionMap of ours (its heads then come from the same map); Alembic's own
    ``ScriptDirectory`` builds the map its upgrade walks (counted apart: plain
    ``alembic upgrade`` builds it too). The copies are compiled once, before placing, and
    their bytecode written: Alembic's import of them compiles none again."""
    ids, b = _three_applied_elsewhere(sqlite_db, tmp_path)
    b.write_migration("b00000000001", down=BASE_REV, message="own")
    b.commit("own migration")

    before = {path.name for path in b.versions.glob("*.py")}
    document = _repair(b)
    copies = {path.name for path in b.versions.glob("*.py")} - before

    assert document["brought_in"] == ids and len(copies) == 3
    ours = [made_by for made_by in document["built"] if made_by.startswith("alembic_autocopy")]
    alembic_own = [made_by for made_by in document["built"] if made_by.startswith("alembic.")]
    assert len(ours) <= 1, document["built"]
    assert len(ours) + len(alembic_own) == len(document["built"]), document["built"]
    assert copies.isdisjoint(document["compiled"]), document["compiled"]


def test_nothing_to_do_builds_no_revision_graph_of_its_own(sqlite_db: Database,
                                                           tmp_path: Path) -> None:
    """The database at this worktree's heads (a plain graph): "already current" is decided
    from the headers already parsed, without a RevisionMap of ours."""
    repo = make_repo(tmp_path, sqlite_db)
    a = repo.add_worktree("a")
    a.chain(3, BASE_REV, "a")
    a.commit("three")
    a.alembic("upgrade", "head", check=True)

    document = _repair(a)

    assert document["brought_in"] == []
    assert [m for m in document["built"] if m.startswith("alembic_autocopy")] == []



def test_a_repair_asks_git_each_question_once(sqlite_db: Database, tmp_path: Path) -> None:
    """Every git process of a repair is a different question: the worktree root, the
    manifest's place in the git folder and the common git folder are asked once and
    remembered (each git process costs a repair 1-3 ms; it asked three of them twice)."""
    ids, b = _three_applied_elsewhere(sqlite_db, tmp_path)
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    real_git = shutil.which("git")
    assert real_git is not None
    # One line per call: its folder and its arguments, then the real git.
    wrapper.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$(pwd -P)" "$*" >> "{log}"\n'
                       f'exec "{real_git}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    path = f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}"

    result = b.autocopy("upgrade", env={"PATH": path})

    assert result.returncode == 0, result.stderr
    assert {p.name.split("_")[0] for p in b.versions.glob("*.py")} >= set(ids)
    calls = log.read_text(encoding="utf-8").splitlines()
    repeated = sorted({call for call in calls if calls.count(call) > 1})
    assert calls and not repeated, repeated
