"""Configuration is found where `alembic` finds it; tool settings where the README says."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alembic_autocopy.core.errors import ConfigError
from alembic_autocopy.effects.project import load_project
from support import BASE_REV, Database, make_repo

INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = os
sqlalchemy.url = sqlite://

[other]
script_location = %(here)s/elsewhere

[alembic-autocopy]
search = ~/Proj-*, ../siblings/*
lock_timeout = 5
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_alembic_ini_in_the_current_folder(tmp_path: Path) -> None:
    write(tmp_path / "alembic.ini", INI)
    (tmp_path / "migrations").mkdir()
    project = load_project(cwd=tmp_path, environ={})
    assert project.ini_path == tmp_path / "alembic.ini"
    assert project.version_locations == (tmp_path / "migrations" / "versions",)
    assert project.tool.search == ("~/Proj-*", "../siblings/*")
    assert project.tool.lock_timeout == 5.0


def test_section_chosen_with_name(tmp_path: Path) -> None:
    write(tmp_path / "alembic.ini", INI)
    (tmp_path / "elsewhere").mkdir()
    project = load_project(section="other", cwd=tmp_path, environ={})
    assert project.script_location == tmp_path / "elsewhere"


def test_alembic_config_environment_variable(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "db.ini", INI)
    (tmp_path / "conf" / "migrations").mkdir()
    project = load_project(cwd=tmp_path, environ={"ALEMBIC_CONFIG": "conf/db.ini"})
    assert project.ini_path == tmp_path / "conf" / "db.ini"
    assert project.script_location == tmp_path / "conf" / "migrations"


def test_explicit_config_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_project(["missing.ini"], cwd=tmp_path, environ={})


def test_pyproject_only(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", """\
[tool.alembic]
script_location = "%(here)s/db"
version_locations = ["%(here)s/db/versions", "%(here)s/db/more"]

[tool.alembic-autocopy]
search = ["~/Proj-*"]
trust_database = true
""")
    (tmp_path / "db").mkdir()
    project = load_project(cwd=tmp_path, environ={})
    assert project.ini_path is None
    assert project.version_locations == (tmp_path / "db" / "versions", tmp_path / "db" / "more")
    assert project.tool.search == ("~/Proj-*",)
    assert project.tool.trust_database is True


def test_version_locations_with_separator(tmp_path: Path) -> None:
    write(tmp_path / "alembic.ini", "[alembic]\nscript_location = m\npath_separator = ;\n"
          "version_locations = %(here)s/a;%(here)s/b\n")
    (tmp_path / "m").mkdir()
    project = load_project(cwd=tmp_path, environ={})
    assert project.version_locations == (tmp_path / "a", tmp_path / "b")


def test_a_missing_script_folder_is_refused_as_alembic_refuses_it(tmp_path: Path) -> None:
    """Alembic stops on "Path doesn't exist"; its version locations may be missing (Alembic
    skips them when reading and creates them when writing a revision)."""
    ini = write(tmp_path / "alembic.ini", INI.replace(
        "path_separator = os\n",
        f"path_separator = os\nversion_locations = %(here)s/v1{os.pathsep}%(here)s/v2\n"))
    with pytest.raises(ConfigError) as raised:
        load_project(cwd=tmp_path, environ={})
    assert raised.value.message == (
        f"the script folder does not exist: {tmp_path / 'migrations'} (script_location = "
        f"{tmp_path.as_posix()}/migrations in {ini})")
    assert raised.value.hint == f"fix script_location in {ini}, or create the folder with " \
                                "`alembic init`"
    # Only the tool's settings wanted: no folder needed.
    unchecked = load_project(cwd=tmp_path, environ={}, require_script_folder=False)
    assert unchecked.tool.lock_timeout == 5.0

    (tmp_path / "migrations").mkdir()
    project = load_project(cwd=tmp_path, environ={})
    assert project.version_locations == (tmp_path / "v1", tmp_path / "v2")  # neither exists


def test_a_relative_script_location_is_resolved_from_the_current_folder(tmp_path: Path) -> None:
    backend = tmp_path / "backend"
    write(backend / "alembic.ini", "[alembic]\nscript_location = app/alembic\n")
    (backend / "app" / "alembic").mkdir(parents=True)

    assert load_project(cwd=backend, environ={}).version_locations == (
        backend / "app" / "alembic" / "versions",)
    with pytest.raises(ConfigError) as raised:
        load_project(["../alembic.ini"], cwd=backend / "app", environ={})
    assert raised.value.message.startswith(
        f"the script folder does not exist: {backend / 'app' / 'app' / 'alembic'} ")
    assert f"run from {backend}, where it resolves to {backend / 'app' / 'alembic'}" in (
        raised.value.hint or "")
    with pytest.raises(ConfigError) as above:
        load_project(["backend/alembic.ini"], cwd=tmp_path, environ={})
    assert f"run from {backend}," in (above.value.hint or "")
    (backend / "app" / "alembic").rmdir()
    with pytest.raises(ConfigError) as nowhere:  # resolves from no folder
        load_project(cwd=backend, environ={})
    assert "run from the folder you run `alembic` from, or write `script_location = " \
           "%(here)s/app/alembic`" in (nowhere.value.hint or "")


def test_env_py_side_reads_the_config_from_where_alembic_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`alembic -c backend/alembic.ini` run from the root: the record table and the
    autogenerate filter read that file from the current folder, as Alembic does."""
    from alembic.config import Config

    from alembic_autocopy.sources.records import table_name_for
    from alembic_autocopy.workflow.ownership import project_of

    backend = tmp_path / "backend"
    ini = write(backend / "alembic.ini", "[alembic]\nscript_location = %(here)s/app/alembic\n"
                "\n[alembic-autocopy]\nrecord_table = my_records\n")
    (backend / "app" / "alembic").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)

    assert table_name_for(Config("backend/alembic.ini")) == "my_records"
    project = project_of(Config("backend/alembic.ini"))
    assert project is not None
    assert project.version_locations == (backend / "app" / "alembic" / "versions",)

    ini.write_text(ini.read_text().replace("%(here)s/app/alembic", "app/alembic"))
    with pytest.raises(ConfigError, match="the script folder does not exist"):
        project_of(Config("backend/alembic.ini"))  # said (logged), not silently no filter


@pytest.mark.parametrize(("files", "record_table"), [
    (("alembic.ini",), "ini_records"),
    (("pyproject.toml",), "toml_records"),
    (("alembic.ini", "pyproject.toml"), "toml_records"),  # pyproject.toml wins a key in both
])
def test_env_py_side_reads_the_files_that_exist_as_alembic_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: tuple[str, ...],
        record_table: str) -> None:
    """Alembic's command line names alembic.ini and pyproject.toml in its Config whichever
    exists, and reads an absent one as empty: so do the record table and the autogenerate
    filter (the settings of alembic.ini alone were dropped for the record table, and
    pyproject.toml alone was refused: "config file not found: alembic.ini")."""
    from alembic.config import Config

    from alembic_autocopy.effects.project import alembic_config_files
    from alembic_autocopy.sources.records import table_name_for
    from alembic_autocopy.workflow.ownership import project_of

    if "alembic.ini" in files:
        write(tmp_path / "alembic.ini", "[alembic]\nscript_location = %(here)s/db\n"
              "\n[alembic-autocopy]\nrecord_table = ini_records\n")
    if "pyproject.toml" in files:
        write(tmp_path / "pyproject.toml", '[tool.alembic]\nscript_location = "%(here)s/db"\n'
              '\n[tool.alembic-autocopy]\nrecord_table = "toml_records"\n')
    (tmp_path / "db").mkdir()
    monkeypatch.chdir(tmp_path)
    config = Config(file_="alembic.ini", toml_file="pyproject.toml")  # as `alembic` builds it

    assert alembic_config_files(config, tmp_path) == files
    assert table_name_for(config) == record_table
    project = project_of(config)
    assert project is not None and project.tool.record_table == record_table
    assert alembic_config_files(Config(), tmp_path) == ()  # built in code, without a file
    assert project_of(Config()) is None  # not the alembic.ini of the current folder


def test_env_py_side_says_when_it_cannot_read_the_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The recorder in env.py never stops a migration over the tool's settings, but a
    misspelt key no longer sends the records to the default table without a word."""
    from alembic.config import Config

    from alembic_autocopy.sources.records import DEFAULT_TABLE, settings_for, table_name_for

    write(tmp_path / "alembic.ini", "[alembic]\nscript_location = %(here)s/db\n"
          "\n[alembic-autocopy]\nrecord_tabel = mine\n")
    (tmp_path / "db").mkdir()
    monkeypatch.chdir(tmp_path)
    settings_for.cache_clear()

    with caplog.at_level("WARNING", logger="alembic.autocopy"):
        assert table_name_for(Config("alembic.ini")) == DEFAULT_TABLE
    assert "record_tabel" in caplog.text and "alembic.ini" in caplog.text


def test_no_configuration_at_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Alembic configuration found"):
        load_project(cwd=tmp_path, environ={})


def test_search_globs_expand_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "Proj-a").mkdir(parents=True)
    (tmp_path / "home" / "Proj-b").mkdir()
    (tmp_path / "home" / "Other").mkdir()
    write(tmp_path / "proj" / "alembic.ini", INI)
    (tmp_path / "proj" / "migrations").mkdir()
    project = load_project(cwd=tmp_path / "proj", environ={})
    assert project.search_folders() == [tmp_path / "home" / "Proj-a",
                                        tmp_path / "home" / "Proj-b"]


def test_x_arguments_reach_env_py(tmp_path: Path, sqlite_db: Database) -> None:
    """-x key=value is handed to env.py (context.get_x_argument), as with alembic."""
    repo = make_repo(tmp_path, sqlite_db)
    env_py = repo.main.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace(
        "def run_migrations_online() -> None:",
        "def run_migrations_online() -> None:\n"
        "    import pathlib\n"
        "    pathlib.Path('x-args.json').write_text(\n"
        "        __import__('json').dumps(context.get_x_argument(as_dictionary=True)))\n", 1))
    repo.main.alembic("upgrade", "head", check=True)
    result = repo.main.autocopy("check", "-x", "tenant=acme")
    assert result.returncode == 0, result.stderr
    assert json.loads((repo.main.path / "x-args.json").read_text()) == {"tenant": "acme"}
    assert BASE_REV in result.stdout


def test_folder_configured_in_the_ini_is_searched(tmp_path: Path, sqlite_db: Database) -> None:
    """A configured folder that is not a worktree (a copy of the project elsewhere)."""
    repo = make_repo(tmp_path, sqlite_db)
    main = repo.main
    main.alembic("upgrade", "head", check=True)
    elsewhere = tmp_path / "Proj-copy"
    (elsewhere / "migrations" / "versions").mkdir(parents=True)
    other = main.versions / "f00000000001_elsewhere.py"
    main.write_migration("f00000000001", down=BASE_REV, message="elsewhere")
    main.alembic("upgrade", "head", check=True)
    other.rename(elsewhere / "migrations" / "versions" / other.name)
    ini = main.path / "alembic.ini"
    ini.write_text(ini.read_text() + f"\n[alembic-autocopy]\nsearch = {tmp_path}/Proj-c*\n")

    result = main.autocopy("upgrade")

    assert result.returncode == 0, result.stderr
    assert f"folder {elsewhere}" in result.stdout
    assert (main.versions / other.name).exists()


def test_flask_migrate_layout_without_script_location(tmp_path: Path) -> None:
    """Flask-Migrate's migrations/alembic.ini has no script_location (set in code)."""
    write(tmp_path / "migrations" / "alembic.ini", "[alembic]\n\n[loggers]\nkeys = root\n")
    write(tmp_path / "migrations" / "env.py", "# env\n")
    project = load_project(["migrations/alembic.ini"], cwd=tmp_path, environ={})
    assert project.script_location == tmp_path / "migrations"
    assert project.version_locations == (tmp_path / "migrations" / "versions",)


def test_common_options_before_or_after_the_verb(tmp_path: Path, sqlite_db: Database) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    repo.main.alembic("upgrade", "head", check=True)
    before = repo.main.autocopy("--json", "check")
    after = repo.main.autocopy("check", "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout)["database_heads"] == [BASE_REV]
    assert json.loads(after.stdout)["database_heads"] == [BASE_REV]


PYPROJECT_ALEMBIC = '[tool.alembic]\nscript_location = "%(here)s/migrations"\n\n'


@pytest.mark.parametrize(("file", "text", "key", "said"), [
    ("pyproject.toml", '[tool.alembic-autocopy]\nbase_brnach = "develop"\n', "base_brnach",
     "did you mean `base_branch`?"),
    ("pyproject.toml", '[tool.alembic-autocopy]\nfetch = "treu"\n', "fetch", "true or false"),
    ("pyproject.toml", '[tool.alembic-autocopy]\nlock_timeout = "abc"\n', "lock_timeout",
     "a number of seconds"),
    ("alembic.ini", "[alembic-autocopy]\nbase_brnach = develop\n", "base_brnach",
     "did you mean `base_branch`?"),
    ("alembic.ini", "[alembic-autocopy]\nfetch = treu\n", "fetch", "true or false"),
    ("alembic.ini", "[alembic-autocopy]\nlock_timeout = abc\n", "lock_timeout",
     "a number of seconds"),
    ("alembic.ini", "[alembic-autocopy]\nmax_file_bytes = -3\n", "max_file_bytes",
     "a whole number of bytes"),
])
def test_a_bad_setting_is_exit_2_naming_the_key_and_the_file(
        tmp_path: Path, sqlite_db: Database, file: str, text: str, key: str, said: str) -> None:
    repo = make_repo(tmp_path, sqlite_db)
    config = repo.main.path / file
    before = config.read_text(encoding="utf-8") if config.exists() else ""
    config.write_text(before + "\n" + text, encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_project(cwd=repo.main.path, environ={})
    assert key in raised.value.message and str(config) in raised.value.message
    assert said in (raised.value.hint or "")

    for command in (["check"], ["upgrade", "--dry-run"], ["sync"]):
        result = repo.main.autocopy(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"'{key}'" in result.stderr and str(config) in result.stderr
        assert said in result.stderr


def test_good_settings_of_every_kind_are_read(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT_ALEMBIC + """\
[tool.alembic-autocopy]
fetch = true
fetch_timeout = 5
lock_timeout = 0.5
max_file_bytes = 2000
base_branch = "develop"
record = false
git_refs = "no"
notify_url = "https://hooks.example.com/x"
record_table = "my_scripts"
""")
    (tmp_path / "migrations").mkdir()
    tool = load_project(cwd=tmp_path, environ={}).tool
    assert (tool.fetch, tool.fetch_timeout, tool.lock_timeout, tool.max_file_bytes) == (
        True, 5.0, 0.5, 2000)
    assert (tool.base_branch, tool.record, tool.git_refs) == ("develop", False, False)
    assert tool.notify_url == "https://hooks.example.com/x"
    assert tool.record_table == "my_scripts"


def test_every_setting_and_variable_is_documented() -> None:
    """docs/configuration.md lists each setting and each ALEMBIC_AUTOCOPY_* variable the
    source reads, with its default; the README links it."""
    import re

    from alembic_autocopy.effects.project import SETTINGS

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    for key in SETTINGS:
        assert f"`{key}`" in doc, key
    source = "\n".join(path.read_text(encoding="utf-8")
                       for path in (root / "src").rglob("*.py"))
    variables = set(re.findall(r"ALEMBIC_AUTOCOPY_[A-Z_]+", source))
    assert len(variables) >= 5  # a floor: the search found them (5 since the worker setting)
    for variable in variables:
        assert f"`{variable}`" in doc, variable
    assert "docs/configuration.md" in (root / "README.md").read_text(encoding="utf-8")
