"""``alembic-autocopy find REV``: every location of a revision in every source."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from alembic_autocopy.cli.commands import (
    add_search_options,
    options_from,
    project_from,
)
from alembic_autocopy.cli.commands.common import broken_reasons, show_inventory_warnings
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import candidate_json
from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.model import Candidate
from alembic_autocopy.core.planning import locations_of
from alembic_autocopy.core.wording import source_of
from alembic_autocopy.sources.inventory import gather

if TYPE_CHECKING:
    from alembic_autocopy.sources.scanning import Inventory

DESCRIPTION = """\
Print every place that holds REV (a full revision id or a unique prefix): this worktree, the
other worktrees, configured folders, every branch, remote-tracking branch, tag and stash
entry (with its commit and date), with the content's sha256 so that different files with
the same id stand out. Does not touch the database.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", metavar="REV", help="revision id or unique prefix")
    add_search_options(parser)


def run(args: argparse.Namespace, out: Output) -> int:

    options = options_from(args)._replace(revision_prefix=args.revision)
    project = project_from(args)
    inventory = gather(project, options)
    show_inventory_warnings(inventory, out, every_id_known=False)
    matches = locations_of(inventory.all, args.revision)
    revision = _the_one_revision(args.revision, matches, inventory)
    contents = {c.sha256 for c in matches}
    first = matches[0]
    message = f"  {first.header.message}" if first.header.message else ""
    out.result(f"{revision}{message}")
    verdicts = broken_reasons(project, matches)
    broken = [verdicts.get(candidate.sha256) if candidate.location.kind.is_file else None
              for candidate in matches]
    for candidate, reason in zip(matches, broken, strict=True):
        out.result(f"  {source_of(candidate)}  ({', '.join(_flags(candidate, reason))})")
    if len(contents) > 1:
        out.warn(f"revision {revision} has {len(contents)} different contents; "
                 "`upgrade --prefer` chooses one")
    out.emit({"ok": True, "revision": revision, "distinct_contents": len(contents),
              "locations": [{**candidate_json(c), "broken": reason}
                            for c, reason in zip(matches, broken, strict=True)]})
    return 0


def _the_one_revision(prefix: str, matches: list[Candidate], inventory: Inventory) -> str:
    """The revision ``prefix`` names; refused when it names none or several."""
    revisions = sorted({c.revision for c in matches})
    if not matches:
        raise AutocopyError(
            f"revision {prefix} found nowhere (searched this worktree, "
            f"{len({*inventory.searched, *(c.location.worktree for c in inventory.elsewhere)})}"
            " other place(s))",
            hint="`alembic-autocopy list --no-db` shows every revision that exists")
    if len(revisions) > 1:
        raise AutocopyError(
            f"{prefix} is ambiguous: it starts {len(revisions)} revisions "
            f"({', '.join(revisions)})", hint="give more characters of the id")
    return revisions[0]


def _flags(candidate: Candidate, broken: str | None) -> list[str]:
    """What to know about one place: its content, copied or committed, broken."""
    flags = [f"sha256 {candidate.sha256[:12]}"]
    if candidate.location.is_copy:
        flags.append("copy placed by alembic-autocopy")
    elif candidate.location.committed is not None:
        flags.append("committed" if candidate.location.committed else "not committed")
    if broken is not None:
        flags.append(f"broken: {broken}")
    return flags
