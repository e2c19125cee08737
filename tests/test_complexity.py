"""No function in the package is too complex to read top to bottom: every function, method and
nested function scores at most 15 in cyclomatic complexity, as radon measures it (the same
figure `python3 -m radon cc -s` prints)."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import add_inner_blocks, cc_visit
from radon.visitors import Function

import alembic_autocopy

LIMIT = 15
SOURCE = Path(alembic_autocopy.__file__).parent


def too_complex(root: Path, limit: int = LIMIT) -> list[str]:
    """``file:line name score`` for each function under ``root`` scoring above ``limit``.

    Methods appear as ``Class.method``; nested functions (which radon leaves out of their
    parent's score) as ``outer.inner``. Classes are not scored: radon gives them the average
    of their methods, and each method is checked on its own."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        blocks = add_inner_blocks(cc_visit(path.read_text(encoding="utf-8")))
        for block in sorted(blocks, key=lambda block: block.lineno):
            if isinstance(block, Function) and block.complexity > limit:
                problems.append(f"{path.relative_to(root)}:{block.lineno} {block.fullname} "
                                f"{block.complexity}")
    return problems


def test_no_function_is_above_the_limit() -> None:
    problems = too_complex(SOURCE)
    assert problems == [], (f"{len(problems)} functions above cyclomatic complexity {LIMIT}; "
                            "split each into named steps:\n" + "\n".join(problems))


def branchy(name: str, branches: int, indent: str = "") -> str:
    """A function with ``branches`` if statements: cyclomatic complexity ``branches + 1``."""
    lines = [f"def {name}(value: int) -> int:"]
    for number in range(branches):
        lines += [f"    if value == {number}:", f"        return {number}"]
    lines.append("    return -1")
    return "".join(f"{indent}{line}\n" for line in lines)


def line_of(text: str, fragment: str) -> int:
    return text[:text.index(fragment)].count("\n") + 1


def test_a_function_above_the_limit_is_reported(tmp_path: Path) -> None:
    """The checker can fail: 15 branches (complexity 16) in a function, a method and a nested
    function are each reported with file, line, name and score; 14 branches (15) are not."""
    text = "\n\n".join([
        branchy("tangled", 15),
        branchy("fine", 14),
        "class Holder:\n" + branchy("method", 15, indent="    "),
        "def outer() -> None:\n" + branchy("inner", 15, indent="    ") + "    del inner\n",
    ])
    module = tmp_path / "package" / "inner" / "tangled.py"
    module.parent.mkdir(parents=True)
    module.write_text(text, encoding="utf-8")

    assert too_complex(tmp_path / "package") == [
        "inner/tangled.py:1 tangled 16",
        f"inner/tangled.py:{line_of(text, 'def method')} Holder.method 16",
        f"inner/tangled.py:{line_of(text, 'def inner')} outer.inner 16",
    ]
    assert too_complex(tmp_path / "package", limit=16) == []
