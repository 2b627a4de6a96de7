"""Whole-column arithmetic on ``array('q')`` without a Python step per item: the bulk API's offsets and
timestamps (client/record_columns.py, client/batch_future.py) are "a number plus each of these".

``shifted`` adds one number to every item by adding two big integers whose
64-bit lanes are the items and the number repeated: CPython adds them in
C. No lane carries into the next while the number and the items are 0 or
more (checked with a scan of the items' sign bytes, in C), so each lane is
its item plus the number; a negative item takes a step per item instead.
"""

from __future__ import annotations

import sys
from array import array

INT64_MAX = (1 << 63) - 1
_LITTLE_ENDIAN = sys.byteorder == "little"
_NON_NEGATIVE_SIGN_BYTES = bytes(range(128))
_COUNTING_BLOCK = 4096
_counting = array("q", range(_COUNTING_BLOCK))  # 0, 1, 2, ...: sliced by ``counting``


def is_zero(column: array) -> bool:
    """Whether every item is 0 (a byte comparison)."""
    return column.tobytes() == bytes(len(column) * column.itemsize)


def shifted(column: array, amount: int) -> array:
    """A new ``array('q')`` of ``item + amount`` for each item of ``column`` (an ``array('q')``); a sum
    past 2**63-1 (never one of a valid batch's timestamps) wraps around."""
    if not column or not 0 <= amount <= INT64_MAX or has_negative(column):
        return array("q", map(amount.__add__, column))
    return _added(column, amount)


def counting(start: int, count: int) -> array:
    """``array('q', range(start, start + count))``, built from a kept 0, 1, 2, ... column, a block of it at a
    time: a million offsets (a send_many's, one run of batches) cost a few milliseconds, and the kept
    column stays small."""
    if not count or not 0 <= start <= INT64_MAX - count:
        return array("q", range(start, start + count))
    if count <= _COUNTING_BLOCK:
        return _added(_counting[:count], start)
    column = array("q")
    for offset in range(0, count, _COUNTING_BLOCK):
        column += _added(_counting[:min(_COUNTING_BLOCK, count - offset)], start + offset)
    return column


def has_negative(column: array) -> bool:
    """Whether an item of a signed integer array (``'i'``, ``'q'``, ...) is below 0: a scan of each item's
    sign byte in C, without an int object per item as ``min`` makes (a batch's length columns)."""
    size = column.itemsize
    sign_bytes = memoryview(column).cast("B")[size - 1 if _LITTLE_ENDIAN else 0::size]
    return bool(bytes(sign_bytes).translate(None, _NON_NEGATIVE_SIGN_BYTES))


def _added(column: array, amount: int) -> array:
    """``shifted`` once it is known that no lane carries."""
    count = len(column)
    lanes = int.from_bytes(column, sys.byteorder) + int.from_bytes(amount.to_bytes(8, sys.byteorder) * count,
                                                                   sys.byteorder)
    result = array("q")
    result.frombytes(lanes.to_bytes(8 * count, sys.byteorder))
    return result
