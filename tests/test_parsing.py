"""parse_migration against files Alembic writes, hand-written variants, and Alembic itself.

``alembic_reads`` is the oracle (also used by test_parsing_fuzz.py): it loads a file the way
``ScriptDirectory`` does (``Script._from_path``) and reports what Alembic got.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import to_tuple

from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader
from alembic_autocopy.core.parsing import (
    DEFAULT_MAX_BYTES,
    _decode,
    _parse_fast,
    _text_of,
    parse_migration,
    sha256_hex,
)
from support.templates import render_migration

# --------------------------------------------------------------------------------------------
# The oracle

_SOURCE_ONLY = types.SimpleNamespace(sourceless=False)  # what _from_path needs of a ScriptDirectory
_file_numbers = itertools.count()


def alembic_reads(source: bytes, folder: Path) -> MigrationHeader | None:
    """What Alembic reads by importing ``source``, or None when it cannot load the file or
    reads something this tool refuses on purpose (ids that are not strings, sets, ...).

    The file name is not a legacy ``<hex>.py`` name, so a file without ``revision`` fails.
    """
    loaded = alembic_load(source, folder)
    return loaded if isinstance(loaded, MigrationHeader) else None


def alembic_load(source: bytes, folder: Path) -> MigrationHeader | Exception | None:
    """Like ``alembic_reads``, but the exception when Alembic fails to load the file."""
    path = folder / f"m_{next(_file_numbers)}.py"
    path.write_bytes(source)
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # a reused path must never be served stale bytecode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            script = Script._from_path(_SOURCE_ONLY, path)  # type: ignore[arg-type]
            assert script is not None
            doc = script.doc
    except Exception as error:
        return error
    finally:
        sys.dont_write_bytecode = writes_bytecode
        path.unlink()
    module = script.module
    raw = [module.down_revision, getattr(module, "branch_labels", None),
           getattr(module, "depends_on", None)]
    if not isinstance(script.revision, str) or not all(_is_ids(value) for value in raw):
        return None
    return MigrationHeader(
        revision=script.revision,
        down_revisions=script._versioned_down_revisions,
        branch_labels=tuple(script._orig_branch_labels),
        depends_on=to_tuple(script.dependencies, default=()),
        message=doc or None,
    )


def _is_ids(value: object) -> bool:
    # Alembic would take other values too: to_tuple(5) is (5,), and tuple_rev_as_scalar turns
    # depends_on = (("a",),) into ("a",). The tool refuses them; so does this oracle.
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, (tuple, list)) and type(value) in (tuple, list) and all(
        isinstance(item, str) for item in value
    )


def both_readers(source: bytes) -> tuple[MigrationHeader | None, MigrationHeader | str]:
    """(the fast reader's answer, the exact reader's header or error reason)."""
    try:
        text, strict = _text_of(source, DEFAULT_MAX_BYTES)
        fast = _parse_fast(text) if strict else None
    except MigrationParseError:
        fast = None  # refused before either reader looks (size, NUL, encoding)
    try:
        return fast, parse_migration(source, check_syntax=True)  # the exact reader alone
    except MigrationParseError as error:
        return fast, str(error)


def reason(source: bytes, **options: object) -> str:
    with pytest.raises(MigrationParseError) as caught:
        parse_migration(source, **options)  # type: ignore[arg-type]
    return str(caught.value)


# --------------------------------------------------------------------------------------------
# Files as Alembic renders them

A, B, C, D = "1f2e3d4c5b6a", "2a3b4c5d6e7f", "3c4d5e6f7a8b", "4d5e6f7a8b9c"

RENDERED: list[dict[str, Any]] = [
    dict(rev=A, down=None, message="create account table", branch_labels=None, depends_on=None),
    dict(rev=B, down=A, message="add email", branch_labels=None, depends_on=None),
    dict(rev=C, down=(A, B), message="merge heads", branch_labels=None, depends_on=None),
    dict(rev=D, down=None, message="audit root", branch_labels="audit", depends_on=(A, B)),
    dict(rev=D, down=B, message="labels", branch_labels=("x", "y"), depends_on=A),
    dict(rev=A, down=B, message="ünïcödé 中文 ✓", branch_labels=None, depends_on=None),
]


def expected_rendered(spec: dict[str, Any]) -> MigrationHeader:
    def ids(value: object) -> tuple[str, ...]:
        return to_tuple(value, default=())

    return MigrationHeader(str(spec["rev"]), ids(spec["down"]), ids(spec["branch_labels"]),
                           ids(spec["depends_on"]), str(spec["message"]))


@pytest.mark.parametrize("annotated", [True, False], ids=["annotated", "plain"])
@pytest.mark.parametrize("spec", RENDERED, ids=[str(s["message"]) for s in RENDERED])
def test_template_output(spec: dict[str, Any], annotated: bool, tmp_path: Path) -> None:
    source = render_migration(annotated=annotated, **spec).encode()
    expected = expected_rendered(spec)
    assert parse_migration(source) == expected
    assert parse_migration(source, check_syntax=True) == expected
    assert _parse_fast(_decode(source)[0]) == expected  # the template shape takes the fast path
    assert alembic_reads(source, tmp_path) == expected


@pytest.fixture(scope="module")
def generated_project(tmp_path_factory: pytest.TempPathFactory) -> ScriptDirectory:
    """A project built with Alembic's own commands, file names without the revision id."""
    root = tmp_path_factory.mktemp("project")
    config = Config(str(root / "alembic.ini"))
    command.init(config, str(root / "migrations"))
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    command.revision(config, message="create users", rev_id="a1b2c3d4e5f6", branch_label="core")
    command.revision(config, message="add C:\\temp column", rev_id="b2c3d4e5f6a1",
                     head="core@head")
    command.revision(config, message="audit root", rev_id="c3d4e5f6a1b2", head="base",
                     branch_label="audit", depends_on="a1b2c3d4e5f6")
    command.revision(config, message="audit, second\n\nwith a long description",
                     rev_id="d4e5f6a1b2c3", head="audit@head")
    command.merge(config, revisions="heads", message="merge core and audit",
                  rev_id="e5f6a1b2c3d4")
    return ScriptDirectory.from_config(config)


def test_files_alembic_generated(generated_project: ScriptDirectory) -> None:
    scripts = list(generated_project.walk_revisions())
    assert len(scripts) == 5
    for script in scripts:
        assert script.revision not in Path(script.path).name  # the id is not in the name
        header = parse_migration(Path(script.path).read_bytes())
        assert header == MigrationHeader(
            revision=script.revision,
            down_revisions=script._versioned_down_revisions,
            branch_labels=tuple(script._orig_branch_labels),
            depends_on=to_tuple(script.dependencies, default=()),
            message=script.doc or None,
        )
    merge = parse_migration(Path(generated_project.get_revision("e5f6a1b2c3d4").path)
                            .read_bytes())
    assert set(merge.down_revisions) == {"b2c3d4e5f6a1", "d4e5f6a1b2c3"}
    # Alembic writes the message into the docstring unescaped: "\t" becomes a TAB.
    temp = generated_project.get_revision("b2c3d4e5f6a1")
    assert parse_migration(Path(temp.path).read_bytes()).message == "add C:\temp column"


# --------------------------------------------------------------------------------------------
# Hand-written variants that load

HEAD = "revision = 'r1'\ndown_revision = None\n"

VALID: list[tuple[str, bytes, MigrationHeader]] = [
    ("minimal", HEAD.encode(), MigrationHeader("r1")),
    ("annotated", b"revision: str = 'r1'\ndown_revision: 'str | None' = 'r0'\n",
     MigrationHeader("r1", ("r0",))),
    ("list parents", b"revision = 'r1'\ndown_revision = ['a', 'b']\n",
     MigrationHeader("r1", ("a", "b"))),
    ("bare tuple", b"revision = 'r1'\ndown_revision = 'a', 'b'\n",
     MigrationHeader("r1", ("a", "b"))),
    ("multi-line tuple", b"revision = 'r1'\ndown_revision = (\n    'a',\n    'b',\n)\n",
     MigrationHeader("r1", ("a", "b"))),
    ("tuple with comments", b"revision = 'r1'\ndown_revision = (  # merge\n    'a',  # x\n"
     b"    'b',\n)\n", MigrationHeader("r1", ("a", "b"))),
    ("one-element tuple", b"revision = 'r1'\ndown_revision = ('a',)\n",
     MigrationHeader("r1", ("a",))),
    ("parenthesised string", b"revision = ('r1')\ndown_revision = ('a')\n",
     MigrationHeader("r1", ("a",))),
    ("empty tuple is no parent", b"revision = 'r1'\ndown_revision = ()\n", MigrationHeader("r1")),
    ("empty string parent", b"revision = 'r1'\ndown_revision = ''\n",
     MigrationHeader("r1", ("",))),
    ("labels and dependencies", HEAD.encode() + b"branch_labels = ('x',)\ndepends_on = 'r9'\n",
     MigrationHeader("r1", (), ("x",), ("r9",))),
    ("list labels", HEAD.encode() + b"branch_labels = ['x', 'y']\ndepends_on = ['a', 'b']\n",
     MigrationHeader("r1", (), ("x", "y"), ("a", "b"))),
    ("chained", b"revision = 'r1'\ndown_revision = branch_labels = depends_on = None\n",
     MigrationHeader("r1")),
    ("last assignment wins", b"revision = 'r0'\nrevision = 'r1'\ndown_revision = 'x'\n"
     b"down_revision = None\n", MigrationHeader("r1")),
    ("earlier binding in if is overridden",
     b"if True:\n    revision = 'r0'\nrevision = 'r1'\ndown_revision = None\n",
     MigrationHeader("r1")),
    ("earlier call is overridden", b"revision = str('r0')\nrevision = 'r1'\ndown_revision = None\n",
     MigrationHeader("r1")),
    ("escapes in ids", b"revision = 'r\\x31'\ndown_revision = u'\\u00e9'\n",
     MigrationHeader("r1", ("\u00e9",))),
    ("implicit concatenation", b"revision = 'r' '1'\ndown_revision = None\n",
     MigrationHeader("r1")),
    ("values with trailing comments", b"revision = 'r1'  # the id\ndown_revision = None  # base\n",
     MigrationHeader("r1")),
    ("names elsewhere", b"revision = 'r1'\ndown_revision = None\n"
     b"def upgrade():\n    revision = 'local'\n    op.add_column('revision', x)\n"
     b"class Model:\n    depends_on = 'class attribute'\n"
     b"obj = type('O', (), {})()\nobj.revision = 'attribute'\n",
     MigrationHeader("r1")),
    ("decoy in a string", b"SQL = '''\nrevision = 'decoy'\n'''\nrevision = 'r1'\n"
     b"down_revision = None\n", MigrationHeader("r1")),
    ("module-level global is a no-op", b"global revision\n" + HEAD.encode(),
     MigrationHeader("r1")),
    ("star import before", b"from typing import *\n" + HEAD.encode() +
     b"branch_labels = None\ndepends_on = None\n", MigrationHeader("r1")),
    ("function reading the names", HEAD.encode() + b"def f():\n    return revision\n",
     MigrationHeader("r1")),
    # docstrings, as Script.doc shows them: stripped, first paragraph only
    ("template docstring", b'"""add users\n\nRevision ID: r1\nRevises: \n"""\n' + HEAD.encode(),
     MigrationHeader("r1", message="add users")),
    ("single-quoted docstring", b"'add users'\n" + HEAD.encode(),
     MigrationHeader("r1", message="add users")),
    ("raw docstring", b'r"""C:\\new"""\n' + HEAD.encode(),
     MigrationHeader("r1", message="C:\\new")),
    ("escape in docstring", b'"""C:\\new"""\n' + HEAD.encode(),
     MigrationHeader("r1", message="C:\new")),
    ("invalid escape in docstring", b'"""C:\\data"""\n' + HEAD.encode(),
     MigrationHeader("r1", message="C:\\data")),
    ("multi-line first paragraph", b'"""  line one\nline two\n\nrest"""\n' + HEAD.encode(),
     MigrationHeader("r1", message="line one\nline two")),
    ("blank docstring", b'"""  \n  """\n' + HEAD.encode(), MigrationHeader("r1")),
    ("comments before docstring", b"#!/usr/bin/env python\n# a comment\n\n'doc'\n" + HEAD.encode(),
     MigrationHeader("r1", message="doc")),
    ("docstring then statement on its line", b"'doc'; x = 1\n" + HEAD.encode(),
     MigrationHeader("r1", message="doc")),
    ("concatenated docstring", b"'doc' ' more'\n" + HEAD.encode(),
     MigrationHeader("r1", message="doc more")),
    ("bytes are not a docstring", b"b'doc'\n" + HEAD.encode(), MigrationHeader("r1")),
    ("f-strings are not a docstring", b"f'doc'\n" + HEAD.encode(), MigrationHeader("r1")),
    ("a later string is not a docstring", b"import os\n'doc'\n" + HEAD.encode(),
     MigrationHeader("r1")),
    ("__doc__ assigned", b"'doc'\n" + HEAD.encode() + b"__doc__ = 'other'\n",
     MigrationHeader("r1", message="other")),
    ("__doc__ = None", b"'doc'\n" + HEAD.encode() + b"__doc__ = None\n", MigrationHeader("r1")),
    ("docstring with decoy", b'"""revision = \'decoy\'\n"""\n' + HEAD.encode(),
     MigrationHeader("r1", message="revision = 'decoy'")),
    # encodings and line endings, as Python's import reads them
    ("latin-1 cookie", "# -*- coding: latin-1 -*-\n'café'\n".encode("latin-1") + HEAD.encode(),
     MigrationHeader("r1", message="café")),
    ("cookie on the second line", "#!/usr/bin/python\n# vim: set fileencoding=latin-1 :\n'é'\n"
     .encode("latin-1") + HEAD.encode(), MigrationHeader("r1", message="é")),
    ("UTF-8 BOM", b"\xef\xbb\xbf'd\xc3\xa9'\n" + HEAD.encode(),
     MigrationHeader("r1", message="dé")),
    ("CRLF", b'"""a\r\n\r\nb"""\r\nrevision = \'r1\'\r\ndown_revision = None\r\n',
     MigrationHeader("r1", message="a")),
    ("lone CR", b"'a'\rrevision = 'r1'\rdown_revision = None\r",
     MigrationHeader("r1", message="a")),
    ("no final newline", b"revision = 'r1'\ndown_revision = None", MigrationHeader("r1")),
    ("'coding' in a comment with bytes that are not UTF-8", b"# coding is fun \xff\n"
     + HEAD.encode(), MigrationHeader("r1")),
    ("bytes that are not UTF-8 in a comment", HEAD.encode() + b"# caf\xe9 \xff\n",
     MigrationHeader("r1")),
    ("non-ASCII identifier elsewhere", "ｖalue = 1\n".encode() + HEAD.encode(),
     MigrationHeader("r1")),
]


@pytest.mark.parametrize(("source", "expected"), [case[1:] for case in VALID],
                         ids=[case[0] for case in VALID])
def test_valid(source: bytes, expected: MigrationHeader, tmp_path: Path) -> None:
    assert parse_migration(source) == expected
    assert parse_migration(source, check_syntax=True) == expected
    fast, full = both_readers(source)
    assert full == expected
    assert fast in (None, expected)
    assert alembic_reads(source, tmp_path) == expected


def test_template_shapes_take_the_fast_path() -> None:
    for name in ("minimal", "list parents", "multi-line tuple", "labels and dependencies",
                 "template docstring", "raw docstring", "escape in docstring", "UTF-8 BOM", "CRLF",
                 "latin-1 cookie", "docstring with decoy"):
        source = next(case[1] for case in VALID if case[0] == name)
        assert _parse_fast(_decode(source)[0]) is not None, name


# --------------------------------------------------------------------------------------------
# Files that are refused, and why

INVALID: list[tuple[str, bytes, str]] = [
    ("empty", b"", "no `revision = '...'` assignment"),
    ("no down_revision", b"revision = 'r1'\n", "no `down_revision = ...` assignment"),
    ("name", b"revision = 'r1'\ndown_revision = PARENT\n",
     "`down_revision` is not a literal (needs code to run)"),
    ("call", b"revision = f()\ndown_revision = None\n",
     "`revision` is not a literal (needs code to run)"),
    ("f-string", b"revision = f'r{1}'\ndown_revision = None\n",
     "`revision` is not a literal (needs code to run)"),
    ("concatenation", b"revision = 'r1'\ndown_revision = ('a',) + ('b',)\n",
     "`down_revision` is not a literal (needs code to run)"),
    ("conditional", b"revision = 'r1' if X else 'r2'\ndown_revision = None\n",
     "`revision` is not a literal (needs code to run)"),
    ("inside if", b"if X:\n    revision = 'r1'\ndown_revision = None\n",
     "`revision` is assigned inside `if` (needs code to run)"),
    ("redefined inside if", HEAD.encode() + b"if X:\n    down_revision = 'r0'\n",
     "`down_revision` is assigned inside `if` (needs code to run)"),
    ("inside try", b"try:\n    revision = 'r1'\nexcept E:\n    pass\ndown_revision = None\n",
     "`revision` is assigned inside `try` (needs code to run)"),
    ("inside except", HEAD.encode() + b"try:\n    pass\nexcept E:\n    revision = 'r2'\n",
     "`revision` is assigned inside `try` (needs code to run)"),
    ("inside else of for", HEAD.encode() + b"for _ in ():\n    pass\nelse:\n    revision = 'x'\n",
     "`revision` is assigned inside `for` (needs code to run)"),
    ("inside match", HEAD.encode() + b"match X:\n    case 1:\n        revision = 'x'\n",
     "`revision` is assigned inside `match` (needs code to run)"),
    ("match capture", HEAD.encode() + b"match X:\n    case [*revision]:\n        pass\n",
     "`revision` is bound by a `match` pattern (needs code to run)"),
    ("for target", HEAD.encode() + b"for revision in 'ab':\n    pass\n",
     "`revision` is bound by a `for` loop (needs code to run)"),
    ("with target", HEAD.encode() + b"with X as (a, depends_on):\n    pass\n",
     "`depends_on` is bound by `with ... as` (needs code to run)"),
    ("except name", HEAD.encode() + b"try:\n    pass\nexcept E as revision:\n    pass\n",
     "`revision` is bound by `except ... as` (needs code to run)"),
    ("import", HEAD.encode() + b"from x import y as revision\n",
     "`revision` is bound by an import (needs code to run)"),
    ("def", HEAD.encode() + b"def branch_labels():\n    pass\n",
     "`branch_labels` is bound by `def` (needs code to run)"),
    ("class", HEAD.encode() + b"class depends_on:\n    pass\n",
     "`depends_on` is bound by `class` (needs code to run)"),
    ("del", HEAD.encode() + b"del revision\n",
     "`revision` is deleted by `del` (needs code to run)"),
    ("augmented", HEAD.encode() + b"revision += 'x'\n",
     "`revision` is changed in place (needs code to run)"),
    ("unpacking", b"revision, down_revision = 'r1', None\n",
     "`revision` is assigned by unpacking (needs code to run)"),
    ("attribute target too", b"revision = X.y = 'r1'\ndown_revision = None\n",
     "`revision` is assigned next to an attribute or item target (needs code to run)"),
    ("walrus", HEAD.encode() + b"print(revision := 'x')\n",
     "`revision` is assigned by `:=` (needs code to run)"),
    ("walrus in comprehension", HEAD.encode() + b"[(depends_on := n) for n in 'a']\n",
     "`depends_on` is assigned by `:=` (needs code to run)"),
    ("walrus in default", HEAD.encode() + b"def f(x=(revision := 'x')):\n    pass\n",
     "`revision` is assigned by `:=` (needs code to run)"),
    ("global in function", HEAD.encode() + b"def f():\n    global revision\n    revision = 'x'\n",
     "`revision` is declared `global` in a function or class (needs code to run)"),
    ("star import after", HEAD.encode() + b"from x import *\n",
     "`from ... import *` after `revision = ...` could set `revision`"),
    ("star import, labels missing", b"from x import *\n" + HEAD.encode(),
     "`from ... import *` could set `branch_labels`"),
    ("module __getattr__", HEAD.encode() + b"def __getattr__(name):\n    return name\n",
     "Alembic would ask the module's `__getattr__` for `branch_labels` (needs code to run)"),
    ("__doc__ computed", HEAD.encode() + b"__doc__ = f()\n",
     "`__doc__` is not a literal (needs code to run)"),
    ("__doc__ not a string", HEAD.encode() + b"__doc__ = 1\n",
     "`__doc__` is not a string (it is int)"),
    ("revision not a string", b"revision = 1\ndown_revision = None\n",
     "`revision` is not a string (it is int)"),
    ("revision None", b"revision = None\ndown_revision = None\n",
     "`revision` is not a string (it is NoneType)"),
    ("parent a number", b"revision = 'r1'\ndown_revision = 5\n",
     "`down_revision` is not None, a string or a tuple/list of strings (it is int)"),
    ("parents a set", b"revision = 'r1'\ndown_revision = {'a', 'b'}\n",
     "`down_revision` is not None, a string or a tuple/list of strings (it is set)"),
    ("parents mixed", b"revision = 'r1'\ndown_revision = ('a', 1)\n",
     "`down_revision` is not None, a string or a tuple/list of strings "
     "(it is a tuple of int, str)"),
    ("labels bytes", HEAD.encode() + b"branch_labels = b'x'\n",
     "`branch_labels` is not None, a string or a tuple/list of strings (it is bytes)"),
    ("nested tuple", HEAD.encode() + b"depends_on = (('a',),)\n",
     "`depends_on` is not None, a string or a tuple/list of strings (it is a tuple of tuple)"),
    ("own parent", b"revision = 'r1'\ndown_revision = ('r0', 'r1')\n",
     "revision 'r1' lists itself in `down_revision`"),
    ("own dependency", HEAD.encode() + b"depends_on = 'r1'\n",
     "revision 'r1' lists itself in `depends_on`"),
    ("illegal id", b"revision = 'r-1@x'\ndown_revision = None\n",
     "revision id 'r-1@x' contains - @ (Alembic refuses it)"),
    ("syntax error in header", b"revision = 'r1\ndown_revision = None\n",
     "syntax error line 1: unterminated string literal (detected at line 1)"),
    ("bad indentation", b"  revision = 'r1'\ndown_revision = None\n",
     "syntax error line 1: unexpected indent"),
    ("not UTF-8", b"'\xff'\n" + HEAD.encode(), "not UTF-8 text"),
    ("not UTF-8 in a name", HEAD.encode() + b"caf\xe9 = 1\n", "not UTF-8 text"),
    ("not UTF-8 with a UTF-8 cookie", b"# coding: utf-8\n" + HEAD.encode() + b"x = '\xe9'\n",
     "not UTF-8 text"),
    ("not the cookie's encoding", b"# coding: ascii\n'\xc3\xa9'\n" + HEAD.encode(),
     "not ascii text (as its coding cookie says)"),
    ("unknown encoding", b"# coding: klingon\n" + HEAD.encode(),
     "bad source encoding: unknown encoding: klingon"),
    ("BOM and another cookie", b"\xef\xbb\xbf# coding: latin-1\n" + HEAD.encode(),
     "bad source encoding: encoding problem: iso-8859-1 with BOM"),
    ("not a text encoding", b"# coding: rot13\n" + HEAD.encode(),
     "bad source encoding: 'rot13' is not a text encoding"),
    ("NUL byte", HEAD.encode() + b"x = '\x00'\n", "contains NUL bytes"),
    ("deep parentheses", b"revision = 'r1'\ndown_revision = " + b"(" * 300 + b"None" + b")" * 300,
     "syntax error line 2: too many nested parentheses"),
    ("deep unary", HEAD.encode() + b"x = " + b"-" * 100_000 + b"1\n",
     "too deeply nested for Python to parse"),
    ("deep attributes", HEAD.encode() + b"x = a" + b".b" * 100_000 + b"\n",
     "too deeply nested for Python to parse"),
]


@pytest.mark.parametrize(("source", "expected"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid(source: bytes, expected: str, tmp_path: Path) -> None:
    # the header may be fine and the trouble elsewhere: then only check_syntax sees it
    late_trouble = expected.startswith("too deeply")
    if not late_trouble:
        assert reason(source) == expected
    assert reason(source, check_syntax=True) == expected
    fast, full = both_readers(source)
    assert full == expected
    assert fast is None or late_trouble
    assert alembic_reads(source, tmp_path) is None or "needs code to run" in expected


def test_code_that_runs_fine_is_still_refused(tmp_path: Path) -> None:
    source = b"revision = 'r1'\ndown_revision = str('r0')\n"
    assert alembic_reads(source, tmp_path) == MigrationHeader("r1", ("r0",))
    assert reason(source) == "`down_revision` is not a literal (needs code to run)"


def test_broken_code_after_the_header() -> None:
    source = render_migration(rev=A, down=B, message="m", branch_labels=None, depends_on=None,
                              annotated=True).encode()
    truncated = source[: source.index(b"op.create_table") + 20]
    assert parse_migration(truncated) == MigrationHeader(A, (B,), message="m")
    assert reason(truncated, check_syntax=True).startswith("syntax error line 23: ")


@pytest.mark.parametrize(("code", "error"), [
    ("from __future__ import nnotations\n", "future feature nnotations is not defined"),
    ("x = 1\nfrom __future__ import annotations\n",
     "from __future__ imports must occur at the beginning of the file"),
    ("return 1\n", "'return' outside function"),
    ("break\n", "'break' outside loop"),
    ("def f(a, a):\n    pass\n", "duplicate argument 'a' in function definition"),
])
def test_errors_only_the_compiler_finds(code: str, error: str, tmp_path: Path) -> None:
    source = code.encode() + HEAD.encode()
    assert parse_migration(source) == MigrationHeader("r1")  # the header is fine
    assert reason(source, check_syntax=True).endswith(f": {error}")
    assert alembic_reads(source, tmp_path) is None


def test_size_bound_comes_first() -> None:
    # 50 MB of NUL and non-UTF-8 bytes: any other check first would give another reason.
    huge = b"\x00\xff" * 25_000_000
    assert reason(huge) == "larger than 1000000 bytes"
    assert reason(HEAD.encode(), max_bytes=10) == "larger than 10 bytes"
    assert parse_migration(HEAD.encode(), max_bytes=len(HEAD)) == MigrationHeader("r1")
    assert DEFAULT_MAX_BYTES == 1_000_000


@pytest.mark.parametrize("source", [
    b"'''" + b"\\'''" * 200_000,  # unterminated, with many escaped closing quotes
    b"revision = 'r1'\ndown_revision = None\n#" + b" revision" * 100_000,
    b"revision = 'r1'\ndown_revision = None\n" + b"'" * 900_000,
    b"(" * 999_000,
    b"revision = 'r1'\ndown_revision = (" + b"'a'," * 50_000 + b")\n",
], ids=["escaped quotes", "many comment occurrences", "quotes", "open brackets", "long tuple"])
def test_large_pathological_inputs_do_not_hang(source: bytes) -> None:
    """A guard against catastrophic (exponential) scanning, not a speed target: the normal
    cost is well under a second; bench/ measures speed. The alarm fires only on a hang."""
    def hung(signum: int, frame: object) -> None:
        raise AssertionError("parsing a pathological input took over 60 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        for check_syntax in (False, True):
            with contextlib.suppress(MigrationParseError):
                parse_migration(source, check_syntax=check_syntax)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert len(sha256_hex(HEAD.encode())) == 64
