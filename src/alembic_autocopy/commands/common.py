"""Small pieces of output shared by several commands."""

from __future__ import annotations

from alembic_autocopy.model import Candidate
from alembic_autocopy.output import Output
from alembic_autocopy.scanning import Inventory


def show_inventory_warnings(inventory: Inventory, out: Output,
                            every_id_known: bool = True) -> None:
    """What was skipped (one line per kind of reason; -v: each file), notes, and the faults
    of the revision graph (a cycle, a parent in no source, an id in two files of a source:
    see graphfaults). ``every_id_known``: False when the search kept only some revisions
    (``find``)."""
    from alembic_autocopy.graphfaults import graph_faults
    from alembic_autocopy.report import skipped_lines

    for line in skipped_lines(inventory.skipped, out.verbose):
        out.warn(line)
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


def broken_reason(candidate: Candidate) -> str | None:
    """Why the file of ``candidate`` would not load (None: it compiles, or it is not a file).

    The scan reads headers only; ``find`` and ``list`` compile each file they show, so that a
    file broken below its header is marked instead of shown as a valid revision (the same
    check ``upgrade`` makes before copying it)."""
    from alembic_autocopy.errors import MigrationParseError
    from alembic_autocopy.parsing import parse_migration

    if not (candidate.location.kind.is_file and candidate.location.path):
        return None
    try:
        with open(candidate.location.path, "rb") as handle:
            content = handle.read(candidate.size + 1)
        parse_migration(content, max_bytes=max(len(content), 1), check_syntax=True)
    except MigrationParseError as error:
        return str(error)
    except OSError as error:
        return error.strerror or str(error)
    return None
