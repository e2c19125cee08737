"""Migrations kept in git objects: every branch, remote-tracking branch, tag and stash entry.

A migration the database needs often exists only in git: the worktree that applied it was
removed but its branch remains, a colleague pushed it, it sits in a stash or a tag. This
source maps this worktree's version locations to repository paths and reads them at every
ref, without checking anything out.

Cost is bounded by the number of distinct objects, not by refs x files: refs come from ONE
``git for-each-ref`` (plus one ``git log -g refs/stash`` when a stash exists), every commit,
tree and blob from ONE long-running ``git cat-file --batch`` per repository. Trees are parsed
once per tree id and blobs once per blob id, so the usual case (branches sharing most files)
reads each file once. Only object ids are sent to ``cat-file``, never paths, so odd file
names cannot confuse the protocol.

Git LFS: a blob that is an LFS pointer is turned into the real content with
``git lfs smudge``; without git-lfs the file is reported by name and never used (a pointer is
never copied as if it were a migration).
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import atexit
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, NamedTuple

from alembic_autocopy.core.errors import AutocopyError, ConfigError, GitError, MigrationParseError
from alembic_autocopy.core.model import (
    Candidate,
    Location,
    LocationKind,
    MigrationHeader,
    Options,
    SkippedFile,
    short_ref,
)
from alembic_autocopy.core.names import refusal
from alembic_autocopy.effects import git
from alembic_autocopy.effects.project import ProjectConfig, version_locations_from_text
from alembic_autocopy.sources import folders, indexfile, scanning

if TYPE_CHECKING:
    from alembic_autocopy.sources.index import MigrationIndex

#: The kinds of location this module produces (repair registers its content reader for them).
GIT_KINDS = (LocationKind.BRANCH, LocationKind.REMOTE, LocationKind.TAG, LocationKind.STASH)

_REF_KINDS = {
    "refs/heads/": LocationKind.BRANCH,
    "refs/remotes/": LocationKind.REMOTE,
    "refs/tags/": LocationKind.TAG,
}
_STASH_REF = "refs/stash"
_TREE_MODE = b"40000"
_BLOB_MODES = (b"100644", b"100755", b"100664")
_PEEL_LIMIT = 10  # tags of tags of ... a loop this deep is not a release process
# The files Alembic loads from a version location: the rule of scanning (and of
# alembic.script.base._only_source_rev_file), applied to tree entries.
_REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
LFS_INSTALL_HINT = "install git-lfs (Debian/Ubuntu: apt-get install git-lfs) and run again"


# --------------------------------------------------------------------------------------------
# One long-running `git cat-file --batch` per repository.


class GitObject(NamedTuple):
    oid: str
    type: str
    size: int
    content: bytes | None  # None when larger than the limit the caller gave


class ObjectReader:
    """Objects of one repository by id, through ONE ``git cat-file --batch`` process.

    Requests are pipelined: a thread writes the ids while this one reads the answers, so a
    batch of thousands costs one round trip, and the pipe can never fill up both ways.
    """

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.objects_read = 0
        # Started on the first read: a search whose trees, blobs and commits the index and
        # `for-each-ref` already answer (every warm `find`) starts no `cat-file` at all.
        self._started: subprocess.Popen[bytes] | None = None
        self._write_error: BaseException | None = None

    @property
    def _process(self) -> subprocess.Popen[bytes]:
        if self._started is None:
            self._started = self._start()
        return self._started

    def _start(self) -> subprocess.Popen[bytes]:
        try:
            process = subprocess.Popen(
                ["git", "cat-file", "--batch"], cwd=str(self.repository),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=git.no_git_env())
        except FileNotFoundError as error:
            raise AutocopyError("git is not installed (or not on PATH)",
                                hint="install git; alembic-autocopy needs it") from error
        except (NotADirectoryError, PermissionError) as error:
            raise AutocopyError(
                f"cannot read the repository at {self.repository}: {error}") from error
        # git's errors, for a GitError: read as they come (a pipe left unread would stop
        # git once full), as long as the process lives.
        assert process.stderr is not None
        self._stderr = _Drained(process.stderr)
        return process

    @property
    def alive(self) -> bool:
        return self._started is None or self._started.poll() is None

    def read_each(self, oids: Sequence[str],
                  max_bytes: int | None = None) -> Iterator[tuple[str, GitObject | None]]:
        """Yield ``(oid, object)`` for each id, in order; None for an object git lacks.

        Content larger than ``max_bytes`` is skipped over (``content`` None), not kept.
        """
        if not oids:
            return
        for oid in oids:
            if not oid or any(c in oid for c in " \n"):
                raise ValueError(f"not an object id: {oid!r}")
        payload = b"".join(oid.encode("ascii") + b"\n" for oid in oids)
        process = self._process  # started here: never by the writer thread and this one both
        writer = threading.Thread(target=self._write, args=(process, payload), daemon=True)
        writer.start()
        answered = 0
        try:
            for oid in oids:
                found = self._read_one(max_bytes)
                answered += 1
                yield oid, found
        finally:
            # A caller that stops early must not leave answers in the pipe for the next one.
            try:
                while answered < len(oids) and self.alive:
                    self._read_one(0)
                    answered += 1
            finally:
                writer.join()
        if self._write_error is not None:
            raise self._failure(f"could not write to it: {self._write_error}")

    def read(self, oid: str, max_bytes: int | None = None) -> GitObject | None:
        return next(self.read_each([oid], max_bytes))[1]

    def _write(self, process: subprocess.Popen[bytes], payload: bytes) -> None:
        assert process.stdin is not None
        try:
            process.stdin.write(payload)
            process.stdin.flush()
        except (BrokenPipeError, OSError) as error:  # git died: the reader reports it
            self._write_error = error

    def _read_one(self, max_bytes: int | None) -> GitObject | None:
        stdout = self._process.stdout
        assert stdout is not None
        header = stdout.readline()
        if not header.endswith(b"\n"):
            raise self._failure("it stopped answering")
        header = header[:-1]
        if header.endswith((b" missing", b" ambiguous")):
            return None
        parts = header.split(b" ")
        if len(parts) != 3 or not parts[2].isdigit():
            raise self._failure(f"unexpected answer {header[:200]!r}")
        size = int(parts[2])
        content: bytes | None
        if max_bytes is not None and size > max_bytes:
            _skip(stdout, size + 1)
            content = None
        else:
            content = stdout.read(size + 1)[:-1]
            if len(content) != size:
                raise self._failure("its answer was cut short")
        self.objects_read += 1
        return GitObject(parts[0].decode("ascii"), parts[1].decode("ascii"), size, content)

    def _failure(self, what: str) -> GitError:
        returncode = self._process.poll()
        stderr = self._stderr.text(finished=returncode is not None)
        return GitError(["git", "cat-file", "--batch", f"({what})"],
                        returncode if returncode is not None else -1, "", stderr,
                        str(self.repository))

    def close(self) -> None:
        if self._started is None:
            return
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()


class _Drained:
    """A child's stderr, read by a thread into memory (its first 64 KB: git's errors are a
    few lines) until the child closes it."""

    LIMIT = 1 << 16

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        kept = 0
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(self._stream.fileno(), 1 << 16):
                if kept < self.LIMIT:
                    self._chunks.append(chunk[:self.LIMIT - kept])
                    kept += len(self._chunks[-1])

    def text(self, finished: bool) -> str:
        """What was read so far; all of it once the child has ``finished``."""
        if finished:
            self._thread.join(timeout=5)
        return b"".join(self._chunks).decode("utf-8", "replace")

    def close(self) -> None:
        self._thread.join(timeout=5)
        self._stream.close()


def _skip(stream: IO[bytes], count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, 1 << 20))
        if not chunk:
            return
        count -= len(chunk)


_READERS: dict[str, ObjectReader] = {}


def reader_for(repository: Path) -> ObjectReader:
    """The one reader of ``repository`` for this process (started on first use)."""
    key = str(repository)
    reader = _READERS.get(key)
    if reader is None or not reader.alive:
        reader = ObjectReader(repository)
        _READERS[key] = reader
    return reader


def close_readers() -> None:
    """Stop every ``cat-file`` process this module started (also run at exit)."""
    while _READERS:
        _key, reader = _READERS.popitem()
        reader.close()


atexit.register(close_readers)


# --------------------------------------------------------------------------------------------
# Refs.


class CommitFacts(NamedTuple):
    oid: str
    tree: str
    parents: tuple[str, ...]
    date: str | None  # ISO 8601 committer date, as `git log --format=%cI` prints it


class Tip(NamedTuple):
    """A ref to search: its name as the user would write it, its kind, the object it names."""

    ref: str  # full ref name (refs/heads/x), or stash@{n}
    kind: LocationKind
    oid: str  # a commit, or a tag object (peeled through the reader)
    commit: CommitFacts | None = None  # the commit, when `for-each-ref` told it (else read)


# Each ref's commit (a tag's: one level peeled, `*`) comes with the list, so that a search
# whose listings the index holds needs no `git cat-file` process.
_COMMIT_FIELDS = ("%(objecttype)%00%(objectname)%00%(tree)%00%(parent)%00"
                  "%(committerdate:raw)")
_TIP_FORMAT = ("%(refname)%00%(symref)%00" + _COMMIT_FIELDS + "%00"
               + _COMMIT_FIELDS.replace("%(", "%(*"))


TIP_LISTING = ("for-each-ref", f"--format={_TIP_FORMAT}", "refs/heads", "refs/remotes",
               "refs/tags", _STASH_REF)


def list_tips(repository: Path) -> list[Tip]:
    """Local branches, remote-tracking branches, tags, then stash entries (newest first)."""
    raw = git.run_git(TIP_LISTING, repository).stdout
    tips: list[Tip] = []
    has_stash = False
    for line in raw.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split("\0")
        if len(fields) != 12:
            continue
        ref, symref, oid = fields[0], fields[1], fields[3]
        if symref:
            continue  # refs/remotes/origin/HEAD names another ref, which is listed itself
        if ref == _STASH_REF:
            has_stash = True
            continue
        kind = next((k for prefix, k in _REF_KINDS.items() if ref.startswith(prefix)), None)
        if kind is not None:
            tips.append(Tip(ref, kind, oid, _listed_commit(fields[2:7])
                            or _listed_commit(fields[7:12])))
    order = {LocationKind.BRANCH: 0, LocationKind.REMOTE: 1, LocationKind.TAG: 2}
    tips.sort(key=lambda tip: order[tip.kind])  # stable: for-each-ref sorts by name
    if has_stash:
        tips.extend(list_stash(repository))
    return tips


def _listed_commit(fields: Sequence[str]) -> CommitFacts | None:
    """The commit that ``_COMMIT_FIELDS`` printed, if the object is one."""
    kind, oid, tree, parents, date = fields
    if kind != "commit":
        return None
    date_raw = date.encode("utf-8", "surrogateescape")
    return CommitFacts(oid, tree, tuple(parents.split()), _date(date_raw))


def list_stash(repository: Path) -> list[Tip]:
    """Every entry of the stash (its reflog), as ``stash@{n}``."""
    result = git.run_git(["log", "--walk-reflogs", "--format=%H%x00%gd", _STASH_REF],
                         repository, check=False)
    tips = []
    for line in result.text.splitlines():
        oid, _, selector = line.partition("\0")
        if oid and selector:
            name = selector[len("refs/"):] if selector.startswith("refs/") else selector
            tips.append(Tip(name, LocationKind.STASH, oid))
    return tips


# --------------------------------------------------------------------------------------------
# Commits and trees.


def parse_commit(oid: str, content: bytes) -> CommitFacts:
    tree = ""
    parents: list[str] = []
    date = None
    for line in content.split(b"\n"):
        if not line:
            break  # end of the header; the message follows
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode("ascii")
        elif key == b"parent":
            parents.append(value.decode("ascii"))
        elif key == b"committer":
            date = _git_date(value)
    return CommitFacts(oid, tree, tuple(parents), date)


def _git_date(identity: bytes) -> str | None:
    """``Name <email> 1704164645 +0100`` -> ``2024-01-02T04:04:05+01:00``."""
    return _date(b" ".join(identity.rsplit(b" ", 2)[1:]))


def _date(raw: bytes) -> str | None:
    """``1704164645 +0100`` (git's raw date) -> ``2024-01-02T04:04:05+01:00``, as
    ``datetime.fromtimestamp(stamp, zone).isoformat()`` writes it; None for what datetime
    refuses (a zone of a day or more, a year outside 1-9999). With ``time``: a warm ``find``
    loads no ``datetime`` (2 ms of its ~80: the find-small row of bench/run.py)."""
    try:
        stamp, zone = raw.split(b" ")
        sign = "-" if zone.startswith(b"-") else "+"
        hours, minutes = int(zone[1:3]), int(zone[3:5])
        shift = hours * 3600 + minutes * 60
        if shift >= 86_400 or len(zone) != 5 or zone[:1] not in (b"+", b"-"):
            return None
        local = time.gmtime(int(stamp) + (-shift if sign == "-" else shift))
    except (ValueError, OverflowError, OSError):
        return None
    if not 1 <= local.tm_year <= 9999:
        return None
    sign = "+" if shift == 0 else sign
    return (f"{local.tm_year:04d}-{local.tm_mon:02d}-{local.tm_mday:02d}T{local.tm_hour:02d}:"
            f"{local.tm_min:02d}:{local.tm_sec:02d}{sign}{shift // 3600:02d}:"
            f"{shift % 3600 // 60:02d}")


def _peeled_tag_target(content: bytes) -> str | None:
    for line in content.split(b"\n"):
        if line.startswith(b"object "):
            return line[len(b"object "):].decode("ascii")
        if not line:
            break
    return None


class TreeEntry(NamedTuple):
    mode: bytes
    name: str
    oid: str

    @property
    def is_tree(self) -> bool:
        return self.mode == _TREE_MODE

    @property
    def is_blob(self) -> bool:
        return self.mode in _BLOB_MODES  # symlinks (120000) and submodules are not files


def parse_tree(content: bytes, oid_length: int) -> list[TreeEntry]:
    """Git's binary tree format: ``<mode> <name>\\0<raw id>`` repeated."""
    entries = []
    position, end = 0, len(content)
    while position < end:
        space = content.index(b" ", position)
        nul = content.index(b"\0", space)
        oid_end = nul + 1 + oid_length
        entries.append(TreeEntry(content[position:space],
                                 content[space + 1:nul].decode("utf-8", "surrogateescape"),
                                 content[nul + 1:oid_end].hex()))
        position = oid_end
    return entries


# --------------------------------------------------------------------------------------------
# Blobs: parsed once per id, LFS pointers smudged.


class BlobFacts(NamedTuple):
    """What one blob is as a migration (``header`` None: ``reason`` says why it is not one)."""

    header: MigrationHeader | None
    sha256: str = ""
    size: int = 0
    reason: str | None = None
    lfs: bool = False


_LFS_CONTENT: dict[tuple[str, bytes], bytes] = {}


class LfsUnavailable(Exception):
    """git-lfs could not produce the content of a pointer (the message says why)."""


def smudge(repository: Path, path: str, pointer: bytes, timeout: float) -> bytes:
    """The content an LFS pointer stands for, from ``git lfs smudge`` (cached per process)."""
    key = (str(repository), pointer)  # a pointer is under 1 KB: its own key
    cached = _LFS_CONTENT.get(key)
    if cached is not None:
        return cached
    try:
        result = git.run_git(["lfs", "smudge", "--", path], repository, check=False,
                             input_bytes=pointer, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise LfsUnavailable(f"git lfs smudge took longer than {timeout:g} s") from error
    if result.returncode != 0:
        if "is not a git command" in result.stderr:
            raise LfsUnavailable(f"stored in Git LFS, and git-lfs is not installed: "
                                 f"{LFS_INSTALL_HINT}")
        first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
        raise LfsUnavailable(f"stored in Git LFS, and git lfs smudge failed: {first} "
                             "(run `git lfs fetch --all` where the object exists)")
    if git.is_lfs_pointer(result.stdout):
        raise LfsUnavailable("stored in Git LFS, and git lfs smudge gave the pointer back "
                             "(is GIT_LFS_SKIP_SMUDGE set?)")
    _LFS_CONTENT[key] = result.stdout
    return result.stdout


# --------------------------------------------------------------------------------------------
# Searching one repository.


class SearchStats:
    """What a search cost (asserted by the tests, shown by the benchmark)."""

    def __init__(self) -> None:
        self.refs = 0
        self.commits = 0
        self.trees_read = 0  # tree objects read from git (0 for a commit the index knows)
        self.blobs_read = 0  # blob objects read from git (0 for a content the index knows)
        self.files_seen = 0  # (ref, path) pairs


class SkippedAtRef(NamedTuple):
    """A file at some refs that is not a usable migration (one per distinct content)."""

    where: str  # "branch x: path" of the first ref it was met at, plus how many more
    path: str  # repository path
    reason: str


class Found:
    """What searching git objects gave: candidates, files that are not migrations, notes."""

    def __init__(self, places_cap: int | None = None) -> None:
        self.candidates: list[Candidate] = []
        self.skipped: list[SkippedAtRef] = []
        self.notes: list[str] = []
        self.stats = SearchStats()
        # At most this many candidates per revision (the closest refs: tips come branches
        # first, then remotes, tags); the others are only counted in ``more_places``. None: all.
        self.places_cap = places_cap
        self.more_places: dict[str, int] = {}


class _Place(NamedTuple):
    """Where a blob was first met (named in messages; the path given to git lfs smudge)."""

    tip: Tip
    path: str


# Which (revision, blob id) to build a candidate for (``find``'s prefix, planning's needs).
Wanted = Callable[[str, str], bool]
# Paths of a listing kept in the index: "<location>//<below>" ("//" never occurs in git paths).
_SPLIT = "//"
# One file of a listing: (repository path, path below the version location, file name,
# blob id), everything a candidate needs.
_Entry = tuple[str, str, str, str]


class _Listing:
    """A commit's migration files as two columns, as the index keeps them: keys
    ("<location>//<below>") and blob ids. Entries are built only for the blobs a caller
    keeps: ``find`` or a plan needs a handful of the thousands of files at each ref."""

    __slots__ = ("blobs", "keys")

    def __init__(self, keys: Sequence[str], blobs: Sequence[str]) -> None:
        self.keys = keys
        self.blobs = blobs

    def __len__(self) -> int:
        return len(self.blobs)

    def entries(self, kept: AbstractSet[str] | None = None) -> list[_Entry]:
        """Every file (``kept``: only those whose blob is in it)."""
        if kept is not None and kept.isdisjoint(self.blobs):
            return []  # the usual case when a few revisions are asked for: no Python loop
        found = []
        for key, blob in zip(self.keys, self.blobs, strict=True):
            if kept is None or blob in kept:
                directory, _, relative = key.partition(_SPLIT)
                path = f"{directory}/{relative}" if directory else relative
                found.append((path, relative, path.rpartition("/")[2], blob))
        return found

    def first_keys(self) -> dict[str, str]:
        """Blob id -> key of its first file in the listing."""
        return dict(zip(reversed(self.blobs), reversed(self.keys), strict=True))


def _joined_path(key: str) -> str:
    directory, _, relative = key.partition(_SPLIT)
    return f"{directory}/{relative}" if directory else relative


class RepositorySearch:
    """Read the version locations of one repository at each of its refs.

    Everything immutable is read once: a commit's listing (index key: commit id and what was
    searched), a tree (by id), a blob's parse (by id, shared with the file scan through the
    index, so content already read from a worktree is not read again from git).
    """

    def __init__(self, repository: Path, label: str, version_dirs: Sequence[str],
                 project: ProjectConfig, here_root: Path, config_path: str | None,
                 cache: "MigrationIndex", found: Found, wanted: Wanted | None = None) -> None:
        self.repository = repository
        self.wanted = wanted
        self.here_root = here_root
        self.label = label
        self.version_dirs = list(dict.fromkeys(version_dirs))
        self.project = project
        self.config_path = config_path  # repository path of our Alembic config file
        self.cache = cache
        self.found = found
        self.reader = reader_for(repository)
        self._trees: dict[str, list[TreeEntry]] = {}
        self._listings: dict[str, list[tuple[str, str]]] = {}
        self._config_dirs: dict[str, list[str]] = {}
        self._commit_listings: dict[str, _Listing] = {}
        self._oid_length = 20
        recursive = "recursive" if project.recursive_version_locations else "flat"
        searched = "\0".join([recursive, config_path or "", *self.version_dirs])
        self._key_suffix = indexfile.short_digest(searched)

    def run(self) -> None:
        tips = list_tips(self.repository)
        self.found.stats.refs += len(tips)
        if not tips:
            return
        self._oid_length = len(tips[0].oid) // 2
        commits = self._commits_of(tips)
        at_refs: list[tuple[Tip, CommitFacts, _Listing]] = []
        first_place: dict[str, _Place] = {}
        walked: set[int] = set()  # refs at one commit share its listing: walk it once
        for tip in tips:
            commit = commits.get(tip.oid)
            if commit is None:
                continue
            listing = self._commit_listing(commit, tip.kind)
            at_refs.append((tip, commit, listing))
            self.found.stats.files_seen += len(listing)
            if id(listing) in walked:
                continue
            walked.add(id(listing))
            new = set(listing.blobs).difference(first_place)
            if new:  # branches share most files: look up only the ones not met before
                firsts = listing.first_keys()
                for blob in sorted(new):  # a stable order of reads from git
                    first_place[blob] = _Place(tip, _joined_path(firsts[blob]))
        facts = self._read_blobs(first_place)
        self._add_candidates(at_refs, facts, first_place)

    # commits ------------------------------------------------------------------------------

    def _commits_of(self, tips: Sequence[Tip]) -> dict[str, CommitFacts]:
        """Each tip's object id -> its commit (tags peeled); tips naming no commit are left out."""
        result = {tip.oid: tip.commit for tip in tips if tip.commit is not None}
        # tip oid -> object to read next
        pending = {tip.oid: tip.oid for tip in tips if tip.oid not in result}
        for _ in range(_PEEL_LIMIT):
            if not pending:
                break
            wanted = list(dict.fromkeys(pending.values()))
            objects = dict(self.reader.read_each(wanted))
            following: dict[str, str] = {}
            for tip_oid, oid in pending.items():
                obj = objects.get(oid)
                if obj is None or obj.content is None:
                    continue
                if obj.type == "commit":
                    result[tip_oid] = parse_commit(oid, obj.content)
                elif obj.type == "tag":
                    target = _peeled_tag_target(obj.content)
                    if target:
                        following[tip_oid] = target
            pending = following
        self.found.stats.commits += len({c.oid for c in result.values()})
        return result

    def _commit(self, oid: str) -> CommitFacts | None:
        obj = self.reader.read(oid)
        if obj is None or obj.type != "commit" or obj.content is None:
            return None
        return parse_commit(oid, obj.content)

    def _commit_listing(self, commit: CommitFacts, kind: LocationKind) -> _Listing:
        """The migration files of ``commit`` (for a stash entry, with its untracked files)."""
        stash = kind is LocationKind.STASH
        key = f"git-refs:{commit.oid}:{'stash' if stash else 'commit'}:{self._key_suffix}"
        listing = self._commit_listings.get(key)
        if listing is not None:
            return listing
        known = self.cache.tree_columns(key)
        if known is not None:
            listing = _Listing(*known)
        else:
            roots = [commit.tree]
            if stash and len(commit.parents) >= 3:
                # `git stash -u`: untracked files live in the third parent's tree
                untracked = self._commit(commit.parents[2])
                if untracked is not None:
                    roots.append(untracked.tree)
            found = {(directory, relative): blob
                     for root in roots
                     for directory in self._dirs_at(root)
                     for relative, blob in self._files_below(root, directory)}
            joined = {f"{d}{_SPLIT}{r}": b for (d, r), b in found.items()}
            self.cache.remember_tree(key, joined)
            listing = _Listing(list(joined), list(joined.values()))
        self._commit_listings[key] = listing
        return listing

    # trees --------------------------------------------------------------------------------

    def _tree(self, oid: str) -> list[TreeEntry]:
        entries = self._trees.get(oid)
        if entries is None:
            obj = self.reader.read(oid)
            entries = (parse_tree(obj.content, self._oid_length)
                       if obj is not None and obj.type == "tree" and obj.content is not None
                       else [])
            self._trees[oid] = entries
            self.found.stats.trees_read += 1
        return entries

    def _entry_at(self, root: str, path: str) -> TreeEntry | None:
        """The entry at repository path ``path`` in the tree ``root``."""
        current: TreeEntry | None = TreeEntry(_TREE_MODE, "", root)
        for part in PurePosixPath(path).parts if path else ():
            if current is None or not current.is_tree:
                return None
            current = next((e for e in self._tree(current.oid) if e.name == part), None)
        return current

    def _files_below(self, root: str, directory: str) -> list[tuple[str, str]]:
        """(path below ``directory``, blob id) of each file Alembic would load from it."""
        entry = self._entry_at(root, directory)
        if entry is None or not entry.is_tree:
            return []
        return self._listing(entry.oid)

    def _listing(self, tree: str) -> list[tuple[str, str]]:
        cached = self._listings.get(tree)
        if cached is not None:
            return cached
        listing: list[tuple[str, str]] = []
        recursive = self.project.recursive_version_locations
        for entry in sorted(self._tree(tree), key=lambda e: e.name):
            if entry.is_tree:
                if recursive and entry.name != "__pycache__":
                    listing.extend((f"{entry.name}/{below}", blob)
                                   for below, blob in self._listing(entry.oid))
            elif entry.is_blob and _REVISION_FILE.match(entry.name):
                listing.append((entry.name, entry.oid))
        self._listings[tree] = listing
        return listing

    def _dirs_at(self, root: str) -> list[str]:
        """Our version locations, plus those the ref's own copy of our config file names
        (the versions folder may have moved between that commit and this worktree)."""
        dirs = list(self.version_dirs)
        if self.config_path is None:
            return dirs
        entry = self._entry_at(root, self.config_path)
        if entry is None or not entry.is_blob:
            return dirs
        extra = self._config_dirs.get(entry.oid)
        if extra is None:
            extra = self._dirs_in_config(entry.oid)
            self._config_dirs[entry.oid] = extra
        return list(dict.fromkeys(dirs + extra))

    def _dirs_in_config(self, blob: str) -> list[str]:
        obj = self.reader.read(blob, max_bytes=self.project.tool.max_file_bytes)
        config = self.project.ini_path or self.project.toml_path
        if obj is None or obj.content is None or config is None:
            return []
        try:
            locations = version_locations_from_text(
                obj.content.decode("utf-8"), toml=config.name == "pyproject.toml",
                section=self.project.section, here=config.parent, cwd=self.project.cwd)
        except (ConfigError, UnicodeDecodeError):
            return []  # an old config this version cannot read: our own locations still count
        return repository_paths(locations, self.here_root)

    # blobs --------------------------------------------------------------------------------

    def _read_blobs(self, first_place: dict[str, _Place]) -> dict[str, BlobFacts]:
        """What each distinct blob is: from the index, else read from git and parsed once."""
        facts: dict[str, BlobFacts] = {}
        unknown: list[str] = []
        known_failures: dict[str, str] = {}
        for oid in first_place:
            try:
                known = self.cache.blob(oid)
            except MigrationParseError as error:
                # Read it again all the same: it may be an LFS pointer that a worktree without
                # git-lfs holds (and the index recorded as "no migration"). Such files are rare.
                known_failures[oid] = str(error)
                unknown.append(oid)
                continue
            if known is None:
                unknown.append(oid)
            else:
                facts[oid] = BlobFacts(known.header, known.sha256, known.size)
        max_bytes = self.project.tool.max_file_bytes
        for oid, obj in self.reader.read_each(unknown, max_bytes=max_bytes):
            self.found.stats.blobs_read += 1
            if oid in known_failures and (obj is None or obj.content is None
                                          or not git.is_lfs_pointer(obj.content)):
                facts[oid] = BlobFacts(None, reason=known_failures[oid])
                continue
            facts[oid] = self._blob_facts(oid, obj, first_place[oid], max_bytes)
        return facts

    def _blob_facts(self, oid: str, obj: GitObject | None, where: _Place,
                    max_bytes: int) -> BlobFacts:
        if obj is None:
            return BlobFacts(None, reason="object missing from the repository")
        if obj.content is None:
            return BlobFacts(None, reason=f"larger than {max_bytes} bytes")
        content = obj.content
        lfs = git.is_lfs_pointer(content)
        if lfs:
            try:
                content = smudge(self.repository, where.path, content,
                                 self.project.tool.fetch_timeout)
            except LfsUnavailable as error:
                return BlobFacts(None, reason=str(error), lfs=True)
        try:
            if lfs:  # the index records a blob id's content: not the pointer's stand-in
                # The parser (ast, tokenize) is imported when a blob is parsed: a run whose
                # index knows every blob never is.
                from alembic_autocopy.core.parsing import parse_migration, sha256_hex

                parsed = folders.ReadFile(parse_migration(content, max_bytes=max_bytes),
                                           sha256_hex(content), len(content), oid)
            else:
                parsed = self.cache.parse_blob(oid, content)
        except MigrationParseError as error:
            return BlobFacts(None, reason=str(error), lfs=lfs)
        return BlobFacts(parsed.header, parsed.sha256, parsed.size, lfs=lfs)

    def _add_candidates(self, at_refs: Sequence[tuple[Tip, CommitFacts, _Listing]],
                        facts: dict[str, BlobFacts], first_place: dict[str, _Place]) -> None:
        maker = _CandidateMaker(self.found, facts, self.label,
                                self.project.recursive_version_locations, self.wanted)
        for tip, commit, listing in at_refs:
            maker.add_ref(tip, commit, listing)
        maker.count_saturated()
        self._report_refused(maker.refused)
        self._report_unusable(maker.unusable, facts, first_place)

    def _report_refused(self, refused: dict[str, tuple[str, list[str]]]) -> None:
        for path, (problem, holders) in refused.items():
            more = f" (and {len(holders) - 1} other ref(s))" if len(holders) > 1 else ""
            self.found.skipped.append(SkippedAtRef(
                f"{holders[0]}: {path}{more}", path,
                f"unsafe name refused ({problem}): nothing is ever written outside the "
                "versions folder"))

    def _report_unusable(self, unusable: dict[str, int], facts: dict[str, BlobFacts],
                         first_place: dict[str, _Place]) -> None:
        """One skipped file per unusable content (named by the first place it was met at),
        and one note for the files git-lfs would have to read."""
        lfs_missing: list[str] = []
        for blob, count in unusable.items():
            first = first_place[blob]
            where = f"{_describe_tip(first.tip)}: {first.path}"
            more = f" (and {count - 1} other ref(s))" if count > 1 else ""
            reason = facts[blob].reason or "not a migration"
            self.found.skipped.append(SkippedAtRef(where + more, first.path, reason))
            if facts[blob].lfs and "not installed" in reason:
                lfs_missing.append(where)
        if lfs_missing:
            shown = "; ".join(lfs_missing[:5]) + (" ..." if len(lfs_missing) > 5 else "")
            self.found.notes.append(
                f"{len(lfs_missing)} migration file(s) in git are stored in Git LFS and "
                f"git-lfs is not installed, so they cannot be read: {shown}; "
                f"{LFS_INSTALL_HINT}")


class _CandidateMaker:
    """Turns the files at each ref into candidates (into ``found``): one per usable file and
    ref, at most ``found.places_cap`` per revision (the others only counted). Files with
    unsafe names and contents that are not usable migrations are set aside for the report."""

    def __init__(self, found: Found, facts: dict[str, BlobFacts], label: str,
                 recursive: bool, wanted: Wanted | None) -> None:
        self.candidates = found.candidates
        self.counted = found.more_places
        self.cap = found.places_cap
        self.facts = facts
        self.label = label
        self.recursive = recursive
        self.broken_blobs = {blob for blob, fact in facts.items() if fact.header is None}
        self.kept_blobs: set[str] | None = None  # None: every usable blob
        if wanted is not None or self.broken_blobs:
            self.kept_blobs = {blob for blob, fact in facts.items()
                               if fact.header is not None
                               and (wanted is None or wanted(fact.header.revision, blob))}
        self.unusable: dict[str, int] = {}  # blob id -> how many (ref, path) hold it
        # unsafe repository path -> (why, the refs holding it)
        self.refused: dict[str, tuple[str, list[str]]] = {}
        # Per listing (one per commit), the entries to turn into candidates and the unusable
        # ones: a fleet of refs at a few commits is filtered a few times, not once per ref.
        self.split: dict[int, tuple[list[_Entry], list[str]]] = {}
        self.per_revision: dict[str, int] = {}  # candidates built per revision (with a cap)
        self.saturated: dict[int, int] = {}  # listing -> refs at it that only count (cap reached)

    def add_ref(self, tip: Tip, commit: CommitFacts, listing: _Listing) -> None:
        kept, broken = self._split(listing)
        for blob in broken:
            self.unusable[blob] = self.unusable.get(blob, 0) + 1
        if self.cap is not None and id(listing) in self.saturated:
            self.saturated[id(listing)] += 1  # thousands of refs at few commits: counted once
            return
        self._add_files(tip, commit, kept)
        if self.cap is not None and all(
                self.per_revision.get(_revision_of(self.facts[entry[3]]), 0) >= self.cap
                for entry in kept):
            self.saturated[id(listing)] = 0

    def _split(self, listing: _Listing) -> tuple[list[_Entry], list[str]]:
        """The listing's entries to build candidates from, and its unusable blobs."""
        parts = self.split.get(id(listing))
        if parts is None:
            broken = ([blob for blob in listing.blobs if blob in self.broken_blobs]
                      if self.broken_blobs else [])
            kept = listing.entries(self.kept_blobs) if self.kept_blobs != set() else []
            parts = self.split[id(listing)] = (kept, broken)
        return parts

    def _add_files(self, tip: Tip, commit: CommitFacts, kept: list[_Entry]) -> None:
        for path, relative, name, blob in kept:
            problem = refusal(relative, recursive=self.recursive)
            if problem is not None:  # a tree entry named "..", "/"... (git mktree)
                self.refused.setdefault(path, (problem, []))[1].append(_describe_tip(tip))
                continue
            fact = self.facts[blob]
            assert fact.header is not None  # kept: a usable migration
            if self.cap is not None and not self._below_cap(fact.header.revision):
                continue
            self.candidates.append(Candidate(
                header=fact.header, sha256=fact.sha256, size=fact.size, filename=name,
                relative_path=relative,
                location=Location(kind=tip.kind, path=path, worktree=self.label, ref=tip.ref,
                                  commit=commit.oid, commit_date=commit.date, blob=blob,
                                  detail="Git LFS" if fact.lfs else None)))

    def _below_cap(self, revision: str) -> bool:
        """Whether one more candidate of ``revision`` may be built (else it is counted)."""
        assert self.cap is not None
        built = self.per_revision.get(revision, 0)
        if built >= self.cap:
            self.counted[revision] = self.counted.get(revision, 0) + 1
            return False
        self.per_revision[revision] = built + 1
        return True

    def count_saturated(self) -> None:
        """Count the places of the refs skipped once their listing's revisions were full."""
        for listing_id, refs in self.saturated.items():
            for entry in self.split[listing_id][0]:
                header = self.facts[entry[3]].header
                if header is not None and refs:
                    self.counted[header.revision] = self.counted.get(header.revision, 0) + refs


def repository_paths(locations: Sequence[Path], root: Path) -> list[str]:
    """Each location (an absolute folder) as a path inside the worktree ``root``, with git's
    ``/`` separators (the root itself: ""); locations outside ``root`` are left out."""
    base = root.resolve()
    paths = []
    for location in locations:
        try:
            text = location.resolve().relative_to(base).as_posix()
        except ValueError:
            continue
        paths.append("" if text == "." else text)
    return paths


def _describe_tip(tip: Tip) -> str:
    return f"{tip.kind.value} {short_ref(tip.ref)}"


# --------------------------------------------------------------------------------------------
# Fetching.


def fetch_all(repository: Path, timeout: float) -> str | None:
    """``git fetch --all --prune``, stopped after ``timeout`` seconds.

    Returns None when it worked, else a note that says the search goes on offline.
    """
    env = git.no_git_env()
    # Never wait for a password or a host-key question: there is nobody to answer.
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    try:
        process = subprocess.Popen(
            ["git", "fetch", "--all", "--prune", "--quiet"], cwd=str(repository),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, start_new_session=True)
    except OSError as error:
        return f"offline: could not run git fetch ({error}); searched the refs already here"
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        return (f"offline: git fetch --all did not finish within {timeout:g} s and was "
                "stopped; searched the refs already here (fetch_timeout sets the limit)")
    if process.returncode != 0:
        text = stderr.decode("utf-8", "replace").strip().splitlines()
        reason = next((line for line in text if line.startswith(("fatal:", "error:"))),
                      text[0] if text else f"exit code {process.returncode}")
        return f"offline: git fetch --all failed ({reason}); searched the refs already here"
    return None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # git fetch starts helpers (ssh, git-remote-https): stop the whole group, or a helper
    # keeps the pipe open and communicate() never returns.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (AttributeError, ProcessLookupError, PermissionError):
        process.kill()


# --------------------------------------------------------------------------------------------
# The source: which repositories, and the inventory extension repair calls.


class Repository(NamedTuple):
    cwd: Path  # where to run git
    common_dir: Path
    label: str  # Location.worktree of what is found there


def repository_at(folder: Path) -> Repository | None:
    """The repository ``folder`` is the root of (a worktree root or a bare repository)."""
    result = git.run_git(["rev-parse", "--path-format=absolute", "--git-common-dir",
                          "--is-bare-repository", "--show-prefix"], folder, check=False)
    lines = result.text.split("\n")
    if result.returncode != 0 or len(lines) < 3:
        return None
    common, bare, prefix = Path(lines[0]), lines[1] == "true", lines[2]
    if bare and not _same(common, folder):
        return None
    if not bare and prefix:
        return None  # a folder inside a worktree, not a repository of its own
    return Repository(folder, common, _label(common))


def _label(common_dir: Path) -> str:
    """The repository's main worktree when it has one (what people recognise), else its
    git folder (a bare repository)."""
    if common_dir.name == ".git" and common_dir.parent.is_dir():
        return str(common_dir.parent)
    return str(common_dir)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def repositories(project: ProjectConfig, here_root: Path) -> list[Repository]:
    """This repository, then each configured folder that is a separate repository."""
    common = git.locate(project.here)[1]  # already known to the process: no git call
    own = Repository(here_root, common, _label(common)) if common is not None else None
    if own is None:
        return []
    found = [own]
    seen = {own.common_dir.resolve()}
    for folder in project.search_folders():
        other = repository_at(folder)
        if other is None:
            continue
        key = other.common_dir.resolve()
        if key in seen:
            continue  # a worktree of a repository already searched
        seen.add(key)
        found.append(other)
    return found


def _revision_of(fact: BlobFacts) -> str:
    return fact.header.revision if fact.header is not None else ""


def search(project: ProjectConfig, fetch: bool = False,
           cache: "MigrationIndex | None" = None, wanted: Wanted | None = None,
           places_cap: int | None = None) -> Found:
    """Every migration at every ref of this repository and of the configured clones.

    ``cache``: the index to consult and fill (default: the project's, shared with the file
    scan; the caller saves it). ``wanted(revision, blob)``: build candidates only for what
    it accepts (every file is still listed, and files that are no migration still reported).
    """
    found = Found(places_cap=places_cap)
    if cache is None:
        from alembic_autocopy.sources import index

        cache = index.open_for(project)
    here_root = scanning.this_worktree(project)
    if here_root is None:
        return found  # not in a git worktree: no repository to read
    version_dirs = repository_paths(project.version_locations, here_root)
    config = project.ini_path or project.toml_path
    config_path = None
    if config is not None:
        try:
            config_path = config.resolve().relative_to(here_root.resolve()).as_posix()
        except ValueError:
            config_path = None
    repos = repositories(project, here_root)
    if fetch and repos:
        note = fetch_all(repos[0].cwd, project.tool.fetch_timeout)
        if note:
            found.notes.append(note)
    for repo in repos:
        try:
            RepositorySearch(repo.cwd, repo.label, version_dirs, project, here_root,
                             config_path, cache, found, wanted).run()
        except GitError as error:
            found.notes.append(f"git refs of {repo.label} could not be read: {error.message}; "
                               "skipped")
    return found


def _refs_searched(project: ProjectConfig, options: Options) -> bool:
    return options.git_refs if options.git_refs is not None else project.tool.git_refs


def _fetching(project: ProjectConfig, options: Options) -> bool:
    return options.fetch if options.fetch is not None else project.tool.fetch


def start_listing(project: ProjectConfig, options: Options, here_root: Path) -> None:
    """Start listing this repository's refs now (``git.start_early``) when
    ``extend_inventory`` will list them as they are (no fetch first)."""
    if _refs_searched(project, options) and not _fetching(project, options):
        git.start_early(TIP_LISTING, here_root)


def extend_inventory(project: ProjectConfig, inventory: scanning.Inventory,
                     options: Options) -> None:
    """The inventory extension: add every ref's migrations to ``inventory.elsewhere``."""
    if not _refs_searched(project, options):
        return
    found = search(project, fetch=_fetching(project, options),
                   wanted=wanted_by(options, inventory), places_cap=options.places_per_revision)
    inventory.elsewhere.extend(found.candidates)
    for revision, count in found.more_places.items():
        inventory.more_places[revision] = inventory.more_places.get(revision, 0) + count
    inventory.refs_searched = (inventory.refs_searched or 0) + found.stats.refs
    # A file that is no migration in a worktree is usually one at the refs too: say it once.
    already = {Path(skipped.path).as_posix() for skipped in inventory.skipped}
    already.update(Path(path).as_posix() for path in inventory.loaded_by_alembic)
    for skipped in found.skipped:
        lfs = "Git LFS" in skipped.reason  # the worktree's copy is only a pointer: say why
        if lfs or not any(path.endswith("/" + skipped.path) for path in already):
            inventory.skipped.append(SkippedFile(skipped.where, skipped.reason))
    inventory.notes.extend(found.notes)


def wanted_by(options: Options, inventory: scanning.Inventory) -> Wanted | None:
    """Which git copies to build candidates for: those whose id starts with ``find``'s
    prefix; for planning (``closest_only``), none of a revision this worktree has (a plan
    never brings one) nor of a content a file already holds (the file is closer, and one
    location per content is all a plan uses), unless ``--prefer`` may name a branch."""
    prefix = options.revision_prefix
    here: set[str] = set()
    on_disk: set[tuple[str, str | None]] = set()
    if options.closest_only and not options.prefer:  # --prefer: see inventory.wanted_ids
        here = inventory.local_ids()
        if not options.prefer:
            on_disk = {(c.revision, c.location.blob) for c in inventory.all
                       if c.location.kind.is_file}
    if prefix is None and not here and not on_disk:
        return None

    def wanted(revision: str, blob: str) -> bool:
        return ((prefix is None or revision.startswith(prefix)) and revision not in here
                and (revision, blob) not in on_disk)

    return wanted


def read_content(candidate: Candidate) -> bytes:
    """The bytes of a candidate found in git (LFS content when the blob is a pointer)."""
    location = candidate.location
    if location.blob is None or location.worktree is None:
        raise AutocopyError(f"cannot read revision {candidate.revision} from "
                            f"{location.describe()}: no git object recorded")
    repository = Path(location.worktree)
    obj = reader_for(repository).read(location.blob)
    if obj is None or obj.content is None:
        raise AutocopyError(f"revision {candidate.revision}: git object {location.blob} is "
                            f"gone from {repository}",
                            hint="run the command again: the repository changed meanwhile")
    content = obj.content
    if git.is_lfs_pointer(content):
        try:
            content = smudge(repository, location.path or "", content, 60.0)
        except LfsUnavailable as error:
            raise AutocopyError(f"{location.describe()}: {location.path}: {error}") from error
    return content
