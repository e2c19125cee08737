"""Deterministic Alembic revision ids: 12 lowercase hex characters, like Alembic's own."""

from __future__ import annotations

import hashlib
import string

REV_LENGTH = 12
#: The id of the migration every project built by ``make_repo`` starts with.
BASE_REV = "ba5e00000000"


def rev_id(label: str) -> str:
    """A stable 12-hex-character id derived from ``label`` (same label, same id)."""
    return hashlib.sha256(label.encode("utf-8")).hexdigest()[:REV_LENGTH]


def rev_ids(prefix: str, count: int, start: int = 1) -> list[str]:
    """``count`` distinct ids for ``prefix``, in order.

    A short lowercase hex prefix gives readable ids, the prefix then a zero-padded hex counter:
    ``rev_ids("a", 3)`` is ``["a00000000001", "a00000000002", "a00000000003"]``. Any other
    prefix gives ``rev_id(f"{prefix}-{index}")`` for each index.
    """
    indexes = range(start, start + count)
    if not _readable(prefix, start + count - 1):
        return [rev_id(f"{prefix}-{index}") for index in indexes]
    width = REV_LENGTH - len(prefix)
    return [f"{prefix}{index:0{width}x}" for index in indexes]


def _readable(prefix: str, last_index: int) -> bool:
    fits = 0 < len(prefix) <= REV_LENGTH - 4 and last_index < 16 ** (REV_LENGTH - len(prefix))
    return fits and set(prefix) <= set(string.hexdigits.lower())
