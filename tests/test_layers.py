"""Arrows run only downward: each module imports only from its own layer or the layers below.

The layers, bottom to top: ``core`` (pure), ``effects`` (git, database, files, configuration),
``sources`` (where migrations come from), ``repair.py``, ``workflow`` (hooks, events, env.py
integration, API), ``cli``; then the public entry points at the package's top. Every import
counts, including those inside functions and ``TYPE_CHECKING`` blocks.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import alembic_autocopy

PACKAGE = "alembic_autocopy"
LAYERS = ("core", "effects", "sources", "repair", "workflow", "cli")
TOP = len(LAYERS)  # __init__, __main__ and the public re-exports (integration, hooks)


def layer_of(module: str) -> int:
    """The rank of a dotted module name inside the package (the package itself: the top)."""
    parts = module.split(".")[1:]
    if parts and parts[0] in LAYERS:
        return LAYERS.index(parts[0])
    return TOP


def module_name(root: Path, path: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(root: Path, tree: ast.AST) -> list[tuple[int, str]]:
    """Every package module a file imports, with its line (``from pkg import mod`` resolved)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names
                      if alias.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # `from alembic_autocopy import repair` imports the module repair.py
                candidate = f"{node.module}.{alias.name}"
                found.append((node.lineno,
                              candidate if is_module(root, candidate) else node.module))
    return found


def upward_imports(root: Path) -> list[str]:
    """``file:line: importer (layer) imports imported (higher layer)`` for each bad arrow."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(root, path)
        rank = layer_of(importer)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, imported in imported_modules(root, tree):
            if layer_of(imported) > rank:
                problems.append(f"{path.relative_to(root)}:{line}: {importer} "
                                f"({LAYERS[rank] if rank < TOP else 'top'}) imports {imported}")
    return problems


SOURCE = Path(alembic_autocopy.__file__).parent


def test_the_package_has_one_folder_per_layer() -> None:
    for layer in LAYERS:
        assert (SOURCE / layer / "__init__.py").is_file() or (SOURCE / f"{layer}.py").is_file()
    flat = sorted(p.name for p in SOURCE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "hooks.py", "integration.py", "repair.py"]


def test_every_import_points_down() -> None:
    assert upward_imports(SOURCE) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a copy of the package with one upward arrow added (a deferred
    one, inside a function, the kind that hides best) is reported, naming file and line."""
    copy = tmp_path / PACKAGE
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    model = copy / "core" / "model.py"
    lines = model.read_text(encoding="utf-8").splitlines()
    lines += ["", "", "def _wording() -> None:", "    from alembic_autocopy.cli import report",
              "    del report"]
    model.write_text("\n".join(lines) + "\n", encoding="utf-8")
    added_line = len(lines) - 1
    problems = set(upward_imports(copy)) - set(upward_imports(SOURCE))
    assert problems == {f"core/model.py:{added_line}: alembic_autocopy.core.model (core) "
                        "imports alembic_autocopy.cli.report"}
    (copy / "sources" / "index.py").write_text("from alembic_autocopy import __version__\n",
                                               encoding="utf-8")
    assert ("sources/index.py:1: alembic_autocopy.sources.index (sources) imports "
            "alembic_autocopy") in upward_imports(copy)


def test_a_folder_is_read_one_way() -> None:
    """Issue 15: one index-backed reader. ``scan`` takes no reading strategy, and the modules
    that read folders start no thread or process of their own."""
    import inspect

    from alembic_autocopy.sources import scanning

    parameters = list(inspect.signature(scanning.scan).parameters)
    assert parameters == ["project", "index", "wanted", "allow_untrusted", "here_only", "into"]
    for name in ("scanning.py", "index.py", "folders.py", "indexfile.py"):
        tree = ast.parse((SOURCE / "sources" / name).read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert not imported & {"threading", "multiprocessing", "concurrent.futures"}, name
        assert "fork" not in {node.attr for node in ast.walk(tree)
                              if isinstance(node, ast.Attribute)}, name


def test_the_readme_describes_the_layers() -> None:
    readme = (SOURCE.parents[1] / "README.md").read_text(encoding="utf-8")
    development = readme[readme.index("## Development"):]
    for layer in ("core/", "effects/", "sources/", "repair.py", "workflow/", "cli/",
                  "tests/test_layers.py"):
        assert f"`{layer}`" in development.split("\n- `mypy`")[0], layer
