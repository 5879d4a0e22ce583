"""Replacing a file segcast saves in place (its config file, on a change through the API) as its admin
set it up, and saying beforehand why it cannot be.

A save writes the new bytes to a partial file beside the old one and renames it over it: atomic on
the file's own file system, and a power cut leaves one of them whole. A rename makes the file the
writer's, so the owner, group and permissions are given back before the file holds anything; where
segcast may not give them back (not root, a user namespace that does not map the owner) nothing is
saved rather than a file taken from its owner. `unwritable_reason` says, in words that name the
fix, what would make a save fail before one is tried: a read-only mount, a read-only file, another
user's file, a folder segcast may not write in; true before a save and after one, each caller frames
it (`not_saved` after one). `write_denied` says the same of files and folders written in place (the
event history's, an export's ``--out``), where a file's own permissions count.

Processes saving one file take turns (`save_lock`): a save checks that the file still holds what it
read, then replaces it, and another's save between the two would be lost unseen. A turn not given
within `SAVE_LOCK_TIMEOUT_S` is not waited for: the save is refused, naming the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from server.config_values import ConfigError


def unwritable_reason(target: Path) -> str | None:
    """Why the file at ``target`` (a symlink resolved) cannot be replaced, with the fix, or None; said after
    its name, in words as true before a save is tried as after one failed: each caller says which.

    Replacing goes round a file's own permissions (only its folder's count): one made read-only, for
    anyone, root too, is the admin's way of saying segcast must not change it. A read-only mount is
    asked of the mount, where chmod is no fix. Permissions are asked of the effective user, as the
    kernel decides (`_may_write`).
    """
    folder = target.parent
    if on_read_only_mount(target if target.exists() else folder):
        return (
            "is on a read-only file system (chmod cannot change that): mounted read-only (a Docker bind mount "
            "with :ro, a Kubernetes ConfigMap), changes made through the API last until segcast stops; to save "
            "them, mount its folder writable"
        )
    if target.exists():
        status = target.stat()
        own = os.geteuid()
        # Before its permissions: another user's file is not writable for segcast either, and making it
        # so would not let segcast save it.
        if own not in (0, status.st_uid) or not _mapped(status.st_uid):  # as `_take_owner` would find
            return _not_its_owner(status.st_uid, own)
        if not stat.S_IMODE(status.st_mode) & 0o222 or not _may_write(target, folder=False):
            return "is read-only: make it writable to save changes to it"
    if not folder.is_dir():
        return f"is in a folder that is gone, {folder}"
    if not _may_write(folder, folder=True):
        return (
            f"is in a folder segcast may not write in, {folder}, where a save writes the new file before "
            "renaming it over the old one: let segcast's user write there (in a container, mount the folder, "
            "not the file alone: README, Docker)"
        )
    return None


def not_saved(name: str, reason: str) -> str:
    """What a save of the file called ``name`` that failed for ``reason`` (said after the file's name) says."""
    return f"{name} was not saved: it {reason}"


def write_denied(paths: Iterable[Path]) -> str | None:
    """Why this process may not write in place those of ``paths`` (files or folders) that exist, by their
    owners and permissions, each with its fix (``chown``, ``chmod``); None where it may write them all.

    Asked of the effective user, as the kernel decides: what a container run as root made in a volume
    is root's, and segcast's own user (uid 10001 in its image) may read it but not write it. A path not
    there yet stands for the nearest folder above it that is, where it would be made. A path on a
    read-only mount is left out: no chown or chmod fixes that, and each caller says it in its own words.
    One that neither its owner nor its mode keeps from segcast, but that is not writable all the same
    (immutable, ``chattr +i``, which stops root too), gets no chmod, which would change nothing.
    """
    own = os.geteuid()
    owned: dict[int, list[Path]] = {}
    read_only: dict[tuple[int, bool], list[Path]] = {}  # by mode, and whether folders
    refused: dict[tuple[int, bool], list[Path]] = {}  # the same, where neither owner nor mode is the reason
    for path in dict.fromkeys(filter(None, map(_existing, paths))):
        try:
            status = path.stat()
        except OSError:
            continue
        folder = stat.S_ISDIR(status.st_mode)
        if _may_write(path, folder) or on_read_only_mount(path):
            continue
        mode = stat.S_IMODE(status.st_mode)
        owner_may = 0o300 if folder else 0o200
        if own != 0 and status.st_uid != own:
            owned.setdefault(status.st_uid, []).append(path)
        elif own != 0 and mode & owner_may != owner_may:
            read_only.setdefault((mode, folder), []).append(path)
        else:  # root, whom modes do not stop, or the owner, whom this mode lets write
            refused.setdefault((mode, folder), []).append(path)
    reasons = [_owned_by(owner, theirs, own) for owner, theirs in owned.items()]
    reasons += [_read_only(files, mode, folder) for (mode, folder), files in read_only.items()]
    reasons += [_not_writable(files, mode, folder) for (mode, folder), files in refused.items()]
    return "; ".join(reasons) or None


def _existing(path: Path) -> Path | None:
    """``path`` where it is there, else the nearest folder above it that is (what making it needs to
    write in); None where neither can be looked at."""
    for candidate in (path, *path.parents):
        try:
            status = candidate.stat()
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return candidate if candidate == path or stat.S_ISDIR(status.st_mode) else None
    return None


def _owned_by(owner: int, paths: list[Path], own: int) -> str:
    """Why ``paths``, of uid ``owner``, are not segcast's (uid ``own``) to write, and the ``chown`` that fixes it."""
    root = " (root: older segcast images ran as root)" if owner == 0 else ""
    return (
        f"{_listed(paths, 'belongs', 'belong')} to uid {owner}{root}, and segcast runs as uid {own}: give "
        f"{_it(paths)} to segcast's user (chown {own} {' '.join(map(str, paths))})"
    )


def _read_only(paths: list[Path], mode: int, folders: bool) -> str:
    """Why ``paths``, segcast's own and of ``mode``, are not written, and the ``chmod`` that fixes it."""
    return (
        f"{_listed(paths, 'is', 'are')} read-only (mode {mode:04o}): make {_it(paths)} writable "
        f"(chmod u+w{'x' if folders else ''} {' '.join(map(str, paths))})"
    )


def _not_writable(paths: list[Path], mode: int, folders: bool) -> str:
    """Why ``paths`` of ``mode``, which neither their owner nor their mode keeps segcast from writing, are not
    written all the same (``chattr +i``, which stops root too): no chown or chmod would change that."""
    return (
        f"{_listed(paths, 'is', 'are')} not writable, and no chmod would change that (mode {mode:04o}): "
        f"immutable? (lsattr{' -d' if folders else ''} {' '.join(map(str, paths))})"
    )


def _listed(paths: list[Path], one: str, more: str) -> str:
    """``paths`` as a sentence names them, followed by the verb that agrees: "A is", "A, B and C are"."""
    names = [str(path) for path in paths]
    if len(names) == 1:
        return f"{names[0]} {one}"
    return f"{', '.join(names[:-1])} and {names[-1]} {more}"


def _it(paths: list[Path]) -> str:
    return "it" if len(paths) == 1 else "them"


def _may_write(path: Path, folder: bool) -> bool:
    """Whether this process's effective user may write the file at ``path``, or make files in the folder there."""
    mode = os.W_OK | os.X_OK if folder else os.W_OK
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


#: The user ids this process's user namespace maps: ``inside outside count`` a line (Linux).
UID_MAP = Path("/proc/self/uid_map")
#: The id a user namespace shows for the owner of a file whose owner it does not map.
OVERFLOW_UID = Path("/proc/sys/kernel/overflowuid")
#: The map of the first user namespace: every id is itself.
_IDENTITY_MAP = [["0", "0", "4294967295"]]


def _mapped(uid: int) -> bool:
    """Whether this process's user namespace maps the owner ``uid`` of a file, so root may give a file
    to it. Root in a rootless container sees files of users its namespace does not map as owned by the
    overflow id (65534), and cannot give a file to them (``fchown``: EINVAL); the usual subordinate-id
    maps (``0 100000 65536``) include 65534 itself, so outside the first namespace that id is taken as
    unmapped. True where it cannot say (not Linux, no map written yet)."""
    try:
        ranges = [line.split() for line in UID_MAP.read_text().splitlines() if line.strip()]
        if not ranges or ranges == _IDENTITY_MAP:
            return True
        if uid == int(OVERFLOW_UID.read_text()):
            return False
        return any(int(inside) <= uid < int(inside) + int(count) for inside, _outside, count in ranges)
    except (OSError, ValueError):
        return True


def on_read_only_mount(path: Path) -> bool:
    """Whether the file system holding ``path`` is mounted read-only; False where it cannot say."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


#: How old a partial file of a save must be to be taken for one a killed save left: a save writes its own
#: and renames it within moments, so a younger one may still be another process's save under way.
STALE_PARTIAL_S = 60.0
#: How long a save waits for another process's save of the same file to let go of `save_lock` before it is
#: refused: a save holds it for moments, so one held longer is a segcast stopped (SIGSTOP, a debugger) or
#: hung midway through a save of the same file, or an NFS lock daemon that does not answer. Waited for, it
#: left the change's request unanswered and every save after it queued behind, all for as long as that lasts.
SAVE_LOCK_TIMEOUT_S = 10.0
#: How often a save waiting for `save_lock` tries to take it again.
SAVE_LOCK_POLL_S = 0.05


@contextmanager
def save_lock(target: Path, name: str) -> Iterator[None]:
    """Hold, for the ``with`` block, the lock that saves of the file at ``target`` (a symlink resolved) take
    in turn, in every process that saves it: an exclusive ``flock`` on ``.<its name>.lock`` beside it, waited for
    `SAVE_LOCK_TIMEOUT_S` at most (then the save is refused: `ConfigError`, naming the lock file).

    Blocks: take it off the event loop. The lock file is removed before the lock is let go, so none is
    left beside the file; one a killed save left is taken over. A process that waited on a lock file
    removed meanwhile takes the one now there: it holds the lock only on the file the path names
    (`_locked`). Opened for writing, as NFS needs for an exclusive lock. Where it cannot be made, the
    save is refused with the reason (`ConfigError`, said after ``name``).
    """
    lock = target.with_name(f".{target.name}.lock")
    try:
        descriptor = _locked(lock)
    except OSError as exc:
        reason = unwritable_reason(target) or write_denied([lock]) or f"cannot lock {lock} ({exc.strerror or exc})"
        raise ConfigError(not_saved(name, reason)) from None
    if descriptor is None:
        reason = (
            f"is locked by another process, which has held {lock} for over {SAVE_LOCK_TIMEOUT_S:g} s (a segcast "
            f"stopped or hung while saving the file, or an NFS lock daemon that does not answer): find it with "
            f"fuser -v {lock}, or save the change again once it lets go"
        )
        raise ConfigError(not_saved(name, reason))
    try:
        yield
    finally:
        with suppress(OSError):
            lock.unlink()  # before the lock is let go: a save waiting on this file tries again
        os.close(descriptor)


def _locked(lock: Path) -> int | None:
    """A descriptor holding an exclusive ``flock`` on the file at ``lock``, made where missing (mode 0600); None
    where another process held it throughout `SAVE_LOCK_TIMEOUT_S`.

    Asked without waiting, every `SAVE_LOCK_POLL_S`: a ``flock`` that waits cannot be given up.
    """
    deadline = time.monotonic() + SAVE_LOCK_TIMEOUT_S
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not _flocked(descriptor, deadline):
                break
            held = os.fstat(descriptor)
            now = lock.stat()
        except FileNotFoundError:  # removed by the save before this one: try the next lock file
            os.close(descriptor)
            continue
        except BaseException:
            os.close(descriptor)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            return descriptor
        os.close(descriptor)
    os.close(descriptor)  # held by another process throughout
    return None


def _flocked(descriptor: int, deadline: float) -> bool:
    """Whether an exclusive ``flock`` on ``descriptor`` was taken before ``deadline`` (`time.monotonic`)."""
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(SAVE_LOCK_POLL_S)
        else:
            return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the partial files of saves of ``target`` (`write_whole`'s names) older than `STALE_PARTIAL_S`;
    those removed. Take `save_lock` first.

    A save killed before its rename (``kill -9``, a crash) leaves its partial file, a whole copy of the
    new file, which may hold access tokens: nothing else would ever remove it. Only regular files named
    as `write_whole` names them are removed; anything else there (``.<name>.partial``, another
    program's) is not segcast's.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.partial")
    oldest = time.time() - STALE_PARTIAL_S
    removed = []
    for path in target.parent.iterdir():
        if not pattern.fullmatch(path.name):
            continue
        with suppress(OSError):  # gone meanwhile, or not segcast's to remove: left as it is
            status = path.lstat()
            if stat.S_ISREG(status.st_mode) and status.st_mtime < oldest:
                path.unlink()
                removed.append(path)
    return removed


def write_whole(target: Path, data: bytes, original: os.stat_result | None, name: str) -> None:
    """Put ``data`` at ``target`` from a partial file of its own beside it, renamed over it once on disk.

    The partial file's name is this save's alone (`tempfile.mkstemp`): two processes saving one file
    never write into one partial file, and one left by anyone else is not used (one a killed save left
    is removed by a later save: `remove_stale_partials`).
    It takes the owner, group and permissions of ``original`` (the file replaced: the file may hold
    access tokens; owner-only where there was none) before it holds anything. A rename over a file
    mounted by itself fails, and the error says so (`ConfigError`).
    """
    descriptor, partial_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    partial = Path(partial_name)
    try:
        with open(descriptor, "wb") as file:
            os.fchmod(descriptor, _take_owner(descriptor, original, name))
            file.write(data)
            file.flush()
            os.fsync(descriptor)  # on disk before it replaces the old file: a power cut leaves one of them whole
        partial.replace(target)
    except BaseException as exc:
        # A full disk fails the write or the fsync: the old file stays whole, and no stray copy beside it.
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.EBUSY:  # the rename over a mount point
            reason = (
                "is mounted by itself (as a Docker bind mount of the file alone makes it), and a save, which "
                "renames a new file over it, cannot replace a mounted file; mount its folder instead (README, Docker)"
            )
            raise ConfigError(not_saved(name, reason)) from None
        raise


def _take_owner(descriptor: int, original: os.stat_result | None, name: str) -> int:
    """Give the new file open at ``descriptor`` the owner and group of ``original``; the mode to give it.

    A rename leaves the new file segcast's: as root it would take a file from its owner, who may then
    not even read it. Only root may give a file away, so where segcast is not root and the file is
    another user's, the save is refused rather than take it from them. Where only the group cannot be
    kept (segcast's user is not in it), the file stays its owner's and goes to segcast's group,
    without the old group's permissions: that group must not read what the old one could.
    """
    if original is None:
        return 0o600
    mode = stat.S_IMODE(original.st_mode)
    made = os.fstat(descriptor)
    if (made.st_uid, made.st_gid) == (original.st_uid, original.st_gid):
        return mode
    try:
        os.fchown(descriptor, original.st_uid, original.st_gid)
    except OSError as exc:
        # EPERM: not root (or root squashed by NFS); EINVAL: an owner a user namespace does not map
        # (root in a rootless container); ENOTSUP/ENOSYS: a file system without owners to give.
        if exc.errno not in _CANNOT_GIVE_AWAY:
            raise
        if made.st_uid != original.st_uid:
            raise ConfigError(not_saved(name, _not_its_owner(original.st_uid, made.st_uid))) from None
        return mode & ~0o070
    return mode


#: What ``fchown`` fails with where this process cannot give a file to another owner or group.
_CANNOT_GIVE_AWAY = frozenset({errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _not_its_owner(owner: int, own: int) -> str:
    """Why a file of uid ``owner`` cannot be saved by a process that cannot give it back (uid ``own``)."""
    return (
        f"belongs to uid {owner}, and saved by segcast (uid {own}) it would be segcast's, which segcast "
        "cannot change back: give the file to segcast's user (chown), or run segcast as its owner, to save "
        "changes to it"
    )
