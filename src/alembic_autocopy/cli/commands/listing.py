"""``alembic-autocopy list``: every revision across all sources."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.cli.commands import (
    add_diff,
    add_search_options,
    options_from,
    project_from,
)
from alembic_autocopy.cli.commands.common import broken_reasons, show_inventory_warnings
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import header_json, location_json
from alembic_autocopy.core.model import Candidate
from alembic_autocopy.core.planning import closeness
from alembic_autocopy.sources.inventory import gather

if TYPE_CHECKING:
    from alembic_autocopy.effects.project import ProjectConfig
    from alembic_autocopy.sources.scanning import Inventory

# Imported inside functions, as each saves >= 5 ms where skipped: Alembic's RevisionMap and the
# record table only with the database.


#: Places named on a row without -v (--json and -v give every one).
PLACES_SHOWN = 3

DESCRIPTION = """\
Print every revision found in this worktree and every other source: its parents, message,
where it is, whether this worktree has it, and whether the database has applied it
(--no-db skips the database, and imports neither Alembic nor SQLAlchemy).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-db", action="store_true",
                        help="do not ask the database what is applied")
    add_diff(parser)
    add_search_options(parser)


def run(args: argparse.Namespace, out: Output) -> int:

    project = project_from(args)
    every_location = out.json_mode or out.verbose  # else only the closest few are named
    options = options_from(args)
    if not every_location:
        options = options._replace(places_per_revision=PLACES_SHOWN)
    inventory = gather(project, options)
    show_inventory_warnings(inventory, out)
    by_revision: dict[str, list[Candidate]] = {}
    for candidate in inventory.all:
        by_revision.setdefault(candidate.revision, []).append(candidate)
    database = (_Database([], None, {}) if args.no_db
                else _read_database(project, inventory, by_revision, args.diff, out))
    rows = _rows(project, inventory, by_revision, database.applied, every_location)
    for row in rows:
        _print_row(row, out)
    missing = [h for h in database.heads if h not in by_revision]
    for head in missing:
        out.line(f"{head}  (applied in the database, found in no source)")
    out.result(_summary(rows, database.applied is not None))
    out.emit({"ok": True, "database_heads": database.heads if not args.no_db else None,
              "revisions": rows, "applied_but_found_nowhere": missing, **database.records})
    return 0


def _summary(rows: list[dict[str, Any]], database_read: bool) -> str:
    here = sum(1 for r in rows if r["here"])
    applied = sum(1 for r in rows if r["applied"])
    return (f"{len(rows)} revision(s), {here} in this worktree"
            + (f", {applied} applied" if database_read else ""))


class _Database(NamedTuple):
    """What the database says (all empty with --no-db)."""

    heads: list[str]
    applied: set[str] | None  # None: the database was not read
    records: dict[str, Any]  # record-table notes


def _read_database(project: ProjectConfig, inventory: Inventory,
                   by_revision: dict[str, list[Candidate]], diff: bool, out: Output
                   ) -> _Database:
    """The database's heads, what they apply, and its record table's notes (printed).
    Revisions only the record table still holds are added to ``by_revision``."""
    from alembic_autocopy.cli.commands.record import show_records
    from alembic_autocopy.core import revisions
    from alembic_autocopy.sources import records, scanning

    state, recorded = records.read_state(project, records.content_wanted(inventory.all))
    for candidate in records.candidates(recorded, set(by_revision)):
        by_revision.setdefault(candidate.revision, []).append(candidate)
    drift = records.drift_of(inventory.local, inventory.elsewhere, recorded, state.heads,
                             scanning.this_worktree(project))
    record_document = show_records(out, project, recorded, drift, state.heads,
                                   inventory.local, diff)
    headers = [group[0].header for group in by_revision.values()]
    known = {h.revision for h in headers}
    applied = revisions.ancestry(headers, [h for h in state.heads if h in known])
    applied |= set(state.heads)
    return _Database(list(state.heads), applied, record_document)


def _rows(project: ProjectConfig, inventory: Inventory,
          by_revision: dict[str, list[Candidate]], applied: set[str] | None,
          every_location: bool) -> list[dict[str, Any]]:
    """One row per revision, by id: its header, where it is, whether it is applied."""
    local_ids = inventory.local_ids()
    verdicts = broken_reasons(project, inventory.all)
    rows: list[dict[str, Any]] = []
    for revision in sorted(by_revision):
        group = sorted(by_revision[revision], key=closeness)
        files = [verdicts[c.sha256] for c in group
                 if c.location.kind.is_file and c.sha256 in verdicts]
        row = {
            **header_json(group[0].header),
            # every file of it fails to compile (one good copy makes it usable)
            "broken": files[0] if files and all(files) else None,
            "here": revision in local_ids,
            "applied": None if applied is None else revision in applied,
            "distinct_contents": len({c.sha256 for c in group}),
        }
        if every_location:
            row["locations"] = [{**location_json(c.location), "sha256": c.sha256}
                                for c in group]
        else:
            row["closest"], row["more"] = _closest(group)
            row["more"] += inventory.more_places.get(revision, 0)
        rows.append(row)
    return rows


def _print_row(row: dict[str, Any], out: Output) -> None:
    parents = ", ".join(row["down_revisions"]) or "<base>"
    state = ["here" if row["here"] else "not here"]
    if row["applied"] is not None:
        state.append("applied" if row["applied"] else "not applied")
    if row["broken"] is not None:
        state.append(f"broken: {row['broken']}")
    if row["distinct_contents"] > 1:
        state.append(f"{row['distinct_contents']} different contents!")
    message = f"  {row['message']}" if row["message"] else ""
    out.line(f"{row['revision']} <- {parents}{message}  [{', '.join(state)}]")
    if "locations" in row:
        for location in row["locations"]:
            out.detail(f"    {location['description']}: {location['path']}")
    if "closest" in row:
        more = f"; and {row['more']:,} more place(s)" if row["more"] else ""
        out.line(f"    in: {'; '.join(row['closest'])}{more}")


def _closest(group: list[Candidate]) -> tuple[list[str], int]:
    """The closest few places of a revision (``group`` sorted closest first), and how many
    other places hold it: at 3,000 refs a row naming every one is megabytes."""
    names: list[str] = []
    for candidate in group:
        description = candidate.location.describe()
        if description not in names:
            names.append(description)
            if len(names) == PLACES_SHOWN:
                break
    return names, len(group) - len(names)
