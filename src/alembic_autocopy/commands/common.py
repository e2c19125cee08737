"""Small pieces of output shared by several commands."""

from __future__ import annotations

import os
import re

from alembic_autocopy.output import Output
from alembic_autocopy.scanning import Inventory

_DIGITS = re.compile(r"\d+")


def show_inventory_warnings(inventory: Inventory, out: Output,
                            every_id_known: bool = True) -> None:
    """What was skipped (outside this worktree, one line per kind of reason without -v),
    notes, and the faults of the revision graph (a cycle, a parent in no source, an id in
    two files of a source: see graphfaults). ``every_id_known``: False when the search kept
    only some revisions (``find``)."""
    from alembic_autocopy.graphfaults import graph_faults
    from alembic_autocopy.report import grouped

    here = tuple(os.fspath(folder) + os.sep for folder, _ in inventory.here.version_dirs
                 ) if inventory.here is not None else ()
    items = []
    for skipped in inventory.skipped:
        text = f"skipped {skipped.path}: {skipped.reason}"
        # This worktree's own files are each named (Alembic will stumble on each of them);
        # elsewhere (old refs, other worktrees) one line per kind of reason is enough.
        kind = text if skipped.path.startswith(here) else (
            f"files skipped elsewhere ({_DIGITS.sub('N', skipped.reason)})")
        items.append((kind, text, skipped.path))
    for line in grouped(items, out.verbose):
        out.warn(line)
    for note in inventory.notes:
        out.warn(note)
    for fault in graph_faults(inventory.all, every_id_known=every_id_known):
        out.warn(fault)
    for path, reason in inventory.loaded_by_alembic.items():
        out.detail(f"read through Alembic's own loading (as `alembic` does): {path} ({reason})")
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
