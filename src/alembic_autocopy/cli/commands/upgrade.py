"""``alembic-autocopy upgrade [TARGET]``: plan, place, then ONE Alembic upgrade."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from alembic_autocopy.cli.commands import (
    add_allow_untrusted_source,
    add_diff,
    add_from_database,
    add_lock_timeout,
    add_notify_url,
    add_prefer,
    add_search_options,
    options_from,
    project_from,
)
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.commands.record import show_records
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import manifest_entry_json, plan_json, plan_lines
from alembic_autocopy.core.wording import id_list, missing_sentence
from alembic_autocopy.workflow import events

if TYPE_CHECKING:
    from alembic_autocopy import repair


DESCRIPTION = """\
Read the revisions the database has applied; find every one this worktree lacks, with its whole
ancestry (parents and depends_on), in the other worktrees and configured folders; copy them
into this worktree's versions folder (hidden from git by an untracked .gitignore there); then
run ONE Alembic upgrade to TARGET (default: head). When the brought-in revisions give this
worktree several heads, the upgrade goes to every head (as `alembic upgrade heads`) and says so.
Nothing is written when any needed revision is missing or ambiguous.
"""


def _nothing_to_do(report: repair.RepairReport) -> bool:
    return not report.dry_run and not report.situation.plan.bring and not report.applied

# Reads the database on every run: cli.main imports Alembic first (see there).
READS_DATABASE = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", default="head",
                        help="revision to upgrade to (default: head)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (every revision and its source); change nothing")
    add_prefer(parser)
    add_from_database(parser)
    add_diff(parser)
    add_notify_url(parser)
    add_search_options(parser)
    add_lock_timeout(parser)
    add_allow_untrusted_source(parser)


def run(args: argparse.Namespace, out: Output) -> int:

    project = project_from(args)
    announced: list[bool] = []

    def announce(report: repair.RepairReport) -> None:
        """The plan, printed before Alembic's own lines (and flushed: they go to stderr)."""
        if announced:
            return
        announced.append(True)
        situation = report.situation
        show_inventory_warnings(situation.inventory, out, project=project,
                                plan=situation.plan)
        plan = situation.plan
        verb = "Would bring in" if report.dry_run else "Brought in"
        if plan.bring:
            if plan.unknown_applied:
                out.line(f"The database has applied {id_list(plan.unknown_applied)}, unknown "
                         f"to this worktree; with its ancestry, {len(plan.bring)} migration(s) "
                         "are missing here.")
            else:
                out.line(f"{missing_sentence(plan)}.")
            out.line(f"{verb} {len(plan.bring)} migration(s), parents first:")
            for text in plan_lines(plan):
                out.line(text)
        if report.upgraded_to_every_head and not _nothing_to_do(report):
            prefix = "Would upgrade" if report.dry_run else "Upgrading"
            out.line(f"{prefix} to every head: this worktree now has several heads "
                     "(its own and the other worktree's), so `head` means `heads`.")
        out.flush()

    report = events.repair(project, args.target, options_from(args), notify=out.warn,
                           before_upgrade=announce)
    situation = report.situation
    announce(report)  # when Alembic did not run (dry run, nothing to do)
    recorded = show_records(out, project, situation.recorded, situation.drift,
                            situation.applied, situation.inventory.local, args.diff)
    for warning in report.warnings:
        out.warn(warning)
    plan = situation.plan
    if report.dry_run:
        out.result(f"Dry run: nothing changed. Next: alembic-autocopy upgrade "
                   f"{args.target if args.target != 'head' else ''}".rstrip())
    else:
        if report.applied:
            out.line(f"Applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
        heads = ", ".join(report.heads_after)
        several = " (several heads: each branch of work is applied)" if len(
            report.heads_after) > 1 else ""
        if _nothing_to_do(report):
            state = (f"the database is at {heads}" if report.heads_after
                     else "the database has no revision applied")
            out.result(f"Nothing to do: {state}.")
        else:
            out.result(f"Done. Database heads: {heads or '(none)'}{several}")
    out.emit({
        "ok": True,
        "dry_run": report.dry_run,
        "plan": plan_json(plan),
        **recorded,
        "placed": [manifest_entry_json(e) for e in report.placed],
        "target": report.target,
        "upgraded_to_every_head": report.upgraded_to_every_head,
        "applied": report.applied,
        "heads_before": list(report.heads_before),
        "heads_after": list(report.heads_after),
        "skipped": [{"path": s.path, "reason": s.reason} for s in situation.inventory.skipped],
        "notes": situation.inventory.notes,
    })
    return 0
