"""``alembic-autocopy run -- CMD ...``: run a command that runs Alembic; repair and re-run it
when it stops on a revision this worktree lacks.

The command's output streams through unchanged while it is scanned for Alembic's two
symptoms of a missing revision: ``Can't locate revision identified by 'X'`` (the database
holds X) and the bare ``KeyError: 'W'`` that follows when X is present but its parent W is
not (a half-copied chain). The same first text is printed for a typo (``alembic upgrade
zzzz``), so nothing is done unless the id really is one the database needs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy import repair
from alembic_autocopy.cli.commands import add_notify_url, add_prefer, options_from
from alembic_autocopy.cli.output import Output
from alembic_autocopy.core.errors import AutocopyError, UsageError
from alembic_autocopy.effects.project import ProjectConfig, load_project
from alembic_autocopy.workflow import events

if TYPE_CHECKING:
    from alembic_autocopy.repair import RepairReport, Situation

DESCRIPTION = """\
Run CMD (anything that runs Alembic: `alembic upgrade head`, `flask db upgrade`, a start
script). Its output passes through unchanged. When it fails because the database holds a
revision this worktree lacks ("Can't locate revision identified by ...", or the KeyError of a
half-present chain), every missing revision and its whole ancestry is brought in, then CMD runs
again (at most --max-attempts times in all). The exit code is CMD's own. A failure for any
other reason, or an id the database does not hold (a typo), is not retried. Nor is an
upgrade to `head` once the revisions brought in made a second head here: it would fail
again ("Multiple head revisions"), so the message says what to run instead (`... upgrade
heads`). With the env.py line (docs/workflow.md) plain `alembic upgrade head` heals itself.

The Alembic configuration is -c/-n/-x when given, else the one an `alembic` CMD names with
its own -c/-n/-x, else alembic.ini in the current folder. With --json, CMD's standard output
goes to standard error, so that standard output holds only the JSON document.
"""

# Alembic: CommandError("Can't locate revision identified by %r"); RevisionMap: KeyError(id).
_CANT_LOCATE = re.compile(r"Can't locate revision identified by '([^'\s]+)'")
_KEY_ERROR = re.compile(r"KeyError: '([^'\s]+)'")
_MAX_LINE = 65536  # a longer line is scanned in pieces; an id is never that long


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-attempts", type=int, default=3, metavar="N",
                        help="run CMD at most N times in all (default: 3)")
    add_prefer(parser)
    add_notify_url(parser)
    # Not "command": main.py reads args.command for the verb, and an empty CMD would then
    # look like no verb at all (the top-level help instead of "no command to run").
    parser.add_argument("cmd_argv", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command to run, after --")


class Attempt(NamedTuple):
    """One run of the command: how it ended and the revision ids Alembic said it lacks."""

    exit_code: int
    missing: list[str]


class _Scanner:
    """Collects the ids named by Alembic's missing-revision messages, line by line."""

    def __init__(self) -> None:
        self.missing: list[str] = []
        self._lock = threading.Lock()

    def scan_line(self, line: str) -> None:
        for pattern in (_CANT_LOCATE, _KEY_ERROR):
            for match in pattern.finditer(line):
                with self._lock:
                    if match.group(1) not in self.missing:
                        self.missing.append(match.group(1))


def _pump(source: IO[bytes], target: IO[bytes], scanner: _Scanner) -> None:
    """Copy ``source`` to ``target`` as it comes (no buffering of whole lines), scanning it."""
    pending = b""
    descriptor = source.fileno()
    while True:
        chunk = os.read(descriptor, 65536)
        if not chunk:
            break
        try:
            target.write(chunk)
            target.flush()
        except (BrokenPipeError, ValueError):
            pass  # our reader went away: keep draining so the command is never blocked
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            scanner.scan_line(line.decode("utf-8", "replace"))
        if len(pending) > _MAX_LINE:
            scanner.scan_line(pending.decode("utf-8", "replace"))
            pending = pending[-256:]
    if pending:
        scanner.scan_line(pending.decode("utf-8", "replace"))


def run_once(command: Sequence[str], stdout: IO[bytes], stderr: IO[bytes]) -> Attempt:
    """Run ``command`` (stdin inherited), stream its output, return how it ended."""
    scanner = _Scanner()
    try:
        process = subprocess.Popen(list(command), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise UsageError(f"command not found: {command[0]}",
                         hint="check its spelling, or that it is on PATH") from None
    except PermissionError:
        raise UsageError(f"command cannot be run: {command[0]} (permission denied)") from None
    assert process.stdout is not None and process.stderr is not None
    pumps = [threading.Thread(target=_pump, args=(process.stdout, stdout, scanner), daemon=True),
             threading.Thread(target=_pump, args=(process.stderr, stderr, scanner), daemon=True)]
    for pump in pumps:
        pump.start()
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # The command got the same Ctrl-C (same process group): let it finish its way.
        process.wait()
        for pump in pumps:
            pump.join()
        raise
    for pump in pumps:
        pump.join()
    if code < 0:  # killed by a signal: report it the way a shell does
        code = 128 - code
    return Attempt(code, scanner.missing)


def alembic_options(command: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """``-c``/``-n``/``-x`` given to an ``alembic`` command (``alembic ...`` or ``python -m
    alembic ...``), read up to its sub-command: (config files, section, x arguments)."""
    start = None
    for index, word in enumerate(command):
        if os.path.basename(word) == "alembic" or (
                word == "alembic" and index > 0 and command[index - 1] == "-m"):
            start = index + 1
            break
    configs: list[str] = []
    section: str | None = None
    x_args: list[str] = []
    if start is None:
        return configs, section, x_args
    words = list(command[start:])
    index = 0
    while index < len(words):
        word = words[index]
        if not word.startswith("-"):
            break  # the sub-command: its own options are not the configuration
        name, equals, value = word.partition("=")
        if name in ("-c", "--config", "-n", "--name", "-x"):
            if not equals:
                index += 1
                if index >= len(words):
                    break
                value = words[index]
            if name in ("-c", "--config"):
                configs.append(value)
            elif name in ("-n", "--name"):
                section = value
            else:
                x_args.append(value)
        index += 1
    return configs, section, x_args


def project_for(args: argparse.Namespace, command: Sequence[str]) -> ProjectConfig:
    """Our own -c/-n/-x win; else those the wrapped ``alembic`` command was given."""
    configs, section, x_args = alembic_options(command)
    name = args.name if args.name != "alembic" else (section or "alembic")
    return load_project(args.config or configs, name, args.x or x_args)


def needed_ids(project: ProjectConfig, args: argparse.Namespace) -> tuple[Situation, set[str]]:
    """Assess the worktree; return (situation, every id a repair would legitimately bring):
    what the database applied and this worktree lacks, and every missing ancestor (the
    parents of a half-present chain too: Alembic's bare KeyError)."""

    situation = repair.assess(project, options_from(args))
    plan = situation.plan
    wanted = set(plan.unknown_applied) | {c.revision for c in plan.bring}
    return situation, wanted | {u.revision for u in plan.unresolved}


def repair_for(attempt: Attempt, args: argparse.Namespace, command: Sequence[str],
               note: Output) -> RepairReport | None:
    """Place what the database needs, if the failure really was a missing revision."""

    project = project_for(args, command)
    situation, ids = needed_ids(project, args)
    real = [rev for rev in attempt.missing if rev in ids]
    if not real:
        shown = ", ".join(attempt.missing)
        note.line(f"alembic-autocopy: {shown} is not a revision the database needs (a typo?): "
                  "nothing to repair")
        return None
    report = events.repair(project, "head", options_from(args), upgrade=False,
                           situation=situation)
    bring = report.situation.plan.bring
    note.line(f"alembic-autocopy: brought in {len(bring)} migration(s), parents first: "
              + ", ".join(c.revision for c in bring))
    return report


def bound_to_fail(command: Sequence[str], report: RepairReport) -> bool:
    """Would running ``command`` again fail the same way? When the copies made a second
    head, an upgrade to ``head`` does ("Multiple head revisions are present"). A command
    that is not an alembic command (a start script) is assumed to upgrade to head. Had
    env.py healed, the first run would not have failed on a missing revision."""
    if not report.upgraded_to_every_head:
        return False
    words = list(command)
    if "upgrade" not in words:
        return not any(word in _OTHER_SUBCOMMANDS for word in words)
    target = _upgrade_target(words)
    return target is None or target == "head"


# Alembic sub-commands that work with two heads (a re-run of them succeeds).
_OTHER_SUBCOMMANDS = frozenset({"current", "history", "heads", "branches", "show", "stamp",
                                "downgrade", "check", "revision", "merge"})


def _upgrade_target(words: Sequence[str]) -> str | None:
    after = words[words.index("upgrade") + 1:]
    return next((word for word in after if not word.startswith("-")), None)


def instead(command: Sequence[str]) -> str:
    """The command to run instead: the same, to every head (``heads`` for ``head``)."""
    words = list(command)
    if "upgrade" in words and _upgrade_target(words) in ("head", None):
        if "head" in words:
            words[words.index("head", words.index("upgrade"))] = "heads"
        else:
            words.append("heads")
        return " ".join(_short(word) for word in words)
    return "alembic upgrade heads"


def _short(word: str) -> str:
    """``/usr/bin/python3`` -> ``python3``: the line names what to type, not where it is."""
    return os.path.basename(word) if os.sep in word and not word.startswith("-") else word


def explain_second_head(command: Sequence[str], note: Output) -> None:
    note.error(
        "this worktree now has two heads (its own and the one brought in), so "
        f"`{' '.join(_short(word) for word in command)}` would fail again "
        "(\"Multiple head revisions are present\"): not run again",
        f"run `{instead(command)}`; or add `**alembic_autocopy.integration.options()` to "
        "env.py's context.configure, and plain `alembic upgrade head` heals itself "
        "(docs/workflow.md)")


def run(args: argparse.Namespace, out: Output) -> int:
    command = _command_of(args)
    # Our own lines go to stderr: the command's stdout stays exactly its own.
    note = Output(json_mode=out.json_mode, quiet=out.quiet, verbose=out.verbose,
                  color=out.color, stdout=sys.stderr)
    stdout = sys.stderr.buffer if out.json_mode else sys.stdout.buffer
    sys.stdout.flush()
    runs = _Runs()
    while True:
        runs.attempts.append(run_once(command, stdout, sys.stderr.buffer))
        if not _repaired_for_another_attempt(runs, args, command, note):
            break
        note.line(f"alembic-autocopy: running again: {' '.join(command)}")
    final = runs.attempts[-1].exit_code
    out.emit({"ok": final == 0, "exit_code": final, "command": command,
              "attempts": [{"exit_code": a.exit_code, "missing": a.missing}
                           for a in runs.attempts],
              "repairs": runs.repairs, "run_instead": runs.instead_of,
              "error": None if runs.error is None else {"message": runs.error.message,
                                                        "hint": runs.error.hint}})
    return final


def _command_of(args: argparse.Namespace) -> list[str]:
    """CMD as given after ``--``; refused when empty or with --max-attempts below 1."""
    command = list(args.cmd_argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command to run",
                         hint="alembic-autocopy run -- alembic upgrade head")
    if args.max_attempts < 1:
        raise UsageError(f"--max-attempts must be at least 1 (got {args.max_attempts})")
    return command


class _Runs:
    """The attempts so far and the repairs between them."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.repairs: list[dict[str, Any]] = []
        self.instead_of: str | None = None  # what to run, when running CMD again would fail again
        self.error: AutocopyError | None = None  # the repair that failed


def _repaired_for_another_attempt(runs: _Runs, args: argparse.Namespace,
                                  command: Sequence[str], note: Output) -> bool:
    """After the last attempt: bring in what it lacked; True when running CMD again can
    succeed (False: it succeeded, failed for another reason, or would fail the same way)."""
    attempt = runs.attempts[-1]
    if attempt.exit_code == 0 or not attempt.missing:
        return False
    if len(runs.attempts) >= args.max_attempts:
        note.warn(f"gave up after {len(runs.attempts)} attempt(s) (--max-attempts)")
        return False
    try:
        report = repair_for(attempt, args, command, note)
    except AutocopyError as failure:
        runs.error = failure
        note.error(failure.message, failure.hint)
        return False
    if report is None or not report.placed:
        return False  # nothing new in place: the same failure would come back
    runs.repairs.append({"brought_in": [e.revision for e in report.placed],
                         "copies": [e.path for e in report.placed],
                         "several_heads": report.upgraded_to_every_head})
    if bound_to_fail(command, report):
        explain_second_head(command, note)
        runs.instead_of = instead(command)
        return False
    return True

