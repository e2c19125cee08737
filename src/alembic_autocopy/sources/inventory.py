"""Every migration this worktree can reach: its own folders, the other worktrees and
configured folders (through the persistent index), then the git objects of every ref.

What ``find``, ``list``, ``status`` and the repair's planning read. The folders env.py really
uses are remembered here too, for the commands that do not run env.py.
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic_autocopy.core.model import Options
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig
from alembic_autocopy.effects.temporary import write_replacing
from alembic_autocopy.sources import index, scanning


def gather(project: ProjectConfig, options: Options, *,
           here_only: bool = False) -> scanning.Inventory:
    """Every source, read through the persistent index (``index.open_for`` gives the git
    objects' search the same one), which is saved once at the end if anything was learnt.

    ``here_only``: this worktree alone (``search_elsewhere`` reads the rest when needed).
    ``options.closest_only``: this worktree first, then only what a plan can use elsewhere.
    """

    project = remembered_env_locations(project)
    _start_git_calls(project, options, everything=not (here_only or options.closest_only))
    try:
        return _gather(project, options, here_only)
    finally:
        git.end_started()


def _gather(project: ProjectConfig, options: Options, here_only: bool) -> scanning.Inventory:
    cache = index.open_for(project)
    found = scanning.scan(project, cache, wanted=wanted_ids(options),
                          allow_untrusted=allows_untrusted(project, options),
                          here_only=here_only or options.closest_only)
    found.index_stats = cache.stats
    if here_only:
        cache.save()
        return found
    if not found.complete:
        return search_elsewhere(project, options, found)
    _search_git_objects(project, found, options)
    cache.save()
    return found


def _start_git_calls(project: ProjectConfig, options: Options, everything: bool) -> None:
    """Start the git calls the reading will make (the worktree list; with ``everything``,
    the refs), so that they run while the index and the folders are read, rather than one
    after the other: ~4 ms of a warm ``find``'s ~65 on a small project (bench/run.py)."""
    root = git.locate(project.here)[0]
    if root is None:
        return
    git.start_early(git.WORKTREE_LIST, root)
    if everything:
        from alembic_autocopy.sources import gitobjects

        gitobjects.start_listing(project, options, root)


def search_elsewhere(project: ProjectConfig, options: Options, found: scanning.Inventory,
                     *, git_objects: bool = True) -> scanning.Inventory:
    """Complete an inventory of this worktree alone (``gather(here_only=True)``) with
    the other sources: sibling worktrees and configured folders, then (``git_objects``)
    the git objects. ``options.closest_only`` leaves out what no plan can use.
    """

    if found.complete:
        return found
    cache = index.open_for(project)
    if found.pending is not None:  # the other worktrees and folders are not read yet
        scanning.scan(project, cache, wanted=wanted_ids(options, found),
                      allow_untrusted=allows_untrusted(project, options), into=found)
    if git_objects:
        _search_git_objects(project, found, options)
        found.complete = True
        found.closest_only = options.closest_only
    cache.save()
    return found


def wanted_ids(options: Options,
               found: scanning.Inventory | None = None) -> Callable[[str], bool] | None:
    """Which revisions to build candidates for: ``find``'s prefix; for planning, none that
    this worktree already has (``found.local``)."""
    prefix = options.revision_prefix
    # With --prefer, copies of this worktree's own ids are kept: a preference naming one is
    # refused (``refused_preferences``), never silently ignored.
    here = (found.local_ids() if options.closest_only and found is not None
            and not options.prefer else set())
    if prefix is None and not here:
        return None

    def wanted(revision: str) -> bool:
        return (prefix is None or revision.startswith(prefix)) and revision not in here

    return wanted


def allows_untrusted(project: ProjectConfig, options: Options) -> bool:
    return options.allow_untrusted_source or project.tool.allow_untrusted_source


# Git objects: every branch, remote-tracking branch, tag and stash entry of this repository
# and of the configured clones (read only when options/settings ask for git refs). Imported
# on first use: a run with nothing to do never searches git objects.
def _search_git_objects(project: ProjectConfig, found: scanning.Inventory,
                        options: Options) -> None:
    from alembic_autocopy.sources import gitobjects

    gitobjects.extend_inventory(project, found, options)


# --- the version folders env.py really uses ---------------------------------------------------

_ENV_LOCATIONS = "alembic-autocopy/env-version-locations.json"


def with_env_locations(project: ProjectConfig, locations: Sequence[str] | None,
                       recursive: bool | None) -> ProjectConfig:
    """``project`` reading the folders Alembic uses once env.py ran (``locations``, from
    ``database.DatabaseState``): env.py may replace them, e.g. one folder per dialect. The
    tool's own ``version_locations`` setting wins. Remembered for the commands that do not
    run env.py (``find``, ``list --no-db``)."""
    if project.tool.version_locations or locations is None:
        return project
    folders = tuple(Path(location) for location in locations)
    recursive = project.recursive_version_locations if recursive is None else recursive
    if (folders == project.version_locations
            and recursive == project.recursive_version_locations):
        _remember_env_locations(project, None)
        return project
    _remember_env_locations(project, (folders, recursive))
    return project._replace(version_locations=folders, recursive_version_locations=recursive)


def remembered_env_locations(project: ProjectConfig) -> ProjectConfig:
    """``project`` with the folders env.py chose at the last run that ran it, if they
    differed from the configuration (which has not changed since)."""
    if project.tool.version_locations:
        return project

    path, key = _env_locations_file(project)
    if path is None:
        return project
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get(key)
        if not entry or entry["configured"] != [os.fspath(p) for p in
                                                 project.version_locations]:
            return project
        folders = tuple(Path(item) for item in entry["env"])
        return project._replace(version_locations=folders,
                                recursive_version_locations=bool(entry["recursive"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return project


def _env_locations_file(project: ProjectConfig) -> tuple[Path | None, str]:

    common = git.locate(project.here)[1]
    config = project.ini_path or project.toml_path
    return (common / _ENV_LOCATIONS if common is not None else None,
            f"{config}|{project.section}")


def _remember_env_locations(project: ProjectConfig,
                            chosen: tuple[tuple[Path, ...], bool] | None) -> None:

    path, key = _env_locations_file(project)
    if path is None:
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    if chosen is None:
        if key not in data:
            return
        del data[key]
    else:
        entry = {"configured": [os.fspath(p) for p in project.version_locations],
                 "env": [os.fspath(p) for p in chosen[0]], "recursive": chosen[1]}
        if data.get(key) == entry:
            return
        data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_replacing(path, json.dumps(data, indent=1).encode("utf-8"))
    except OSError:
        pass  # only a convenience for the commands that do not run env.py
