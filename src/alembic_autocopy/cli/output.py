"""Everything printed goes through here: text (colour only on a terminal), or one JSON
document on stdout with ``--json``. Warnings and errors go to stderr.

Every text is masked (``redaction.mask_passwords``: no secret is printed) and, in text mode,
made terminal-safe (``redaction.terminal_safe``: a control character or a newline from a
revision id, a file name or a message is shown escaped, never sent raw to the terminal). Only
the colour codes ``style`` adds are sent as they are. ``--json`` keeps every string exact
(JSON escapes control characters itself), secrets masked.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from alembic_autocopy.core.redaction import mask_passwords, terminal_safe

_CODES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2"}


class Styled(str):
    """Text ``Output.style`` made: already masked and escaped, its colour codes are ours."""


def shown(text: str) -> str:
    """``text`` as it may reach a terminal: secrets masked, control characters escaped."""
    if isinstance(text, Styled):
        return text
    return terminal_safe(mask_passwords(text))


def exact(value: Any) -> Any:
    """A JSON document's value with every string's secrets masked, nothing else changed."""
    if isinstance(value, str):
        return mask_passwords(value)
    if isinstance(value, dict):
        return {exact(key) if isinstance(key, str) else key: exact(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [exact(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return mask_passwords(str(value))


class Output:
    def __init__(self, *, json_mode: bool = False, quiet: bool = False, verbose: bool = False,
                 color: bool | None = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.json_mode = json_mode
        self.quiet = quiet
        self.verbose = verbose
        if color is None:
            color = (self.stdout.isatty() and os.environ.get("NO_COLOR") is None
                     and os.environ.get("TERM") != "dumb")
        self.color = color
        self.warnings: list[str] = []

    def style(self, text: str, *styles: str) -> str:
        text = shown(text)
        if not self.color or not styles:
            return Styled(text)
        codes = ";".join(_CODES[s] for s in styles)
        return Styled(f"\033[{codes}m{text}\033[0m")

    def line(self, text: str = "") -> None:
        """Normal output (hidden by -q and --json)."""
        if not self.json_mode and not self.quiet:
            print(shown(text), file=self.stdout)

    def result(self, text: str) -> None:
        """The one line that says how it ended (shown even with -q, hidden by --json)."""
        if not self.json_mode:
            print(shown(text), file=self.stdout)

    def detail(self, text: str) -> None:
        """Only with -v."""
        if self.verbose and not self.json_mode:
            print(shown(text), file=self.stdout)

    def warn(self, text: str) -> None:
        self.warnings.append(mask_passwords(text))
        if not self.quiet:
            print(self.style("warning: ", "yellow") + shown(text), file=self.stderr)

    def warn_once(self, text: str) -> None:
        """``warn``, unless the command has already shown this warning."""
        if mask_passwords(text) not in self.warnings:
            self.warn(text)

    def error(self, text: str, hint: str | None = None) -> None:
        print(self.style("error: ", "red", "bold") + shown(text), file=self.stderr)
        if hint:
            print(self.style("hint: ", "blue") + shown(hint), file=self.stderr)

    def flush(self) -> None:
        """Before another writer (Alembic, env.py, git) prints to the same terminal."""
        self.stdout.flush()
        self.stderr.flush()

    def emit(self, document: dict[str, Any]) -> None:
        """The JSON document of a command (only with --json)."""
        if self.json_mode:
            if self.warnings and "warnings" not in document:
                document = {**document, "warnings": self.warnings}
            text = json.dumps(exact(document), indent=2, sort_keys=False)
            print(text, file=self.stdout)


def hint_without_database(hint: str | None, verb: str) -> str:
    """``hint`` with the way round a database that cannot be used, for a command that can
    go on without it (``--no-db``)."""
    way_round = f"or `alembic-autocopy {verb} --no-db` to go on without the database"
    return f"{hint}; {way_round}" if hint else way_round
