"""``alembic-autocopy check``: does the database hold revisions this worktree lacks?"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from alembic_autocopy import repair
from alembic_autocopy.cli.commands import (
    add_allow_untrusted_source,
    add_diff,
    add_from_database,
    add_prefer,
    add_search_options,
    options_from,
    project_from,
)
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.commands.record import show_records
from alembic_autocopy.cli.output import Output
from alembic_autocopy.cli.report import plan_json, plan_lines
from alembic_autocopy.core.model import Options, Outcome
from alembic_autocopy.core.wording import (
    blocked_hint,
    blocked_message,
    given_preference,
    missing_sentence,
)
from alembic_autocopy.repair import with_record_notes

if TYPE_CHECKING:
    from alembic_autocopy.core.errors import AutocopyError
    from alembic_autocopy.effects.project import ProjectConfig
    from alembic_autocopy.repair import Situation
    from alembic_autocopy.workflow.schema_check import SchemaReport

# Imported inside functions, as each saves >= 5 ms where skipped: the schema comparison (SQLAlchemy
# reflection) only with --schema.

DESCRIPTION = """\
Change nothing. Exit 0 when every revision the database has applied is known to this
worktree; exit 1 when it is not, printing the plan `alembic-autocopy upgrade` would carry out
(or why it could not). Meant for scripts and git hooks. With --schema, also compare this
worktree's models with the database and exit 1 when the code would break on it.
"""

# Reads the database on every run: cli.main imports Alembic first (see there).
READS_DATABASE = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_prefer(parser)
    add_from_database(parser)
    add_diff(parser)
    add_search_options(parser)
    add_allow_untrusted_source(parser)
    parser.add_argument(
        "--schema", action="store_true",
        help="also compare this worktree's models (env.py's target_metadata) with the "
             "database: tables and columns they use that are missing, NOT NULL columns "
             "they do not know, narrowed types, each with the foreign revision responsible; "
             "exit 1 when something would break")


def run(args: argparse.Namespace, out: Output) -> int:

    project = project_from(args)
    situation = repair.assess(project, options_from(args))
    recorded = _show_sources(out, project, situation, args.diff)
    problem = repair.blocking_problem(situation)
    if problem is None and situation.plan.outcome is Outcome.PLAN:
        # Refuse here what `upgrade` would refuse (broken file, untrusted source, name
        # taken...), with its words and exit code: the plan shown is one that can be carried out.
        repair.preflight(project, situation, options_from(args))
    _show_verdict(out, situation, problem, options_from(args))
    schema = _check_schema(project, out) if getattr(args, "schema", False) else None
    ok = (situation.plan.outcome is Outcome.NOTHING_TO_DO and problem is None
          and (schema is None or schema.ok))
    out.emit({"ok": ok, "error": problem.message if problem is not None else None,
              "database_heads": list(situation.applied),
              "plan": plan_json(situation.plan),
              **recorded,
              "held_by_database": [c.revision for c in situation.held_by_database],
              "skipped": [{"path": s.path, "reason": s.reason}
                          for s in situation.inventory.skipped],
              **({"schema": _schema_json(schema)} if schema is not None else {})})
    return 0 if ok else 1


def _show_sources(out: Output, project: ProjectConfig, situation: Situation, diff: bool
                  ) -> dict[str, Any]:
    """Warnings about what was read, then the record table's notes (their JSON fields)."""

    show_inventory_warnings(situation.inventory, out, project=project, plan=situation.plan)
    for warning in repair.layout_warnings(situation):
        out.warn(warning)
    return show_records(out, project, situation.recorded, situation.drift,
                        situation.applied, situation.inventory.local, diff)


def _show_verdict(out: Output, situation: Situation, problem: AutocopyError | None,
                  options: Options) -> None:
    """OK, the plan `upgrade` would carry out, or why there is none."""

    plan = situation.plan
    if problem is not None:
        out.error(problem.message, problem.hint)
    elif plan.outcome is Outcome.NOTHING_TO_DO and not situation.applied:
        out.result("OK: the database is empty (no revision applied yet); nothing to bring in.")
    elif plan.outcome is Outcome.NOTHING_TO_DO:
        out.result(f"OK: this worktree knows every revision the database has applied "
                   f"({', '.join(situation.applied)}).")
    elif plan.outcome is Outcome.PLAN:
        out.result(missing_sentence(plan))
        out.line(f"`alembic-autocopy upgrade` would bring in {len(plan.bring)} migration(s):")
        for text in plan_lines(plan):
            out.line(text)
    else:
        message = blocked_message(plan, given_preference(options))
        hint = blocked_hint(plan, options.prefer_wording)
        out.error(*with_record_notes(message, hint, situation))


def _check_schema(project: ProjectConfig, out: Output) -> SchemaReport:
    from alembic_autocopy.workflow import schema_check

    report = schema_check.read_schema(project)
    for line in report.unknown:
        out.warn(line)
    for finding in report.findings:
        out.error(finding.text())
    if report.ok:
        out.result(f"OK: the database fits this worktree's models ({report.tables_compared} "
                   "table(s) compared).")
    else:
        branches = sorted({r.branch for f in report.findings for r in f.responsible
                           if r.branch})
        step = (f"merge the branch(es) responsible ({', '.join(branches)}) or adapt the "
                "models" if branches else "apply this worktree's migrations or adapt the "
                "models")
        out.result(f"The database breaks this worktree's models: {len(report.findings)} "
                   f"finding(s); {step}.")
    return report


def _schema_json(report: SchemaReport) -> dict[str, Any]:
    return {"ok": report.ok, "tables_compared": report.tables_compared,
            "findings": [finding.as_json() for finding in report.findings],
            "foreign_revisions": report.foreign_revisions, "objects_unknown": report.unknown}
