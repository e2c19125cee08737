"""A log of every repair, one JSON line each, under the repository's common git folder.

Every worktree of a clone appends to the same file (``<common dir>/alembic-autocopy/
events.jsonl``), each line in ONE ``write`` on a descriptor opened with ``O_APPEND``: the
kernel places each write at the end of the file, so concurrent repairs in two worktrees never
interleave their lines. ``stats`` reads it back. Only real work is logged: a repair that
brought revisions in, or one that failed; a dry run or a run with nothing to bring is not an
event (a hook running on every checkout would drown the log).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import inspect
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic_autocopy import repair as repair_module
from alembic_autocopy.core import __version__
from alembic_autocopy.core.errors import AutocopyError, PlanBlocked
from alembic_autocopy.effects import git
from alembic_autocopy.sources import scanning

if TYPE_CHECKING:
    from alembic_autocopy.effects.project import ProjectConfig
    from alembic_autocopy.repair import RepairReport

# Imported inside functions, as each saves >= 5 ms where skipped: notifications (urllib, http) only
# when a URL is configured.

LOG_NAME = "alembic-autocopy/events.jsonl"
# A failure already notified for the same worktree with the same error within this many
# seconds is logged but not posted again: a hook with --auto-upgrade and a database down
# would otherwise post on every checkout. A success, or a different error, always posts.
REPEAT_FAILURE_SECONDS = 3600
# How much of the log's end is read to find that earlier failure.
RECENT_LOG_BYTES = 256 * 1024
EVENT_REPAIR = "repair"
REPAIRED = "repaired"
FAILED = "failed"

F = TypeVar("F", bound=Callable[..., Any])


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --- building and writing ------------------------------------------------------------------

def repair_event(*, time_iso: str, worktree: str, branch: str | None,
                 report: RepairReport | None, error: BaseException | None,
                 duration: float) -> dict[str, Any] | None:
    """Pure. The event for one call of ``repair``, or None when nothing happened worth
    logging (a dry run, nothing brought in)."""

    event: dict[str, Any] = {"event": EVENT_REPAIR, "time": time_iso, "worktree": worktree,
                             "branch": branch}
    if error is not None:
        wanted: list[str] = []
        plan = getattr(error, "plan", None) if isinstance(error, PlanBlocked) else None
        if plan is not None:
            wanted = list(getattr(plan, "unknown_applied", ()))
        from alembic_autocopy.core.redaction import mask_passwords

        # The log outlives the run and is read by `stats`: never a secret in it.
        message = mask_passwords(error.message if isinstance(error, AutocopyError)
                                 else str(error))
        event.update(outcome=FAILED, revisions=[], sources=[], applied=[], wanted=wanted,
                     error=message, error_type=type(error).__name__)
    elif report is None or report.dry_run or not report.placed:
        return None
    else:
        chosen = {c.revision: c for c in report.situation.plan.bring}
        sources = []
        for entry in report.placed:
            candidate = chosen.get(entry.revision)
            kind = candidate.location.kind.value if candidate else "unknown"
            sources.append({"revision": entry.revision, "kind": kind, "source": entry.source,
                            "path": entry.source_path})
        event.update(outcome=REPAIRED, revisions=[e.revision for e in report.placed],
                     sources=sources, applied=list(report.applied),
                     heads_after=list(report.heads_after), error=None)
    event["duration_s"] = round(duration, 3)
    event["version"] = __version__
    return event


def log_path(worktree_root: Path) -> Path:

    return git.common_dir(worktree_root) / LOG_NAME


def append(path: Path, event: Mapping[str, Any]) -> None:
    """Append one line in one write (O_APPEND): safe against concurrent appenders."""
    data = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, data)
    finally:
        os.close(descriptor)
    if written != len(data):
        raise OSError(f"short write to {path} ({written} of {len(data)} bytes)")


def read(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Every event in the log, and how many lines could not be read (a torn last line after
    a crash, a hand edit). A missing log is an empty one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    return _parse_lines(raw.splitlines())


def _parse_lines(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], int]:
    """The events among ``lines``, and how many non-blank lines are not one."""
    found: list[dict[str, Any]] = []
    unreadable = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(value, dict):
            found.append(value)
        else:
            unreadable += 1
    return found, unreadable


# --- around every repair ---------------------------------------------------------------------

def recorded(function: F) -> F:
    """Decorate ``repair``: after each call, success or failure, append its event to the log
    and post the notification. Neither can fail the repair: a problem is a warning (on the
    report; when the repair itself failed, through its ``notify`` callback, else stderr)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        project = bound.arguments.get("project")
        options = bound.arguments.get("options")
        started = time.monotonic()
        try:
            report = function(*args, **kwargs)
        except Exception as error:
            # No report to carry the warnings: they go where repair's own notices go.
            show = bound.arguments.get("notify") or _print_warning
            for warning in after_repair(project, options, None, error,
                                        time.monotonic() - started):
                show(warning)
            raise
        report.warnings.extend(after_repair(project, options, report, None,
                                            time.monotonic() - started))
        return report

    return wrapper  # type: ignore[return-value]


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def after_repair(project: ProjectConfig | None, options: Any, report: RepairReport | None,
                 error: BaseException | None, duration: float) -> list[str]:
    """Log the event and notify; return the warnings (never raises)."""
    if project is None or not _worth_an_event(options, report, error):
        return []
    try:
        root, branch = _where(project, report)
    except Exception:  # not a git worktree, git gone: no log, nothing to say
        root, branch = None, None
    event = repair_event(time_iso=now_iso(), worktree=str(root or project.here),
                         branch=branch, report=report, error=error, duration=duration)
    if event is None:
        return []
    warnings: list[str] = []
    url = getattr(options, "notify_url", None) or project.tool.notify_url
    earlier: list[dict[str, Any]] = []
    if root is not None:
        try:
            path = log_path(root)
            if url and event["outcome"] == FAILED:
                # Unreadable, the log only costs the check for a repeat: posted anyway.
                with contextlib.suppress(OSError):
                    earlier = recent(path)
            append(path, event)
        except (OSError, AutocopyError) as problem:
            warnings.append(f"could not log the repair: {problem}")
    if url and not repeated_failure(event, earlier, time.time()):
        from alembic_autocopy.workflow import notify

        problem_text = notify.post(url, notify.message(event))
        if problem_text:
            warnings.append(problem_text)
    return warnings


def _worth_an_event(options: Any, report: RepairReport | None,
                    error: BaseException | None) -> bool:
    """False when ``repair_event`` would log nothing, known before any git call: a dry run
    (it changes nothing, even when it finds the repair impossible), nothing brought in."""
    if getattr(options, "dry_run", False):
        return False
    return error is not None or (report is not None and bool(report.placed))


def repeated_failure(event: Mapping[str, Any], earlier: Iterable[Mapping[str, Any]],
                     now: float, window: float = REPEAT_FAILURE_SECONDS) -> bool:
    """Pure. Is ``event`` a failure the log shows was already met (same worktree, same
    error) less than ``window`` seconds before ``now``? Then it was notified then."""
    if event.get("outcome") != FAILED:
        return False
    for previous in earlier:
        if (previous.get("outcome") == FAILED
                and previous.get("worktree") == event.get("worktree")
                and previous.get("error") == event.get("error")):
            when = _epoch(previous.get("time"))
            if when is not None and 0 <= now - when < window:
                return True
    return False


def _epoch(text: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def recent(path: Path, size: int = RECENT_LOG_BYTES) -> list[dict[str, Any]]:
    """The events in the last ``size`` bytes of the log (the first, maybe cut, line is
    left out); a missing log has none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            start = max(0, handle.tell() - size)
            handle.seek(start)
            raw = handle.read()
    except FileNotFoundError:
        return []
    lines = raw.splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return _parse_lines(lines)[0]


def _where(project: ProjectConfig, report: RepairReport | None) -> tuple[Path | None,
                                                                          str | None]:
    if report is not None:
        root = report.situation.worktree_root
        branch = next((c.location.branch for c in report.situation.inventory.local
                       if c.location.branch), None)
        if branch is not None or root is None:
            return root, branch

    root = scanning.this_worktree(project)
    if root is None:
        return None, None
    result = git.run_git(["symbolic-ref", "--short", "-q", "HEAD"], root, check=False)
    return root, (result.text.strip() or None)


# --- summary ----------------------------------------------------------------------------------

class Summary:
    """What ``stats`` shows. Pure: built from the events."""

    def __init__(self, unreadable_lines: int = 0) -> None:
        self.repairs = 0
        self.failures = 0
        self.revisions_brought_in = 0
        self.by_source: Counter[str] = Counter()  # source kind -> revisions
        self.by_worktree: Counter[str] = Counter()  # worktree -> repairs
        self.failures_by_type: Counter[str] = Counter()
        self.first: str | None = None
        self.last: str | None = None
        self.total_duration_s = 0.0
        self.unreadable_lines = unreadable_lines

    def as_json(self) -> dict[str, Any]:
        return {"repairs": self.repairs, "failures": self.failures,
                "revisions_brought_in": self.revisions_brought_in,
                "by_source": dict(self.by_source.most_common()),
                "by_worktree": dict(self.by_worktree.most_common()),
                "failures_by_type": dict(self.failures_by_type.most_common()),
                "first": self.first, "last": self.last,
                "total_duration_s": round(self.total_duration_s, 3),
                "unreadable_lines": self.unreadable_lines}


def summarize(events: Iterable[Mapping[str, Any]], since: str | None = None,
              unreadable: int = 0) -> Summary:
    """Count repairs, failures and brought-in revisions (by source kind) of the events at or
    after ``since`` (an ISO 8601 date or time, UTC)."""
    summary = Summary(unreadable_lines=unreadable)
    for event in events:
        if event.get("event") != EVENT_REPAIR:
            continue
        when = str(event.get("time") or "")
        if since and when < since:
            continue
        if _count_outcome(summary, event):
            _count_time(summary, event, when)
    return summary


def _count_outcome(summary: Summary, event: Mapping[str, Any]) -> bool:
    """Count a repair or a failure; False (nothing counted) for any other outcome."""
    outcome = event.get("outcome")
    if outcome == REPAIRED:
        summary.repairs += 1
        summary.by_worktree[str(event.get("worktree"))] += 1
        for source in event.get("sources") or ():
            kind = source.get("kind", "unknown") if isinstance(source, dict) else "unknown"
            summary.by_source[str(kind)] += 1
            summary.revisions_brought_in += 1
        return True
    if outcome == FAILED:
        summary.failures += 1
        summary.failures_by_type[str(event.get("error_type") or "error")] += 1
        return True
    return False


def _count_time(summary: Summary, event: Mapping[str, Any], when: str) -> None:
    """The event's duration, and the first and last times seen."""
    duration = event.get("duration_s")
    if isinstance(duration, (int, float)):
        summary.total_duration_s += float(duration)
    if when:
        summary.first = when if summary.first is None else min(summary.first, when)
        summary.last = when if summary.last is None else max(summary.last, when)


#: Every repair, done or failed, is logged and notified: the commands, the hooks, the API and
#: the env.py heal call these, never ``alembic_autocopy.repair``'s own functions directly.
repair = recorded(repair_module.repair)
bring_in = recorded(repair_module.bring_in)
