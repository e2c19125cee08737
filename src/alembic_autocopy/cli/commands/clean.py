"""``alembic-autocopy clean``: remove the copies this tool placed, keep modified ones."""

from __future__ import annotations

import argparse

from alembic_autocopy import repair
from alembic_autocopy.cli.commands import project_from
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import manifest_entry_json

# Imported inside functions, as each saves >= 5 ms where skipped (bench/run.py import table):
# placement, only when copies are removed.

DESCRIPTION = """\
Remove every file alembic-autocopy copied into this worktree whose content is unchanged, and
its line in the managed .gitignore. A copy the database still needs (its revision, or a
descendant of it, is applied) and that no other file here provides is kept and named, since
Alembic in this worktree would fail without it; --all removes it too. A copy you edited is
kept and named. Copies that git now tracks (a merge brought the real file) are simply
forgotten. Only files this tool placed in this worktree's version folders are ever removed,
never a file git tracks; --dry-run changes nothing at all.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be removed; change nothing")
    parser.add_argument("--all", action="store_true", dest="remove_needed",
                        help="also remove the copies the database still needs (Alembic "
                             "here then fails until the next upgrade)")


# What a run did, and what a dry run would do: remove, forget, keep.
_VERBS = {False: ("removed", "forgot", "kept"),
          True: ("would remove", "would forget", "would keep")}


def run(args: argparse.Namespace, out: Output) -> int:
    from alembic_autocopy.effects import placement

    report = repair.clean(project_from(args), dry_run=args.dry_run,
                          remove_needed=args.remove_needed)
    remove, forget, keep = _VERBS[bool(args.dry_run)]
    for entry in report.removed:
        out.line(f"{remove.capitalize()} {entry.path} (revision {entry.revision}, "
                 f"from {entry.source})")
    for entry in report.kept_needed:
        out.line(f"{keep.capitalize()} {entry.path} (revision {entry.revision}): the "
                 "database needs it and no other file here provides it; `clean --all` "
                 "removes it anyway")
    for line in placement.unhidden_warning(report.unhidden):
        out.warn(line)
    for entry in report.kept_modified:
        out.warn(f"{keep} {entry.path} (revision {entry.revision}): it was modified after "
                 "it was copied; delete it yourself if the change is not needed")
    for entry in report.now_tracked:
        out.line(f"{forget.capitalize()} {entry.path}: git now tracks it")
    for entry in report.vanished:
        out.line(f"{forget.capitalize()} {entry.path}: it no longer exists")
    forgotten = len(report.now_tracked) + len(report.vanished)
    out.result(f"{remove.capitalize()} {len(report.removed)} copy(ies), "
               f"{forget.removeprefix('would ')} {forgotten} (now tracked by git or gone); "
               f"{keep.removeprefix('would ')} {len(report.kept_modified)} modified, "
               f"{len(report.kept_needed)} needed by the database.")
    out.emit({"ok": True, "dry_run": args.dry_run,
              "removed": [manifest_entry_json(e) for e in report.removed],
              "kept_modified": [manifest_entry_json(e) for e in report.kept_modified],
              "kept_needed": [manifest_entry_json(e) for e in report.kept_needed],
              "now_tracked": [manifest_entry_json(e) for e in report.now_tracked],
              "vanished": [manifest_entry_json(e) for e in report.vanished]})
    return 0
