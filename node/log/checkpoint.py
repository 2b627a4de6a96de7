"""The recovery-point checkpoint: one integer in a small text file, replaced atomically."""

from __future__ import annotations

from pathlib import Path

from rill.node.log.files import read_text_or_none, write_atomically


def read_offset_checkpoint(path: Path) -> int | None:
    """The offset stored in ``path``; None when the file is missing or does not hold one non-negative integer."""
    text = read_text_or_none(path)
    if text is None or not text.strip().isdigit():
        return None
    return int(text)


def write_offset_checkpoint(path: Path, offset: int) -> None:
    """Store ``offset`` durably: a crash leaves the old value or the new one."""
    assert offset >= 0, offset
    write_atomically(path, f"{offset}\n".encode())
