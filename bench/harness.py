"""What every benchmark here shares: whole processes, run in alternation, medians.

- ``measured_env()``: the environment measured processes run in. PYTHONDONTWRITEBYTECODE is
  taken away (these machines set it; a user's shell does not, so bytecode is warm on both
  sides), ``GIT_*`` variables are dropped and git gets a fixed identity and date, and
  PYTHONPATH starts with this checkout's ``src``.
- ``python_command()``: the interpreter, with ``-S`` unless ``site`` (see ``measured_env``);
  ``OUR_MAIN``, the ``-c`` program that runs alembic-autocopy's command line.
- ``Command`` and ``alternate()``: run commands A B C, A B C, ... (a change of the shared
  machine's load hits each alike), after warm-up runs, each with an optional ``before``
  callback (not timed). Every run records wall time, CPU time (user + system of the process
  and the children it waited for) and peak RSS, all read from ``os.wait4``.
- ``Sample``: a command's runs, with ``median_ms``, ``cpu_median_ms``, ``peak_mb``.

Used by bench/run.py, bench/integration.py and bench/reading.py; bench/hooks.py may use it
too (``from harness import ...`` with bench/ on sys.path, as ``python bench/x.py`` puts it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
SRC = CHECKOUT / "src"
PYTHON = sys.executable
GIT_DATE = "1704164645 +0000"  # 2024-01-02T03:04:05Z, fixed so every build is the same
# Our command line as measured: ``[*python_command(), "-c", OUR_MAIN, VERB, ...]``.
OUR_MAIN = "import sys; from alembic_autocopy.cli.main import main; sys.exit(main())"


def measured_env(site: bool = False, src: Path = SRC,
                 home: Path | None = None) -> dict[str, str]:
    """The environment of measured processes: bytecode written and read (no
    PYTHONDONTWRITEBYTECODE), hermetic git, ``src`` first on PYTHONPATH. Without ``site``,
    site-packages go on PYTHONPATH too, for interpreters started with ``-S``: some machines
    install ``.pth`` start-up hooks that add tens of ms to every start, which users do not
    pay."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("GIT_")
           and key not in ("ALEMBIC_CONFIG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    paths = [str(src)]
    if not site:
        for key in ("purelib", "platlib"):
            folder = sysconfig.get_paths()[key]
            if folder not in paths:
                paths.append(folder)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update({"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
                "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE,
                "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"})
    if home is not None:
        env["HOME"] = str(home)
    return env


def python_command(site: bool = False) -> list[str]:
    """The interpreter as measured processes start it (``-S`` unless ``site``)."""
    return [PYTHON] if site else [PYTHON, "-S"]


def call(args: Sequence[str | Path], cwd: Path, env: Mapping[str, str],
         stdin: bytes | None = None) -> str:
    """Run a set-up command; stop the benchmark with its output if it fails."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=dict(env), input=stdin,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, args))}\n"
                         f"{done.stdout.decode(errors='replace')}"
                         f"{done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


@dataclass
class Sample:
    """Every measured run of one command."""

    label: str
    times: list[float] = field(default_factory=list)  # wall clock, seconds
    cpu: list[float] = field(default_factory=list)  # user + system, seconds
    peaks_kib: list[int] = field(default_factory=list)
    exit_codes: set[int] = field(default_factory=set)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000 if self.times else float("nan")

    @property
    def cpu_median_ms(self) -> float:
        return statistics.median(self.cpu) * 1000 if self.cpu else float("nan")

    @property
    def peak_mb(self) -> float:
        """Median peak resident memory of a run, in MiB."""
        return statistics.median(self.peaks_kib) / 1024 if self.peaks_kib else float("nan")

    @property
    def spread(self) -> str:
        if not self.times:
            return ""
        return f"{min(self.times) * 1000:.0f}–{max(self.times) * 1000:.0f}"


@dataclass
class Command:
    """One whole process to measure."""

    key: str
    label: str
    args: Sequence[str | Path]
    cwd: Path
    env: Mapping[str, str]
    before: Callable[[], None] | None = None  # not timed: e.g. put a state back
    warmup: int = 1
    runs: int | None = None  # fewer than the group's, for slow rows
    codes: tuple[int, ...] | None = (0,)  # accepted exit codes (None: any)


def run_once(command: Command) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB, exit code) of one run."""
    if command.before is not None:
        command.before()
    start = time.perf_counter()
    process = subprocess.Popen([str(a) for a in command.args], cwd=command.cwd,
                               env=dict(command.env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if command.codes is not None and code not in command.codes:
        raise SystemExit(f"{command.label}: exit {code}\n  {' '.join(map(str, command.args))}"
                         f"\n{errors.decode(errors='replace')[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, code


def alternate(commands: Sequence[Command], runs: int, show: bool = True) -> dict[str, Sample]:
    """Measure ``commands`` in alternation (A B C, A B C, ...) after their warm-up runs."""
    samples = {command.key: Sample(command.label) for command in commands}
    for command in commands:
        for _ in range(command.warmup):
            run_once(command)
    for turn in range(max((c.runs or runs) for c in commands)):
        for command in commands:
            if turn >= (command.runs or runs):
                continue
            wall, cpu, peak, code = run_once(command)
            sample = samples[command.key]
            sample.times.append(wall)
            sample.cpu.append(cpu)
            sample.peaks_kib.append(peak)
            sample.exit_codes.add(code)
    if show:
        for sample in samples.values():
            print(f"    {sample.label:<64} {sample.median_ms:7.0f} ms  "
                  f"cpu {sample.cpu_median_ms:5.0f} ms  {sample.peak_mb:5.0f} MB", flush=True)
    return samples


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def paired_ratio(a: Sample, b: Sample, *, cpu: bool = False) -> float:
    """How much ``a`` costs against ``b``, both measured by ``alternate``: the median of
    each turn's ratio (a's run ÷ b's run of the same turn). Both runs of a turn meet the same
    load (a neighbour's burst slows both), so this varies far less than the ratio of the two
    medians: 44 turns of two equal commands here gave 0.99-1.03 this way, 0.92-1.06 the
    other. Runs of unequal count (a command with its own ``runs``): the medians' ratio."""
    first, second = (a.cpu, b.cpu) if cpu else (a.times, b.times)
    if not first or len(first) != len(second):
        return ratio(statistics.median(first), statistics.median(second)) if first else \
            float("nan")
    return statistics.median(x / y if y else float("inf") for x, y in zip(first, second,
                                                                         strict=True))
