"""Decide, in one pass, everything this worktree must bring in. Pure: data in, data out.

Start from the database's applied revisions that this worktree lacks, then follow every
parent and ``depends_on`` link of what is brought in, until everything needed is known here.
The result is the minimal set, ordered parents first, or the reasons it cannot be built:
unresolved ids (found nowhere) and conflicts (one id, several different contents).
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from alembic_autocopy.core.model import (
    Candidate,
    Conflict,
    Location,
    MigrationHeader,
    Plan,
    Unresolved,
    short_ref,
)

Preference = Callable[[Candidate], bool]


class _Choice(NamedTuple):
    chosen: Candidate | None
    conflict: Conflict | None


def group_by_content(candidates: Iterable[Candidate]) -> dict[str, list[Candidate]]:
    """Candidates of one revision grouped by sha256, closest location first in each group."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.sha256, []).append(candidate)
    for group in groups.values():
        group.sort(key=closeness)
    return dict(sorted(groups.items(), key=lambda item: closeness(item[1][0])))


def closeness(candidate: Candidate) -> tuple[bool, int, str, str]:
    """Sort key: worktrees, then local branches, remote branches, tags, stashes, database;
    a copy this tool placed comes after all of them (the plan names the real owner)."""
    location = candidate.location
    return (location.is_copy, location.kind.rank, location.worktree or location.ref or "",
            location.path or "")


def plan_repair(
    local: Sequence[MigrationHeader],
    applied: Iterable[str],
    candidates: Iterable[Candidate],
    prefer: Preference | None = None,
) -> Plan:
    """Plan what to bring in so that Alembic can load every applied revision.

    ``local``: this worktree's revisions. ``applied``: the ids in the version table.
    ``candidates``: files found elsewhere. ``prefer`` settles conflicts: among the distinct
    contents of one id, the only one it accepts is taken.
    """
    known_ids = {header.revision for header in local}
    known_here = known_ids | {label for header in local for label in header.branch_labels}
    walk = _Walk(known_here, prefer)
    # Never bring in an id this worktree already has.
    walk.index(candidate for candidate in candidates if candidate.revision not in known_ids)
    unknown_applied = tuple(rev for rev in dict.fromkeys(applied) if rev not in known_ids)
    for revision in unknown_applied:
        walk.need(revision, "database")
    # A half-present chain (a revision here whose parent is not, e.g. one file copied by
    # hand): Alembic cannot even build its map (a bare KeyError), so those parents are
    # needed too, with their own ancestry.
    for header in local:
        for parent in header.needs:
            if parent not in known_here:
                walk.need(parent, header.revision)
    walk.run()
    return walk.plan(unknown_applied)


class _Walk:
    """The breadth-first walk from what is needed to what to bring in, parents included."""

    def __init__(self, known_here: set[str], prefer: Preference | None) -> None:
        self.known_here = known_here  # this worktree's ids and branch labels
        self.prefer = prefer
        self.by_revision: dict[str, list[Candidate]] = {}
        self.by_label: dict[str, set[str]] = {}  # branch label -> revisions that carry it
        self.needed_by: dict[str, list[str]] = {}
        self.queue: list[str] = []
        self.visited: set[str] = set()
        self.chosen: dict[str, Candidate] = {}
        self.unresolved: list[str] = []
        self.conflicts: dict[str, Conflict] = {}

    def index(self, candidates: Iterable[Candidate]) -> None:
        for candidate in candidates:
            self.by_revision.setdefault(candidate.revision, []).append(candidate)
            for label in candidate.header.branch_labels:
                self.by_label.setdefault(label, set()).add(candidate.revision)

    def need(self, revision: str, by: str) -> None:
        self.needed_by.setdefault(revision, []).append(by)
        self.queue.append(revision)

    def run(self) -> None:
        while self.queue:
            needed = self.queue.pop(0)
            if needed in self.visited or needed in self.known_here:
                continue
            self.visited.add(needed)
            revision = self._revision_named(needed)
            if revision is not None:
                self._bring(needed, revision)

    def _revision_named(self, needed: str) -> str | None:
        """The revision ``needed`` names (an id, or a depends_on naming a branch label that
        one revision carries); None when that revision was already visited."""
        if needed in self.by_revision or len(self.by_label.get(needed, ())) != 1:
            return needed
        revision = next(iter(self.by_label[needed]))
        if revision in self.visited and revision != needed:
            return None
        self.visited.add(revision)
        return revision

    def _bring(self, needed: str, revision: str) -> None:
        group = self.by_revision.get(revision)
        if not group:
            self.unresolved.append(needed)
            return
        choice = _choose(revision, group, self.prefer)
        if choice.conflict is not None:
            self.conflicts[revision] = choice.conflict
            return
        assert choice.chosen is not None
        self.chosen[revision] = choice.chosen
        for parent in choice.chosen.header.needs:
            self.need(parent, revision)

    def plan(self, unknown_applied: tuple[str, ...]) -> Plan:
        # "needed by" is read at the end: it also holds what was gathered after an id was
        # first found unresolved.
        unresolved = (Unresolved(rev, tuple(dict.fromkeys(self.needed_by.get(rev, ()))))
                      for rev in self.unresolved)
        return Plan(
            unknown_applied=unknown_applied,
            bring=tuple(order_parents_first(self.chosen)),
            unresolved=tuple(unresolved),
            conflicts=tuple(self.conflicts.values()),
            also_found=self._also_found(),
        )

    def _also_found(self) -> dict[str, tuple[Location, ...]]:
        """For each chosen revision, the other places that hold the same content."""
        also_found = {
            rev: tuple(c.location for c in self.by_revision[rev]
                       if c.sha256 == chosen.sha256 and c is not chosen)
            for rev, chosen in self.chosen.items()
        }
        return {rev: locations for rev, locations in also_found.items() if locations}


def _choose(revision: str, group: list[Candidate], prefer: Preference | None) -> _Choice:
    by_content = group_by_content(group)
    if len(by_content) == 1:
        return _Choice(next(iter(by_content.values()))[0], None)
    preferred = _preferred(by_content, prefer) if prefer is not None else []
    if len(preferred) == 1:
        return _Choice(preferred[0], None)
    # Files on disk are the living versions; git objects (branches, tags, stashes) and
    # records keep older ones too. When every file on disk agrees, that content wins over
    # what only git or the database still holds. Two files that disagree stay a conflict.
    on_disk = [members for members in by_content.values()
               if any(m.location.kind.is_file for m in members)]
    if prefer is None and len(on_disk) == 1:
        return _Choice(on_disk[0][0], None)
    ambiguous = tuple(preferred) if len(preferred) > 1 else ()
    return _Choice(None, Conflict(revision, tuple(m[0] for m in by_content.values()),
                                  ambiguous))


def _preferred(by_content: Mapping[str, list[Candidate]], prefer: Preference
               ) -> list[Candidate]:
    """Per content, the first location ``prefer`` matches (contents it matches nowhere are
    left out): one is the choice; several make the preference ambiguous."""
    return [next(m for m in members if prefer(m)) for members in by_content.values()
            if any(prefer(m) for m in members)]


def order_parents_first(chosen: Mapping[str, Candidate]) -> list[Candidate]:
    """Topological order of the chosen candidates (ties broken by revision id)."""
    ordered: list[Candidate] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    by_label = {label: revision for revision, candidate in chosen.items()
                for label in candidate.header.branch_labels}

    def visit(revision: str) -> None:
        if state.get(revision) == 2:
            return
        if state.get(revision) == 1:
            return  # a cycle; RevisionMap validation reports it before anything is written
        state[revision] = 1
        for parent in sorted(chosen[revision].header.needs):
            parent = by_label.get(parent, parent)  # depends_on may name a branch label
            if parent in chosen:
                visit(parent)
        state[revision] = 2
        ordered.append(chosen[revision])

    for revision in sorted(chosen):
        visit(revision)
    return ordered


def graph_order(revisions: Iterable[str], headers: Iterable[MigrationHeader]
                ) -> tuple[str, ...]:
    """``revisions`` (e.g. the database's heads) in the graph's order, the same on every run:
    parents before children, siblings by id; ids the headers do not know come last, by id."""
    wanted = list(dict.fromkeys(revisions))
    if len(wanted) < 2:
        return tuple(wanted)  # the common case: one head, nothing to order
    by_id = {header.revision: header for header in headers}
    position: dict[str, int] = {}
    entered: set[str] = set()  # a cycle ends here (Alembic reports it elsewhere)
    for start in sorted(by_id):
        stack = [(start, False)]
        while stack:  # iterative: a chain of thousands would exceed the recursion limit
            revision, expanded = stack.pop()
            if revision in position or revision not in by_id:
                continue
            if expanded:
                position[revision] = len(position)
                continue
            if revision in entered:
                continue
            entered.add(revision)
            stack.append((revision, True))
            for parent in sorted(by_id[revision].needs, reverse=True):
                if parent not in position:
                    stack.append((parent, False))
    return tuple(sorted(wanted, key=lambda r: (r not in position, position.get(r, 0), r)))


def locations_of(candidates: Iterable[Candidate], revision_prefix: str) -> list[Candidate]:
    """Every candidate whose id starts with ``revision_prefix``, closest first."""
    matches = [c for c in candidates if c.revision.startswith(revision_prefix)]
    return sorted(matches, key=lambda c: (c.revision, closeness(c)))


def matches_preference(preferences: Sequence[str]) -> Preference:
    """A ``--prefer`` predicate: a candidate matches when its path, worktree, branch or ref
    equals or lies under one of ``preferences`` (already made absolute where they are paths)."""

    def prefer(candidate: Candidate) -> bool:
        location: Location = candidate.location
        names = {location.path, location.worktree, location.branch, location.ref}
        if location.ref:
            names.add(short_ref(location.ref))
        for wanted in preferences:
            if wanted in names:
                return True
            for name in (location.path, location.worktree):
                if name and (name + "/").startswith(wanted.rstrip("/") + "/"):
                    return True
        return False

    return prefer
