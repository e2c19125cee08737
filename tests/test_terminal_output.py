"""Issue 13 item 7: strings from outside (revision ids in the database and in files, file
names, messages) never reach the terminal raw: no escape sequence can retitle or clear the
terminal, hide what follows, or forge an ``error:`` line. ``--json`` keeps them exact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support import BASE_REV, Database, Worktree, make_repo

# An OSC title change ended by BEL, a screen clear, "hidden" text, a bidi override.
FILE_REV = "e5c0\x1b]0;owned\x07\x1b[2J"
MESSAGE = "add \x1b[8mhidden\x1b[0m table \u202eevil"
FILE_NAME = "e5c0_\x1b[2Jevil\x07\u202e.py"  # (a newline: Alembic loads no such file)
DB_REV = "f00d\x1b[8m\nerror: forged by the database"
# What may remain: our own colour codes (--color always) and the line ends.
OUR_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def hostile(tmp_path: Path, db: Database) -> Worktree:
    repo = make_repo(tmp_path, db)
    b = repo.main
    b.alembic("upgrade", "head", check=True)
    a = repo.add_worktree("a")
    a.write_migration(FILE_REV, down=BASE_REV, message=MESSAGE, filename="e5c0_hostile.py")
    a.write_migration("e5c000000002", down=BASE_REV, message="named", filename=FILE_NAME)
    a.commit("a: hostile strings")
    db.execute(f"INSERT INTO alembic_version (version_num) VALUES ('{DB_REV}')")
    return b


def raw_controls(text: str, colour: bool) -> list[str]:
    if colour:
        text = OUR_COLOURS.sub("", text)
    return [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
                                              or c == "\u202e")]


@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour"])
def test_no_raw_control_byte_reaches_the_terminal(tmp_path: Path, sqlite_db: Database,
                                                  colour: bool) -> None:
    b = hostile(tmp_path, sqlite_db)
    extra = ["--color", "always"] if colour else []
    for args in (["check"], ["list", "-v"], ["status"], ["find", "e5c0"],
                 ["find", "e5c000000002"], ["graph"], ["graph", "--format", "dot"]):
        result = b.autocopy(*args, *extra)
        shown = result.stdout + result.stderr
        assert result.returncode in (0, 1), (args, shown)
        assert raw_controls(shown, colour) == [], (args, shown)
        assert not any(line.startswith("error: forged") for line in shown.splitlines())
        if colour:
            assert "\x1b[8m" not in shown and "\x1b[2J" not in shown
    listed = b.autocopy("list", "-v").stdout
    assert "e5c0\\x1b]0;owned\\x07\\x1b[2J" in listed  # shown escaped, still recognisable
    checked = b.autocopy("check").stderr
    assert "f00d\\x1b[8m\\nerror: forged by the database" in checked


def test_json_keeps_outside_strings_exact(tmp_path: Path, sqlite_db: Database) -> None:
    b = hostile(tmp_path, sqlite_db)
    listed = json.loads(b.autocopy("list", "--json").stdout)
    revisions = {row["revision"]: row for row in listed["revisions"]}
    assert FILE_REV in revisions and revisions[FILE_REV]["message"].startswith("add \x1b[8m")
    # listed, or refused as a name no copy may take: either way named exactly
    assert any(FILE_NAME in text for text in strings(listed))
    assert DB_REV in listed["database_heads"]
    found = json.loads(b.autocopy("find", "e5c0\x1b", "--json").stdout)
    assert found["revision"] == FILE_REV


def strings(value: object) -> list[str]:
    """Every string in a JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*strings(list(value.keys())), *strings(list(value.values()))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []
