"""``alembic-autocopy check``: does the database hold revisions this worktree lacks?"""

from __future__ import annotations

import argparse

from alembic_autocopy.commands import (
    add_allow_untrusted_source,
    add_diff,
    add_from_database,
    add_prefer,
    add_search_options,
    options_from,
    project_from,
)
from alembic_autocopy.commands.common import show_inventory_warnings
from alembic_autocopy.commands.record import show_records
from alembic_autocopy.model import Outcome
from alembic_autocopy.output import Output
from alembic_autocopy.report import blocked_hint, blocked_message, plan_json, plan_lines

DESCRIPTION = """\
Change nothing. Exit 0 when every revision the database has applied is known to this
worktree; exit 1 when it is not, printing the plan `alembic-autocopy upgrade` would carry out
(or why it could not). Meant for scripts and git hooks.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_prefer(parser)
    add_from_database(parser)
    add_diff(parser)
    add_search_options(parser)
    add_allow_untrusted_source(parser)


def run(args: argparse.Namespace, out: Output) -> int:
    from alembic_autocopy import repair
    from alembic_autocopy.report import with_record_notes

    project = project_from(args)
    situation = repair.assess(project, options_from(args))
    show_inventory_warnings(situation.inventory, out)
    recorded = show_records(out, project, situation.recorded, situation.drift,
                            situation.applied, situation.inventory.local, args.diff)
    plan = situation.plan
    outcome = plan.outcome
    if outcome is Outcome.NOTHING_TO_DO:
        heads = ", ".join(situation.applied) or "(empty)"
        out.result(f"OK: this worktree knows every revision the database has applied "
                   f"({heads}).")
    elif outcome is Outcome.PLAN:
        out.result(f"The database has {len(plan.unknown_applied)} revision(s) this worktree "
                   f"lacks: {', '.join(plan.unknown_applied)}")
        out.line(f"`alembic-autocopy upgrade` would bring in {len(plan.bring)} migration(s):")
        for text in plan_lines(plan):
            out.line(text)
    else:
        out.error(*with_record_notes(blocked_message(plan), blocked_hint(plan), situation))
    out.emit({"ok": outcome is Outcome.NOTHING_TO_DO, "database_heads": list(situation.applied),
              "plan": plan_json(plan),
              **recorded,
              "held_by_database": [c.revision for c in situation.held_by_database],
              "skipped": [{"path": s.path, "reason": s.reason}
                          for s in situation.inventory.skipped]})
    return 0 if outcome is Outcome.NOTHING_TO_DO else 1
