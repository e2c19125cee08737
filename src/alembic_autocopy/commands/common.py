"""Small pieces of output shared by several commands."""

from __future__ import annotations

from alembic_autocopy.output import Output
from alembic_autocopy.scanning import Inventory


def show_inventory_warnings(inventory: Inventory, out: Output,
                            every_id_known: bool = True) -> None:
    """What was skipped, notes, and the faults of the revision graph (a cycle, a parent in
    no source, an id in two files of a source: see graphfaults). ``every_id_known``: False
    when the search kept only some revisions (``find``)."""
    from alembic_autocopy.graphfaults import graph_faults

    for skipped in inventory.skipped:
        out.warn(f"skipped {skipped.path}: {skipped.reason}")
    for note in inventory.notes:
        out.warn(note)
    for fault in graph_faults(inventory.all, every_id_known=every_id_known):
        out.warn(fault)
    out.detail(search_summary(inventory))


def search_summary(inventory: Inventory) -> str:
    """What was searched and what the index saved (``-v``): why a run was fast or slow."""
    if inventory.pending is not None:  # the other sources were never listed
        where = "this worktree only (nothing was needed from elsewhere)"
    else:
        where = f"this worktree and {len(inventory.searched)} other worktree(s) or folder(s)"
        where += (f", {inventory.refs_searched} git ref(s)" if inventory.refs_searched is not None
                  else ", no git ref")
    stats = inventory.index_stats
    if stats is None:
        return f"searched {where}"
    shared = (f"; work shared with {stats.workers} worker process(es)"
              if stats.workers else "")
    return (f"searched {where}; index: {stats.hits:,} file(s) unchanged, {stats.reads:,} "
            f"read, {stats.parses:,} parsed{shared}")
