"""Single key presses from a terminal, for full-screen commands (``rill top``), and the terminal put back after.

``key_reader(stdin)`` switches a TTY to cbreak mode (keys arrive one at a
time, unechoed; Ctrl-C still interrupts) and restores its exact settings on
exit, however the block ends. When stdin is not a TTY there are no keys:
``wait`` only waits, and Ctrl-C is the way out.
"""

from __future__ import annotations

import os
import select
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

READ_BYTES = 64  # a key press is a byte or an escape sequence of a few


class KeyReader:
    """Waits for key presses on a terminal in cbreak mode (``fd`` None: not a terminal, no keys)."""

    def __init__(self, fd: int | None):
        self._fd = fd

    def wait(self, timeout_s: float) -> str:
        """The keys pressed within ``timeout_s`` (returns at the first), "" if none."""
        if self._fd is None:
            time.sleep(timeout_s)
            return ""
        readable, _, _ = select.select([self._fd], [], [], timeout_s)
        if not readable:
            return ""
        keys = os.read(self._fd, READ_BYTES)
        if not keys:  # the terminal hung up: no more keys, and select must not report it readable forever
            self._fd = None
        return keys.decode(errors="replace")


@contextmanager
def key_reader(stream: TextIO) -> Iterator[KeyReader]:
    """A KeyReader on ``stream``; its terminal settings are restored when the block ends."""
    if not stream.isatty():
        yield KeyReader(None)
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield KeyReader(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
