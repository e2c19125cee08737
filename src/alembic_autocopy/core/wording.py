"""The words of a plan and of a refusal, from the model's values alone.

Errors are raised with these words by the repair and the API, and the command line prints
them; terminal-only wording (JSON shapes, skipped-file lines, drift) is in ``cli/report.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic_autocopy.core.model import Candidate, Conflict, Options, Plan, Unresolved

#: The logger of what the tool says inside Alembic's runs (env.py's line, the recorder):
#: shown as ``alembic.autocopy`` beside Alembic's own ``alembic.*`` lines.
LOGGER_NAME = "alembic.autocopy"


def source_of(candidate: Candidate) -> str:
    location = candidate.location
    where = location.describe()
    if location.path and location.kind.is_file:
        copy = f" ({location.detail})" if location.is_copy else ""
        return f"{where}: {location.path}{copy}"
    if location.path:
        # git objects: the ref, then the commit and its date (which version of the ref).
        at = f" @ {location.commit[:10]}" if location.commit else ""
        if location.commit_date:
            at += f" ({location.commit_date})"
        lfs = " [Git LFS]" if location.detail == "Git LFS" else ""
        return f"{where}: {location.path}{at}{lfs}"
    return where


def id_list(ids: Sequence[str], limit: int = 8) -> str:
    """``a, b, c`` or, for a long list, its first ``limit`` ids and how many more (a list of
    a hundred ids on one line helps nobody; ``--json`` has them all)."""
    shown = [revision for revision in ids if revision]
    if len(shown) <= limit:
        return ", ".join(shown)
    return f"{', '.join(shown[:limit])} and {len(shown) - limit} more"


def missing_sentence(plan: Plan) -> str:
    """Why a plan brings anything in: the database's unknown revisions, or parents this
    worktree's own files lack (a file copied by hand without its ancestry)."""
    if plan.unknown_applied:
        return (f"The database has {len(plan.unknown_applied)} revision(s) this worktree "
                f"lacks: {id_list(plan.unknown_applied)}")
    return (f"This worktree's own migrations need {len(plan.bring)} parent migration(s) it "
            "lacks")


def _needed_by(unresolved: Unresolved) -> str:
    names = ["the database" if n == "database" else n for n in unresolved.needed_by]
    return ", ".join(names) or "?"


def blocked_message(plan: Plan, given: str = "") -> str:
    """Why ``plan`` cannot be carried out; ``given``: the preference as the user gave it
    (``given_preference``), named when it matched several contents of one id."""
    parts = []
    if plan.conflicts:
        parts.append("; ".join(conflict_sentence(c, given) for c in plan.conflicts))
    if plan.unresolved:
        ids = ", ".join(f"{u.revision} (needed by {_needed_by(u)})" for u in plan.unresolved)
        parts.append(f"revision(s) found nowhere: {ids}")
    return "cannot repair: " + "; ".join(parts) + "; nothing was changed"


def conflict_sentence(conflict: Conflict, given: str = "") -> str:
    if conflict.preferred:
        return (f"{given or 'the preference'} matches {len(conflict.preferred)} different "
                f"contents of revision {conflict.revision}: {_places(conflict.preferred)}")
    return (f"revision {conflict.revision} exists with different contents: "
            f"{_places(conflict.candidates)}")


def _places(candidates: Sequence[Candidate]) -> str:
    return ", ".join(f"{source_of(c)} [sha256 {c.sha256[:12]}]" for c in candidates)


def given_preference(options: Options) -> str:
    """The preference as the user gave it, in the words of where it was given
    (``--prefer feature``); empty without one."""
    return " and ".join(preference(options.prefer_wording, value) for value in options.prefer)


def exact_name(candidate: Candidate) -> str | None:
    """What a preference can name to match this location alone among the versions of its id
    (``planning.matches_preference``): a file's path, a git object's full ref."""
    location = candidate.location
    return location.path if location.kind.is_file else location.ref


#: What ``--prefer`` takes, as hints and ``--help`` name it: a path (a file, a folder, a
#: worktree) or a git ref (a branch, ``origin/x``, a tag, ``refs/heads/x``); see
#: ``planning.matches_preference``.
PREFER_VALUE = "PATH_OR_REF"


def preference(prefer_wording: str, value: str = PREFER_VALUE) -> str:
    """``prefer_wording`` (``Options.prefer_wording``: ``{}`` stands for the value) with
    ``value`` in it: ``--prefer x`` on the command line, other words elsewhere."""
    return prefer_wording.replace("{}", value)


def blocked_hint(plan: Plan, prefer_wording: str) -> str:
    """The next step for a blocked plan; ``prefer_wording`` says how the user where the hint
    is shown chooses a version (``Options.prefer_wording``)."""
    hints = []
    if any(not conflict.preferred for conflict in plan.conflicts):
        hints.append(f"choose one with {preference(prefer_wording)}")
    for conflict in plan.conflicts:
        names = [f"{preference(prefer_wording, name)} ({candidate.location.describe()})"
                 for candidate in conflict.preferred
                 if (name := exact_name(candidate)) is not None]
        if names:
            hints.append(f"name one version of {conflict.revision} exactly: "
                         + " or ".join(names))
    if plan.unresolved:
        hints.append("fetch or check out the branch that has it, add the folder that has it "
                     "to [tool.alembic-autocopy] search, or run "
                     "`alembic-autocopy find REV` to look again")
    return "; ".join(hints)


TRUST_HINT = ("trust it for this run with --from-database, or for good with "
              "trust_database = true under [tool.alembic-autocopy] in pyproject.toml (or "
              "[alembic-autocopy] in alembic.ini); it hands code from the database to this "
              "machine, so trust only a database your team controls")
