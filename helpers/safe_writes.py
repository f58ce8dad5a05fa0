"""Outputs written whole or not at all, one writer at a time: ``atomic_path`` (a temporary file renamed into
place) and ``exclusive_lock`` (an ``fcntl`` lock that names its holder). Every file this project writes, images,
videos, checkpoints, reports, goes through them; ``helpers.io`` reads and encodes, this module only guards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["PARTIAL_MARKER", "DestinationBusyError", "atomic_path", "exclusive_lock", "remove_stale_partials"]

PARTIAL_MARKER = ".partial"  # in the names of atomic_path's temporary files


def _default_file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_DEFAULT_FILE_MODE = _default_file_mode()


def remove_stale_partials(destination: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that ``atomic_path`` left for ``destination`` when a run was killed.

    Matched by the exact pattern of its own names (``.STEM.XXXXXXXX.partial.SUFFIX``, mkstemp's 8 random
    characters), so no other file is touched. ``atomic_path`` calls it holding the destination's lock, so a
    concurrent writer's temporary file is never taken for a stale one. Returns what was removed.
    """
    destination = Path(destination)
    pattern = re.compile(rf"\.{re.escape(destination.stem)}\.[A-Za-z0-9_]{{8}}{PARTIAL_MARKER}{re.escape(destination.suffix)}")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for candidate in destination.parent.iterdir():
            if pattern.fullmatch(candidate.name) and candidate.is_file():
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    On any exception the temporary file is removed and ``destination`` is untouched; temporary files of
    ``destination`` that a killed run left are removed first. The temporary name keeps the destination's
    suffix so encoders pick the format.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(destination):
        remove_stale_partials(destination)
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{destination.stem}.", suffix=f"{PARTIAL_MARKER}{destination.suffix}", dir=destination.parent
        )
        os.close(handle)
        temp_path = Path(temp_name)
        os.chmod(temp_path, _DEFAULT_FILE_MODE)  # mkstemp makes 0600 files; outputs get the usual umask'd mode
        try:
            yield temp_path
            os.replace(temp_path, destination)
        finally:
            temp_path.unlink(missing_ok=True)


class DestinationBusyError(OSError):
    """Another process holds the lock on a destination: one writer at a time."""


_LOCKS_HELD: set[Path] = set()  # lock files this process holds (``exclusive_lock`` is reentrant)


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, lock_file: str | os.PathLike | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` for the block: ``fcntl.flock`` on ``lock_file`` (default ``.NAME.lock``
    beside it), which records the holder's PID. A second process is refused at once with DestinationBusyError (one
    line naming the holder's PID); the lock dies with its process, however it ends, and the file is removed on exit.
    On a file system that has no locks the block runs unlocked. Reentrant within a process: a block nested in
    one holding the same lock runs under it (``python -m helpers train`` locks the run folder, ``fit`` again).
    """
    target = Path(target)
    lock = Path(lock_file) if lock_file is not None else target.parent / f".{target.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    held = lock.resolve()
    if held in _LOCKS_HELD:
        yield
        return
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise DestinationBusyError(
                f"{target}: another process (PID {holder}) is writing it; wait for it to finish or write elsewhere"
            ) from None
        except OSError:  # a file system without locks (some network and FUSE mounts): written unlocked, as before
            os.close(descriptor)
            lock.unlink(missing_ok=True)
            yield
            return
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(descriptor).st_ino == os.stat(lock).st_ino:
                break  # locked the file that is in place, not one its last holder removed meanwhile
        os.close(descriptor)
    _LOCKS_HELD.add(held)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        _LOCKS_HELD.discard(held)
        lock.unlink(missing_ok=True)
        os.close(descriptor)
