"""Real git repositories holding real Alembic projects, and their linked worktrees."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config

from support.databases import Database
from support.process import run
from support.revisions import BASE_REV, rev_ids
from support.templates import (
    DEFAULT_FILE_TEMPLATE,
    MULTI_ENGINE_ENV_PY,
    alembic_template,
    migration_filename,
    render_migration,
    with_version_table,
)

EnvKind = Literal["sync", "async", "custom_version_table", "multi_engine"]
Revisions = str | tuple[str, ...] | None

CUSTOM_VERSION_TABLE = "my_versions"
CUSTOM_VERSION_SCHEMA = "alembic_meta"  # PostgreSQL only
GITIGNORE = "__pycache__/\n*.py[cod]\n"
#: The Alembic template each kind of project starts from (`alembic init -t <template>`).
_INIT_TEMPLATE: dict[EnvKind, str] = {
    "sync": "generic",
    "async": "async",
    "custom_version_table": "generic",  # env.py then passes version_table="my_versions"
    "multi_engine": "multidb",  # env.py then replaced: see MULTI_ENGINE_ENV_PY
}
PLACEHOLDER_URL = "sqlalchemy.url = driver://user:pass@localhost/dbname"


@dataclass
class Worktree:
    """One checkout (the main one or a linked worktree) of a test project."""

    path: Path
    file_template: str = DEFAULT_FILE_TEMPLATE

    @property
    def versions(self) -> Path:
        """The project's version location, ``migrations/versions``."""
        return self.path / "migrations" / "versions"

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``git <args>`` in this worktree."""
        return run(["git", *args], cwd=self.path, check=check)

    def write_migration(
        self,
        rev: str,
        down: Revisions = None,
        message: str = "add table",
        depends_on: Revisions = None,
        branch_labels: Revisions = None,
        filename: str | None = None,
        annotated: bool = False,
    ) -> Path:
        """Write a migration as Alembic renders it (``annotated``: ``revision: str = ...``).

        Its upgrade() creates table ``t_<rev>``, its downgrade() drops it. The file name
        follows the project's file_template unless ``filename`` (relative to versions/) says.
        """
        name = filename or migration_filename(self.file_template, rev, message)
        path = self.versions / name
        if path.exists():
            raise FileExistsError(f"a test would overwrite {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render_migration(
            rev=rev,
            down=down,
            message=message,
            branch_labels=branch_labels,
            depends_on=depends_on,
            annotated=annotated,
        )
        path.write_text(text, encoding="utf-8")
        return path

    def chain(self, n: int, parent: str | None, prefix: str) -> list[str]:
        """Write ``n`` migrations, each revising the previous one, the first ``parent``.

        Ids are ``rev_ids(prefix, n)``; returned in order, oldest first.
        """
        ids = rev_ids(prefix, n)
        for down, rev in zip([parent, *ids], ids, strict=False):
            self.write_migration(rev, down=down, message=f"step {rev}")
        return ids

    def commit(self, msg: str) -> None:
        """Stage everything (``git add -A``) and commit it."""
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", msg)

    def status_porcelain(self) -> str:
        """``git status --porcelain --ignored=no``: empty when the worktree is clean."""
        return self.git("status", "--porcelain", "--ignored=no").stdout

    def alembic(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the real ``alembic`` command line here (this worktree's alembic.ini)."""
        return run([sys.executable, "-m", "alembic", *args], cwd=self.path, check=check)

    def autocopy(
        self,
        *args: str,
        check: bool = False,
        env: Mapping[str, str | None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m alembic_autocopy`` (this checkout's src/) here.

        ``env`` changes the environment for this call only; a None value removes a name.
        """
        argv = [sys.executable, "-m", "alembic_autocopy", *args]
        return run(argv, cwd=self.path, check=check, env=env)


@dataclass
class Repo:
    """A git repository with an Alembic project in it, and the worktrees made from it."""

    root: Path
    name: str
    db: Database
    env: EnvKind
    main: Worktree
    file_template: str = DEFAULT_FILE_TEMPLATE
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    worktrees: dict[str, Worktree] = field(default_factory=dict)

    @property
    def base_rev(self) -> str:
        """The id of the committed base migration."""
        return BASE_REV

    def applied_versions(self) -> set[str]:
        """The revision ids in this project's version table (whatever env it uses)."""
        return self.db.versions(self.version_table, self.version_table_schema)

    def add_worktree(
        self, name: str, branch: str | None = None, path: Path | None = None
    ) -> Worktree:
        """``git worktree add -b <branch> <path>``: branch defaults to ``name``, path to
        ``<root's parent>/<repo name>-<name>``."""
        target = path if path is not None else self.root.parent / f"{self.name}-{name}"
        self.main.git("worktree", "add", "--quiet", "-b", branch or name, str(target))
        worktree = Worktree(path=target, file_template=self.file_template)
        self.worktrees[name] = worktree
        return worktree


def make_repo(
    tmp_path: Path,
    db: Database,
    env: EnvKind = "sync",
    file_template: str | None = None,
    name: str = "Proj",
) -> Repo:
    """Create ``tmp_path/name``: a git repository whose first commit is an Alembic project.

    alembic.ini and migrations/ come from ``alembic init`` with Alembic's own template;
    sqlalchemy.url is ``db``'s (its async URL for ``env="async"``); migrations/versions holds
    one base migration, BASE_REV. ``file_template`` is Alembic's option as Alembic reads it
    (``"%(rev)s_%(slug)s"``, single percent signs).
    """
    root = tmp_path / name
    root.mkdir()
    url = _project_url(db, env)
    _alembic_init(root, _INIT_TEMPLATE[env])
    schema = CUSTOM_VERSION_SCHEMA if env == "custom_version_table" and _has_schemas(db) else None
    _configure_ini(root / "alembic.ini", url, file_template)
    _write_env_py(root / "migrations", env, schema)
    (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    if schema is not None:
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    main = Worktree(path=root, file_template=file_template or DEFAULT_FILE_TEMPLATE)
    main.write_migration(BASE_REV, down=None, message="base")
    main.git("init", "--quiet")
    main.commit("Alembic project with a base migration")
    return Repo(
        root=root,
        name=name,
        db=db,
        env=env,
        main=main,
        file_template=main.file_template,
        version_table=CUSTOM_VERSION_TABLE if env == "custom_version_table" else "alembic_version",
        version_table_schema=schema,
    )


def _project_url(db: Database, env: EnvKind) -> str:
    if env != "async":
        return db.url
    if db.async_url is None:
        raise ValueError(f"no async driver for {db.backend}: cannot build an async project")
    return db.async_url


def _has_schemas(db: Database) -> bool:
    return db.backend == "postgresql"


def _alembic_init(root: Path, template: str) -> None:
    # Silenced by redirection: quiet=True does not reach the "Generating ..." lines, which
    # come from a ScriptDirectory that init builds without the config's messaging options.
    with contextlib.redirect_stdout(io.StringIO()):
        config = Config(str(root / "alembic.ini"))
        command.init(config, str(root / "migrations"), template=template)


def _configure_ini(ini: Path, url: str, file_template: str | None) -> None:
    text = ini.read_text(encoding="utf-8")
    # init was given an absolute directory (a relative one is resolved against the cwd);
    # make the project relocatable, as `alembic init migrations` run in root would.
    absolute = f"script_location = {(ini.parent / 'migrations').as_posix()}\n"
    expected = "script_location = %(here)s/migrations\n"
    text = text.replace(absolute, expected, 1)
    if expected not in text or "path_separator = os\n" not in text:
        raise RuntimeError(f"alembic init wrote an unexpected {ini}:\n{text}")
    escaped_url = url.replace("%", "%%")  # configparser interpolation
    # multidb has "dbname" and "dbname2": both engines get the same database.
    text = text.replace(PLACEHOLDER_URL + "2", f"sqlalchemy.url = {escaped_url}")
    text = text.replace(PLACEHOLDER_URL, f"sqlalchemy.url = {escaped_url}")
    if file_template is not None:
        options = f"file_template = {file_template.replace('%', '%%')}\n"
        if "/" in file_template:
            options += "recursive_version_locations = true\n"
        text = text.replace(expected, expected + options, 1)
    ini.write_text(text, encoding="utf-8")


def _write_env_py(migrations: Path, env: EnvKind, schema: str | None) -> None:
    env_py = migrations / "env.py"
    if env == "custom_version_table":
        patched = with_version_table(
            env_py.read_text(encoding="utf-8"), CUSTOM_VERSION_TABLE, schema
        )
        env_py.write_text(patched, encoding="utf-8")
    elif env == "multi_engine":
        env_py.write_text(MULTI_ENGINE_ENV_PY, encoding="utf-8")
        # Migrations keep the generic shape (upgrade() without engine_name).
        mako = alembic_template("generic", "script.py.mako")
        (migrations / "script.py.mako").write_text(mako, encoding="utf-8")


def integrate_env_py(repo: Repo, metadata_code: str | None = None) -> None:
    """alembic-autocopy's env.py line (``**alembic_autocopy.integration.options()``),
    committed on main: every worktree made afterwards has it. The record table is created
    only with it. ``metadata_code`` replaces the template's ``target_metadata = None``."""
    env_py = repo.main.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    marker = "target_metadata=target_metadata"
    assert text.count(marker) == 2, "Alembic's env.py template changed shape"
    text = text.replace(marker, f"{marker}, **alembic_autocopy.integration.options()")
    text = "import alembic_autocopy.integration\n" + text
    if metadata_code is not None:
        text = text.replace("target_metadata = None\n", metadata_code, 1)
    env_py.write_text(text, encoding="utf-8")
    repo.main.commit("record migrations applied by plain alembic")


TEMPLATE_ASYNC_ENGINE = """    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
"""


def use_the_application_engine(repo: Repo) -> None:
    """env.py runs on the application's own async engine, as FastAPI projects write it
    (``from app.db import engine``; rhoboro/async-fastapi-sqlalchemy): created once at import
    with a connection pool, never disposed, instead of the template's NullPool engine made
    per run. ``appdb.py`` (at the worktree root, on Alembic's ``prepend_sys_path``) holds
    it; committed on main."""
    assert repo.env == "async" and repo.db.async_url is not None
    (repo.main.path / "appdb.py").write_text(
        "from sqlalchemy.ext.asyncio import create_async_engine\n\n"
        f"engine = create_async_engine({repo.db.async_url!r})\n", encoding="utf-8")
    env_py = repo.main.path / "migrations" / "env.py"
    text = env_py.read_text(encoding="utf-8")
    dispose = "    await connectable.dispose()\n"
    assert text.count(TEMPLATE_ASYNC_ENGINE) == 1 and text.count(dispose) == 1, \
        "Alembic's async env.py template changed shape"
    text = text.replace(TEMPLATE_ASYNC_ENGINE, "    from appdb import engine as connectable\n")
    env_py.write_text(text.replace(dispose, ""), encoding="utf-8")
    repo.main.commit("env.py uses the application's engine")


def one_id_two_contents(repo: Repo) -> tuple[Worktree, Worktree]:
    """Worktree a applied e00000000001; worktree other holds another file for that id.
    Returns (a, b): b, made from main, lacks the id."""
    repo.main.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    a.write_migration("e00000000001", down=BASE_REV, message="one body")
    a.commit("e")
    a.alembic("upgrade", "head", check=True)
    other = repo.add_worktree("other")
    other.write_migration("e00000000001", down=BASE_REV, message="another body")
    other.commit("same id, other content")
    return a, repo.add_worktree("b")
