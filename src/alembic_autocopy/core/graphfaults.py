"""Pure. What is wrong with the revision graph of everything found, in words a user can act on.

A cycle, a parent that no source holds, or one revision id in two files of one source: Alembic
refuses the first two (``CycleDetected``, ``KeyError``) and counts both files of the third as
heads. Any source can hold them (a sibling worktree, a stale branch, a configured folder).
Every command reports each fault once, as a warning naming the revisions and the files, and
carries on with what it can: a fault is never a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from alembic_autocopy.core.model import Candidate, LocationKind, short_ref

MAX_FILES = 6  # files named in one warning; the rest are counted


def graph_faults(candidates: Sequence[Candidate], *, every_id_known: bool = True) -> list[str]:
    """One warning per fault in ``candidates``. ``every_id_known``: the candidates hold every
    revision id of every source (False when a search kept only some ids, as ``find`` does:
    a parent may then just not have been kept, so missing parents are not judged)."""
    found = [c for c in candidates if c.location.kind is not LocationKind.DATABASE]
    warnings = duplicates(found)
    warnings += cycles(found)
    if every_id_known:
        warnings += missing_parents(found, known=[c.revision for c in candidates])
    return warnings


def file_of(candidate: Candidate) -> str:
    """Where the file is: its path, or ``ref:path`` for a git object."""
    location = candidate.location
    path = location.path or candidate.filename
    if location.kind.is_file:
        return path
    return f"{short_ref(location.ref) if location.ref else location.kind.value}:{path}"


def _files(candidates: Iterable[Candidate]) -> str:
    names = list(dict.fromkeys(file_of(c) for c in candidates))
    shown = ", ".join(names[:MAX_FILES])
    return shown + (f" (and {len(names) - MAX_FILES} more)" if len(names) > MAX_FILES else "")


def _source(candidate: Candidate) -> tuple[str, str]:
    location = candidate.location
    if location.kind.is_file:
        return location.kind.value, location.worktree or ""
    return location.kind.value, location.ref or ""


def duplicates(candidates: Sequence[Candidate]) -> list[str]:
    """A revision id defined by two files of the same source."""
    by_source: dict[tuple[tuple[str, str], str], list[Candidate]] = {}
    for candidate in candidates:
        by_source.setdefault((_source(candidate), candidate.revision), []).append(candidate)
    # The same pair of files seen through a worktree and its branch is one fault.
    faults: dict[tuple[str, tuple[str, ...]], list[list[Candidate]]] = {}
    for (_where, revision), group in by_source.items():
        paths = tuple(sorted({c.relative_path or c.filename for c in group}))
        if len(paths) > 1:
            faults.setdefault((revision, paths), []).append(group)
    warnings = []
    for (revision, paths), groups in faults.items():
        first = groups[0]
        also = sorted({g[0].location.describe() for g in groups[1:]}
                      - {first[0].location.describe()})
        more = f" (also in {'; '.join(also)})" if also else ""
        warnings.append(
            f"revision {revision} is defined by {len(paths)} files in "
            f"{first[0].location.describe()}{more}: {_files(first)}; Alembic loads both and "
            "counts each as a head: keep one")
    return warnings


def _parents(candidates: Sequence[Candidate]) -> dict[str, set[str]]:
    """Every revision's parents and dependencies over all its files (a label resolved)."""
    labels = {label: c.revision for c in candidates for label in c.header.branch_labels}
    ids = {c.revision for c in candidates}
    parents: dict[str, set[str]] = {revision: set() for revision in ids}
    for candidate in candidates:
        for need in candidate.header.needs:
            target = need if need in ids else labels.get(need)
            if target is not None:
                parents[candidate.revision].add(target)
    return parents


def cycles(candidates: Sequence[Candidate]) -> list[str]:
    """Revisions that are, through their parents, their own ancestors."""
    parents = _parents(candidates)
    warnings = []
    for component in _strongly_connected(parents):
        members = set(component)
        if len(component) == 1 and component[0] not in parents[component[0]]:
            continue
        involved = [c for c in candidates if c.revision in members
                    and members & set(c.header.needs)]
        order = " <- ".join([*sorted(members), min(members)])
        warnings.append(
            f"revisions {', '.join(sorted(members))} form a cycle ({order}): Alembic cannot "
            f"load them; fix down_revision in {_files(involved)}")
    return warnings


def _strongly_connected(parents: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components, without recursion (a chain of thousands of revisions)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(parents):
        if root in index:
            continue
        work = [(root, iter(sorted(parents[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(parents[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def missing_parents(candidates: Sequence[Candidate], known: Iterable[str] = ()) -> list[str]:
    """Parents (and dependencies) that no source holds."""
    ids = {c.revision for c in candidates} | set(known)
    labels = {label for c in candidates for label in c.header.branch_labels}
    needed_by: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        for need in candidate.header.needs:
            if need not in ids and need not in labels:
                needed_by.setdefault(need, []).append(candidate)
    return [
        f"revision {missing}, named as parent by "
        f"{', '.join(sorted({c.revision for c in group}))}, is in no source: Alembic cannot "
        f"load {_files(group)}"
        for missing, group in sorted(needed_by.items())]
