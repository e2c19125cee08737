"""Where a new revision starts while other worktrees' revisions are present here.

After a repair (or a heal through env.py's line) this worktree holds copies of revisions that
its branch does not have in git. When a foreign chain grew from this worktree's head, it is
the only head Alembic sees: plain ``alembic revision`` then bases the new file on a revision
the branch lacks, without a word, and committing it breaks the branch. ``own_heads`` tells
this worktree's own heads apart (``alembic-autocopy revision`` passes one as ``--head``);
``base_on_own_head`` rewrites the new revisions' base when ``alembic revision`` runs env.py
(``--autogenerate``, or ``revision_environment = true``) with the env.py line: the line's
wrapped ``fn`` calls it (heal.py), not a ``process_revision_directives`` option, which
Flask-Migrate's env.py already passes (two would be a TypeError).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from alembic_autocopy.core.errors import AutocopyError
from alembic_autocopy.core.foreign import HeadSplit, split_heads
from alembic_autocopy.core.model import Candidate, Options
from alembic_autocopy.core.wording import LOGGER_NAME
from alembic_autocopy.effects.project import ProjectConfig


def own_heads(project: ProjectConfig, local: Sequence[Candidate],
              elsewhere: Sequence[Candidate]) -> HeadSplit:
    """This worktree's own heads apart from other worktrees' (copies placed here, and files
    not committed on this branch that another place holds)."""
    from alembic_autocopy.effects import placement
    from alembic_autocopy.sources import scanning

    root = scanning.this_worktree(project)
    copies, _merged = placement.still_copies(placement.open_manifest(project, root), root)
    return split_heads(local, elsewhere, (entry.path for entry in copies))


def base_on_own_head(context: Any, revision: Any, directives: list[Any]) -> None:
    """A new revision asked for on ``head`` (no ``--head`` given, or ``head``) starts from
    this worktree's own head when the head Alembic would use is another worktree's revision
    present here, with one warning line. Several own heads, or none to tell: left to
    Alembic. Never stops the command: a failure is logged. The signature of Alembic's
    ``process_revision_directives``."""
    # None: no --head on the command line (Alembic then takes "head")
    asked = [d for d in directives if getattr(d, "head", None) in (None, "head")]
    if not asked:
        return
    try:
        split = _split_for(context)
    except (AutocopyError, OSError) as error:
        logging.getLogger(LOGGER_NAME).warning(
            "alembic-autocopy: cannot tell this worktree's own head (%s): the new revision "
            "is based where Alembic chose", error)
        return
    if split is None or not split.foreign_heads or len(split.own_heads) > 1:
        return
    base = split.own_heads[0] if split.own_heads else "base"
    for directive in asked:
        directive.head = base
        # our head may sit below the foreign chain: a branch starts there, as wanted
        directive.splice = base not in split.heads
    logging.getLogger(LOGGER_NAME).warning(
        "alembic-autocopy: new revision based on %s, this worktree's own head, not on %s "
        "(other worktrees' revisions placed here; pass --head to choose)",
        base, ", ".join(split.foreign_heads))


def _split_for(context: Any) -> HeadSplit | None:
    from alembic_autocopy.sources.inventory import gather
    from alembic_autocopy.workflow.ownership import project_of

    project = project_of(getattr(context, "config", None))
    if project is None:
        return None
    inventory = gather(project, Options())
    return own_heads(project, inventory.local, inventory.elsewhere)
