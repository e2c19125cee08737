"""``alembic-autocopy graph``: the revision graph of every source, with the database's place."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic_autocopy import repair
from alembic_autocopy.cli import drawing
from alembic_autocopy.cli.commands import options_from, project_from
from alembic_autocopy.cli.commands.common import show_inventory_warnings
from alembic_autocopy.cli.output import Output
from alembic_autocopy.core.errors import AutocopyError, UsageError
from alembic_autocopy.core.model import Candidate
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.sources import scanning
from alembic_autocopy.sources.inventory import gather

if TYPE_CHECKING:
    from alembic_autocopy.repair import Situation

# Imported inside functions, as each saves >= 5 ms where skipped: placement and the record table
# (SQLAlchemy) only where used.

DESCRIPTION = """\
Draw every revision of this worktree, the other worktrees, configured folders and (when
enabled) git refs and the database's records, joined parent to child, with the database's
position. Each node says where the revision lives: here, a copy placed here, another
worktree, git only, database only, or nowhere. Mermaid (the default) pastes into GitHub and
GitLab issues and markdown; DOT is Graphviz's language; svg and png need Graphviz's `dot`.
"""

FORMATS = ("mermaid", "dot", "svg", "png")
_BY_EXTENSION = {".mmd": "mermaid", ".mermaid": "mermaid", ".md": "mermaid", ".dot": "dot",
                 ".gv": "dot", ".svg": "svg", ".png": "png"}
_RENDER_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="mermaid (default), dot, svg or png (svg and png run Graphviz's "
                             "`dot`); default from the -o file's extension")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="write to FILE instead of stdout (.md wraps Mermaid in a fence)")
    parser.add_argument("--no-db", action="store_true",
                        help="do not ask the database for its position")


def chosen_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output:
        return _BY_EXTENSION.get(Path(args.output).suffix.lower(), "mermaid")
    return "mermaid"


def collect(project: ProjectConfig, args: argparse.Namespace,
            out: Output) -> drawing.RevisionGraph:
    """Scan every source, read the manifest and (unless --no-db) the database's heads and
    record table: a revision only the record table holds is drawn as 'database only'."""
    from alembic_autocopy.effects import placement

    options = options_from(args)
    inventory = gather(project, options)
    heads: tuple[str, ...] | None = None
    label = "database"
    extra: list[Candidate] = []
    if not args.no_db:
        situation = repair.assess(project, options, found=inventory)
        inventory, heads = situation.inventory, situation.applied
        extra = recorded_candidates(situation)
        scheme = (situation.database_url or "").partition(":")[0]
        if scheme:
            label = f"database ({scheme})"
    show_inventory_warnings(inventory, out)
    root = scanning.this_worktree(project)
    manifest = placement.open_manifest(project, root)
    copies, _now_tracked = placement.still_copies(manifest, root)  # a merged file is git's
    managed = {entry.path: entry.source for entry in copies}
    return drawing.build_graph([*inventory.all, *extra], heads, managed,
                                database_label=label)


def recorded_candidates(situation: Situation) -> list[Candidate]:
    """Revisions only the database's record table holds (even when it is not trusted as a
    source, it says where they come from)."""
    from alembic_autocopy.sources import records

    if situation.recorded is None:
        return []
    return records.candidates(situation.recorded,
                              {c.revision for c in situation.inventory.all})


def render_with_graphviz(dot_source: str, image_format: str) -> bytes:
    """Run Graphviz's ``dot`` on ``dot_source``; a clear error when it is not installed."""
    executable = shutil.which("dot")
    if executable is None:
        raise AutocopyError(
            f"--format {image_format} needs Graphviz, and its `dot` command is not on PATH",
            hint="install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
                 "install graphviz; Windows: winget install graphviz), or use --format "
                 "mermaid or --format dot")
    try:
        completed = subprocess.run([executable, f"-T{image_format}"],
                                   input=dot_source.encode("utf-8"), capture_output=True,
                                   timeout=_RENDER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AutocopyError(f"Graphviz's dot failed: {error}") from error
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AutocopyError(f"Graphviz's dot failed ({completed.returncode}): "
                            f"{detail[0] if detail else 'no message'}")
    return completed.stdout


def run(args: argparse.Namespace, out: Output) -> int:
    image_format = chosen_format(args)
    if image_format == "png" and not args.output and not args.json and sys.stdout.isatty():
        raise UsageError("a PNG is not for a terminal", hint="add -o FILE.png")
    project = project_from(args)
    graph = collect(project, args, out)
    content = _drawn(graph, image_format, f"Alembic revisions seen from {project.here.name}",
                     args.output)
    if args.output:
        _write(Path(args.output), content)
        out.result(f"Wrote {args.output} ({image_format}, {len(graph.nodes)} revisions).")
    elif not args.json:
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
    document: dict[str, Any] = {
        "ok": True, "format": image_format, "output": args.output,
        "database_heads": None if graph.database_heads is None else list(graph.database_heads),
        "nodes": [_node_json(node) for node in graph.nodes],
        "edges": [{"parent": e.parent, "child": e.child, "dependency": e.dependency}
                  for e in graph.edges],
    }
    if image_format in ("mermaid", "dot") and not args.output:
        document["text"] = content.decode("utf-8")
    out.emit(document)
    return 0


def _drawn(graph: drawing.RevisionGraph, image_format: str, title: str,
           output: str | None) -> bytes:
    """The picture in ``image_format``: Mermaid (fenced in a .md file), DOT, or an image."""
    if image_format == "mermaid":
        text = drawing.to_mermaid(graph)
        if output and Path(output).suffix.lower() == ".md":
            text = f"```mermaid\n{text}```\n"
        return text.encode("utf-8")
    if image_format == "dot":
        return drawing.to_dot(graph, title).encode("utf-8")
    return render_with_graphviz(drawing.to_dot(graph, title), image_format)


def _node_json(node: drawing.Node) -> dict[str, Any]:
    location = node.origin.location
    return {"revision": node.revision, "message": node.message,
            "residence": node.origin.residence.value,
            "origin": node.origin.describe(),
            "path": location.path if location else None,
            "applied": node.applied, "database_head": node.database_head,
            "distinct_contents": node.distinct_contents,
            "branch_labels": list(node.branch_labels)}


def _write(path: Path, content: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.aac-tmp")
        temporary.write_bytes(content)
        os.replace(temporary, path)
    except OSError as error:
        raise AutocopyError(f"cannot write {path}: {error.strerror or error}",
                            hint="choose another -o FILE") from error
