"""Text of the files a test project is made of, taken from Alembic's own templates."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import alembic
from alembic.util import format_as_comma
from mako.template import Template  # type: ignore[import-untyped]

ALEMBIC_TEMPLATES = Path(alembic.__file__).parent / "templates"

#: Every "Create Date" and file-name date uses this instant (also the git commit date).
FIXED_DATE = datetime.datetime(2024, 1, 2, 3, 4, 5)

#: The generic script.py.mako as Alembic shipped it before type annotations were added
#: (1.8 to 1.12): real projects are full of files rendered from it.
PLAIN_SCRIPT_MAKO = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

#: env.py for two engines on the same URL, after Alembic's multidb template. The template
#: keeps every engine's transaction open until all are done; on ONE database that makes the
#: second engine wait for the first one's locks forever, so each engine here runs and commits
#: in turn. Both still call context.configure + run_migrations, so a callback given through
#: EnvironmentContext(fn=...) runs once per engine, as with the template.
MULTI_ENGINE_ENV_PY = """import logging
from logging.config import fileConfig
import re

from sqlalchemy import engine_from_config
from sqlalchemy import pool

from alembic import context

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)
logger = logging.getLogger("alembic.env")

db_names = config.get_main_option("databases", "")

target_metadata = {}


def run_migrations_offline() -> None:
    for name in re.split(r",\\s*", db_names):
        url = context.config.get_section_option(name, "sqlalchemy.url")
        logger.info("Migrating database %s" % name)
        with open("%s.sql" % name, "w") as buffer:
            context.configure(
                url=url,
                output_buffer=buffer,
                target_metadata=target_metadata.get(name),
                literal_binds=True,
                dialect_opts={"paramstyle": "named"},
            )
            with context.begin_transaction():
                context.run_migrations()


def run_migrations_online() -> None:
    for name in re.split(r",\\s*", db_names):
        engine = engine_from_config(
            context.config.get_section(name, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        logger.info("Migrating database %s" % name)
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                upgrade_token="%s_upgrades" % name,
                downgrade_token="%s_downgrades" % name,
                target_metadata=target_metadata.get(name),
            )
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""


def alembic_template(template: str, filename: str) -> str:
    """The text of one file of Alembic's installed template ``template``."""
    return (ALEMBIC_TEMPLATES / template / filename).read_text(encoding="utf-8")


def with_version_table(env_py: str, version_table: str, schema: str | None) -> str:
    """The generic env.py, passing ``version_table`` (and its schema) to context.configure."""
    marker = "target_metadata=target_metadata"
    if env_py.count(marker) != 2:
        raise RuntimeError("Alembic's generic env.py changed shape; update with_version_table")
    options = f"VERSION_TABLE_OPTIONS = {{'version_table': {version_table!r}"
    options += f", 'version_table_schema': {schema!r}}}\n" if schema else "}\n"
    patched = env_py.replace(marker, f"{marker}, **VERSION_TABLE_OPTIONS")
    anchor = "target_metadata = None\n"
    return patched.replace(anchor, anchor + options, 1)


def render_migration(
    *,
    rev: str,
    down: str | tuple[str, ...] | None,
    message: str,
    branch_labels: str | tuple[str, ...] | None,
    depends_on: str | tuple[str, ...] | None,
    annotated: bool,
) -> str:
    """A migration file exactly as Alembic renders it; it creates (and drops) table t_<rev>."""
    source = alembic_template("generic", "script.py.mako") if annotated else PLAIN_SCRIPT_MAKO
    table = f"t_{rev}"
    return str(
        Template(text=source).render_unicode(
            up_revision=rev,
            down_revision=_scalar(down),
            branch_labels=_to_tuple(branch_labels),
            depends_on=_scalar(depends_on),
            create_date=FIXED_DATE,
            comma=format_as_comma,
            message=message,
            imports="",
            upgrades=f"op.create_table({table!r}, sa.Column('id', sa.Integer(), primary_key=True))",
            downgrades=f"op.drop_table({table!r})",
        )
    )


def migration_filename(file_template: str, rev: str, message: str) -> str:
    """The file name Alembic gives a revision (``ScriptDirectory._rev_path``) at FIXED_DATE."""
    slug = "_".join(_SLUG_RE.findall(message)).lower()
    if len(slug) > TRUNCATE_SLUG_LENGTH:
        slug = slug[:TRUNCATE_SLUG_LENGTH].rsplit("_", 1)[0] + "_"
    fields = {
        "rev": rev,
        "slug": slug,
        "epoch": int(FIXED_DATE.timestamp()),
        "year": FIXED_DATE.year,
        "month": FIXED_DATE.month,
        "day": FIXED_DATE.day,
        "hour": FIXED_DATE.hour,
        "minute": FIXED_DATE.minute,
        "second": FIXED_DATE.second,
    }
    return f"{file_template % fields}.py"


def _scalar(value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
    # Alembic renders a one-element tuple as a plain string (tuple_rev_as_scalar).
    if isinstance(value, tuple) and len(value) == 1:
        return value[0]
    return value


def _to_tuple(value: str | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else value


DEFAULT_FILE_TEMPLATE = "%(rev)s_%(slug)s"
TRUNCATE_SLUG_LENGTH = 40
_SLUG_RE = re.compile(r"\w+")  # Alembic's _slug_re
