"""Real projects' layouts, read as Alembic reads them (issue 11).

Each layout below was met in an open-source project (docs/compatibility.md); the files here
are our own, written to reproduce the pattern. For each: the database at Alembic's own heads,
every file present: `check` exits 0, `find` finds this worktree's file, and the heads the tool
computes equal ``ScriptDirectory.get_heads()``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support import BASE_REV, Database, Repo, Worktree, make_repo, run

STAR = "5a5a00000001"
LABELLED = "1abe00000001"
DEPENDENT = "de9e00000001"
CHILD = "c41d00000001"


def alembic_heads(worktree: Worktree) -> list[str]:
    """``ScriptDirectory(...).get_heads()`` for this worktree's configuration, as plain
    Alembic computes it (its own process, the project's prepend_sys_path)."""
    code = ("import json; from alembic.config import Config; "
            "from alembic.script import ScriptDirectory; "
            "print(json.dumps(sorted(ScriptDirectory.from_config(Config('alembic.ini'))"
            ".get_heads())))")
    result = run([sys.executable, "-c", code], cwd=worktree.path, check=True)
    heads: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return heads


def tool_heads(worktree: Worktree, *args: str) -> list[str]:
    result = worktree.autocopy("--json", "status", *args, check=False)
    document = json.loads(result.stdout)
    return sorted(document["worktree"]["heads"])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def migration(rev: str, down: object, *, before: str = "", header: str = "") -> str:
    """A migration whose header the test spells out (``header`` after the two ids)."""
    return (f'"""{rev} layout"""\n{before}from alembic import op\nimport sqlalchemy as sa\n\n'
            f"revision = {rev!r}\ndown_revision = {down!r}\n{header}\n\n"
            f"def upgrade():\n    op.create_table('t_{rev}', sa.Column('id', sa.Integer(), "
            "primary_key=True))\n\n\ndef downgrade():\n"
            f"    op.drop_table('t_{rev}')\n")


def _set_ini(worktree: Worktree, old: str, new: str) -> None:
    ini = worktree.path / "alembic.ini"
    text = ini.read_text(encoding="utf-8")
    assert old in text
    ini.write_text(text.replace(old, new, 1), encoding="utf-8")


# --- the layouts ----------------------------------------------------------------------------

def star_import(w: Worktree) -> str:
    write(w.versions / f"{STAR}_star.py",
          migration(STAR, BASE_REV, before="from sqlalchemy import *  # noqa\n"))
    return STAR


def labels_from_attribute(w: Worktree) -> str:
    write(w.path / "branchnames.py", f'EXPAND_BRANCH = "expand"\nBASE = "{BASE_REV}"\n')
    write(w.versions / f"{LABELLED}_expand.py", migration(
        LABELLED, None, before="import branchnames\n",
        header="branch_labels = (branchnames.EXPAND_BRANCH,)\ndepends_on = branchnames.BASE"))
    return LABELLED


def names_imported_from_module(w: Worktree) -> str:
    write(w.path / "branchnames.py", f'CONTRACT = "contract"\nBASE = "{BASE_REV}"\n')
    write(w.versions / f"{LABELLED}_contract.py", migration(
        LABELLED, None, before="from branchnames import BASE, CONTRACT\n",
        header="branch_labels = (CONTRACT,)\ndepends_on = BASE"))
    return LABELLED


def annotated(w: Worktree) -> str:
    w.write_migration(CHILD, down=BASE_REV, annotated=True, branch_labels="feature")
    return CHILD


def tuples_and_lists(w: Worktree) -> str:
    write(w.versions / f"{STAR}_side.py",
          migration(STAR, [BASE_REV], header="branch_labels = ['side']"))
    write(w.versions / f"{LABELLED}_other.py",
          migration(LABELLED, (BASE_REV,), header="branch_labels = ('other', 'more')"))
    write(w.versions / f"{CHILD}_merge.py",
          migration(CHILD, [STAR, LABELLED], header="depends_on = []"))
    return CHILD


def depends_on_label(w: Worktree) -> str:
    write(w.versions / f"{LABELLED}_data.py",
          migration(LABELLED, None, header="branch_labels = ('data',)"))
    write(w.versions / f"{DEPENDENT}_needs_data.py",
          migration(DEPENDENT, BASE_REV, header="depends_on = 'data'"))
    return DEPENDENT


def multiple_locations(w: Worktree) -> str:
    _set_ini(w, "script_location = %(here)s/migrations\n",
             "script_location = %(here)s/migrations\nversion_locations = "
             "%(here)s/migrations/versions:%(here)s/plugins/versions\n")
    write(w.path / "plugins" / "versions" / f"{LABELLED}_plugin.py",
          migration(LABELLED, None, header="branch_labels = ('plugin',)"))
    write(w.path / "plugins" / "versions" / f"{DEPENDENT}_plugin_two.py",
          migration(DEPENDENT, LABELLED))
    return DEPENDENT


def recursive_locations(w: Worktree) -> str:
    _set_ini(w, "script_location = %(here)s/migrations\n",
             "script_location = %(here)s/migrations\nrecursive_version_locations = true\n")
    write(w.versions / "2026" / "11" / f"{CHILD}_nested.py", migration(CHILD, BASE_REV))
    return CHILD


def package_script_location(w: Worktree) -> str:
    package = w.path / "myapp"
    write(package / "__init__.py", "")
    (w.path / "migrations").rename(package / "db")
    _set_ini(w, "script_location = %(here)s/migrations\n", "script_location = myapp:db\n")
    write(package / "db" / "versions" / f"{CHILD}_packaged.py", migration(CHILD, BASE_REV))
    return CHILD


LAYOUTS: dict[str, Callable[[Worktree], str]] = {
    "star-import": star_import,
    "labels-from-attribute": labels_from_attribute,
    "names-imported-from-module": names_imported_from_module,
    "annotated": annotated,
    "tuples-and-lists": tuples_and_lists,
    "depends-on-branch-label": depends_on_label,
    "multiple-version-locations": multiple_locations,
    "recursive-version-locations": recursive_locations,
    "package-script-location": package_script_location,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_read_as_alembic_reads_it(tmp_path: Path, sqlite_db: Database,
                                         layout: str) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    own = LAYOUTS[layout](main)
    main.commit(f"layout: {layout}")
    repo.add_worktree("sibling")  # another source the plan could wrongly pick from
    main.alembic("upgrade", "heads", check=True)
    expected = alembic_heads(main)
    assert expected and repo.applied_versions() <= set(expected)

    check = main.autocopy("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "skipped" not in check.stderr
    find = main.autocopy("find", own, check=True)
    assert f"this worktree (main): {main.path}" in find.stdout or \
        f"this worktree (master): {main.path}" in find.stdout, find.stdout
    assert tool_heads(main) == expected
    assert tool_heads(main, "--no-db") == expected


def test_unloadable_here_still_counts_as_present(tmp_path: Path, sqlite_db: Database) -> None:
    """A star import of a module the tool's Python lacks: Alembic's loading fails here too,
    yet the literal ids still say the file is this worktree's, never missing."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    write(main.versions / f"{STAR}_star.py",
          migration(STAR, BASE_REV, before="from sqlalchemy import *\n"))
    main.commit("star import")
    main.alembic("upgrade", "heads", check=True)
    (main.versions / f"{STAR}_star.py").write_text(
        migration(STAR, BASE_REV, before="from not_installed_anywhere import *\n"),
        encoding="utf-8")
    check = main.autocopy("check")
    assert check.returncode == 0, check.stdout + check.stderr
    find = main.autocopy("find", STAR, check=True)
    assert str(main.versions / f"{STAR}_star.py") in find.stdout


# --- never a second file for one id --------------------------------------------------------

def _tagged_other_version(repo: Repo) -> tuple[Worktree, Path]:
    """main holds STAR (a star import); tag `old` holds another content of STAR; a sibling
    applied CHILD on top of it."""
    main = repo.main
    path = write(main.versions / f"{STAR}_star.py",
                 migration(STAR, BASE_REV, before="# first version\n"))
    main.commit("star, first version")
    main.git("tag", "old")
    path.write_text(migration(STAR, BASE_REV, before="from sqlalchemy import *  # noqa\n"),
                    encoding="utf-8")
    main.commit("star, second version")
    sibling = repo.add_worktree("sibling")
    write(sibling.versions / f"{CHILD}_child.py", migration(CHILD, STAR))
    sibling.commit("child")
    sibling.alembic("upgrade", "head", check=True)
    return main, path


def test_prefer_naming_another_version_of_an_id_held_here_is_refused(
        tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main, _path = _tagged_other_version(repo)
    before = sorted(p.name for p in main.versions.glob("*.py"))
    result = main.autocopy("upgrade", "--prefer", "old")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refused" in result.stderr and STAR in result.stderr
    assert sorted(p.name for p in main.versions.glob("*.py")) == before
    assert repo.applied_versions() == {CHILD}
    # Without --prefer the sibling's child comes in, and only it.
    main.autocopy("upgrade", check=True)
    assert sorted(p.name for p in main.versions.glob("*.py")) == sorted(
        [*before, f"{CHILD}_child.py"])
    assert main.autocopy("check").returncode == 0
    # The same id committed here by hand later (a cherry-pick under another name): both
    # files are named, the tool's copy as such, and `clean` is the way out.
    write(main.versions / f"{CHILD}_cherry_picked.py", migration(CHILD, STAR))
    check = main.autocopy("check")
    assert check.returncode == 1
    assert "a copy alembic-autocopy placed from worktree" in check.stderr, check.stderr
    assert f"{CHILD}_cherry_picked.py" in check.stderr and "alembic-autocopy clean" in check.stderr


def test_two_files_for_one_id_fail_check_naming_both(tmp_path: Path,
                                                      sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.alembic("upgrade", "head", check=True)
    first = main.versions / f"{BASE_REV}_base.py"
    second = write(main.versions / "copy_of_base.py", first.read_text(encoding="utf-8")
                   .replace("base", "base again"))
    result = main.autocopy("check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(first) in result.stderr and str(second) in result.stderr
    assert "hint:" in result.stderr
    upgrade = main.autocopy("upgrade")
    assert upgrade.returncode == 1 and str(second) in upgrade.stderr


# --- version folders chosen by env.py --------------------------------------------------------

PER_DIALECT = '''
import os as _os
from sqlalchemy.engine import make_url as _make_url

# One folder of migrations per dialect, chosen at run time (as some projects do).
_DIALECT = _make_url(config.get_main_option("sqlalchemy.url")).get_backend_name()
context.script.version_locations = [
    _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "versions", _DIALECT)]
'''


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_env_py_choosing_folders_per_dialect(tmp_path: Path, backend: str,
                                             request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue(f"{backend}_db")
    repo = make_repo(tmp_path, db)
    main = repo.main
    env_py = main.path / "migrations" / "env.py"
    anchor = "config = context.config\n"
    env_py.write_text(env_py.read_text(encoding="utf-8").replace(anchor, anchor + PER_DIALECT),
                      encoding="utf-8")
    dialect = "postgresql" if backend == "postgresql" else "sqlite"
    other = "sqlite" if dialect == "postgresql" else "postgresql"
    base = next(main.versions.glob(f"{BASE_REV}_*.py"))
    (main.versions / dialect).mkdir()
    base.rename(main.versions / dialect / base.name)
    main.write_migration("0e4e00000001", down=None, filename=f"{other}/0e4e00000001_other.py")
    main.commit("one folder per dialect")
    main.alembic("upgrade", "head", check=True)

    sibling = repo.add_worktree("sibling")
    ids = ["51b000000001", "51b000000002"]
    sibling.write_migration(ids[0], down=BASE_REV, filename=f"{dialect}/{ids[0]}_one.py")
    sibling.write_migration(ids[1], down=ids[0], filename=f"{dialect}/{ids[1]}_two.py")
    sibling.alembic("upgrade", "head", check=True)
    assert repo.applied_versions() == {ids[1]}
    assert main.alembic("current").returncode != 0  # plain Alembic is stuck here

    check = main.autocopy("check")
    assert check.returncode == 1 and "found nowhere" not in check.stderr, check.stderr
    assert ids[0] in check.stdout and ids[1] in check.stdout
    main.autocopy("upgrade", check=True)
    assert (main.versions / dialect / f"{ids[1]}_two.py").is_file()
    assert main.alembic("current", check=True).returncode == 0
    assert main.autocopy("check").returncode == 0
    status = json.loads(main.autocopy("--json", "status").stdout)
    assert [head["revision"] for head in status["database"]["heads"]] == [ids[1]]
    assert status["worktree"]["heads"] == [ids[1]]
    # The folders env.py chose are remembered for the commands that do not run it.
    assert tool_heads(main, "--no-db") == [ids[1]]
    assert str(main.versions / dialect) in main.autocopy("find", ids[0], check=True).stdout


def test_tool_setting_overrides_version_folders(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    base = next(main.versions.glob(f"{BASE_REV}_*.py"))
    (main.versions / "sqlite").mkdir()
    base.rename(main.versions / "sqlite" / base.name)
    main.commit("sub-folder that only env.py would name")
    pyproject = main.path / "pyproject.toml"
    pyproject.write_text('[tool.alembic-autocopy]\nversion_locations = '
                         '["migrations/versions/sqlite"]\n', encoding="utf-8")
    sqlite_db.execute(  # the database as Alembic would have left it
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    sqlite_db.execute(f"INSERT INTO alembic_version VALUES ('{BASE_REV}')")
    check = main.autocopy("check")
    assert check.returncode == 0, check.stderr
    pyproject.unlink()
    check = main.autocopy("check")
    assert "hold no migration" in check.stderr


def test_package_script_location_from_another_worktree_is_named(
        tmp_path: Path, sqlite_db: Database) -> None:
    """``script_location = myapp:db`` with myapp importable from the main checkout only
    (an editable install there): a sibling reads the main checkout's migrations."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    package = main.path / "src" / "myapp"
    write(package / "__init__.py", "")
    (main.path / "migrations").rename(package / "db")
    _set_ini(main, "script_location = %(here)s/migrations\n", "script_location = myapp:db\n")
    main.commit("packaged migrations")
    sibling = repo.add_worktree("sibling")
    env = {"PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(main.path / "src")])}
    main.autocopy("upgrade", check=True, env=env)
    for command in (["check"], ["status"]):
        result = sibling.autocopy(*command, env=env)
        assert str(package / "db") in result.stderr + result.stdout, result.stderr
        assert f"worktree {main.path}" in result.stderr + result.stdout
        assert "pip install -e ." in result.stderr + result.stdout
    # From the main checkout itself, nothing to say.
    assert "script_location" not in main.autocopy("check", env=env).stderr


# --- messages and output at scale ----------------------------------------------------------

def test_plan_from_a_local_file_whose_parent_is_missing_names_no_empty_id(
        tmp_path: Path, sqlite_db: Database) -> None:
    """The database holds nothing unknown; a file here needs a parent only a sibling has.
    (Every run of the tool in the tests is also checked for empty ids: support/process.py.)"""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.alembic("upgrade", "head", check=True)
    sibling = repo.add_worktree("sibling")
    sibling.write_migration("9a4e00000001", down=BASE_REV)
    main.write_migration("c41d00000002", down="9a4e00000001")
    check = main.autocopy("check")
    assert check.returncode == 1
    assert "This worktree's own migrations need 1 parent migration(s)" in check.stdout
    status = main.autocopy("status", "--no-db", check=True)
    assert "need 9a4e00000001, which this worktree lacks" in status.stdout, status.stdout
    upgrade = main.autocopy("upgrade", check=True)
    assert "need 1 parent migration(s)" in upgrade.stdout
    assert repo.applied_versions() == {"c41d00000002"}


def test_many_refs_and_unreadable_old_files_stay_readable(tmp_path: Path,
                                                          sqlite_db: Database) -> None:
    """3,000 refs holding 150 migrations: `list --no-db` stays small; 200 files no
    migration in an old branch give one warning line per kind (``-v`` lists them)."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    old = [write(main.versions / f"legacy_{number:03}.py", f"# before Alembic {number}\n")
           for number in range(200)]
    main.commit("pre-Alembic scripts")
    main.git("branch", "release-0.1")
    for path in old:
        path.unlink()
    main.chain(149, BASE_REV, "m")
    main.commit("150 migrations")
    head = main.git("rev-parse", "HEAD").stdout.strip()
    refs = "".join(f"create refs/heads/feature-{number:04} {head}\n" for number in range(1500))
    refs += "".join(f"create refs/tags/v{number:04} {head}\n" for number in range(1500))
    run(["git", "update-ref", "--stdin"], cwd=main.path, check=True, input=refs)

    listing = main.autocopy("list", "--no-db", check=True)
    assert len(listing.stdout.encode()) + len(listing.stderr.encode()) < 200_000
    assert "150 revision(s), 150 in this worktree" in listing.stdout
    assert "more place(s)" in listing.stdout
    warnings = [line for line in listing.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "and 199 more file(s)" in warnings[0], listing.stderr
    # -v names each skipped file (`find` reads the same sources, and prints less).
    verbose = main.autocopy("find", BASE_REV, "-v", check=True)
    assert sum(line.startswith("warning: skipped") for line in verbose.stderr.splitlines()
               ) == 200
    assert verbose.stdout.count("tag v") == 1500


def test_an_unreadable_file_here_naming_a_needed_id_blocks_the_copy(
        tmp_path: Path, sqlite_db: Database) -> None:
    """Neither the static reader nor Alembic's loading can tell this file's id, but its text
    names the revision a plan would bring in: no second file for that id is risked."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    sibling = repo.add_worktree("sibling")
    sibling.write_migration("9a4e00000001", down=BASE_REV)
    sibling.alembic("upgrade", "head", check=True)
    broken = write(main.versions / "9a4e00000001_mine.py",
                   '"""Revision ID: 9a4e00000001"""\nimport not_installed_anywhere\n'
                   "revision = not_installed_anywhere.REVISION\ndown_revision = None\n")
    for command in ("check", "upgrade"):
        result = main.autocopy(command)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{broken} here, which cannot be read" in result.stderr
    assert sorted(p.name for p in main.versions.glob("*.py")) == sorted(
        [broken.name, next(main.versions.glob(f"{BASE_REV}_*.py")).name])


def test_grouping_and_long_lists_are_pure_and_keep_every_item_with_verbose() -> None:
    from alembic_autocopy.cli.report import skipped_lines
    from alembic_autocopy.core.model import SkippedFile
    from alembic_autocopy.core.wording import id_list

    items = [SkippedFile(f"a{n}", f"line {n}: why") for n in range(200)]
    items.insert(1, SkippedFile("b", "other"))
    assert skipped_lines(items, verbose=False) == [
        "skipped a0: line 0: why (and 199 more file(s) skipped for the same reason; "
        "-v lists them)", "skipped b: other"]
    assert len(skipped_lines(items, verbose=True)) == 201
    assert id_list([f"r{n}" for n in range(106)]) == (
        "r0, r1, r2, r3, r4, r5, r6, r7 and 98 more")
    assert id_list(["", "x"]) == "x"
