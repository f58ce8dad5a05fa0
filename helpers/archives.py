"""Checked listing and extraction of the dataset archives that data_download.sh fetches (zip and tar.gz).

Standard library only, so it runs before the requirements are installed: data_download.sh calls
``python3 helpers/archives.py list FORMAT ARCHIVE`` and ``... extract FORMAT ARCHIVE DEST LISTING [NAME ...]``.
The members are read with ``zipfile`` and ``tarfile``, the same code checking them and writing them,
so what was checked is what gets extracted: no listing is split into fields (where an owner name with
a space shifted ``../x`` past the check) and no second tool reads the names its own way. The rules are
those of tarfile's ``data`` extraction filter, stricter: links of either kind (the datasets have none),
devices and other special files, absolute names, ``..`` components and control characters in names
are refused, and so are a name given twice and a name that is both a file and a folder (what made
``unzip`` stop and ask). Extraction checks the free space first, never overwrites, never prompts, and
names a disk that fills up anyway. Every refusal is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import functools
import gzip
import os
import shutil
import stat
import struct
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, NamedTuple

__all__ = ["ArchiveError", "Member", "extract", "list_members", "main"]

CHUNK = 1 << 20
FORMATS = {"zip": "zip", "tgz": "tar.gz"}
# What a truncated, corrupt or unreadable archive raises while it is read (gzip.BadGzipFile is an OSError, so
# it is named here and write errors, other OSErrors, are not taken for a bad archive).
UNREADABLE = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, struct.error,
              NotImplementedError, RuntimeError, ValueError)


class ArchiveError(Exception):
    """A refused archive or a failed extraction; the message is one line."""


class Member(NamedTuple):
    """An archive member as the checks see it: its name without ``./`` or trailing ``/``, ``file`` or ``folder``, bytes."""

    name: str
    kind: str
    size: int


Opener = Callable[[], IO[bytes]]


def shown(name: str) -> str:
    """``name`` fit for a one-line message: control and other unprintable characters escaped."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in name)


def normalised(name: str) -> str:
    """``name`` without empty and ``.`` components (``./a//b/`` -> ``a/b``); the archive's root is ``""``."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def checked_member(archive: str, raw_name: str, kind: str, size: int) -> Member:
    """The member ``raw_name`` of ``kind`` (``file``, ``folder`` or why it is neither), refused when unsafe."""
    why = kind if kind not in ("file", "folder") else None
    if why is None and any(ord(char) < 32 or 127 <= ord(char) < 160 for char in raw_name):
        why = "a control character in its name"
    if why is None and (raw_name.startswith("/") or ".." in raw_name.split("/")):
        why = "leaves the dataset folder"
    if why:
        raise ArchiveError(f"{archive}: unsafe archive member {shown(raw_name)} ({why})")
    return Member(normalised(raw_name), kind, size if kind == "file" else 0)


def zip_kind(info: zipfile.ZipInfo) -> str:
    """``file``, ``folder``, or why the zip member is neither (from the Unix mode Info-ZIP stores, if any)."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if kind == stat.S_IFDIR or info.is_dir():
        return "folder"
    return "file" if kind in (0, stat.S_IFREG) else "not a regular file or folder"


def tar_kind(info: tarfile.TarInfo) -> str:
    """``file``, ``folder``, or why the tar member is neither."""
    if info.issym():
        return "a symbolic link"
    if info.islnk():
        return "a hard link"
    return "folder" if info.isdir() else "file" if info.isreg() else "not a regular file or folder"


class NameClashes:
    """Refuses a name given twice and a name that is both a file and a folder: extraction would have to choose."""

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.files: set[str] = set()
        self.folders: set[str] = set()

    def add(self, member: Member) -> None:
        parts = member.name.split("/")
        parents = ["/".join(parts[:end]) for end in range(1, len(parts))]
        if member.kind == "file" and member.name in self.files:
            raise ArchiveError(f"{self.archive}: archive member {shown(member.name)} appears twice (corrupt or hostile archive)")
        clash = next((parent for parent in parents if parent in self.files), None)
        if clash is None and member.name in (self.folders if member.kind == "file" else self.files):
            clash = member.name
        if clash is not None:
            raise ArchiveError(f"{self.archive}: archive member {shown(clash)} is both a file and a folder")
        (self.files if member.kind == "file" else self.folders).add(member.name)
        self.folders.update(parents)


def members(archive: str, archive_format: str) -> Iterator[tuple[Member, float | None, Opener]]:
    """Every member of the archive with its modification time and a way to open its data, checked, in archive order.

    A zip's names are all checked before any data is read; a tar.gz is read as one stream, then what
    follows its end must be the zero padding tar writes, and the gzip checksum is verified.
    """
    clashes = NameClashes(archive)
    if archive_format == "zip":
        with zipfile.ZipFile(archive) as opened:
            entries = [(checked_member(archive, info.filename, zip_kind(info), info.file_size), info)
                       for info in opened.infolist()]
            for member, _ in entries:
                if member.name:
                    clashes.add(member)
            for member, info in entries:
                if member.name:
                    yield member, zip_mtime(info), functools.partial(opened.open, info)
        return
    with tarfile.open(archive, "r:gz") as opened:
        for info in opened:
            member = checked_member(archive, info.name, tar_kind(info), info.size)
            if member.name:
                clashes.add(member)
                yield member, float(info.mtime), functools.partial(opened.extractfile, info)
        while block := opened.fileobj.read(CHUNK):
            if block.count(0) != len(block):
                raise ArchiveError(f"{archive}: data after the end of the tar archive (a damaged member header?)")


def zip_mtime(info: zipfile.ZipInfo) -> float | None:
    """The member's modification time (a zip stores local time), or None when it is not a valid date."""
    try:
        return time.mktime(info.date_time + (0, 0, -1))
    except (OverflowError, ValueError):
        return None


@contextmanager
def reading(archive: str, archive_format: str) -> Iterator[None]:
    """Turns the errors of a truncated or corrupt archive into one line that says so."""
    try:
        yield
    except UNREADABLE as error:
        raise ArchiveError(f"{archive} failed the {FORMATS[archive_format]} integrity test (truncated or corrupt): "
                           f"{shown(str(error)) or type(error).__name__}") from None


def list_members(archive: str, archive_format: str) -> list[Member]:
    """Every member, after reading all their data (zip CRCs, the whole gzip stream): the archive's integrity test."""
    listed = []
    with reading(archive, archive_format):
        for member, _, open_data in members(archive, archive_format):
            if member.kind == "file":
                with open_data() as data:
                    while data.read(CHUNK):
                        pass
            listed.append(member)
    return listed


def is_selected(name: str, selected: Sequence[str]) -> bool:
    """True when ``selected`` is empty, names ``name``, or names a folder ``name`` is in."""
    return not selected or any(name == chosen or name.startswith(chosen + "/") for chosen in selected)


def free_bytes(folder: str) -> int:
    return shutil.disk_usage(folder).free


def extract(archive: str, archive_format: str, dest: str, listed: Sequence[Member], selected: Sequence[str] = ()) -> None:
    """Extracts the ``selected`` members (all when empty) into the folder ``dest``, checked again as they are read.

    ``listed`` is what ``list_members`` returned for this archive: the sizes to compare with the free
    space before anything is written.
    """
    selected = [normalised(name) for name in selected]
    needed = sum(member.size for member in listed if is_selected(member.name, selected))
    free = free_bytes(dest)
    if needed > free:
        raise ArchiveError(f"not enough free space in {dest}: extracting {archive} needs {needed} bytes "
                           f"({needed / 2**30:.1f} GiB), only {free} bytes ({free / 2**30:.1f} GiB) are free")
    with reading(archive, archive_format):
        for member, mtime, open_data in members(archive, archive_format):
            if is_selected(member.name, selected):
                write_member(archive, dest, member, mtime, open_data)


def write_member(archive: str, dest: str, member: Member, mtime: float | None, open_data: Opener) -> None:
    """Writes one member under ``dest`` (never over an existing file); a full disk is named as such."""
    target = os.path.join(dest, member.name)
    try:
        if member.kind == "folder":
            os.makedirs(target, exist_ok=True)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open_data() as data, open(target, "xb") as out:
            shutil.copyfileobj(data, out, CHUNK)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
    except gzip.BadGzipFile:
        raise  # a corrupt archive, reported by reading()
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ArchiveError(f"disk full while extracting {shown(member.name)} from {archive} into {dest} "
                               f"({free_bytes(dest)} bytes free)") from None
        raise ArchiveError(f"cannot write {shown(target)}: {error.strerror or error}") from None


def read_listing(path: str) -> list[Member]:
    """The members a ``list`` command wrote to ``path`` ("SIZE<tab>NAME" lines, folders ending in ``/``)."""
    listed = []
    with open(path, encoding="utf-8", errors="surrogateescape") as lines:
        for line in lines:
            size, name = line.rstrip("\n").split("\t", 1)
            listed.append(Member(name.rstrip("/"), "folder" if name.endswith("/") else "file", int(size)))
    return listed


def main(argv: Sequence[str] | None = None) -> int:
    """``list``: print every member as "SIZE<tab>NAME" (folders end in ``/``); ``extract``: write them. 1 on a refusal."""
    parser = argparse.ArgumentParser(prog="archives.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="check every member and the archive's integrity; print the members")
    extracting = commands.add_parser("extract", help="extract checked members into DEST (an existing folder)")
    for command in (listing, extracting):
        command.add_argument("format", choices=sorted(FORMATS))
        command.add_argument("archive")
    extracting.add_argument("dest")
    extracting.add_argument("listing", help="what the list command printed for this archive")
    extracting.add_argument("names", nargs="*", help="members or folders to extract (default: all)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(errors="surrogateescape")  # member names as the archive spells them
    sys.stderr.reconfigure(errors="backslashreplace")
    try:
        if args.command == "list":
            for member in list_members(args.archive, args.format):
                print(f"{member.size}\t{member.name}{'/' if member.kind == 'folder' else ''}")
        else:
            extract(args.archive, args.format, args.dest, read_listing(args.listing), args.names)
    except ArchiveError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
