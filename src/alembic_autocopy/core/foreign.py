"""Whose revision is it: the files here that belong to other worktrees, and the heads split
into this worktree's own and the foreign ones. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from alembic_autocopy.core.model import Candidate


class HeadSplit(NamedTuple):
    """This worktree's heads, split into its own and the foreign ones."""

    heads: tuple[str, ...]  # every head of the files here
    own_heads: tuple[str, ...]  # newest own revisions (no own revision builds on them)
    foreign: Mapping[str, Candidate]  # every foreign revision here -> its file here
    foreign_heads: tuple[str, ...]


def foreign_revisions(local: Sequence[Candidate], elsewhere: Sequence[Candidate],
                      managed: Iterable[str]) -> dict[str, Candidate]:
    """Files here that belong to other worktrees: copies this tool placed (the manifest), and
    files not committed on this branch whose exact content another place holds."""
    managed_paths = set(managed)
    elsewhere_content = {(c.revision, c.sha256) for c in elsewhere}
    foreign: dict[str, Candidate] = {}
    for candidate in local:
        if candidate.location.path in managed_paths or (
                candidate.location.committed is False
                and (candidate.revision, candidate.sha256) in elsewhere_content):
            foreign[candidate.revision] = candidate
    return foreign


def split_heads(local: Sequence[Candidate], elsewhere: Sequence[Candidate],
                managed: Iterable[str]) -> HeadSplit:
    """Pure. Heads are revisions no other revision revises (as Alembic counts them); own heads
    are counted among own revisions only, so a foreign chain that grew from this worktree's
    head does not hide it."""
    foreign = foreign_revisions(local, elsewhere, managed)
    heads = _heads_among(local)
    own_heads = _heads_among([c for c in local if c.revision not in foreign])
    return HeadSplit(heads=heads, own_heads=own_heads, foreign=foreign,
                     foreign_heads=tuple(h for h in heads if h in foreign))


def _heads_among(candidates: Sequence[Candidate]) -> tuple[str, ...]:
    revised = {parent for c in candidates for parent in c.header.down_revisions}
    return tuple(sorted({c.revision for c in candidates} - revised))
