"""The file operations the log layer shares: gathered appends, atomic small files, fsync of directories.

Every function here raises OSError; callers at the public boundary turn it
into StorageError with :func:`raises_storage_error`.
"""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from rill.client.errors import StorageError

IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
APPEND_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND
FILE_MODE = 0o644
TEMPORARY_SUFFIX = ".tmp"

Function = TypeVar("Function", bound=Callable)


def open_for_append(path: Path, truncate: bool = False) -> int:
    """A descriptor that appends at the end and reads anywhere with pread."""
    return os.open(path, APPEND_FLAGS | (os.O_TRUNC if truncate else 0), FILE_MODE)


def write_fully(descriptor: int, buffers: Sequence[bytes | memoryview]) -> int:
    """Append every buffer in order with as few writev calls as the kernel allows; return the bytes written."""
    views = [memoryview(buffer) for buffer in buffers if len(buffer)]
    total_bytes = 0
    first = 0
    while first < len(views):
        written = os.writev(descriptor, views[first : first + IOV_MAX])
        if written == 0:
            raise OSError(errno.EIO, "writev made no progress")
        total_bytes += written
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]
    return total_bytes


def fsync_directory(directory: Path) -> None:
    """Make file creations, renames and deletions in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` so that a crash leaves either the old or the new file, never a mix."""
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        write_fully(descriptor, [content])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def replace_file(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` through a temporary file and a rename, without an fsync.

    A process crash leaves the old file or the new one; a power loss may leave
    neither whole, so a caller checks what it reads back (a checksum) and can
    do without the file.
    """
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        write_fully(descriptor, [content])
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


def read_text_or_none(path: Path) -> str | None:
    """The file's text, or None when it does not exist or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def raises_storage_error(function: Function) -> Function:
    """Let an OSError from the disk leave a public method as StorageError, the broker's error for it."""

    @functools.wraps(function)
    def wrapper(*arguments, **keywords):
        try:
            return function(*arguments, **keywords)
        except OSError as error:
            raise StorageError(f"{function.__qualname__} failed: {error}") from error

    return wrapper  # type: ignore[return-value]
