"""Run a subprocess the way the tests need it: argument list, text, captured, rich errors."""

from __future__ import annotations

import os
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
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` with captured UTF-8 output; raise CommandFailed if ``check``."""
    argv = [os.fspath(part) for part in args]
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=merged_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
    return result
