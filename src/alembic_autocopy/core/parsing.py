"""Read a migration file's revision header without running it.

Alembic learns a migration's place in the graph by importing the file and reading four module
attributes (``revision``, ``down_revision``, ``branch_labels``, ``depends_on``) plus the module
docstring. Importing runs the file, pulls in SQLAlchemy and costs far more than reading it, so
this module reads the same values from the source text, and refuses (``MigrationParseError``)
whenever the values could only be known by running code.

Two readers give the same answer:

* a fast one (regular expressions, no ``ast``) for files shaped like Alembic's templates, where
  each name is assigned once, at column 0, to a literal on one line (or a simple bracketed
  list of strings). It declines (returns ``None``) at the first thing it is not sure about;
* an exact one (``ast``) for everything else, which also reports why a file is refused.

The fast reader does not check the syntax of the rest of the file (that is what makes it fast):
pass ``check_syntax=True`` to have the whole file parsed and compiled, as an import would,
before a file is acted upon (copied, for instance).

Not detected by either reader, as no reader short of running the file can: values rebound
dynamically (``globals()[...] = ...``, ``exec``, ``setattr(sys.modules[__name__], ...)``),
and imports or statements that fail when the file runs.

Stdlib only: this module is on the hot path and must not import Alembic or SQLAlchemy.
"""

from __future__ import annotations

import ast
import codecs
import io
import re
import tokenize
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from alembic_autocopy.core.digests import blob_id, sha256_hex
from alembic_autocopy.core.errors import MigrationParseError
from alembic_autocopy.core.model import MigrationHeader

__all__ = ["DEFAULT_MAX_BYTES", "blob_id", "header_from_values", "parse_migration",
           "read_partly", "sha256_hex"]

#: Files larger than this are refused before any work (real migrations are a few kilobytes).
DEFAULT_MAX_BYTES = 1_000_000

_REVISION = "revision"
_DOWN = "down_revision"
_LABELS = "branch_labels"
_DEPENDS = "depends_on"
_DOC = "__doc__"
_GETATTR = "__getattr__"
_VALUE_NAMES = (_REVISION, _DOWN, _LABELS, _DEPENDS)
#: Every module-level name whose binding changes what Alembic reads.
_WATCHED = frozenset((*_VALUE_NAMES, _DOC, _GETATTR))
#: Characters ``alembic.script.revision.Revision.verify_rev_id`` refuses in a revision id.
_ILLEGAL_ID_CHARS = frozenset("@-+:")


def parse_migration(
    source: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, check_syntax: bool = False
) -> MigrationHeader:
    """What Alembic would read from the migration file whose bytes are ``source``.

    The result equals what ``alembic.script.Script`` gets by importing the file, for every file
    whose ``revision``, ``down_revision``, ``branch_labels``, ``depends_on`` (and docstring) are
    plain literals at module level: ``down_revisions``, ``branch_labels`` and ``depends_on``
    as tuples in the file's order, ``message`` as ``Script.doc`` (``None`` when that is empty).

    ``check_syntax=False`` (the default, several times faster) does not look at the syntax of
    code unrelated to the header: a file broken further down may still yield a header.
    ``check_syntax=True`` parses and compiles the whole file, as an import would: use it before
    acting on a file (copying it somewhere Alembic will import it).

    Raises ``MigrationParseError`` with a short reason for anything else: a file too large, not
    text, not Python, or whose values would need code to run (a name, a call, an assignment
    inside ``if``, ...). No other exception escapes for any ``bytes`` input.
    """
    text, strict = _text_of(source, max_bytes)
    try:
        if strict and not check_syntax:
            header = _parse_fast(text)
            if header is not None:
                return header
        return _parse_full(source, text, compile_check=check_syntax)
    except (RecursionError, MemoryError):
        raise MigrationParseError("too deeply nested for Python to parse") from None


def read_partly(source: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES
                ) -> tuple[MigrationHeader, tuple[str, ...]]:
    """A best guess at the header of a file ``parse_migration`` refused, and the names it
    could not decide (their values are left empty).

    For this worktree's own files when Alembic's loading is not available here either: a
    ``from x import *`` is taken not to rebind the header (it never does in real projects),
    and ``branch_labels``/``depends_on`` that are not literals are left undecided.
    ``revision`` and ``down_revision`` must still be literals (else MigrationParseError).
    """
    text, _strict = _text_of(source, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return parse_migration(source, max_bytes=max_bytes), ()  # raises the precise reason
    scope = _ModuleScope(walrus=":=" in text)
    scope.collect(tree)
    scope.star_import = -1  # see the docstring
    undecided: list[str] = []
    values: dict[str, object] = {}
    for name in _VALUE_NAMES:
        try:
            values[name] = scope.value_of(name)
        except MigrationParseError:
            if name in (_REVISION, _DOWN):
                raise
            values[name] = None
            undecided.append(name)
    doc = _docstring_of(tree)
    header = _header(values[_REVISION], values[_DOWN], values[_LABELS], values[_DEPENDS], doc)
    return header, tuple(undecided)


def header_from_values(revision: object, down_revision: object, branch_labels: object,
                       depends_on: object, doc: object) -> MigrationHeader:
    """The header of a module Alembic loaded, from its attributes (with Alembic's checks);
    MigrationParseError when Alembic would refuse them."""
    return _header(revision, down_revision, branch_labels, depends_on, doc)


# --------------------------------------------------------------------------------------------
# Decoding, as an import does it (PEP 263 coding cookie, UTF-8 BOM, universal newlines).


def _text_of(source: bytes, max_bytes: int) -> tuple[str, bool]:
    """The decoded text of a file the readers may look at, and whether it decoded strictly
    (else only the exact reader may: see ``_decode``); or MigrationParseError."""
    if len(source) > max_bytes:
        raise MigrationParseError(f"larger than {max_bytes} bytes")
    if b"\x00" in source:
        raise MigrationParseError("contains NUL bytes")
    if source.startswith(_LFS_POINTER_START) and b"\noid sha256:" in source[:200]:
        raise MigrationParseError("a Git LFS pointer, not the migration: install git-lfs and "
                                  "run `git lfs pull` where it lives")
    return _decode(source)


_LFS_POINTER_START = b"version https://git-lfs.github.com/spec/"


def _decode(source: bytes) -> tuple[str, bool]:
    encoding = "utf-8"
    if source.startswith(codecs.BOM_UTF8) or b"coding" in _first_two_lines(source):
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
        except SyntaxError:
            # An unknown or conflicting cookie, or no cookie and bytes that are not UTF-8 in the
            # first lines: Python's own parser says which (it may even accept the file).
            return _newlines(source.decode("utf-8", "replace")), False
    strict = True
    try:
        text = source.decode(encoding)
    except UnicodeDecodeError:
        if not encoding.startswith("utf-8"):
            raise MigrationParseError(
                f"not {encoding} text (as its coding cookie says)"
            ) from None
        # CPython (3.10 to 3.13 at least) accepts bytes that are not UTF-8 inside comments of
        # a UTF-8 file: let the exact reader (Python's own parser) decide.
        text, strict = source.decode(encoding, "replace"), False
    except LookupError:
        raise MigrationParseError(
            f"bad source encoding: {encoding!r} is not a text encoding"
        ) from None
    return _newlines(text), strict


def _newlines(text: str) -> str:
    # Python's tokenizer turns \r\n and a lone \r into \n, in code and in string literals.
    if "\r" in text:
        return text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _first_two_lines(source: bytes) -> bytes:
    end = source.find(b"\n")
    if end >= 0:
        end = source.find(b"\n", end + 1)
    return source if end < 0 else source[:end]


# --------------------------------------------------------------------------------------------
# Values -> header, shared by both readers: Alembic's own checks and normalisation.


def _header(revision: object, down: object, labels: object, depends: object,
            doc: object) -> MigrationHeader:
    if not isinstance(revision, str):
        raise MigrationParseError(f"`revision` is not a string (it is {_kind(revision)})")
    down_revisions = _ids(_DOWN, down)
    branch_labels = _ids(_LABELS, labels)
    depends_on = _ids(_DEPENDS, depends)
    # The checks of Revision.__init__, in its order (the first one looks at the raw value).
    if down and revision in down_revisions:
        raise MigrationParseError(f"revision {revision!r} lists itself in `down_revision`")
    if revision in depends_on:
        raise MigrationParseError(f"revision {revision!r} lists itself in `depends_on`")
    illegal = _ILLEGAL_ID_CHARS.intersection(revision)
    if illegal:
        shown = " ".join(sorted(illegal))
        raise MigrationParseError(f"revision id {revision!r} contains {shown} (Alembic refuses it)")
    return MigrationHeader(
        revision=revision,
        down_revisions=down_revisions,
        branch_labels=branch_labels,
        depends_on=depends_on,
        message=_message(doc),
    )


def _ids(name: str, value: object) -> tuple[str, ...]:
    # alembic.util.to_tuple: None -> (), str -> (str,), tuple/list -> tuple. Other iterables
    # (sets, dicts, bytes) would load but give ids that are not strings or not in a stable order.
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise MigrationParseError(
        f"`{name}` is not None, a string or a tuple/list of strings (it is {_kind(value)})"
    )


def _message(doc: object) -> str | None:
    # Script.longdoc is module.__doc__.strip() (when truthy); Script.doc its first paragraph.
    if doc is None:
        return None
    if not isinstance(doc, str):
        raise MigrationParseError(f"`__doc__` is not a string (it is {_kind(doc)})")
    text = doc.strip()
    return text.split("\n\n", 1)[0] if text else None


def _kind(value: object) -> str:
    if isinstance(value, (tuple, list)):
        inner = sorted({type(item).__name__ for item in value})
        return f"a {type(value).__name__} of {', '.join(inner)}" if inner else "empty"
    return type(value).__name__


class _NotLiteral(Exception):
    """``ast.literal_eval`` refused a value (whatever it raised)."""


def _literal(source: str | ast.expr) -> object:
    """``ast.literal_eval`` without its warnings (an invalid escape warns, as on import)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.literal_eval(source)
    except (RecursionError, MemoryError):
        raise
    except Exception as error:  # ValueError, TypeError, SyntaxError, ...: all mean "no"
        raise _NotLiteral(str(error)) from None


# --------------------------------------------------------------------------------------------
# The fast reader. Each step either proves the file is template-shaped or gives up (None).

_WS = r"[ \t\f]*"
_WSN = r"[ \t\f\n]*"
# A one-line string literal, without a prefix that changes tokenization (f, b) or its meaning.
_STR = r"""[uUrR]?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
_SEQ = (rf"\({_WSN}(?:{_STR}{_WSN},{_WSN})*(?:{_STR}{_WSN})?\)"
        rf"|\[{_WSN}(?:{_STR}{_WSN},{_WSN})*(?:{_STR}{_WSN})?\]")
_ASSIGNMENT = re.compile(
    rf"(?P<name>revision|down_revision|branch_labels|depends_on){_WS}"
    r"""(?::(?!=)[^\n=#'"\\;]*)?"""  # an annotation, as the current template writes
    rf"={_WS}(?P<value>None|{_STR}|{_SEQ}){_WS}(?:#[^\n]*)?(?:\n|\Z)"
)
_STR_RE = re.compile(_STR)
_SEARCHED_WORDS = (_REVISION, _LABELS, _DEPENDS, _DOC, _GETATTR)  # "revision" finds down_revision
_STAR_IMPORT = re.compile(r"import[ \t\f\\\n(]*\*")
_LEADING_LINES = re.compile(r"(?:[ \t\f]*(?:#[^\n]*)?\n)*")
_SINGLE_QUOTED = re.compile(r''''(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"''', re.S)
_STATEMENT_END = re.compile(r"[ \t\f]*(?:#[^\n]*)?(?:\n|\Z)")
_PREFIXED_QUOTE = re.compile(r"""([A-Za-z]{1,2})['"]""")
_IDENTIFIER_START = re.compile(r"[A-Za-z_]")
_SCAN = re.compile(r"""[#'"\\]""")
_STRING_END = {
    "'": re.compile(r"(?:[^'\\\n]|\\.)*'", re.S),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"', re.S),
    "'''": re.compile(r"(?:[^'\\]|\\.|'(?!''))*'''", re.S),
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.S),
}
# Prefixes of strings whose tokenization differs between Python versions (PEP 701, PEP 750).
_TEMPLATE_PREFIXES = frozenset({"f", "rf", "fr", "t", "rt", "tr"})
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_IDENTIFIER_CHARS_OR_DOT = _IDENTIFIER_CHARS | {"."}


def _parse_fast(text: str) -> MigrationHeader | None:
    """The header of a template-shaped file, or None when the exact reader must decide.

    Sound for every file that compiles: a header is returned only when it is what the exact
    reader returns.
    """
    located = _docstring_fast(text)
    if located is None:
        return None
    start, docstring = located
    # Identifiers are NFKC-normalised: a non-ASCII spelling could name `revision`.
    if not text.isascii() and not text[start:].isascii():
        return None
    if text.find("*", start) >= 0 and _STAR_IMPORT.search(text, start):
        return None
    found = _assignments_fast(text, start)
    if found is None or _REVISION not in found or _DOWN not in found:
        return None
    if not _start_statements(text, start, sorted(position for position, _ in found.values())):
        return None
    values: dict[str, object] = {}
    for name, (_, value_text) in found.items():
        try:
            values[name] = _value_fast(value_text)
        except _NotLiteral:
            return None
    try:
        return _header(values[_REVISION], values[_DOWN], values.get(_LABELS),
                       values.get(_DEPENDS), docstring)
    except MigrationParseError:
        return None  # the exact reader gives the reason (or finds a syntax error first)


def _docstring_fast(text: str) -> tuple[int, str | None] | None:
    """(where the code after the docstring starts, the docstring), or None when unsure."""
    leading = _LEADING_LINES.match(text)
    start = leading.end() if leading else 0
    if start == len(text):
        return None
    first = text[start]
    if first in "'\"":
        return _docstring_at(text, start)
    prefixed = _PREFIXED_QUOTE.match(text, start)
    if prefixed:
        if prefixed.group(1).lower() in ("u", "r"):
            return _docstring_at(text, start)
        return None  # bytes and f-strings are not docstrings; leave the details to ast
    if _IDENTIFIER_START.match(first):
        return start, None  # the first statement is not an expression statement of a string
    return None


def _docstring_at(text: str, start: int) -> tuple[int, str | None] | None:
    quote_at = start + 1 if text[start] in "uUrR" else start
    quote = text[quote_at:quote_at + 3]
    if quote in ('"""', "'''"):
        end = _triple_quoted_end(text, quote_at + 3, quote)
        if end < 0:
            return None
    else:
        match = _SINGLE_QUOTED.match(text, quote_at)
        if match is None:
            return None
        end = match.end()
    after = _STATEMENT_END.match(text, end)
    if after is None:
        return None  # `"doc".strip()`, `"a" "b"`, `"doc"; x = 1`, ...: let ast decide
    try:
        return after.end(), _string_fast(text[start:end])
    except _NotLiteral:
        return None


def _triple_quoted_end(text: str, content_start: int, quote: str) -> int:
    """Where the triple-quoted string whose content starts at ``content_start`` ends, or -1."""
    at = text.find(quote, content_start)
    while at >= 0:
        backslashes = 0
        while text[at - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return at + 3
        at = text.find(quote, at + 1)
    return -1


def _assignments_fast(text: str, start: int) -> dict[str, tuple[int, str]] | None:
    """Each watched name's one assignment (position, value text), or None when unsure.

    Every other occurrence of a watched name must be harmless in any file that compiles: in a
    comment, or right after a quote (inside a string, since a name cannot follow a string).
    """
    found: dict[str, tuple[int, str]] = {}
    line_end = -1  # the line of the previous occurrence: [.., line_end), comment from comment_at
    comment_at = 0
    for position, name in _occurrences(text, start):
        previous = text[position - 1] if position else "\n"
        if previous == "\n":
            assignment = _ASSIGNMENT.match(text, position)
            if assignment is None or name in found:
                return None
            found[name] = (position, assignment.group("value"))
            continue
        if previous in "'\"":
            continue
        if position > line_end:
            line_start = text.rfind("\n", max(line_end, 0), position) + 1
            line_end = text.find("\n", position)
            if line_end < 0:
                line_end = len(text)
            comment_at = _comment_start(text, line_start, line_end)
        if position < comment_at:
            return None
    return found


def _occurrences(text: str, start: int) -> list[tuple[int, str]]:
    """(position, name) of each watched name used as an identifier (not after a dot), sorted.

    ``str.find`` per name: several times faster than one regular expression over the text.
    """
    found: list[tuple[int, str]] = []
    for word in _SEARCHED_WORDS:
        at = text.find(word, start)
        while at >= 0:
            end = at + len(word)
            if end == len(text) or text[end] not in _IDENTIFIER_CHARS:
                begin, name = at, word
                if word == _REVISION and text.startswith("down_", at - 5) and at >= start + 5:
                    begin, name = at - 5, _DOWN
                if begin == 0 or text[begin - 1] not in _IDENTIFIER_CHARS_OR_DOT:
                    found.append((begin, name))
            at = text.find(word, end)
    found.sort()
    return found


def _comment_start(text: str, line_start: int, line_end: int) -> int:
    # A '#' with no quote before it on its line starts a comment, or lies inside a string that
    # began on an earlier line: either way what follows it cannot bind a name.
    hash_at = text.find("#", line_start, line_end)
    if hash_at < 0:
        return line_end
    before = text[line_start:hash_at]
    return line_end if "'" in before or '"' in before else hash_at


def _start_statements(text: str, start: int, targets: list[int]) -> bool:
    """True when each line start in ``targets`` (sorted) is outside strings and brackets.

    In a file that compiles, such a line at column 0 with no backslash continuation before it
    starts a module-level statement. Linear in the length scanned.
    """
    depth = 0
    position = start
    pending = 0  # targets[:pending] are checked
    limit = targets[-1]
    while True:
        token = _SCAN.search(text, position, limit)
        here = limit if token is None else token.start()
        pending = _check_targets_until(text, here, targets, pending, position, depth)
        if pending < 0:
            return False
        if token is None:
            return True
        depth += _bracket_balance(text, position, here)
        if depth < 0:
            return False
        position = _after_comment_or_string(text, here, token.group())
        if position < 0:
            return False
        if pending < len(targets) and targets[pending] < position:
            return False  # a "statement" inside a string literal


def _check_targets_until(text: str, here: int, targets: list[int], pending: int,
                         position: int, depth: int) -> int:
    """How many ``targets`` are checked once those up to ``here`` are (they lie in code from
    ``position``, where the bracket depth is ``depth``); -1 when one is inside brackets."""
    while pending < len(targets) and targets[pending] <= here:
        if depth + _bracket_balance(text, position, targets[pending]):
            return -1
        pending += 1
    return pending


def _after_comment_or_string(text: str, here: int, char: str) -> int:
    """Where the code goes on after the comment or string that ``char`` (``#``, a quote or a
    backslash) at ``here`` starts; -1 when the exact reader must decide."""
    if char == "#":
        return text.find("\n", here)  # a comment: a target cannot start inside it
    if char == "\\":
        return -1  # a line continuation: let the exact reader decide
    if _string_prefix(text, here) in _TEMPLATE_PREFIXES:
        return -1
    quote = char * 3 if text.startswith(char * 3, here) else char
    end = _STRING_END[quote].match(text, here + len(quote))
    return -1 if end is None else end.end()


def _bracket_balance(text: str, start: int, end: int) -> int:
    code = text[start:end]
    return (code.count("(") - code.count(")") + code.count("[") - code.count("]")
            + code.count("{") - code.count("}"))


def _string_prefix(text: str, quote_at: int) -> str:
    start = quote_at
    while start > 0 and quote_at - start < 3 and text[start - 1] in _IDENTIFIER_CHARS:
        start -= 1
    return text[start:quote_at].lower()


def _value_fast(value: str) -> object:
    if value == "None":
        return None
    if value[0] not in "([":
        return _string_fast(value)
    if "\\" in value:
        return _literal(value)
    items = [_string_fast(item) for item in _STR_RE.findall(value)]
    if value[0] == "[":
        return items
    if len(items) == 1 and "," not in _STR_RE.sub("", value):
        return items[0]  # ("abc") is a parenthesised string, not a tuple
    return tuple(items)


def _string_fast(literal: str) -> str:
    if "\\" in literal:
        value = _literal(literal)
        if not isinstance(value, str):
            raise _NotLiteral("not a string")
        return value
    body = literal.lstrip("uUrR")
    quote = 3 if body[:3] in ('"""', "'''") and len(body) >= 6 else 1
    return body[quote:-quote]


# --------------------------------------------------------------------------------------------
# The exact reader: the module's ast, and every module-level binding of a watched name.


def _parse_full(source: bytes, text: str, *, compile_check: bool = False) -> MigrationHeader:
    """The exact reader. ``compile_check`` also compiles the tree: some errors (a misspelt
    ``from __future__`` import, ``return`` outside a function) are only found by the compiler.
    """
    try:
        # Bytes: decoded by Python itself, as on import. Silently: the parser warns about
        # invalid escapes and "1if" (or fails on them under -W error), in files we only read.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
            if compile_check:
                compile(tree, "<migration>", "exec", dont_inherit=True)
    except SyntaxError as error:
        message = str(error.msg)
        if "encoding" in message and not error.lineno:
            raise MigrationParseError(f"bad source encoding: {message}") from None
        if "codec can't decode" in message:
            utf8 = "'utf-8' codec" in message
            raise MigrationParseError("not UTF-8 text" if utf8 else message) from None
        where = f" line {error.lineno}" if error.lineno else ""
        raise MigrationParseError(f"syntax error{where}: {error.msg}") from None
    except (ValueError, OverflowError) as error:  # NUL bytes on some versions, ...
        raise MigrationParseError(f"syntax error: {error}") from None

    scope = _ModuleScope(walrus=":=" in text)
    scope.collect(tree)
    if "global" in text:
        scope.collect_globals(tree)
    revision = scope.value_of(_REVISION)
    down = scope.value_of(_DOWN)
    labels = scope.value_of(_LABELS)
    depends = scope.value_of(_DEPENDS)
    doc = scope.value_of(_DOC) if _DOC in scope.bound else _docstring_of(tree)
    if _GETATTR in scope.bound:
        for name in (_LABELS, _DEPENDS):
            if name not in scope.literal:
                raise MigrationParseError(
                    f"Alembic would ask the module's `__getattr__` for `{name}` "
                    "(needs code to run)"
                )
    return _header(revision, down, labels, depends, doc)


def _docstring_of(tree: ast.Module) -> str | None:
    if tree.body:
        first = tree.body[0]
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            return first.value.value
    return None


#: Where a binding that may happen at any time (a function declaring a name global) sorts.
_ANY_TIME = 1 << 62


class _ModuleScope:
    """Module-level bindings of the watched names, by top-level statement index."""

    def __init__(self, *, walrus: bool) -> None:
        self.walrus = walrus  # scan expressions for `:=` (only when the text contains one)
        self.literal: dict[str, tuple[int, ast.expr]] = {}  # last plain `name = <expr>`
        self.other: dict[str, tuple[int, str]] = {}  # last binding of any other kind
        self.bound: set[str] = set()
        self.star_import = -1  # index of the last `from x import *`
        self._module_globals: set[int] = set()  # id() of `global` statements at module level

    def value_of(self, name: str) -> object:
        """The value ``name`` has once the module has run, or MigrationParseError."""
        index, node = self.literal.get(name, (-1, None))
        other_index, how = self.other.get(name, (-1, ""))
        if other_index >= 0 and other_index >= index:
            raise MigrationParseError(f"`{name}` is {how} (needs code to run)")
        if name != _DOC and self.star_import > index:
            after = f" after `{name} = ...`" if node is not None else ""
            raise MigrationParseError(f"`from ... import *`{after} could set `{name}`")
        if node is None:
            if name == _REVISION:
                raise MigrationParseError("no `revision = '...'` assignment")
            if name == _DOWN:
                raise MigrationParseError("no `down_revision = ...` assignment")
            return None
        try:
            return _literal(node)
        except _NotLiteral:
            raise MigrationParseError(f"`{name}` is not a literal (needs code to run)") from None

    def collect(self, tree: ast.Module) -> None:
        """Record every module-scope binding of a watched name, statement by statement."""
        for index, statement in enumerate(tree.body):
            plain = _plain_assignment(statement)
            if plain is None:
                for name, how in self._statement(statement, None):
                    self._bind_other(index, name, how)
                continue
            names, value = plain
            for name in names:
                if name in _WATCHED:
                    self.literal[name] = (index, value)
                    self.bound.add(name)
            if self.walrus:
                for name in _walrus_targets(statement):
                    self._bind_other(index, name, "assigned by `:=`")

    def collect_globals(self, tree: ast.Module) -> None:
        """A function or class body declaring a watched name global may rebind it whenever it
        runs: count that as a binding after every statement."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Global) and id(node) not in self._module_globals:
                for name in node.names:
                    self._bind_other(_ANY_TIME, name, "declared `global` in a function or class")

    def _bind_other(self, index: int, name: str, how: str) -> None:
        if name == "*":
            self.star_import = max(self.star_import, index)
        elif name in _WATCHED:
            self.bound.add(name)
            if index >= self.other.get(name, (-1, ""))[0]:
                self.other[name] = (index, how)

    def _statement(self, statement: ast.stmt, inside: str | None) -> Iterator[tuple[str, str]]:
        """(name, how) for every module-scope binding made by ``statement``, in source order
        (the last binding of a name in one top-level statement is the one reported)."""
        for name, kind in self._own_bindings(statement):
            yield name, _how(kind, inside)
        if isinstance(statement, _OWN_SCOPE_STATEMENTS):
            return  # its body is another scope
        keyword = inside or _keyword(statement)
        for handler in getattr(statement, "handlers", ()):
            yield from self._except_handler(handler, inside, keyword)
        for case in getattr(statement, "cases", ()):
            yield from self._match_case(case, inside, keyword)
        for field in ("body", "orelse", "finalbody"):
            for inner in getattr(statement, field, ()):
                yield from self._statement(inner, keyword)

    def _own_bindings(self, statement: ast.stmt) -> Iterator[tuple[str, str]]:
        """(name, kind) bound by ``statement`` itself, not by the statements nested in it."""
        bindings_of = _BINDINGS_BY_STATEMENT.get(type(statement))
        if bindings_of is not None:
            yield from bindings_of(statement)
        elif isinstance(statement, (ast.Global, ast.Nonlocal)):
            self._module_globals.add(id(statement))  # `global x` at module level: a no-op
        elif not isinstance(statement, _KNOWN_STATEMENTS):
            yield from _unknown_statement_bindings(statement)
        if self.walrus:
            yield from _walrus_bindings(statement)

    def _except_handler(self, handler: ast.ExceptHandler, inside: str | None,
                        keyword: str) -> Iterator[tuple[str, str]]:
        if handler.name:
            yield handler.name, _how("bound by `except ... as`", inside)
        if self.walrus and handler.type is not None:
            for name, kind in _walrus_bindings(handler.type):
                yield name, _how(kind, inside)
        for inner in handler.body:
            yield from self._statement(inner, keyword)

    def _match_case(self, case: ast.match_case, inside: str | None,
                    keyword: str) -> Iterator[tuple[str, str]]:
        for node in ast.walk(case.pattern):
            for field in ("name", "rest"):
                bound = getattr(node, field, None)
                if isinstance(bound, str):
                    yield bound, _how("bound by a `match` pattern", inside)
        if self.walrus and case.guard is not None:
            for name, kind in _walrus_bindings(case.guard):
                yield name, _how(kind, inside)
        for inner in case.body:
            yield from self._statement(inner, keyword)


def _how(kind: str, inside: str | None) -> str:
    """How a binding is described: by its kind, or as conditional inside a compound statement."""
    return f"assigned inside `{inside}`" if inside else kind


# --- the names each kind of statement binds itself, as (name, kind) -------------------------

_Bindings = Iterator[tuple[str, str]]


def _definition_bindings(statement: ast.FunctionDef | ast.AsyncFunctionDef) -> _Bindings:
    yield statement.name, "bound by `def`"


def _class_bindings(statement: ast.ClassDef) -> _Bindings:
    yield statement.name, "bound by `class`"


def _assign_bindings(statement: ast.Assign) -> _Bindings:
    for target in statement.targets:
        kind = ("assigned next to an attribute or item target"
                if isinstance(target, ast.Name) else "assigned by unpacking")
        for name in _target_names(target):
            yield name, kind


def _annotated_assign_bindings(statement: ast.AnnAssign) -> _Bindings:
    if statement.value is not None:  # a bare annotation binds nothing
        for name in _target_names(statement.target):
            yield name, "assigned"


def _augmented_assign_bindings(statement: ast.AugAssign) -> _Bindings:
    for name in _target_names(statement.target):
        yield name, "changed in place"


def _delete_bindings(statement: ast.Delete) -> _Bindings:
    for target in statement.targets:
        for name in _target_names(target):
            yield name, "deleted by `del`"


def _import_bindings(statement: ast.Import | ast.ImportFrom) -> _Bindings:
    for alias in statement.names:
        yield alias.asname or alias.name.partition(".")[0], "bound by an import"


def _for_bindings(statement: ast.For | ast.AsyncFor) -> _Bindings:
    for name in _target_names(statement.target):
        yield name, "bound by a `for` loop"


def _with_bindings(statement: ast.With | ast.AsyncWith) -> _Bindings:
    for item in statement.items:
        if item.optional_vars is not None:
            for name in _target_names(item.optional_vars):
                yield name, "bound by `with ... as`"


def _unknown_statement_bindings(statement: ast.stmt) -> _Bindings:
    # A statement this Python knows and this module does not (3.12's `type X = ...`): any
    # name it stores or deletes counts.
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            yield node.id, "bound by a statement that needs code to run"


def _walrus_bindings(root: ast.AST) -> _Bindings:
    for name in _walrus_targets(root):
        yield name, "assigned by `:=`"


#: Each statement type that binds names by itself, and how to list them (exact types: the
#: parser never makes subclasses). Global, Nonlocal and unknown statements: ``_own_bindings``.
_BINDINGS_BY_STATEMENT: dict[type[ast.stmt], Callable[[Any], _Bindings]] = {
    ast.FunctionDef: _definition_bindings,
    ast.AsyncFunctionDef: _definition_bindings,
    ast.ClassDef: _class_bindings,
    ast.Assign: _assign_bindings,
    ast.AnnAssign: _annotated_assign_bindings,
    ast.AugAssign: _augmented_assign_bindings,
    ast.Delete: _delete_bindings,
    ast.Import: _import_bindings,
    ast.ImportFrom: _import_bindings,
    ast.For: _for_bindings,
    ast.AsyncFor: _for_bindings,
    ast.With: _with_bindings,
    ast.AsyncWith: _with_bindings,
}
_OWN_SCOPE_STATEMENTS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


_KNOWN_STATEMENTS: tuple[type[ast.stmt], ...] = tuple(
    kind for kind in (getattr(ast, name, None) for name in (
        "Expr", "Pass", "Break", "Continue", "Return", "Raise", "Assert",
        "If", "While", "Try", "TryStar", "Match",
    ))
    if isinstance(kind, type)
)


def _keyword(statement: ast.stmt) -> str:
    name = type(statement).__name__
    return {"AsyncFor": "async for", "AsyncWith": "async with", "TryStar": "try"}.get(
        name, name.lower()
    )


def _plain_assignment(statement: ast.stmt) -> tuple[list[str], ast.expr] | None:
    """(names, value) of ``a = b = <value>`` or ``a: T = <value>``, else None."""
    if isinstance(statement, ast.Assign):
        names = [target.id for target in statement.targets if isinstance(target, ast.Name)]
        return (names, statement.value) if len(names) == len(statement.targets) else None
    if (isinstance(statement, ast.AnnAssign) and statement.value is not None
            and isinstance(statement.target, ast.Name)):
        return [statement.target.id], statement.value
    return None


def _target_names(target: ast.expr) -> Iterator[str]:
    """Names bound by an assignment target (``a``, ``a, *b``, ``[a, (b, c)]``)."""
    stack = [target]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, (ast.Tuple, ast.List)):
            stack.extend(node.elts)
        elif isinstance(node, ast.Starred):
            stack.append(node.value)


_OWN_SCOPE_BODY = (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _walrus_targets(root: ast.AST) -> Iterator[str]:
    """Names bound by `:=` in the expressions ``root`` evaluates in module scope.

    Nested statements (bodies, handlers, cases) are left to the caller; function, class and
    lambda bodies are other scopes. A `:=` in a comprehension binds in the enclosing scope.
    """
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            yield node.target.id
        for field, value in ast.iter_fields(node):
            if field == "body" and isinstance(node, _OWN_SCOPE_BODY):
                continue
            for child in value if isinstance(value, list) else (value,):
                if isinstance(child, ast.AST) and not isinstance(
                    child, (ast.stmt, ast.excepthandler, ast.match_case)
                ):
                    stack.append(child)
