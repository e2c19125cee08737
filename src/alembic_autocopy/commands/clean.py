"""``alembic-autocopy clean``: remove the copies this tool placed, keep modified ones."""

from __future__ import annotations

import argparse

from alembic_autocopy.commands import project_from
from alembic_autocopy.output import Output
from alembic_autocopy.report import manifest_entry_json

DESCRIPTION = """\
Remove every file alembic-autocopy copied into this worktree whose content is unchanged, and
its line in the managed .gitignore. A copy you edited is kept and named. Copies that git now
tracks (a merge brought the real file) are simply forgotten. If the database still holds a
removed revision, Alembic in this worktree fails again until the next `alembic-autocopy
upgrade` (or until you merge the branch that owns it).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be removed; change nothing")


def run(args: argparse.Namespace, out: Output) -> int:
    from alembic_autocopy import repair

    report = repair.clean(project_from(args), dry_run=args.dry_run)
    verb = "Would remove" if args.dry_run else "Removed"
    for entry in report.removed:
        out.line(f"{verb} {entry.path} (revision {entry.revision}, from {entry.source})")
    for entry in report.kept_modified:
        out.warn(f"kept {entry.path} (revision {entry.revision}): it was modified after "
                 "it was copied; delete it yourself if the change is not needed")
    for entry in report.now_tracked:
        out.line(f"Forgot {entry.path}: git now tracks it")
    for entry in report.vanished:
        out.line(f"Forgot {entry.path}: it no longer exists")
    out.result(f"{verb} {len(report.removed)} copy(ies); kept {len(report.kept_modified)} "
               "modified.")
    out.emit({"ok": True, "dry_run": args.dry_run,
              "removed": [manifest_entry_json(e) for e in report.removed],
              "kept_modified": [manifest_entry_json(e) for e in report.kept_modified],
              "now_tracked": [manifest_entry_json(e) for e in report.now_tracked],
              "vanished": [manifest_entry_json(e) for e in report.vanished]})
    return 0
