"""``alembic-autocopy record``: store the applied revisions whose files are here (backfill).

Also the record-table output that ``check``, ``upgrade`` and ``list`` share (drift, gaps).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic_autocopy.cli.commands import project_from
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import drift_json, drift_lines
from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.wording import id_list
from alembic_autocopy.effects.temporary import write_replacing
from alembic_autocopy.sources import index

if TYPE_CHECKING:
    from alembic_autocopy.core.drift import Drift
    from alembic_autocopy.core.model import Candidate
    from alembic_autocopy.effects.project import ProjectConfig
    from alembic_autocopy.sources.records import RecordSet

# Imported inside functions, as each saves >= 5 ms where skipped: the record table and drift checks
# (SQLAlchemy) only where used.

DESCRIPTION = """\
Store in the database's record table (default alembic_autocopy_scripts, created if needed,
beside the version table) every applied revision whose file is in this worktree and that has
no record yet: the database then remembers them even after the files are gone. An existing
record is never replaced (it says what really ran); a file that differs from its record is
reported as drift. Needed once for revisions applied before alembic-autocopy recorded them.
Needs alembic-autocopy's env.py line (the record table is created only with it, since the
line keeps the table out of `alembic revision --autogenerate`).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be recorded; change nothing")


def run(args: argparse.Namespace, out: Output) -> int:
    from alembic_autocopy.sources import records, scanning

    project = project_from(args)
    if not records.env_py_records(project):
        raise AutocopyError(
            f"env.py does not have alembic-autocopy's line: the record table "
            f"{project.tool.record_table} is created only with it (otherwise `alembic "
            "revision --autogenerate` would propose to drop it); nothing was recorded",
            hint=f"add {records.ENV_PY_LINE}, then run `alembic-autocopy record` again")
    found = scanning.scan(project)
    show_inventory_warnings(found, out)
    report = records.backfill(project, found.local, dry_run=args.dry_run)
    verb = "Would record" if args.dry_run else "Recorded"
    for revision in report.recorded:
        out.line(f"{verb} {revision}")
    for revision in report.different:
        out.warn(f"revision {revision} is already recorded with other content than the file "
                 "here: kept (it says what ran; `alembic-autocopy check --diff` shows it)")
    if report.no_file:
        out.warn(f"applied but not in this worktree, not recorded: "
                 f"{id_list(report.no_file)} (run `alembic-autocopy record` where the files "
                 "are, or `alembic-autocopy upgrade` here first)")
    out.result(f"{verb} {len(report.recorded)} revision(s) in {report.table}; "
               f"{len(report.already)} already recorded.")
    out.emit({"ok": True, "dry_run": args.dry_run, "table": report.table,
              "recorded": report.recorded, "already_recorded": report.already,
              "recorded_with_other_content": report.different,
              "applied_without_file": report.no_file})
    return 0


# --- shared by check, upgrade and list -------------------------------------------------------

def show_records(out: Output, project: ProjectConfig, recorded: RecordSet | None,
                 drift: Drift | None, heads: Sequence[str], local: Sequence[Candidate],
                 diff: bool) -> dict[str, Any]:
    """Print drift and record-table notes as warnings; return them for ``--json``."""
    from alembic_autocopy.sources import records

    diffs = diffs_of(drift) if diff and drift is not None else None
    for line in drift_lines(drift, diffs):
        if line.startswith("    "):
            out.line(line)  # a diff line: output, not a warning
        else:
            out.warn(line)
    document: dict[str, Any] = {"drift": drift_json(drift, diffs), "record_table": None}
    if recorded is None:
        return document
    missing = records.unrecorded(recorded, heads, local)
    integrated = records.env_py_records(project)
    # Said once (remembered in the tool's state folder), again for each revision newly
    # unrecorded; -v repeats it.
    new = first_notice(project, f"unintegrated:{recorded.name}", ["(table)", *missing])
    if recorded.exists and not integrated and (new or out.verbose):
        unrecorded_note = (f"; applied but not recorded: {id_list(missing)}"
                           if missing else "")
        once = "" if out.verbose else " (said once; -v repeats it)"
        out.warn(f"the record table {recorded.name} exists but env.py does not have "
                 "alembic-autocopy's line: `alembic revision --autogenerate` proposes to "
                 f"drop it and plain `alembic` runs are not recorded{unrecorded_note}"
                 f"{once}; add {records.ENV_PY_LINE}")
    document["record_table"] = {
        "name": recorded.name, "exists": recorded.exists, "records": len(recorded.records),
        "unrecorded": missing, "env_py_integration": integrated,
        "refused": {rev: item.reason for rev, item in recorded.refused.items()},
        "problems": recorded.problems,
    }
    return document


def first_notice(project: ProjectConfig, key: str, items: Sequence[str]) -> list[str]:
    """The ``items`` not yet told under ``key``; remembers them in the tool's state folder
    (beside the index), so that a notice is given once, not by every command."""


    if not items:
        return []
    path = index.index_path(project).parent / "notices.json"
    try:
        told: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(told, dict):
            told = {}
    except (OSError, ValueError):
        told = {}
    before = set(told.get(key) or ())
    new = [item for item in items if item not in before]
    if new:
        told[key] = sorted(before | set(new))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_replacing(path, json.dumps(told, indent=1).encode("utf-8"))
        except OSError:
            pass  # cannot remember: the notice is given again next time, nothing worse
    return new


def diffs_of(drift: Drift) -> dict[str, list[str]]:
    from alembic_autocopy.core.drift import unified_diff

    diffs: dict[str, list[str]] = {}
    for edited in drift.edited:
        try:
            current = Path(edited.path).read_bytes()
        except OSError:
            continue
        diffs[edited.revision] = unified_diff(edited, current)
    return diffs
