"""Generated migration files: parse_migration agrees with Alembic, and never crashes.

Valid files are loaded by Alembic itself (``alembic_reads``); every piece of code they run is
listed here (no generated identifiers are ever executed, only literals and fixed snippets).
Nearly-valid files are valid files with one change; garbage is never executed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader
from alembic_autocopy.core.parsing import parse_migration
from test_parsing import alembic_load, alembic_reads, both_readers

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Building blocks

HEX = "0123456789abcdef"
# Ids: mostly Alembic-like hex, sometimes anything (quotes, backslashes, unicode, Alembic's
# illegal characters, the empty string): rendered with repr(), never executed as code.
ids = st.one_of(
    st.text(HEX, min_size=12, max_size=12),
    st.text(HEX, min_size=1, max_size=4),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["", "head", "a-b", "x@y", "c:d", "base", "revision", "'", '"', "\\"]),
)
id_collections = st.one_of(
    st.none(), ids,
    st.lists(ids, max_size=3).map(tuple),
    st.lists(ids, max_size=3),
)
messages = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text("ab \n\t\\\"'#rvision=_()", max_size=40),
    st.sampled_from(["create account table", "add C:\\new column", "C:\\data", "a\n\nb",
                     "revision = 'decoy'", "  padded  ", "é ü 中文", "", "say \"hi\"",
                     'ends with "', "ends with \\", 'has """ inside']),
)

#: Code that may stand between statements at module level. Each runs fine when imported.
SNIPPETS = [
    "x = 1\n",
    "if True:\n    y = 2\nelse:\n    y = 3\n",
    "class Model:\n    revision = 'class attribute'\n    depends_on = None\n",
    "def helper(revision=None):\n    down_revision = 'local'\n    return revision\n",
    "def upgrade() -> None:\n"
    "    op.add_column('revision', sa.Column('down_revision', sa.String()))\n",
    "SQL = '''\nrevision = 'decoy'\ndown_revision = ('a', 'b')\n'''\n",
    "# revision = 'commented out'\n",
    "data = {'revision': 1, \"depends_on\": [1, 2], 'x': '#'}\n",
    "values = [\n    1,\n    2,\n]\n",
    "joined = 'a' \\\n    'b'\n",
    "pick = lambda revision=None: revision\n",
    "squares = [n * n for n in range(3)]\n",
    "try:\n    import json\nexcept ImportError:\n    json = None\n",
    "shown = f\"{1 + 1}\"\n",
    "text = \"it's # not a comment\"\n",
    "holder = type('Holder', (), {})()\nholder.revision = 'attribute'\n",
    "__all__ = ['upgrade']\n",
    "# ünïcode comment: révision\n",
    "ｖalue = 1\n",
    "ｒevision_x = 2\n",
    "when = 'revision'; also = \"branch_labels\"\n",
    "nested = ((1, 2), [3, {4: (5,)}])\n",
    "\n\n",
    "if False:\n    pass\n",
    "for _i in range(2):\n    pass\n",
    "import os.path\n",
    "from typing import Optional as _Optional\n",
    "def __dir__():\n    return []\n",
    "async def later():\n    return None\n",
    "raw = r'\\d+\\.'\n",
]

ANNOTATIONS = ["str", "Union[str, Sequence[str], None]", "Optional[str]", "'str | None'",
               "Tuple[str, ...]", "Any", "object"]


@dataclass(eq=False)
class Assignment:
    name: str
    value: object
    annotation: str | None = None
    style: int = 0  # how the value is written: quotes, spacing, line breaks, comments
    text: str | None = None  # overrides the rendering (mutations)

    def render(self) -> str:
        if self.text is not None:
            return self.text
        annotation = f": {self.annotation}" if self.annotation else ""
        comment = "  # trailing comment" if self.style % 5 == 4 else ""
        return f"{self.name}{annotation} = {render_value(self.value, self.style)}{comment}\n"


def render_value(value: object, style: int) -> str:
    if value is None or isinstance(value, str):
        return render_str(value, style)
    assert isinstance(value, (tuple, list))
    items = [render_str(item, style) for item in value]
    if isinstance(value, tuple) and style % 7 == 6 and items:
        return ", ".join(items) + ("," if len(items) == 1 else "")  # a bare tuple
    open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
    if style % 3 == 2 and items:
        return open_ + "\n" + "".join(f"    {item},\n" for item in items) + close
    inside = ", ".join(items)
    if (isinstance(value, tuple) and len(items) == 1) or (style % 4 == 3 and items):
        inside += ","
    return open_ + inside + close


def render_str(value: str | None, style: int) -> str:
    if value is None:
        return "None"
    text = repr(value)
    if style % 2 == 1 and text.startswith("'") and '"' not in value and "\\" not in text:
        text = '"' + text[1:-1] + '"'
    if style % 11 == 10:
        text = "u" + text
    return text


@dataclass
class FileSpec:
    """A migration file as parts, so that a mutation can change one part."""

    leading: list[str]
    docstring: str | None
    future: bool
    statements: list[str | Assignment]
    encoding: str  # "utf-8", "utf-8-sig" (BOM) or "latin-1" (with a cookie)
    newline: str = "\n"
    extra_end: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = list(self.leading)
        if self.encoding == "latin-1":
            parts.insert(0, "# -*- coding: latin-1 -*-\n")
        if self.docstring is not None:
            parts.append(self.docstring)
        if self.future:
            parts.append("from __future__ import annotations\n")
        parts.append("from typing import Any, Optional, Sequence, Tuple, Union\n")
        parts.append("from alembic import op\nimport sqlalchemy as sa\n")
        for statement in self.statements:
            parts.append(statement if isinstance(statement, str) else statement.render())
        parts.extend(self.extra_end)
        return "".join(parts).replace("\n", self.newline)

    def source(self) -> bytes:
        text = self.text()
        if self.encoding == "latin-1":
            try:
                return text.encode("latin-1")
            except UnicodeEncodeError:
                return text.replace("latin-1", "utf-8", 1).encode("utf-8")
        return text.encode(self.encoding)


@st.composite
def docstrings(draw: st.DrawFn) -> str | None:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return None
    message = draw(messages)
    if kind == 1:  # Alembic's template: the message pasted in, unescaped
        return f'"""{message}\n\nRevision ID: abc\nRevises: \nCreate Date: 2024-01-02\n\n"""\n'
    if kind == 2:
        return repr(message) + "\n"
    if kind == 3:
        return f'r"""{message}"""\n'
    return f"'''{message}'''  # comment\n"


@st.composite
def file_specs(draw: st.DrawFn) -> FileSpec:
    assignments = []
    for name in ("revision", "down_revision", "branch_labels", "depends_on"):
        if name in ("branch_labels", "depends_on") and draw(st.booleans()):
            continue  # optional: Alembic reads None
        value = draw(ids if name == "revision" else id_collections)
        # sometimes an earlier assignment, overridden by the last one (last one wins)
        if draw(st.integers(0, 11)) == 0:
            assignments.append(Assignment(name, draw(id_collections)))
        annotation = draw(st.sampled_from([None, None, None, *ANNOTATIONS]))
        assignments.append(Assignment(name, value, annotation, draw(st.integers(0, 100))))
    statements: list[str | Assignment] = list(assignments)
    if len(statements) >= 2 and draw(st.integers(0, 9)) == 0:  # a chained assignment
        last = statements[-1]
        assert isinstance(last, Assignment)
        statements[-1] = Assignment(last.name, last.value,
                                    text=f"chained = {last.name} = {render_value(last.value, 0)}\n")
    order = draw(st.permutations(range(len(statements))))
    # keep each name's assignments in order (the last one must stay last)
    by_name: dict[str, list[str | Assignment]] = {}
    for statement in statements:
        assert isinstance(statement, Assignment)
        by_name.setdefault(statement.name, []).append(statement)
    names = [s.name for s in statements if isinstance(s, Assignment)]
    shuffled = [names[i] for i in order]
    statements = [by_name[name].pop(0) for name in shuffled]
    for _ in range(draw(st.integers(0, 4))):
        statements.insert(draw(st.integers(0, len(statements))), draw(st.sampled_from(SNIPPETS)))
    leading = draw(st.lists(st.sampled_from(["#!/usr/bin/env python\n", "\n", "# comment\n",
                                              "# revision identifiers\n"]), max_size=2))
    return FileSpec(
        leading=leading,
        docstring=draw(docstrings()),
        future=draw(st.booleans()),
        statements=statements,
        encoding=draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1"])),
        newline=draw(st.sampled_from(["\n", "\n", "\n", "\r\n"])),
    )


def outcome(source: bytes, **options: bool) -> MigrationHeader | str:
    try:
        return parse_migration(source, **options)
    except MigrationParseError as error:
        return str(error)


def compiles(source: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(source, "<generated>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def check_agreement(source: bytes) -> tuple[MigrationHeader | None, MigrationHeader | str]:
    """Both readers agree wherever the file compiles; returns (fast, exact)."""
    fast, exact = both_readers(source)
    if fast is not None and fast != exact:
        assert isinstance(exact, str), (fast, exact)
        assert exact.startswith(("syntax error", "too deeply nested")), (fast, exact)
        assert not compiles(source)
    return fast, exact


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


counts: dict[str, int] = {}


def count(kind: str) -> None:
    counts[kind] = counts.get(kind, 0) + 1


# --------------------------------------------------------------------------------------------
# Valid files: what Alembic reads, exactly


@settings(FUZZ, max_examples=1800)
@given(spec=file_specs())
def test_valid_files_read_as_alembic_reads_them(spec: FileSpec, folder: Path) -> None:
    source = spec.source()
    expected = alembic_reads(source, folder)
    fast, exact = check_agreement(source)
    assert outcome(source, check_syntax=True) == (expected if expected else exact)
    if expected is None:  # e.g. a docstring that breaks the file, an illegal id
        assert isinstance(exact, str)
        count("valid/refused")
        return
    assert exact == expected
    assert outcome(source) == expected
    count("valid/fast" if fast is not None else "valid/exact")


# --------------------------------------------------------------------------------------------
# Nearly valid: one change


#: Values that run fine on import but are not literals: must be refused.
CODE_VALUES = ["str('abc')", "PARENT", "f\"{'abc'}\"", "'ab' + 'c'", "('a' if True else 'b')",
               "('a',) + ('b',)", "None or None", "[x for x in ('a',)]", "tuple(['a'])",
               "(lambda: 'abc')()", "'abc'.upper()", "'abc'[0]"]
#: Statements, appended after everything, that rebind a name with code.
REBINDINGS = [
    "if True:\n    {name} = 'z'\n",
    "try:\n    {name} = None\nexcept Exception:\n    pass\n",
    "for {name} in ['q']:\n    pass\n",
    "while False:\n    {name} = 'w'\n",
    "with open(__file__) as {name}:\n    pass\n",
    "{name} += ()\n",
    "del {name}\n",
    "({name} := 'w')\n",
    "[({name} := None) for _ in range(1)]\n",
    "def _set():\n    global {name}\n    {name} = 'g'\n_set()\n",
    "def _never():\n    global {name}\n",
    "from typing import *\n",
    "import typing as {name}\n",
    "def {name}():\n    return None\n",
    "class {name}:\n    pass\n",
    "{name}, _other = None, None\n",
    "{name} = holder.attribute = None\n",
    "match 1:\n    case {name}:\n        pass\n",
    "try:\n    pass\nexcept Exception as {name}:\n    pass\n",
]
WRONG_TYPES = ["1", "{'a'}", "{'a': 1}", "b'a'", "('a', 1)", "True", "...", "1.5", "(('a',),)",
               "['a', None]", "-1", "1j", "set()"]


#: What a file that compiles may raise when it runs (Alembic's own errors are not among them).
RUN_TIME_ERRORS = (NameError, TypeError, AttributeError, ImportError, ValueError, IndexError,
                   KeyError, ZeroDivisionError)


@dataclass(frozen=True)
class Mutation:
    kind: str
    needs_code: bool  # the result must be a refusal, even though Alembic may load it


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Mutation]:
    spec = draw(file_specs())
    kind = draw(st.sampled_from(["code value", "rebinding", "wrong type", "missing",
                                 "truncated", "character", "indent"]))
    assignments = [s for s in spec.statements if isinstance(s, Assignment)]
    last = {a.name: a for a in assignments}  # the last assignment of each name
    target = draw(st.sampled_from(sorted(last)))
    statements = list(spec.statements)
    position = next(i for i, s in enumerate(statements) if s is last[target])
    if kind == "code value":
        code = draw(st.sampled_from(CODE_VALUES))
        statements[position] = replace(last[target], text=f"{target} = {code}\n")
        statements.insert(0, "PARENT = 'abc'\nholder = None\n")
        return replace(spec, statements=statements).source(), Mutation(kind, True)
    if kind == "rebinding":
        template = draw(st.sampled_from(REBINDINGS))
        rebinding = template.format(name=target)
        prefix = "holder = type('Holder', (), {})()\n" if "holder" in rebinding else ""
        spec = replace(spec, extra_end=[prefix + rebinding])
        return spec.source(), Mutation(kind, True)
    if kind == "wrong type":
        wrong = draw(st.sampled_from(WRONG_TYPES))
        statements[position] = replace(last[target], text=f"{target} = {wrong}\n")
        return replace(spec, statements=statements).source(), Mutation(kind, False)
    if kind == "missing":
        statements = [s for s in statements if not (isinstance(s, Assignment)
                                                    and s.name == target)]
        return replace(spec, statements=statements).source(), Mutation(kind, False)
    if kind == "indent":
        statements[position] = "    " + last[target].render()
        return replace(spec, statements=statements).source(), Mutation(kind, False)
    source = spec.source()
    if kind == "truncated":
        return source[: draw(st.integers(0, len(source)))], Mutation(kind, False)
    at = draw(st.integers(0, len(source)))
    new = draw(st.sampled_from([b"", b"'", b'"', b"(", b")", b"\\", b"#", b"\n", b" ", b"=",
                                b"x", b"\xff", b":", b",", b"*", b"\t"]))
    return source[:at] + new + source[at + draw(st.integers(0, 2)):], Mutation(kind, False)


@settings(FUZZ, max_examples=1700)
@given(case=mutated())
def test_nearly_valid_files(case: tuple[bytes, Mutation], folder: Path) -> None:
    source, mutation = case
    _, exact = check_agreement(source)
    count(f"mutated/{mutation.kind}/{'header' if isinstance(exact, MigrationHeader) else 'error'}")
    loaded = alembic_load(source, folder)
    expected = loaded if isinstance(loaded, MigrationHeader) else None
    if mutation.needs_code:
        assert isinstance(exact, str)
        assert isinstance(outcome(source), str)
        return
    if isinstance(exact, MigrationHeader):
        assert outcome(source) == exact
        if isinstance(loaded, RUN_TIME_ERRORS) and compiles(source):
            return  # e.g. "f#rom typing ...": a statement that fails when run; no reader sees it
        assert exact == expected, ("a header Alembic does not read", loaded)
    elif expected is not None:
        # Alembic loads what we refuse: only when the values need code to run (a random edit
        # can turn ('a', 'b') into ('a'* 'b') or ('a'+ 'b')), or a module __getattr__ exists.
        assert "needs code to run" in exact or "import *" in exact, (exact, expected)
    if isinstance(outcome(source), MigrationHeader) and not isinstance(exact, MigrationHeader):
        assert not compiles(source)  # the fast reader does not look past the header


# --------------------------------------------------------------------------------------------
# Decoys: constructs that look like the header to a regular expression. Never executed: only
# the two readers are compared (they must agree wherever the file compiles).

DECOYS = [
    "f(\nrevision='decoy'\n)\n",
    "x = [\ndown_revision == 1\n]\n",
    "'''\nrevision = 'decoy'\n'''\n",
    '"""\ndepends_on = None\n"""\n',
    "x = \\\nrevision = 'chained'\n",
    "if True: \\\nrevision = 'in if'\n",
    "x = 'abc\\\nrevision = \"x\"  # '\n",
    "# it's\nrevision = 'after comment'\n",
    "s = '#'; revision = 'after string'\n",
    "x = 1  # revision = 'comment'\n",
    "d = {\nrevision: 1}\n",
    "revision = 'second'\n",
    "revision: str\n",
    "revision = 'a'; y = 1\n",
    "down_revision = None if x else 'b'\n",
    "revision = ('a'\n'b')\n",
    "revision = f'x'\n",
    "revision = rb'x'\n",
    "x = f'{1}'\nrevision = 'after f-string'\n",
    "x = f\"{'#'}\"\n",
    "from m import *\n",
    "from m import*\n",
    "def g():\n    global revision\n",
    "(revision := 'w')\n",
    "\uff52evision = 'fullwidth'\n",
    "x = 1 # revision\u0303\n",
    "__doc__ = 'doc'\n",
    "def __getattr__(name): pass\n",
    "class C: revision = 'class'\n",
    "for revision in x: pass\n",
    "\\\n",
    "\f\n",
    "x = (  # (\n1)\n",
    "r'\\'\nrevision = 'raw'\n",
    "b'\\''\n",
    "'unterminated\n",
    '"""unterminated\n',
    "revision = 'x'  # trailing 'quote\n",
    "revision = ['a', 'b',]\n",
    "down_revision = ('a',\n  # comment\n  'b')\n",
    "depends_on = ('a' , )\n",
    "branch_labels = ( )\n",
    "branch_labels = (\n)\n",
    "revision = u'x'\n",
    "revision = 'x\\'y'\n",
    "revision = \"x\\\"\"\n",
    "revision  :  str  =  'spaced'\n",
    "revision: Dict[str, int] = 'annotated'\n",
    "revision = 'a' 'b'\n",
    "revision = ('a')\n",
    "down_revision = 'a',\n",
    "   \n",
    "\n",
    "x = '''\n'''; revision = 'after triple'\n",
    "'''a''''b'\n",
    "'''a\\'''revision = 1'''\n",
]


#: Halves of a construct: inserted apart, they may put real assignments inside a string, a
#: call, a continued line or a block, and still compile.
HALVES = ["x = '''\n", "'''\n", 'x = """\n', '"""\n', "f(\n", ")\n", "x = [\n", "]\n",
          "x = \\\n", "if True:\n", "    pass\n", "def f():\n", "class K:\n", "try:\n",
          "except Exception:\n", "x = (  # ')'\n"]


@st.composite
def template_specs(draw: st.DrawFn) -> FileSpec:
    """Files the fast reader accepts as they are (before a decoy is added)."""
    hex_ids = st.text(HEX, min_size=12, max_size=12)
    parents = st.none() | hex_ids | st.lists(hex_ids, min_size=2, max_size=3).map(tuple)
    statements: list[str | Assignment] = [
        Assignment(name, draw(hex_ids if name == "revision" else parents),
                   draw(st.sampled_from([None, "str", "Union[str, Sequence[str], None]"])),
                   draw(st.integers(0, 100)))
        for name in ("revision", "down_revision", "branch_labels", "depends_on")
    ]
    message = draw(st.sampled_from(["add table", "C:\\new", "ünï", ""]))
    return FileSpec(leading=[], docstring=f'"""{message}\n\nRevision ID: x\n"""\n',
                    future=False, statements=statements, encoding="utf-8")


@st.composite
def decoyed(draw: st.DrawFn) -> bytes:
    spec = draw(file_specs() | template_specs())
    spec = replace(spec, encoding="utf-8", newline=draw(st.sampled_from(["\n", "\r\n"])))
    lines = spec.text().splitlines(keepends=True)
    pieces = st.sampled_from(DECOYS) | st.sampled_from(HALVES) | st.sampled_from(SNIPPETS)
    for _ in range(draw(st.integers(1, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(pieces))
    return "".join(lines).encode("utf-8")


@settings(FUZZ, max_examples=2200)
@given(source=decoyed())
def test_decoys(source: bytes) -> None:
    fast, _ = check_agreement(source)
    count("decoy/" + ("fast" if fast is not None else "exact") + "/"
          + ("compiles" if compiles(source) else "broken"))


# --------------------------------------------------------------------------------------------
# Garbage: never executed, must never crash, both readers agree

PYTHONISH = st.lists(st.sampled_from([
    "revision", "down_revision", "branch_labels", "depends_on", "__doc__", "__getattr__",
    " = ", "=", ": str", ": Union[str, None]", "'a'", '"b"', "'''", '"""', "None", "(", ")",
    "[", "]", "{", "}", ",", "\n", "    ", "#", "\\", "\\\n", "if x:", "def f():", "import *",
    "from m import *", "global ", ":=", "f'", "r'", "b'", "u'", ";", "x", ".", "*", "é", "ｒ",
    "\r", "\t", "\f", "1", "del ", "for ", " in ", "class ", "as ",
]), max_size=40).map("".join)


@settings(FUZZ, max_examples=3000)
@given(text=PYTHONISH)
def test_python_like_soup(text: str) -> None:
    source = text.encode()
    check_agreement(source)
    outcome(source)
    count("soup")


@settings(FUZZ, max_examples=1500)
@given(data=st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    check_agreement_or_refused(data)
    count("bytes")


@settings(FUZZ, max_examples=1000)
@given(text=st.text(max_size=1000))
def test_random_text(text: str) -> None:
    check_agreement_or_refused(text.encode("utf-8", "surrogatepass"))
    count("text")


def check_agreement_or_refused(source: bytes) -> None:
    for check_syntax in (False, True):
        outcome(source, check_syntax=check_syntax)  # MigrationParseError at most
    check_agreement(source)


def test_report_counts() -> None:
    """Runs last in this file: shows how the examples split (pytest -s)."""
    print("\nexamples:", sum(counts.values()), dict(sorted(counts.items())))
