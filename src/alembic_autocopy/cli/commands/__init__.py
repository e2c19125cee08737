"""One module per verb: ``add_arguments(parser)`` and ``run(args, out) -> exit code``."""

from __future__ import annotations

import argparse

from alembic_autocopy.core.model import Options
from alembic_autocopy.core.wording import PREFER_VALUE
from alembic_autocopy.effects.project import ProjectConfig, load_project


def project_from(args: argparse.Namespace) -> ProjectConfig:
    return load_project(args.config, args.name, args.x)


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        prefer=tuple(getattr(args, "prefer", None) or ()),
        dry_run=bool(getattr(args, "dry_run", False)),
        fetch=getattr(args, "fetch", None),
        git_refs=getattr(args, "git_refs", None),
        from_database=bool(getattr(args, "from_database", False)),
        allow_untrusted_source=bool(getattr(args, "allow_untrusted_source", False)),
        lock_timeout=getattr(args, "lock_timeout", None),
        notify_url=getattr(args, "notify_url", None),
        quiet=bool(getattr(args, "quiet", False) or getattr(args, "json", False)),
    )


def add_prefer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefer", action="append", metavar=PREFER_VALUE, default=None,
        help="when one revision id has different contents in several places, take the one "
             "at or under this path (a file, a folder, a worktree) or in this git ref (a "
             "branch, origin/x, a tag, refs/heads/x); repeatable")


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


def add_notify_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify-url", metavar="URL", default=None,
        help="post a Slack/Discord-compatible message to this incoming-webhook URL after "
             "the repair (config: notify_url); a failed post is only a warning")


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """``--fetch`` and ``--no-git-refs``: for the commands that search for migrations."""
    parser.add_argument(
        "--fetch", action=argparse.BooleanOptionalAction, default=None,
        help="run `git fetch --all --prune` first (with a time limit: fetch_timeout), so a "
             "migration pushed from another machine is found; offline, say so and go on "
             "(config: fetch = true)")
    parser.add_argument(
        "--git-refs", action=argparse.BooleanOptionalAction, default=None,
        help="search every branch, remote-tracking branch, tag and stash entry too "
             "(default; --no-git-refs searches only the worktrees and folders; "
             "config: git_refs = false)")


def add_allow_untrusted_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-untrusted-source", action="store_true", default=False,
        help="also copy migrations from files or folders other users can write "
             "(world-writable, or owned by someone else); they are code the upgrade runs "
             "(config: allow_untrusted_source = true)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


def add_lock_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-timeout", type=_seconds, default=None, metavar="SECONDS",
        help="how long to wait for another upgrade of the same database to finish before "
             "giving up (default 120; config: lock_timeout)")
