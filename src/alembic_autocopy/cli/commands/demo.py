"""``alembic-autocopy demo``: watch the problem happen and the repair fix it, on SQLite."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic_autocopy.cli.output import Output
from alembic_autocopy.core.errors import AutocopyError

DESCRIPTION = """\
Build, in a temporary folder, a git repository with an Alembic project and two worktrees
(Proj on main, Proj-feature-a on feature-a) sharing one SQLite database. Worktree A applies
three migrations; in Proj, plain `alembic upgrade head` then fails with "Can't locate
revision"; `alembic-autocopy upgrade` repairs it in one pass and applies Proj's own pending
migration too. Every command is shown with its real output. --keep leaves the folder to explore.
"""

_MIGRATION = '''"""{message}

Revision ID: {rev}
Revises: {down_text}
Create Date: 2026-01-15 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("{table}")
'''

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
    "GIT_COMMITTER_NAME": "Demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true",
                        help="leave the demo folder in place to explore it")
    parser.add_argument("--dir", metavar="FOLDER", default=None,
                        help="build the demo in FOLDER (must not exist or be empty)")


class _Demo:
    def __init__(self, root: Path, out: Output) -> None:
        self.root = root
        self.out = out
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GIT_") and k != "ALEMBIC_CONFIG"}
        self.env.update(_GIT_IDENTITY)
        self.env["GIT_CONFIG_NOSYSTEM"] = "1"
        self.env["PYTHONWARNINGS"] = "ignore"
        self.env["NO_COLOR"] = "1"
        source_root = str(Path(__file__).resolve().parents[2])
        self.env["PYTHONPATH"] = os.pathsep.join(
            [source_root, *([self.env["PYTHONPATH"]] if self.env.get("PYTHONPATH") else [])])
        self.main = root / "Proj"
        self.feature = root / "Proj-feature-a"
        self.transcript: list[dict[str, object]] = []

    def quiet(self, command: list[str], cwd: Path) -> None:
        completed = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True,
                                   text=True, check=False)
        if completed.returncode != 0:
            raise AutocopyError(f"demo set-up failed: {' '.join(command)}: "
                                f"{(completed.stderr or completed.stdout).strip()[:300]}")

    def show(self, shown: str, command: list[str], cwd: Path) -> int:
        completed = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True,
                                   text=True, check=False)
        where = cwd.name
        self.out.line(self.out.style(f"{where}$ {shown}", "bold"))
        text = (completed.stdout + completed.stderr).rstrip()
        lines = [line for line in text.splitlines() if not line.startswith("INFO  [alembic")]
        for line in lines:
            self.out.line(f"  {line}")
        if not lines:
            self.out.line("  (no output)")
        self.out.line()
        self.transcript.append({"cwd": str(cwd), "command": shown,
                                "exit_code": completed.returncode, "output": lines})
        return completed.returncode

    def write_migration(self, worktree: Path, rev: str, down: str | None, message: str,
                        table: str) -> None:
        versions = worktree / "migrations" / "versions"
        text = _MIGRATION.format(message=message, rev=rev, down=down, down_text=down or "",
                                 table=table)
        (versions / f"{rev}_{table}.py").write_text(text, encoding="utf-8")

    def build(self) -> None:
        git = ["git"]
        self.main.mkdir(parents=True)
        self.quiet([*git, "init", "-q", "-b", "main"], self.main)
        self.quiet([sys.executable, "-m", "alembic", "init", "migrations"], self.main)
        ini = self.main / "alembic.ini"
        database = self.root / "shared.db"
        lines = []
        for line in ini.read_text(encoding="utf-8").splitlines():
            if line.startswith("sqlalchemy.url"):
                line = f"sqlalchemy.url = sqlite:///{database.as_posix()}"
            lines.append(line)
        ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.write_migration(self.main, "1a2b3c4d5e6f", None, "create users", "users")
        self.quiet([*git, "add", "-A"], self.main)
        self.quiet([*git, "commit", "-q", "-m", "Alembic project with a first migration"],
                   self.main)
        self.quiet([*git, "worktree", "add", "-q", "-b", "feature-a", str(self.feature)],
                   self.main)
        self.quiet([sys.executable, "-m", "alembic", "upgrade", "head"], self.main)
        chain = [("a10000000001", "create orders", "orders"),
                 ("a10000000002", "create payments", "payments"),
                 ("a10000000003", "create refunds", "refunds")]
        parent = "1a2b3c4d5e6f"
        for rev, message, table in chain:
            self.write_migration(self.feature, rev, parent, message, table)
            parent = rev
        self.quiet([*git, "add", "-A"], self.feature)
        self.quiet([*git, "commit", "-q", "-m", "feature-a: three migrations"], self.feature)
        self.write_migration(self.main, "b20000000001", "1a2b3c4d5e6f", "create invoices",
                             "invoices")
        self.quiet([*git, "add", "-A"], self.main)
        self.quiet([*git, "commit", "-q", "-m", "main: invoices"], self.main)

    def play(self) -> bool:
        alembic = [sys.executable, "-m", "alembic"]
        autocopy = [sys.executable, "-m", "alembic_autocopy"]
        self.out.line(self.out.style(
            f"Demo in {self.root}: worktrees Proj (main) and Proj-feature-a (feature-a) "
            "share shared.db.", "dim"))
        self.out.line()
        self.show("alembic upgrade head   # feature-a applies its 3 migrations",
                  [*alembic, "upgrade", "head"], self.feature)
        failed = self.show("alembic upgrade head   # main lacks them: plain Alembic fails",
                           [*alembic, "upgrade", "head"], self.main)
        repaired = self.show("alembic-autocopy upgrade", [*autocopy, "upgrade"], self.main)
        current = self.show("alembic current", [*alembic, "current"], self.main)
        self.show("git status --short   # nothing new for git", ["git", "status", "--short"],
                  self.main)
        return failed != 0 and repaired == 0 and current == 0


def run(args: argparse.Namespace, out: Output) -> int:
    if args.dir:
        root = Path(args.dir).expanduser().absolute()
        if root.exists() and any(root.iterdir()):
            raise AutocopyError(f"{root} is not empty", hint="give a new or empty folder")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="alembic-autocopy-demo-"))
    if shutil.which("git") is None:
        raise AutocopyError("the demo needs git", hint="install git")
    demo = _Demo(root, out)
    try:
        demo.build()
        ok = demo.play()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if ok:
        out.result("Demo done: plain Alembic failed, alembic-autocopy repaired the database "
                   "in one pass." + (f" Explore it in {root}" if args.keep else ""))
    else:
        out.error("the demo did not go as expected (see the output above)")
    out.emit({"ok": ok, "folder": str(root), "kept": bool(args.keep),
              "transcript": demo.transcript})
    return 0 if ok else 1
