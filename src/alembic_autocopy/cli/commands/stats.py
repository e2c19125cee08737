"""``alembic-autocopy stats``: what the repairs of this repository amounted to."""

from __future__ import annotations

import argparse
import datetime as _dt

from alembic_autocopy.cli.commands import project_from
from alembic_autocopy.cli.output import Output
from alembic_autocopy.core.errors import UsageError
from alembic_autocopy.sources import scanning
from alembic_autocopy.workflow import events

DESCRIPTION = """\
Summarise the event log every repair appends to (one JSON line each, under the repository's
common git folder, shared by all its worktrees): how many repairs, how many revisions they
brought in and from which kind of source (worktree, branch, database record...), per
worktree, and how many repairs failed. Reads no database.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="DATE", default=None,
                        help="only events at or after DATE (ISO 8601, e.g. 2026-01-31, UTC)")


def _since(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since {value!r} is not a date",
                         hint="give an ISO 8601 date such as 2026-01-31") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.astimezone(_dt.timezone.utc).isoformat()


def run(args: argparse.Namespace, out: Output) -> int:

    since = _since(args.since)
    project = project_from(args)
    root = scanning.this_worktree(project)
    if root is None:
        raise UsageError(f"{project.here} is not in a git worktree: there is no event log",
                         hint="run stats inside the project's repository")
    path = events.log_path(root)
    found, unreadable = events.read(path)
    summary = events.summarize(found, since, unreadable)
    if unreadable:
        out.warn(f"{unreadable} line(s) of {path} could not be read; they are not counted")
    period = (f" between {summary.first} and {summary.last}" if summary.first else "")
    out.line(f"Event log: {path}")
    out.line(f"Repairs: {summary.repairs}{period}")
    out.line(f"Revisions brought in: {summary.revisions_brought_in}")
    if summary.by_source:
        kinds = ", ".join(f"{kind} {count}" for kind, count in summary.by_source.most_common())
        out.line(f"  by source: {kinds}")
    for worktree, count in summary.by_worktree.most_common():
        out.line(f"  {worktree}: {count} repair(s)")
    out.line(f"Failures: {summary.failures}")
    for kind, count in summary.failures_by_type.most_common():
        out.line(f"  {kind}: {count}")
    out.result(f"{summary.repairs} repair(s), {summary.revisions_brought_in} revision(s) "
               f"brought in, {summary.failures} failure(s).")
    out.emit({"ok": True, "log": str(path), "since": since, **summary.as_json()})
    return 0
