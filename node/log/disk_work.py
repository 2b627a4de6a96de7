"""The slow half of a log operation: file work that may run on another thread once the log's state changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from rill.node.log.files import fsync_directory, raises_storage_error


class DiskWork(NamedTuple):
    """What a Log leaves to do after it changed its state on the loop thread: fsync ``descriptors``
    (duplicates of its files' descriptors, closed here), store ``checkpoints`` (thread-safe writes of
    files the loader can do without), then unlink ``deleted`` (files it renamed for deletion) and fsync
    ``directory`` so that the deletions last.

    Touches no Log state, so it may run on any thread; the broker runs it on
    the disk executor while holding the log's lock (see LogExecutor), which
    keeps it ordered with the other maintenance of the same log.
    """

    directory: Path
    descriptors: list[int]
    deleted: list[Path]
    checkpoints: tuple[Callable[[], None], ...] = ()

    @classmethod
    def nothing(cls, directory: Path) -> DiskWork:
        return cls(directory, [], [])

    @raises_storage_error
    def run(self) -> None:
        try:
            for descriptor in self.descriptors:
                os.fsync(descriptor)
        finally:
            for descriptor in self.descriptors:
                os.close(descriptor)
        for write in self.checkpoints:
            write()
        for path in self.deleted:
            path.unlink(missing_ok=True)
        if self.deleted:
            fsync_directory(self.directory)
