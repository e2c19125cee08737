"""On the way out of a failure: the traceback (``--traceback``) and the crash log of a bug.

A module of its own, imported only then (``main``): a run that succeeds (a git hook's
``check``, every dev-server start) never imports traceback, tempfile nor datetime.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

from alembic_autocopy.core import __version__
from alembic_autocopy.core.redaction import MASK, mask_passwords


def print_traceback() -> None:
    print(mask_passwords(traceback.format_exc()), end="", file=sys.stderr)


def masked_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` fit for a log: ``-x`` values hidden (env.py arguments often carry a URL or a
    password), a webhook URL reduced to its host, every URL's secrets masked."""

    shown: list[str] = []
    hide_next: str | None = None
    for arg in argv:
        if hide_next is not None:
            shown.append(_hidden_value(hide_next, arg, MASK))
            hide_next = None
            continue
        option, equals, value = arg.partition("=")
        if arg == "-x" or arg == "--notify-url":
            hide_next = arg
        elif equals and option == "--notify-url":
            shown.append(f"{option}={_hidden_value(option, value, MASK)}")
            continue
        elif arg.startswith("-x") and len(arg) > 2:
            shown.append("-x" + _hidden_value("-x", arg[2:], MASK))
            continue
        shown.append(mask_passwords(arg))
    return shown


def _hidden_value(option: str, value: str, mask: str) -> str:
    if option == "--notify-url":
        from alembic_autocopy.workflow.notify import shown_url

        return shown_url(value)
    key, equals, _secret = value.partition("=")
    return f"{key}={mask}" if equals else mask


def write_crash_log(arguments: Sequence[str]) -> str:
    """Write the traceback to a new file only this user can read (mode 0600), created
    exclusively under a name no one can predict (``mkstemp``: a planted file or symlink is
    never followed). Secrets are masked, ``argv`` included."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        descriptor, path = tempfile.mkstemp(prefix=f"alembic-autocopy-crash-{stamp}-",
                                            suffix=".log")
    except OSError:
        return "(no crash log could be written)"
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"alembic-autocopy {__version__}, Python {sys.version}\n")
            handle.write(f"argv: {masked_argv([sys.argv[0], *arguments])}\n\n")
            handle.write(mask_passwords(traceback.format_exc()))
    except OSError:
        return "(no crash log could be written)"
    return path
