"""Command line: parse, dispatch to ``commands/<verb>.py``, turn errors into exit codes.

Imports stay light here: a command that needs no database never imports alembic.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence

from alembic_autocopy.cli import progress
from alembic_autocopy.cli.output import Output, hint_without_database
from alembic_autocopy.core import __version__
from alembic_autocopy.core.errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    AutocopyError,
    DatabaseError,
)

# Imported inside functions, as each saves >= 5 ms where skipped: the crash module (traceback,
# tempfile) only on a failure (>= 5 ms on every command: bench/run.py import table).

# verb -> (module under alembic_autocopy.cli.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "upgrade": ("upgrade", "bring in every missing migration, then upgrade the database once"),
    "check": ("check", "exit 1 if the database holds revisions this worktree lacks (changes "
                       "nothing)"),
    "find": ("find", "every location of a revision in every source"),
    "list": ("listing", "every revision across all sources, with where it is and its state"),
    "clean": ("clean", "remove the copies this tool placed whose content is unchanged"),
    "run": ("run", "run a command that runs Alembic; on a missing revision, repair and re-run"),
    "sync": ("sync", "fetch, rebase (or merge) onto the upstream or base branch, then repair"),
    "install-hooks": ("hooks", "git hooks that check the database after checkout, merge and "
                               "rebase, in every worktree"),
    "uninstall-hooks": ("hooks", "remove the git hooks; put back the ones they replaced"),
    "revision": ("revision", "`alembic revision` on this worktree's own head, even with "
                             "other worktrees' heads present"),
    "status": ("status", "the database's heads and where each comes from, this worktree's "
                         "heads, copies, warnings"),
    "graph": ("graph", "the revision graph of every source with the database's position "
                       "(Mermaid, DOT, SVG, PNG)"),
    "stats": ("stats", "how many repairs, revisions brought in, by source, failures"),
    "record": ("record", "store the applied revisions whose files are here in the database's "
                         "record table (backfill)"),
    "demo": ("demo", "a two-worktree project on SQLite, broken then repaired, in a temp folder"),
}

DESCRIPTION = """\
Many git worktrees, one Alembic database. When another worktree applied migrations that this
worktree's files lack, Alembic stops on "Can't locate revision identified by ...".
alembic-autocopy reads what the database applied, finds every missing revision and its whole
ancestry in sibling worktrees and configured folders, copies them in where git does not see
them, and upgrades once.

Exit codes: 0 done, 1 could not complete (the reason is printed), 2 usage or configuration
error, 3 internal error (run with --traceback and report it), 130 interrupted.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, given the terminal's width: left to find it, argparse imports
    shutil (with bz2 and lzma) for it alone, ~3 ms of every command (bench/run.py, find on a
    small project). The same width: ``$COLUMNS``, else stdout's terminal, else 80, minus 2."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else _terminal_columns() - 2)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def common_options(after_verb: bool = False) -> argparse.ArgumentParser:
    """Options every command accepts, before or after the verb.

    The copy given to each verb's parser has no defaults at all (SUPPRESS): argparse copies a
    subparser's defaults over what the main parser already read, so ``--json check`` would
    otherwise lose ``--json``. ``_merge_defaults`` fills in what neither parser set.
    """
    parent = argparse.ArgumentParser(add_help=False, formatter_class=HelpFormatter,
                                     argument_default=argparse.SUPPRESS if after_verb else None)
    group = parent.add_argument_group("common options")
    group.add_argument("-c", "--config", action="append", metavar="FILE",
                       help="Alembic config file (alembic.ini or pyproject.toml); default: "
                            "$ALEMBIC_CONFIG or alembic.ini in the current folder; may be "
                            "given twice (an ini and a pyproject.toml), as with alembic")
    group.add_argument("-n", "--name", metavar="SECTION",
                       help="ini section of the Alembic config (default: alembic)")
    group.add_argument("-x", action="append", metavar="KEY=VALUE",
                       help="extra argument for env.py (context.get_x_argument), repeatable")
    group.add_argument("--json", action="store_true",
                       help="print one JSON document on stdout instead of text")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print only the final result line and errors")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="print more detail (every source, every skipped file)")
    group.add_argument("--color", choices=("auto", "always", "never"),
                       help="colour the text output (default: auto, only on a terminal)")
    group.add_argument("--traceback", action="store_true",
                       help="show the Python traceback of an error")
    return parent


# Options of common_options() that take a value (the next argument is not the verb).
_VALUE_OPTIONS = frozenset({"-c", "--config", "-n", "--name", "-x", "--color"})


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb in ``argv`` when it can be told without parsing (else None: build all).
    None too after ``-h``/``--help`` before the verb: the main help lists every verb."""
    expect_value = False
    for arg in argv:
        if expect_value:
            expect_value = False
        elif arg in ("--", "-h", "--help"):
            return None
        elif arg in _VALUE_OPTIONS:
            expect_value = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, that verb's alone: the others' modules are not
    imported (each costs its imports: a hook running ``check`` pays for ``check`` alone), nor
    their parsers built (~3 ms: bench/run.py's find on a small project)."""
    common, common_after_verb = common_options(), common_options(after_verb=True)
    parser = argparse.ArgumentParser(
        prog="alembic-autocopy", description=DESCRIPTION, parents=[common],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, (module_name, help_text) in COMMANDS.items():
        if only is not None and verb != only:
            continue
        module = importlib.import_module(f"alembic_autocopy.cli.commands.{module_name}")
        sub = subparsers.add_parser(
            verb, help=help_text, description=getattr(module, "DESCRIPTION", help_text),
            parents=[common_after_verb], formatter_class=HelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run,
                         reads_database=getattr(module, "READS_DATABASE", False))
    return parser


def _merge_defaults(args: argparse.Namespace) -> None:
    defaults = {"config": [], "name": "alembic", "x": [], "json": False, "quiet": False,
                "verbose": False, "color": "auto", "traceback": False}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def make_output(args: argparse.Namespace) -> Output:
    color = {"auto": None, "always": True, "never": False}[args.color]
    return Output(json_mode=args.json, quiet=args.quiet, verbose=args.verbose, color=color)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. ``argv`` None: this process's own arguments, as the console script
    and ``python -m alembic_autocopy`` call it; the process then ends with the command, and
    is spared the garbage collector's last passes (``ending_process``)."""
    if argv is None:
        # A one-shot process: the cyclic collector's passes over what the imports build cost
        # ~15% of `check` and ~20% of `find` (bench/run.py, garbage-collector table), and
        # collect nothing worth it before exit. Back on before migrations run (database.py).
        gc.disable()
    code = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        ending_process()
    return code


def ending_process() -> None:
    """Called when a command is all this process does: hide every object left from the
    cyclic garbage collector (``gc.freeze``), whose passes at interpreter exit would walk
    all that Alembic, SQLAlchemy and env.py created (~60 ms of a nothing-to-do `check`, a
    sixth of it). Everything else of a normal exit still happens: atexit handlers, threads
    joined, files flushed and closed, objects freed as their references go."""
    gc.freeze()


def _main(arguments: list[str]) -> int:
    parser = build_parser(only=chosen_verb(arguments))
    args = parser.parse_args(arguments)
    _merge_defaults(args)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    out = make_output(args)
    try:
        if getattr(args, "reads_database", False):
            # Alembic and SQLAlchemy: only for a verb that reads the database (~300 ms `find`
            # never pays), and imported here, near the bottom of the call stack (inside the
            # try: a broken install or a Ctrl-C while importing is handled like any other).
            # Imported from deep in the repair, their module bodies ran where Python 3.11
            # allocates and frees a 16 KB frame-stack chunk over and over: strace counted
            # 1,838 such mmap/munmap pairs in a nothing-to-do `upgrade` and 845 in `check`,
            # 746 in both from here (~10 ms per 1,000; bench/run.py, upgrade ÷ check).
            import alembic.config
            import alembic.script  # noqa: F401
        with progress.shown(progress.wanted(json_mode=args.json, quiet=args.quiet)):
            code: int = args.handler(args, out)
        return code
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except AutocopyError as error:
        if args.traceback:
            from alembic_autocopy.cli import crash

            crash.print_traceback()
        hint = error.hint
        if isinstance(error, DatabaseError) and getattr(args, "no_db", None) is False:
            hint = hint_without_database(hint, args.command)
        for warning in error.warnings:  # on their own lines, before the error
            out.warn_once(warning)
        if args.json:
            out.emit({"ok": False, "error": error.message, "hint": hint,
                      "exit_code": error.exit_code})
        out.error(error.message, hint)
        return error.exit_code
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception:  # a bug: say so, keep the details
        from alembic_autocopy.cli import crash

        log = crash.write_crash_log(arguments)
        if args.traceback:
            crash.print_traceback()
        out.error(f"internal error in alembic-autocopy {__version__} "
                  f"(details in {log})",
                  hint="run again with --traceback and report it")
        return EXIT_INTERNAL


def usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE
