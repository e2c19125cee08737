"""A progress line on the terminal for work that takes longer than half a second.

Scanning many worktrees or many git refs can take a while; a silent terminal looks hung. The
line appears only once the work has lasted ``DELAY`` seconds (fast runs print nothing), is
redrawn at most ten times a second, goes to stderr, and is erased when the work ends, so it
never mixes with the real output. It stays off with ``--json``, ``-q``, when stderr is not a
terminal, in git hooks, and when ``ALEMBIC_AUTOCOPY_NO_PROGRESS`` is set.

Code that does long work reports through ``core.progress_report.counter(total, what)``
without knowing whether a line is shown; ``shown`` connects it to this line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

from alembic_autocopy.core import progress_report

DELAY = 0.5  # seconds of work before the line appears
INTERVAL = 0.1  # seconds between redraws
# Set by the hooks this tool installs; git also exports GIT_DIR / GIT_INDEX_FILE to hooks.
HOOK_VARIABLES = ("ALEMBIC_AUTOCOPY_HOOK", "GIT_INDEX_FILE", "GIT_DIR")
OFF_VARIABLE = "ALEMBIC_AUTOCOPY_NO_PROGRESS"

Tick = Callable[[str], None]


class ProgressLine:
    """One self-erasing status line; thread-safe (folders are read by a thread pool)."""

    def __init__(self, stream: TextIO, *, delay: float | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 width: int | None = None) -> None:
        self.stream = stream
        self.delay = DELAY if delay is None else delay
        self.interval = INTERVAL if interval is None else interval
        self.clock = clock
        self.started = clock()
        self.width = width
        self._lock = threading.Lock()
        self._last_draw: float | None = None
        self._shown = False

    def update(self, done: int, total: int | None, what: str) -> None:
        with self._lock:
            now = self.clock()
            if now - self.started < self.delay:
                return
            if self._last_draw is not None and now - self._last_draw < self.interval and (
                    total is None or done < total):
                return
            self._last_draw = now
            amount = f"{done}/{total}" if total else str(done)
            self._draw(f"{what}: {amount}")

    def _draw(self, text: str) -> None:
        width = self.width or _terminal_width(self.stream)
        text = text if len(text) < width else text[: max(width - 2, 1)] + "…"
        self.stream.write(f"\r\033[K{text}")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line (if it was ever drawn), so the next output starts clean."""
        with self._lock:
            if self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._shown = False
            self._last_draw = None


def _terminal_width(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80
    return columns if columns >= 20 else 80  # a pseudo-terminal may report 0 columns


_active: ProgressLine | None = None


def wanted(*, json_mode: bool, quiet: bool, stream: TextIO | None = None,
           environ: Mapping[str, str] | None = None) -> bool:
    """Should a command show progress? Only for a person watching a terminal."""
    stream = stream if stream is not None else sys.stderr
    environ = environ if environ is not None else os.environ
    if json_mode or quiet or environ.get(OFF_VARIABLE) or environ.get("TERM") == "dumb":
        return False
    if any(environ.get(name) for name in HOOK_VARIABLES):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def shown(enabled: bool, stream: TextIO | None = None) -> Iterator[ProgressLine | None]:
    """While inside, ``counter`` reports to a line on ``stream`` (stderr) when ``enabled``."""
    global _active
    if not enabled:
        yield None
        return
    line = ProgressLine(stream if stream is not None else sys.stderr)
    previous, _active = _active, line
    try:
        with progress_report.listening(counter):  # the lower layers' work reaches this line
            yield line
    finally:
        line.clear()
        _active = previous


def counter(total: int | None, what: str) -> Tick:
    """A function to call once per item done (``tick(label)``); a no-op without a line.

    The label is accepted for future detail but the line shows only ``what: done/total``:
    paths would make it flicker and overflow."""
    line = _active
    if line is None:
        return _ignore
    lock = threading.Lock()
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        with lock:
            done += 1
            count = done
        line.update(count, total, what)
        if total is not None and count >= total:
            line.clear()

    return tick


def _ignore(label: str) -> None:
    return None
