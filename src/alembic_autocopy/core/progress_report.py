"""How long work reports its progress without knowing who, if anyone, watches.

Code in the lower layers (reading a fleet's folders) calls ``counter(total, what)`` and ticks
the returned function once per item. The command line, which owns the terminal, installs the
listener with ``listening(factory)``; without one, ticking does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Tick = Callable[[str], None]
CounterFactory = Callable[["int | None", str], Tick]

_listener: CounterFactory | None = None


def counter(total: int | None, what: str) -> Tick:
    """A function to call once per item done (``tick(label)``); a no-op with no listener."""
    return _listener(total, what) if _listener is not None else _ignore


@contextlib.contextmanager
def listening(factory: CounterFactory) -> Iterator[None]:
    """While inside, ``counter`` hands each piece of work to ``factory``."""
    global _listener
    previous, _listener = _listener, factory
    try:
        yield
    finally:
        _listener = previous


def _ignore(label: str) -> None:
    return None
