"""Everything printed goes through here: text (colour only on a terminal), or one JSON
document on stdout with ``--json``. Warnings and errors go to stderr."""

from __future__ import annotations

import json
import os
import sys

from alembic_autocopy.redaction import mask_passwords

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every start)
if TYPE_CHECKING:
    from typing import Any, TextIO

_CODES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2"}


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
        if not self.color or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"

    def line(self, text: str = "") -> None:
        """Normal output (hidden by -q and --json)."""
        if not self.json_mode and not self.quiet:
            print(mask_passwords(text), file=self.stdout)

    def result(self, text: str) -> None:
        """The one line that says how it ended (shown even with -q, hidden by --json)."""
        if not self.json_mode:
            print(mask_passwords(text), file=self.stdout)

    def detail(self, text: str) -> None:
        """Only with -v."""
        if self.verbose and not self.json_mode:
            print(mask_passwords(text), file=self.stdout)

    def warn(self, text: str) -> None:
        self.warnings.append(mask_passwords(text))
        if not self.quiet:
            print(self.style("warning: ", "yellow") + mask_passwords(text), file=self.stderr)

    def error(self, text: str, hint: str | None = None) -> None:
        print(self.style("error: ", "red", "bold") + mask_passwords(text), file=self.stderr)
        if hint:
            print(self.style("hint: ", "blue") + mask_passwords(hint), file=self.stderr)

    def emit(self, document: dict[str, Any]) -> None:
        """The JSON document of a command (only with --json)."""
        if self.json_mode:
            if self.warnings and "warnings" not in document:
                document = {**document, "warnings": self.warnings}
            text = json.dumps(document, indent=2, sort_keys=False, default=str)
            print(mask_passwords(text), file=self.stdout)
