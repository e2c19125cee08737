"""`status` and `graph` on a real fleet of worktrees, the graph text checked structurally and
rendered by Graphviz, and the progress line."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from alembic_autocopy.cli import drawing, progress
from alembic_autocopy.core.model import Candidate, Location, LocationKind, MigrationHeader
from support import BASE_REV, Database, Worktree, integrate_env_py, make_repo
from support.databases import temporary_database

LOST = "f0000000dead"  # in the version table, in no file, branch or record


@dataclass
class Fleet:
    """Seen from B (the main worktree), the database's heads come from everywhere."""

    db: Database
    a: Worktree
    b: Worktree
    d: Worktree
    chain_a: list[str]  # applied in A, copied into B
    own_b: str  # B's own, committed, applied
    branch_only: str  # applied from worktree C, which was removed: only on branch c
    recorded_only: str  # applied from worktree E, removed before commit: only its record
    pending_d: str  # in worktree D, not applied


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp_path = tmp_path_factory.mktemp("fleet")
    with temporary_database("sqlite", tmp_path) as db:
        repo = make_repo(tmp_path, db)
        integrate_env_py(repo)  # the record table is opt-in (env.py's line)
        b = repo.main
        a = repo.add_worktree("a")
        chain_a = a.chain(2, BASE_REV, "a")
        a.commit("a: two migrations")
        a.alembic("upgrade", "head", check=True)
        (own_b,) = b.chain(1, BASE_REV, "b")
        b.commit("b: own migration")
        b.autocopy("upgrade", check=True)
        c = repo.add_worktree("c")
        (branch_only,) = c.chain(1, BASE_REV, "c")
        c.commit("c: one migration")
        # c branched from b's commit: b's migration and c's own are two heads of its own,
        # which `head` refuses as Alembic does; upgrade to both.
        c.autocopy("upgrade", "heads", check=True)
        repo.main.git("worktree", "remove", "--force", str(c.path))
        e = repo.add_worktree("e")
        (recorded_only,) = e.chain(1, BASE_REV, "e")
        e.autocopy("upgrade", "heads", check=True)  # records e's revision, content included
        repo.main.git("worktree", "remove", "--force", str(e.path))
        db.execute(f"INSERT INTO alembic_version (version_num) VALUES ('{LOST}')")
        d = repo.add_worktree("d")
        (pending_d,) = d.chain(1, own_b, "d")
        yield Fleet(db, a, b, d, chain_a, own_b, branch_only, recorded_only, pending_d)


# --- status ----------------------------------------------------------------------------------

def test_status_lists_every_head_with_its_origin(fleet: Fleet) -> None:
    result = fleet.b.autocopy("status", "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    heads = {h["revision"]: h for h in document["database"]["heads"]}
    assert set(heads) == {fleet.chain_a[-1], fleet.own_b, fleet.branch_only,
                          fleet.recorded_only, LOST}
    assert heads[fleet.own_b]["origin"] == "this worktree"
    assert heads[fleet.chain_a[-1]]["origin"] == (
        f"worktree {fleet.a.path} on branch a (copied here)")
    assert heads[fleet.branch_only]["origin"] == "branch c"
    assert heads[fleet.recorded_only]["origin"] == "database record"
    assert heads[LOST]["origin"].startswith("found nowhere")
    worktree = document["worktree"]
    assert worktree["heads"] == sorted([fleet.chain_a[-1], fleet.own_b])
    assert worktree["own_heads"] == [fleet.own_b]
    assert worktree["foreign_heads"] == [fleet.chain_a[-1]]
    assert sorted(c["revision"] for c in document["copies"]) == fleet.chain_a
    ids = {w["id"] for w in document["warnings"]}
    assert {"behind-blocked", "several-heads", "hooks-missing"} <= ids

    text = fleet.b.autocopy("status")
    assert text.returncode == 0, text.stderr
    for head in heads:
        line = next(line for line in text.stdout.splitlines() if line.strip().startswith(head))
        assert "<- " in line
    assert f"{fleet.branch_only}  step {fleet.branch_only}  <- branch c" in text.stdout


def test_status_sees_installed_hooks_and_edited_copies(fleet: Fleet) -> None:
    copy = next(fleet.b.versions.glob(f"{fleet.chain_a[0]}_*.py"))
    original = copy.read_bytes()
    try:
        fleet.b.autocopy("install-hooks", check=True)
        copy.write_bytes(original + b"\n# edited\n")
        document = json.loads(fleet.b.autocopy("status", "--json", check=True).stdout)
    finally:
        fleet.b.autocopy("uninstall-hooks", check=True)
        copy.write_bytes(original)
    ids = [w["id"] for w in document["warnings"]]
    assert "hooks-missing" not in ids
    assert ids.count("copy-modified") == 1
    warnings = json.loads(fleet.b.autocopy("status", "--json", "--no-db",
                                           check=True).stdout)["warnings"]
    (hooks,) = [w["message"] for w in warnings if w["id"] == "hooks-missing"]
    assert "(post-checkout, post-merge, post-rewrite)" in hooks


# --- graph: Mermaid parsed back, DOT rendered by Graphviz -------------------------------------

_NODE = re.compile(r'^    (r_\w+)\["([^"]*)"\]$')
_DATABASE = re.compile(r'^    (db_position)\[\("([^"]*)"\)\]$')
_EDGE = re.compile(r"^    (\w+) (-->|-\.->\|depends on\||==>) (\w+)$")
_OTHER = re.compile(r"^    (subgraph legend\[\"[^\"]*\"\]|end|classDef \w+ [^;]+|class [\w,]+ \w+)$"
                    r"|^        legend_\w+\[\"[^\"]*\"\]$")
_ENTITY = re.compile(r"#(\w+);")
_NAMED = {"quot": '"', "lt": "<", "gt": ">", "amp": "&"}


@dataclass
class ParsedMermaid:
    labels: dict[str, list[str]]  # node id -> label lines, entities decoded
    edges: set[tuple[str, str, str]]  # (parent id, arrow, child id)


def parse_mermaid(text: str) -> ParsedMermaid:
    """A strict reader of the subset `graph` writes: any other line fails the test."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    labels: dict[str, list[str]] = {}
    edges: set[tuple[str, str, str]] = set()
    for line in lines[1:]:
        if match := _NODE.match(line) or _DATABASE.match(line):
            assert match.group(1) not in labels, f"node defined twice: {line}"
            labels[match.group(1)] = [_decode(part) for part in match.group(2).split("<br/>")]
        elif match := _EDGE.match(line):
            edges.add((match.group(1), match.group(2), match.group(3)))
        else:
            assert _OTHER.match(line), f"not Mermaid this test knows: {line!r}"
    for parent, _, child in edges:
        assert parent in labels and child in labels, (parent, child)
    return ParsedMermaid(labels, edges)


def _decode(text: str) -> str:
    assert not set(text) & set('"<>|`'), text
    return _ENTITY.sub(lambda m: _NAMED.get(m.group(1)) or chr(int(m.group(1))), text)


def check_mermaid_has(graph_json: Mapping[str, object], text: str) -> ParsedMermaid:
    parsed = parse_mermaid(text)
    by_revision = {lines[0].split(" (")[0]: node for node, lines in parsed.labels.items()
                   if node != "db_position"}
    nodes = graph_json["nodes"]
    assert isinstance(nodes, list)
    assert set(by_revision) == {n["revision"] for n in nodes}
    edges = graph_json["edges"]
    assert isinstance(edges, list)
    for edge in edges:
        arrow = "-.->|depends on|" if edge["dependency"] else "-->"
        assert (by_revision[edge["parent"]], arrow, by_revision[edge["child"]]) in parsed.edges
    heads = graph_json["database_heads"]
    assert isinstance(heads, list)
    for head in heads:
        assert (by_revision[head], "==>", "db_position") in parsed.edges
    assert len(parsed.edges) == len(edges) + len(heads)
    return parsed


def svg_graph(svg: bytes) -> tuple[set[str], set[tuple[str, str]]]:
    """Node and edge titles of an SVG that Graphviz drew."""
    root = ElementTree.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    nodes: set[str] = set()
    edges: set[tuple[str, str]] = set()
    for group in root.iterfind(".//svg:g", ns):
        title = group.findtext("svg:title", default="", namespaces=ns)
        if group.get("class") == "node":
            nodes.add(title)
        elif group.get("class") == "edge":
            parent, _, child = title.partition("->")
            edges.add((parent, child))
    return nodes, edges


def needs_graphviz() -> str:
    dot = shutil.which("dot")
    if dot is None and os.environ.get("CI"):
        pytest.fail("Graphviz's dot is missing: .ci/run must install graphviz")
    if dot is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    return dot


def test_status_after_a_merge_brought_the_real_file_calls_it_no_copy(
        tmp_path: Path, sqlite_db: Database) -> None:
    """A copy placed here, then `git merge` brings the real file (git overwrites the ignored
    copy): before `clean` runs, status counted it among the copies although git tracks it.
    Status changes nothing: the manifest entry stays until `clean` forgets it."""
    repo = make_repo(tmp_path, sqlite_db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    (step,) = a.chain(1, BASE_REV, "a")
    a.commit("a: one migration")
    a.alembic("upgrade", "head", check=True)
    b.autocopy("upgrade", check=True)
    placed = json.loads(b.autocopy("status", "--json", check=True).stdout)
    assert [copy["revision"] for copy in placed["copies"]] == [step]
    b.git("merge", "--quiet", "--no-edit", "a")
    assert b.status_porcelain() == ""
    manifest = Path(b.git("rev-parse", "--path-format=absolute", "--git-path",
                          "alembic-autocopy/manifest.json").stdout.strip())
    before = manifest.read_bytes()

    text = b.autocopy("status", check=True)
    document = json.loads(b.autocopy("status", "--json", check=True).stdout)

    assert "Copies placed here by alembic-autocopy: 0" in text.stdout, text.stdout
    assert "(copied here)" not in text.stdout
    path = f"migrations/versions/{step}_step_{step}.py"
    assert (f"  {step}  {path}: git tracks it now (a merge or checkout brought the real "
            "file); `alembic-autocopy clean` forgets it") in text.stdout, text.stdout
    assert f"{step}  step {step}  <- this worktree" in text.stdout
    assert document["copies"] == []
    assert [entry["revision"] for entry in document["now_tracked"]] == [step]
    assert document["worktree"]["own_heads"] == [step]
    assert document["worktree"]["foreign_heads"] == []
    drawn = json.loads(b.autocopy("graph", "--json", check=True).stdout)
    node = next(node for node in drawn["nodes"] if node["revision"] == step)
    assert node["residence"] == "here", node
    assert manifest.read_bytes() == before  # status and graph change nothing

    b.autocopy("clean", check=True)
    assert json.loads(b.autocopy("status", "--json", check=True).stdout)["now_tracked"] == []


UNREACHABLE = "postgresql+psycopg://u@127.0.0.1:1/x"  # nothing listens on port 1


def unreachable_project(tmp_path: Path, sqlite_db: Database) -> Worktree:
    """A project with one committed migration whose alembic.ini names a server that refuses."""
    repo = make_repo(tmp_path, sqlite_db)
    ini = repo.main.path / "alembic.ini"
    ini.write_text("".join(f"sqlalchemy.url = {UNREACHABLE}\n"
                           if line.startswith("sqlalchemy.url") else line
                           for line in ini.read_text().splitlines(keepends=True)))
    return repo.main


def test_an_unreachable_database_status_shows_the_rest_and_fails_naming_no_db(
        tmp_path: Path, sqlite_db: Database) -> None:
    """status: the worktree part is shown, the database named unreadable, exit 1 (as its help
    and docs/workflow-tools.md say; README said 0), and the hint offers --no-db."""
    main = unreachable_project(tmp_path, sqlite_db)

    text = main.autocopy("status")

    assert text.returncode == 1, text.stderr
    assert "This worktree " in text.stdout and BASE_REV in text.stdout
    assert "cannot read the database: cannot connect to " in text.stdout
    errors = [line for line in text.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cannot connect to {UNREACHABLE}: the server refused the connection"), text.stderr
    assert "hint: start the database server" in text.stderr
    assert "`alembic-autocopy status --no-db`" in text.stderr
    document = json.loads(main.autocopy("status", "--json").stdout)
    assert document["ok"] is False and document["database"] is None
    assert document["worktree"]["heads"] == [BASE_REV]
    assert document["error"].startswith(f"cannot connect to {UNREACHABLE}")
    assert "`alembic-autocopy status --no-db`" in document["hint"]
    assert main.autocopy("status", "--no-db").returncode == 0


@pytest.mark.parametrize("verb", ["list", "graph"])
def test_an_unreachable_database_list_and_graph_fail_naming_no_db(
        tmp_path: Path, sqlite_db: Database, verb: str) -> None:
    main = unreachable_project(tmp_path, sqlite_db)

    result = main.autocopy(verb)

    assert result.returncode == 1, result.stderr
    assert f"error: cannot connect to {UNREACHABLE}" in result.stderr
    hint = next(line for line in result.stderr.splitlines() if line.startswith("hint: "))
    assert hint.startswith("hint: start the database server")
    assert hint.endswith(f"; or `alembic-autocopy {verb} --no-db` to go on without the "
                         "database"), hint
    assert BASE_REV in main.autocopy(verb, "--no-db", check=True).stdout
    # check has no --no-db: its hint does not offer one
    assert "--no-db" not in main.autocopy("check").stderr


def test_graph_as_mermaid_has_every_node_edge_and_the_database(fleet: Fleet) -> None:
    described = json.loads(fleet.b.autocopy("graph", "--json", check=True).stdout)
    result = fleet.b.autocopy("graph")

    assert result.returncode == 0, result.stderr
    assert result.stdout == described["text"]
    parsed = check_mermaid_has(described, result.stdout)
    nodes = {n["revision"]: n for n in described["nodes"]}
    assert {rev: n["residence"] for rev, n in nodes.items()} == {
        BASE_REV: "here", fleet.chain_a[0]: "copy here", fleet.chain_a[1]: "copy here",
        fleet.own_b: "here", fleet.branch_only: "git only",
        fleet.recorded_only: "database only", LOST: "found nowhere",
        fleet.pending_d: "other worktree"}
    assert nodes[fleet.pending_d]["applied"] is False
    assert all(n["applied"] for rev, n in nodes.items() if rev != fleet.pending_d)
    assert sorted(described["database_heads"]) == sorted(
        [fleet.chain_a[-1], fleet.own_b, fleet.branch_only, fleet.recorded_only, LOST])
    database_label = parsed.labels["db_position"]
    assert database_label[0] == "database (sqlite)"
    assert "worktree Proj-d (d)" in " ".join(
        " ".join(lines) for lines in parsed.labels.values())


def test_graph_renders_with_graphviz(fleet: Fleet, tmp_path: Path) -> None:
    dot = needs_graphviz()
    described = json.loads(fleet.b.autocopy("graph", "--json", check=True).stdout)
    svg_path = tmp_path / "graph.svg"

    result = fleet.b.autocopy("graph", "-o", str(svg_path))

    assert result.returncode == 0, result.stderr
    nodes, edges = svg_graph(svg_path.read_bytes())
    assert {f"r:{n['revision']}" for n in described["nodes"]} <= nodes
    assert "database" in nodes
    expected = {(f"r:{e['parent']}", f"r:{e['child']}") for e in described["edges"]}
    expected |= {(f"r:{head}", "database") for head in described["database_heads"]}
    assert expected <= edges
    # the DOT text itself is what Graphviz reads
    dot_text = fleet.b.autocopy("graph", "--format", "dot", check=True).stdout
    plain = subprocess.run([dot, "-Tplain"], input=dot_text, capture_output=True, text=True,
                           check=True).stdout
    assert plain.count("\nedge ") >= len(expected)
    png = tmp_path / "graph.png"
    fleet.b.autocopy("graph", "-o", str(png), check=True)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_svg_without_graphviz_is_one_clear_error(fleet: Fleet, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = shutil.which("git")
    assert git is not None
    (bin_dir / "git").symlink_to(git)
    target = tmp_path / "graph.svg"

    result = fleet.b.autocopy("graph", "-o", str(target), env={"PATH": str(bin_dir)})

    assert result.returncode == 1
    assert "needs Graphviz" in result.stderr and "install" in result.stderr
    assert "--format mermaid" in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()


def candidate(rev: str, down: tuple[str, ...] = (), *, kind: LocationKind = LocationKind.HERE,
              message: str | None = None, depends_on: tuple[str, ...] = (),
              labels: tuple[str, ...] = (), ref: str | None = None) -> Candidate:
    header = MigrationHeader(rev, down, labels, depends_on, message)
    location = Location(kind=kind, path=f"/w/{kind.value}/{rev}.py",
                        worktree=f"/w/{kind.value}", branch="feat", ref=ref)
    return Candidate(header, sha256=f"sha-{rev}", size=1, filename=f"{rev}.py",
                     location=location)


def test_graph_text_survives_odd_ids_and_messages() -> None:
    """Ids that are not Mermaid names, messages with quotes, markup and entities."""
    candidates = [
        candidate("base-1", message='create "users" <b>#1</b> & co | `x`'),
        candidate("0002.feature", ("base-1",), message="with\nnewline", labels=("feat",)),
        candidate("base_1", ("base-1",), kind=LocationKind.WORKTREE),
        candidate("tip", ("0002.feature", "base_1"), kind=LocationKind.BRANCH,
                  ref="refs/heads/feat", depends_on=("feat",)),
        candidate("orphan", ("gone",), kind=LocationKind.DATABASE),
    ]
    graph = drawing.build_graph(candidates, ["tip", "lost"], {})
    residences = {node.revision: node.origin.residence for node in graph.nodes}
    assert residences["gone"] is drawing.Residence.NOWHERE
    assert residences["lost"] is drawing.Residence.NOWHERE
    assert graph.node("base-1").applied and graph.node("base_1").applied
    assert graph.node("orphan").applied is False
    described = {
        "nodes": [{"revision": n.revision} for n in graph.nodes],
        "edges": [{"parent": e.parent, "child": e.child, "dependency": e.dependency}
                  for e in graph.edges],
        "database_heads": list(graph.database_heads or ()),
    }
    assert {"parent": "0002.feature", "child": "tip", "dependency": True} in described["edges"]
    parsed = check_mermaid_has(described, drawing.to_mermaid(graph))
    first = next(lines for lines in parsed.labels.values() if lines[0] == "base-1")
    assert first[1] == 'create "users" <b>#1</b> & co | `x`'
    dot = shutil.which("dot")
    if dot is not None:
        svg = subprocess.run([dot, "-Tsvg"], input=drawing.to_dot(graph, 'a "title"'),
                             capture_output=True, text=True, check=True).stdout
        nodes, edges = svg_graph(svg.encode("utf-8"))
        assert {f"r:{n.revision}" for n in graph.nodes} <= nodes
        assert {(f"r:{e.parent}", f"r:{e.child}") for e in graph.edges} <= edges


# --- progress ---------------------------------------------------------------------------------

class Terminal(io.StringIO):
    """A stream that says it is a terminal (the platform fact under test)."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_appears_after_half_a_second_and_is_erased() -> None:
    clock, stream = Clock(), Terminal()
    line = progress.ProgressLine(stream, clock=clock, width=60)
    line.update(1, 10, "reading migration folders")
    clock.now += 0.4
    line.update(2, 10, "reading migration folders")
    assert stream.getvalue() == ""  # fast work prints nothing
    clock.now += 0.2
    line.update(3, 10, "reading migration folders")
    assert stream.getvalue() == "\r\033[Kreading migration folders: 3/10"
    clock.now += 0.01
    line.update(4, 10, "reading migration folders")  # too soon to redraw
    assert stream.getvalue().count("\r\033[K") == 1
    line.update(10, 10, "reading migration folders")  # the last one always shows
    line.clear()
    assert stream.getvalue().endswith("reading migration folders: 10/10\r\033[K")


def test_progress_is_only_for_a_person_at_a_terminal() -> None:
    terminal = Terminal()
    assert progress.wanted(json_mode=False, quiet=False, stream=terminal, environ={})
    assert not progress.wanted(json_mode=True, quiet=False, stream=terminal, environ={})
    assert not progress.wanted(json_mode=False, quiet=True, stream=terminal, environ={})
    assert not progress.wanted(json_mode=False, quiet=False, stream=io.StringIO(), environ={})
    for hook in ({"GIT_INDEX_FILE": "/r/.git/index"}, {"ALEMBIC_AUTOCOPY_HOOK": "1"},
                 {"ALEMBIC_AUTOCOPY_NO_PROGRESS": "1"}):
        assert not progress.wanted(json_mode=False, quiet=False, stream=terminal,
                                   environ=hook)


def test_progress_counter_reports_to_the_shown_line_only() -> None:
    stream = Terminal()
    progress.counter(3, "nothing shown")("x")  # no line: a no-op
    with progress.shown(True, stream) as line:
        assert line is not None
        line.started -= 1.0  # the work has lasted a second
        tick = progress.counter(3, "scanning")
        tick("a")
        assert stream.getvalue() == "\r\033[Kscanning: 1/3"
        tick("b")
        tick("c")
    assert stream.getvalue().endswith("\r\033[K")
    with progress.shown(False, stream) as line:
        assert line is None


def _several_heads_advice(worktree: Worktree) -> str:
    result = worktree.autocopy("status", "--json")
    assert result.returncode == 0, result.stderr
    (advice,) = [w["message"] for w in json.loads(result.stdout)["warnings"]
                 if w["id"] == "several-heads"]
    assert advice in worktree.autocopy("status").stdout  # the text says the same
    return advice


@pytest.mark.parametrize("with_line", [True, False])
def test_several_heads_advice_is_true_with_and_without_the_env_py_line(
        tmp_path: Path, sqlite_db: Database, with_line: bool) -> None:
    """One head of this worktree's own, one copied from worktree A: what status says plain
    Alembic does is what it does."""
    repo = make_repo(tmp_path, sqlite_db)
    if with_line:
        integrate_env_py(repo, "from sqlalchemy import MetaData\ntarget_metadata = MetaData()\n")
    a = repo.add_worktree("a")
    a.chain(1, BASE_REV, "a")
    a.commit("a: one migration")
    a.alembic("upgrade", "head", check=True)
    main = repo.main
    main.write_migration("b00000000001", down=BASE_REV, message="own")
    main.commit("b: one migration")
    main.autocopy("upgrade", check=True)  # brings A's in: two heads here

    advice = _several_heads_advice(main)

    plain_revision = main.alembic("revision", "-m", "plain")
    assert plain_revision.returncode != 0
    assert "Multiple heads" in plain_revision.stdout + plain_revision.stderr
    if with_line:
        assert "with env.py's line `alembic upgrade head` goes to every head" in advice
        assert "plain `alembic revision` (no env.py run) refuses" in advice
        assert "use `alembic-autocopy revision`" in advice
        assert main.alembic("upgrade", "head").returncode == 0
        autogenerate = main.alembic("revision", "--autogenerate", "-m", "auto")
        assert autogenerate.returncode == 0, autogenerate.stderr
    else:
        assert "plain `alembic upgrade head` and `alembic revision` refuse" in advice
        assert main.alembic("upgrade", "head").returncode != 0
    assert main.autocopy("revision", "-m", "ours").returncode == 0


def test_two_heads_of_its_own_are_advised_a_merge(tmp_path: Path,
                                                  sqlite_db: Database) -> None:
    """Both heads are this worktree's own: `alembic-autocopy revision` refuses too; the
    advice is the merge, and the merge it names works."""
    repo = make_repo(tmp_path, sqlite_db)
    integrate_env_py(repo)
    main = repo.main
    main.write_migration("b00000000001", down=BASE_REV, message="one")
    main.write_migration("c00000000001", down=BASE_REV, message="two")
    main.commit("two heads of our own")

    advice = _several_heads_advice(main)

    assert "alembic-autocopy revision` refuse" in advice
    assert advice.endswith("run `alembic merge heads -m 'merge heads'`")
    assert main.autocopy("revision", "-m", "x").returncode != 0
    merge = re.search(r"run `([^`]+)`$", advice)
    assert merge is not None
    subprocess.run(merge.group(1), shell=True, cwd=main.path, check=True,
                   capture_output=True)
    assert main.autocopy("revision", "-m", "x").returncode == 0
