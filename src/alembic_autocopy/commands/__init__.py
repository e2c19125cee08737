"""One module per verb: ``add_arguments(parser)`` and ``run(args, out) -> exit code``."""

from __future__ import annotations

import argparse

from alembic_autocopy.project import ProjectConfig, load_project
from alembic_autocopy.repair import Options


def project_from(args: argparse.Namespace) -> ProjectConfig:
    return load_project(args.config, args.name, args.x)


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        prefer=tuple(getattr(args, "prefer", None) or ()),
        dry_run=bool(getattr(args, "dry_run", False)),
        fetch=getattr(args, "fetch", None),
        from_database=bool(getattr(args, "from_database", False)),
        allow_untrusted_source=bool(getattr(args, "allow_untrusted_source", False)),
    )


def add_prefer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefer", action="append", metavar="PATH_OR_WORKTREE", default=None,
        help="when one revision id has different contents in several places, take the one "
             "under this path, worktree or branch (repeatable)")


def add_from_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-database", action="store_true", default=False,
        help="trust the database's record table for this run: bring in revisions that no "
             "file or branch holds any more from the copies the database kept "
             "(config: trust_database = true)")


def add_diff(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--diff", action="store_true", default=False,
        help="show how each file edited after it was applied differs from what ran")
