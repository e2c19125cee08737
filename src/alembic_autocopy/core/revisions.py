"""The one adapter to Alembic's own revision graph (``RevisionMap``).

Parsed headers become ``alembic.script.revision.Revision`` objects; Alembic then answers what
it already knows: heads, ancestry, merges, branch labels, cycles, missing parents. Importing
this module imports alembic (~340 ms): only commands that talk to the database use it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence

from alembic.script.revision import Revision, RevisionError, RevisionMap

from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.model import MigrationHeader, reachable


class GraphError(AutocopyError):
    """The revisions do not form a graph Alembic can load (cycle, missing parent, ...)."""


def revision_map(headers: Iterable[MigrationHeader]) -> RevisionMap:
    revisions = [
        Revision(
            header.revision,
            _one_or_tuple(header.down_revisions),
            dependencies=_one_or_tuple(header.depends_on),
            branch_labels=_one_or_tuple(header.branch_labels),
        )
        for header in headers
    ]
    return RevisionMap(lambda: revisions)


def _one_or_tuple(values: tuple[str, ...]) -> str | tuple[str, ...] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def validate(headers: Sequence[MigrationHeader]) -> tuple[str, ...]:
    """Build the graph as Alembic will; return its heads or raise GraphError saying why not."""
    graph = revision_map(headers)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            heads = graph.heads
        missing = [str(w.message) for w in caught if "is not present" in str(w.message)]
    except (RevisionError, KeyError) as error:
        raise GraphError(f"the revisions do not form a valid Alembic graph: {error}") from error
    if missing:
        raise GraphError(f"the revisions would still not load: {missing[0]}")
    return tuple(heads)


def heads(headers: Sequence[MigrationHeader]) -> tuple[str, ...]:
    """The heads of ``headers``' graph. One run asks it several times of the same headers
    (is the database current? which target? current again?): Alembic builds its map of a
    thousand revisions once (~10 ms), the other answers come from the cache."""
    return _heads(tuple(headers))


@functools.lru_cache(maxsize=8)
def _heads(headers: tuple[MigrationHeader, ...]) -> tuple[str, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tuple(revision_map(headers).heads)
        except _MALFORMED:  # a cycle, a missing parent: reported by graphfaults
            return _plain_heads(headers)


# What Alembic raises on a graph it cannot load (a cycle, a parent nobody holds, ...).
_MALFORMED = (RevisionError, KeyError, ValueError)


def _plain_heads(headers: Sequence[MigrationHeader]) -> tuple[str, ...]:
    """Revisions no other one names as parent: the heads of a graph Alembic refuses."""
    named = {need for header in headers for need in header.needs}
    return tuple(h.revision for h in headers if h.revision not in named)


def _plain_parents(headers: Sequence[MigrationHeader]) -> dict[str, tuple[str, ...]]:
    labels = {label: h.revision for h in headers for label in h.branch_labels}
    return {h.revision: tuple(labels.get(need, need) for need in h.needs) for h in headers}


def ancestry(headers: Sequence[MigrationHeader], tips: Iterable[str]) -> set[str]:
    """Every revision at or below ``tips`` (parents and dependencies), by Alembic's rules;
    on a graph Alembic refuses (cycle, missing parent), by following the parents named."""
    tip_list = [tip for tip in tips if tip]
    if not tip_list:
        return set()
    graph = revision_map(headers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            nodes = graph._get_ancestor_nodes(graph.get_revisions(tuple(tip_list)))
            return {node.revision for node in nodes if node is not None}
        except _MALFORMED:
            return reachable(tip_list, _plain_parents(headers))


def newly_applied(headers: Sequence[MigrationHeader], before: Iterable[str],
                  after: Iterable[str]) -> list[str]:
    """Revisions applied between two database states, in the order Alembic applies them."""
    done_before = ancestry(headers, before)
    done_after = ancestry(headers, after)
    graph = revision_map(headers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            order = [rev.revision
                     for rev in graph.iterate_revisions(tuple(graph.heads), "base")]
        except _MALFORMED:
            order = [h.revision for h in headers]  # no order Alembic would know
    order.reverse()
    return [rev for rev in order if rev in done_after and rev not in done_before]
