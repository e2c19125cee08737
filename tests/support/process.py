"""Run a subprocess the way the tests need it: argument list, text, captured, rich errors."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class CommandFailed(subprocess.CalledProcessError):
    """A checked command exited non-zero; ``str()`` shows everything needed to debug it."""

    def __str__(self) -> str:
        command = shlex.join(str(part) for part in self.cmd)
        return (
            f"command failed with exit code {self.returncode}: {command}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


def merged_env(overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    """The current environment with ``overrides`` applied; a value of None removes a name."""
    env = dict(os.environ)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    check: bool,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` with captured UTF-8 output; raise CommandFailed if ``check``."""
    argv = [os.fspath(part) for part in args]
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=merged_env(env),
        stdin=subprocess.DEVNULL if input is None else None,
        input=input,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if any("alembic_autocopy" in part or "alembic-autocopy" in part for part in argv[:3]):
        assert_no_empty_revision_id(result.stdout + result.stderr, argv)
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
    return result


# Shapes a message takes when a revision id in it is empty (issue 11: "The database has
# applied , unknown to this worktree"). Checked on every run of the tool by the tests.
EMPTY_REVISION_ID = re.compile(
    r"applied , |revision  \S|revision ''|revision \"\"|\(needed by \)|, , |lacks: ?(?:,|$)"
    r"|found nowhere: ?(?:,|$)|revision\(s\) ,", re.MULTILINE)


def assert_no_empty_revision_id(output: str, argv: Sequence[str]) -> None:
    """Fail when the tool's output names an empty revision id."""
    match = EMPTY_REVISION_ID.search(output)
    if match is not None:
        line = output[output.rfind("\n", 0, match.start()) + 1:].split("\n", 1)[0]
        raise AssertionError(f"an empty revision id in the output of {shlex.join(argv)}: "
                             f"{line!r}")
