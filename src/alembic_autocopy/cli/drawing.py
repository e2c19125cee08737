"""The revision graph across every source, as text: Mermaid (pastes into GitHub and GitLab)
and Graphviz DOT. Pure: candidates and the database's heads in, text out.

Each node is one revision id, drawn where it is closest to this worktree: here (or a copy
placed here by this tool), another worktree, git objects only, the database's record only,
or found nowhere (an id the database applied that no source holds). The database's position
is a node of its own joined to each of its heads; revisions below those heads are applied.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from alembic_autocopy.core.model import Candidate, Location, LocationKind, reachable, short_ref
from alembic_autocopy.core.redaction import terminal_safe


class Residence(enum.Enum):
    """Where a revision lives, as the graph and ``status`` show it (closest place wins)."""

    HERE = "here"
    COPY = "copy here"  # a file this tool placed here (listed in the manifest)
    WORKTREE = "other worktree"  # another worktree, a clone's worktree, a configured folder
    GIT = "git only"  # branches, remote branches, tags, stashes
    DATABASE = "database only"  # the database's record table
    NOWHERE = "found nowhere"


_RESIDENCE_OF_KIND = {
    LocationKind.HERE: Residence.HERE,
    LocationKind.WORKTREE: Residence.WORKTREE,
    LocationKind.CLONE: Residence.WORKTREE,
    LocationKind.FOLDER: Residence.WORKTREE,
    LocationKind.BRANCH: Residence.GIT,
    LocationKind.REMOTE: Residence.GIT,
    LocationKind.TAG: Residence.GIT,
    LocationKind.STASH: Residence.GIT,
    LocationKind.DATABASE: Residence.DATABASE,
}

# (fill, border) per residence: colour-blind-safe enough, and the legend names each one.
_COLOURS = {
    Residence.HERE: ("#dcfce7", "#16a34a"),
    Residence.COPY: ("#fef9c3", "#ca8a04"),
    Residence.WORKTREE: ("#dbeafe", "#2563eb"),
    Residence.GIT: ("#f3e8ff", "#9333ea"),
    Residence.DATABASE: ("#ffedd5", "#ea580c"),
    Residence.NOWHERE: ("#fee2e2", "#dc2626"),
}
_DATABASE_COLOURS = ("#e0e7ff", "#4338ca")
DATABASE_NODE = "db_position"  # revision nodes are all "r_..."


class Origin(NamedTuple):
    """Where one revision comes from: its residence and the place that decided it.

    ``location`` is the closest place (for a copy: the place it was copied from, when that
    place still holds the same content); None for a revision found nowhere.
    """

    residence: Residence
    location: Location | None = None
    copied_from: str | None = None  # a copy's source as the manifest recorded it

    def describe(self, *, short: bool = False) -> str:
        """'this worktree', 'worktree X on branch Y', 'branch Z', 'database record', ..."""
        if self.residence is Residence.HERE:
            return "this worktree"
        if self.residence is Residence.NOWHERE:
            return "found nowhere (only its id is in the database)"
        if self.residence is Residence.DATABASE:
            return "database record"
        if self.location is not None and self.location.kind is not LocationKind.HERE:
            place = place_of(self.location, short=short)
        else:
            place = self.copied_from or "another place"
        return f"{place} (copied here)" if self.residence is Residence.COPY else place


def place_of(location: Location, *, short: bool = False) -> str:
    """A place in words: 'worktree X on branch Y', 'clone X on branch Y', 'branch Z', ...

    ``short`` names worktrees by their folder name and puts the branch in brackets (for
    pictures, where paths are noise).
    """
    kind = location.kind
    if kind in (LocationKind.HERE, LocationKind.WORKTREE, LocationKind.CLONE,
                LocationKind.FOLDER):
        where = location.worktree or location.path or "?"
        if short:
            where = os.path.basename(where.rstrip("/\\")) or where
        noun = {LocationKind.HERE: "this worktree", LocationKind.WORKTREE: f"worktree {where}",
                LocationKind.CLONE: f"clone {where}",
                LocationKind.FOLDER: f"folder {where}"}[kind]
        if kind is LocationKind.FOLDER:
            return noun
        if location.branch:
            return f"{noun} ({location.branch})" if short else (
                f"{noun} on branch {location.branch}")
        if location.commit:
            return f"{noun} (detached at {location.commit[:10]})"
        return noun
    if kind is LocationKind.DATABASE:
        return "database record"
    ref = short_ref(location.ref) if location.ref else "?"
    noun = {LocationKind.BRANCH: "branch", LocationKind.REMOTE: "remote branch",
            LocationKind.TAG: "tag", LocationKind.STASH: "stash"}[kind]
    return f"{noun} {ref}"


def origin_of(revision: str, candidates: Sequence[Candidate],
              managed: Mapping[str, str]) -> Origin:
    """Where ``revision`` comes from. ``candidates``: every place holding it (any order);
    ``managed``: path of each copy this tool placed here -> its recorded source."""
    if not candidates:
        return Origin(Residence.NOWHERE)
    ordered = sorted(candidates, key=_closeness)
    closest = ordered[0]
    if closest.location.kind is LocationKind.HERE:
        path = closest.location.path or ""
        if path not in managed:
            return Origin(Residence.HERE, closest.location)
        source = next((c.location for c in ordered[1:] if c.sha256 == closest.sha256), None)
        return Origin(Residence.COPY, source, copied_from=managed[path])
    return Origin(_RESIDENCE_OF_KIND[closest.location.kind], closest.location)


def _closeness(candidate: Candidate) -> tuple[int, str, str]:
    location = candidate.location
    return (location.kind.rank, location.worktree or location.ref or "", location.path or "")


class Node(NamedTuple):
    revision: str
    message: str | None
    origin: Origin
    applied: bool | None  # None when the database was not read
    database_head: bool
    distinct_contents: int = 1
    branch_labels: tuple[str, ...] = ()


class Edge(NamedTuple):
    parent: str
    child: str
    dependency: bool = False  # depends_on rather than down_revision


class RevisionGraph(NamedTuple):
    nodes: tuple[Node, ...]  # parents before children, ties by revision id
    edges: tuple[Edge, ...]
    database_heads: tuple[str, ...] | None  # None: the database was not read
    database_label: str = "database"

    def node(self, revision: str) -> Node:
        return next(node for node in self.nodes if node.revision == revision)


def build_graph(candidates: Iterable[Candidate], database_heads: Sequence[str] | None,
                managed: Mapping[str, str] | None = None,
                database_label: str = "database") -> RevisionGraph:
    """Every revision of every source, its links, and which are applied.

    A parent or dependency no source holds becomes a node 'found nowhere', as does a database
    head no source holds: the picture shows every gap.
    """
    by_revision: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_revision.setdefault(candidate.revision, []).append(candidate)
    edges = _edges(by_revision)
    heads = tuple(dict.fromkeys(database_heads)) if database_heads is not None else None
    applied = _ancestry(heads, edges) if heads is not None else None
    nodes = _found_nodes(by_revision, managed or {}, heads or (), applied)
    missing = ({edge.parent for edge in edges} | set(heads or ())) - set(by_revision)
    nodes.update(_nowhere_nodes(missing, heads or (), applied))
    order = _parents_first(nodes, edges)
    return RevisionGraph(
        nodes=tuple(nodes[rev] for rev in order),
        edges=tuple(sorted(set(edges), key=lambda e: (order.index(e.child),
                                                      order.index(e.parent), e.dependency))),
        database_heads=heads,
        database_label=database_label,
    )


def _edges(by_revision: Mapping[str, Sequence[Candidate]]) -> list[Edge]:
    """Each revision's parents and dependencies, as its closest copy's header says."""
    labels: dict[str, set[str]] = {}
    for revision, group in by_revision.items():
        for label in group[0].header.branch_labels:
            labels.setdefault(label, set()).add(revision)

    def resolve(name: str) -> str:
        # depends_on may name a branch label; draw the edge from the revision carrying it.
        if name not in by_revision and len(labels.get(name, ())) == 1:
            return next(iter(labels[name]))
        return name

    edges: list[Edge] = []
    for revision, group in by_revision.items():
        header = min(group, key=_closeness).header
        edges.extend(Edge(resolve(parent), revision) for parent in header.down_revisions)
        edges.extend(Edge(resolve(dep), revision, dependency=True) for dep in header.depends_on)
    return edges


def _found_nodes(by_revision: Mapping[str, Sequence[Candidate]], managed: Mapping[str, str],
                 heads: Sequence[str], applied: set[str] | None) -> dict[str, Node]:
    """A node for each revision some source holds, drawn where it is closest."""
    nodes: dict[str, Node] = {}
    for revision, group in by_revision.items():
        closest = min(group, key=_closeness)
        nodes[revision] = Node(
            revision=revision,
            message=closest.header.message,
            origin=origin_of(revision, group, managed),
            applied=None if applied is None else revision in applied,
            database_head=revision in heads,
            distinct_contents=len({c.sha256 for c in group}),
            branch_labels=closest.header.branch_labels,
        )
    return nodes


def _nowhere_nodes(missing: Iterable[str], heads: Sequence[str], applied: set[str] | None
                   ) -> dict[str, Node]:
    """A node 'found nowhere' for each id named (as a parent or a database head) that no
    source holds."""
    return {revision: Node(revision, None, Origin(Residence.NOWHERE),
                           None if applied is None else revision in applied,
                           revision in heads)
            for revision in missing}


def _ancestry(tips: Iterable[str], edges: Sequence[Edge]) -> set[str]:
    # Walked over the drawn edges (not Alembic's RevisionMap, which refuses a graph with
    # gaps): the colours must agree with the arrows, gaps included.
    parents: dict[str, list[str]] = {}
    for edge in edges:
        parents.setdefault(edge.child, []).append(edge.parent)
    return reachable(tips, parents)


def _parents_first(nodes: Mapping[str, Node], edges: Sequence[Edge]) -> list[str]:
    children: dict[str, set[str]] = {rev: set() for rev in nodes}
    waiting = dict.fromkeys(nodes, 0)
    for edge in set(edges):
        if edge.parent in nodes and edge.child in nodes and edge.child not in children[
                edge.parent]:
            children[edge.parent].add(edge.child)
            waiting[edge.child] += 1
    ready = sorted(rev for rev, count in waiting.items() if count == 0)
    order: list[str] = []
    while ready:
        revision = ready.pop(0)
        order.append(revision)
        for child in sorted(children[revision]):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
        ready.sort()
    order.extend(sorted(rev for rev in nodes if rev not in order))  # a cycle: still drawn
    return order


# --- text of a node -------------------------------------------------------------------------

def node_lines(node: Node) -> list[str]:
    """The lines of a node's label: id (and labels), message, where it lives, state."""
    first = node.revision
    if node.branch_labels:
        first += f" ({', '.join(node.branch_labels)})"
    lines = [first]
    if node.message:
        lines.append(_shorten(node.message, 40))
    residence = node.origin.residence
    if residence in (Residence.HERE, Residence.NOWHERE, Residence.DATABASE):
        lines.append(residence.value)
    else:
        where = node.origin.describe(short=True).replace(" (copied here)", "")
        if residence is Residence.COPY:
            lines.append("copied here from")
        lines.append(where)
    state = []
    if node.applied is not None:
        state.append("applied" if node.applied else "not applied")
    if node.distinct_contents > 1:
        state.append(f"{node.distinct_contents} different contents")
    if state:
        lines.append(", ".join(state))
    return lines


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legend(graph: RevisionGraph) -> list[Residence]:
    present = {node.origin.residence for node in graph.nodes}
    return [residence for residence in Residence if residence in present]


# --- Mermaid --------------------------------------------------------------------------------

_MERMAID_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
                     "`": "#96;", "|": "#124;"}


def mermaid_text(text: str) -> str:
    """``text`` made safe inside a quoted Mermaid label (entity codes, as Mermaid reads them);
    a control character (a hostile id or message) becomes its code too, never a raw byte on
    the terminal the graph is printed to."""
    return "".join(_MERMAID_ENTITIES.get(char) or (
        f"#{ord(char)};" if terminal_safe(char) != char else char) for char in text)


def mermaid_ids(revisions: Iterable[str]) -> dict[str, str]:
    """A Mermaid node id for each revision: ``r_`` + the id's word characters, unique."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for revision in revisions:
        base = "r_" + re.sub(r"\W", "_", revision, flags=re.ASCII)
        candidate, number = base, 1
        while candidate in used:
            number += 1
            candidate = f"{base}_{number}"
        used.add(candidate)
        ids[revision] = candidate
    return ids


def to_mermaid(graph: RevisionGraph) -> str:
    """A Mermaid flowchart: oldest at the top, arrows from parent to child."""
    ids = mermaid_ids(node.revision for node in graph.nodes)
    legend = _legend(graph)
    lines = ["flowchart TD",
             *_mermaid_nodes(graph, ids),
             *_mermaid_database(graph, ids),
             *_mermaid_legend(legend),
             *_mermaid_class_definitions(),
             *_mermaid_class_members(graph, ids, legend)]
    return "\n".join(lines) + "\n"


def _mermaid_nodes(graph: RevisionGraph, ids: Mapping[str, str]) -> list[str]:
    """The revisions, then the arrows between them."""
    lines = []
    for node in graph.nodes:
        label = "<br/>".join(mermaid_text(line) for line in node_lines(node))
        lines.append(f'    {ids[node.revision]}["{label}"]')
    for edge in graph.edges:
        if edge.dependency:
            lines.append(f"    {ids[edge.parent]} -.->|depends on| {ids[edge.child]}")
        else:
            lines.append(f"    {ids[edge.parent]} --> {ids[edge.child]}")
    return lines


def _mermaid_database(graph: RevisionGraph, ids: Mapping[str, str]) -> list[str]:
    """The database's position, joined to each of its heads (nothing if it was not read)."""
    if graph.database_heads is None:
        return []
    heads = ", ".join(graph.database_heads) or "empty"
    label = "<br/>".join(mermaid_text(text) for text in (graph.database_label,
                                                          f"at {heads}"))
    return [f'    {DATABASE_NODE}[("{label}")]',
            *(f"    {ids[head]} ==> {DATABASE_NODE}" for head in graph.database_heads)]


def _mermaid_legend(legend: Sequence[Residence]) -> list[str]:
    if not legend:
        return []
    return ['    subgraph legend["where each revision lives"]',
            *(f'        legend_{r.name.lower()}["{r.value}"]' for r in legend),
            "    end"]


def _mermaid_class_definitions() -> list[str]:
    """A style per residence, one for revisions not applied, one for the database."""
    lines = []
    for residence in Residence:
        fill, stroke = _COLOURS[residence]
        lines.append(f"    classDef {residence.name.lower()} fill:{fill},stroke:{stroke},"
                     "color:#111111")
    lines.append("    classDef pending stroke-dasharray:5 5")
    fill, stroke = _DATABASE_COLOURS
    lines.append(f"    classDef position fill:{fill},stroke:{stroke},color:#111111")
    return lines


def _mermaid_class_members(graph: RevisionGraph, ids: Mapping[str, str],
                           legend: Sequence[Residence]) -> list[str]:
    """Which nodes (and legend entries) wear each style."""
    lines = []
    for residence in Residence:
        members = [ids[n.revision] for n in graph.nodes if n.origin.residence is residence]
        if residence in legend:
            members.append(f"legend_{residence.name.lower()}")
        if members:
            lines.append(f"    class {','.join(members)} {residence.name.lower()}")
    pending = [ids[n.revision] for n in graph.nodes if n.applied is False]
    if pending:
        lines.append(f"    class {','.join(pending)} pending")
    if graph.database_heads is not None:
        lines.append(f"    class {DATABASE_NODE} position")
    return lines


# --- Graphviz DOT ---------------------------------------------------------------------------

def dot_string(text: str) -> str:
    """A DOT double-quoted string."""
    # Control characters shown escaped (``\x1b``), that backslash then escaped for DOT.
    return '"' + terminal_safe(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(lines: Sequence[str]) -> str:
    return '"' + "\\n".join(dot_string(line)[1:-1] for line in lines) + '"'


def to_dot(graph: RevisionGraph, title: str | None = None) -> str:
    """A Graphviz digraph (``dot -Tsvg``): oldest at the top, arrows from parent to child."""
    lines = ["digraph alembic_revisions {"]
    graph_attrs = ['rankdir="TB"', 'fontname="Helvetica"', 'bgcolor="white"']
    if title:
        graph_attrs += [f"label={dot_string(title)}", 'labelloc="t"', "fontsize=14"]
    lines.append(f"    graph [{', '.join(graph_attrs)}];")
    lines.append('    node [shape="box", style="rounded,filled", fontname="Helvetica", '
                 'fontsize=11, penwidth=1.5];')
    lines.append('    edge [color="#444444", arrowsize=0.8];')
    for node in graph.nodes:
        fill, stroke = _COLOURS[node.origin.residence]
        style = "rounded,filled,dashed" if node.applied is False else "rounded,filled"
        width = "2.5" if node.database_head else "1.5"
        lines.append(f"    {dot_string('r:' + node.revision)} [label={_dot_label(node_lines(node))}"
                     f', fillcolor="{fill}", color="{stroke}", style="{style}", '
                     f"penwidth={width}];")
    for edge in graph.edges:
        attrs = ' [style="dashed", label="depends on", fontsize=9]' if edge.dependency else ""
        lines.append(f"    {dot_string('r:' + edge.parent)} -> "
                     f"{dot_string('r:' + edge.child)}{attrs};")
    if graph.database_heads is not None:
        fill, stroke = _DATABASE_COLOURS
        heads = ", ".join(graph.database_heads) or "empty"
        label = _dot_label([graph.database_label, f"at {heads}"])
        lines.append(f'    "database" [shape="cylinder", style="filled", label={label}, '
                     f'fillcolor="{fill}", color="{stroke}"];')
        for head in graph.database_heads:
            lines.append(f'    {dot_string("r:" + head)} -> "database" '
                         f'[style="bold", color="{stroke}", arrowhead="none"];')
    legend = _legend(graph)
    if legend:
        lines.append("    subgraph cluster_legend {")
        lines.append('        label="where each revision lives"; fontsize=10; '
                     'color="#bbbbbb"; style="rounded";')
        for residence in legend:
            fill, stroke = _COLOURS[residence]
            lines.append(f'        "legend:{residence.name.lower()}" '
                         f'[label={dot_string(residence.value)}, fillcolor="{fill}", '
                         f'color="{stroke}", fontsize=9];')
        same_rank = "; ".join(f'"legend:{r.name.lower()}"' for r in legend)
        lines.append(f"        {{ rank=same; {same_rank}; }}")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"
