"""send_many's input: a call's columns checked and made bytes, sized, and grouped per partition before anything
is queued, so that a bad item fails the call with nothing sent.

A column (``values``, ``keys``) is a list or tuple of bytes (bytearray and
memoryview are copied) or None; a numpy array of dtype object holding
those, or of a fixed bytes dtype ('S', numpy's rules: trailing NUL bytes
are not part of an item); a pyarrow Binary, LargeBinary, String or
LargeString Array or ChunkedArray (strings as UTF-8, nulls as None); or a
column ``poll_batch`` returned. numpy and pyarrow are never imported here:
an argument is recognised by its type's module, and converted with its own
methods. Headers are None; one dict (or list of (str, bytes) pairs) for
every record; or a list or tuple with one such (or None) per record.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import add, itemgetter
from typing import Any, NamedTuple

from rill.client.arguments import BYTES_LIKE, record_headers
from rill.client.record_columns import BytesColumn

_BYTES_AND_NONE = frozenset({bytes, type(None)})
_ARROW_BINARY = frozenset({"binary", "large_binary", "binary_view"})
_ARROW_STRING = frozenset({"string", "large_string", "utf8", "large_utf8", "string_view"})

Serialize = Callable[[Any, Any, Any], tuple[bytes | None, bytes | None, dict | None, int]]  # Producer._serialize


class BulkRecords(NamedTuple):
    """A send_many call's records, checked: ``values`` and ``keys`` (None: no keys) lists of bytes or None,
    ``headers`` None, one dict for all, or a list of one dict (or None) per record, and ``sizes``: the bytes
    of each record's key, value and headers (what RecordAccumulator.append_many wants)."""

    values: list
    keys: list | None
    headers: dict | list | None
    sizes: list[int]
    largest: int  # bytes of the largest record (key, value and headers)
    values_only: bool = False  # no keys, no headers, no None value: ``sizes`` are the value lengths


def bulk_records(values: Any, keys: Any, headers: Any, serialize: Serialize | None) -> BulkRecords:
    """The call's columns checked and as bytes. TypeError for a wrong type (naming the item's index),
    ValueError for columns of different lengths or a bad header, SerializationError from ``serialize``
    (Producer._serialize, given when the producer has a key or value serializer: applied per record)."""
    values = column_items("values", values)
    count = len(values)
    if keys is not None:
        keys = column_items("keys", keys)
        if len(keys) != count:
            raise ValueError(f"keys has {len(keys)} items and values {count}: one key per value")
    headers, header_sizes = _headers(headers, count)
    if serialize is not None:
        keys, values, headers, header_sizes = _serialized(serialize, keys, values, headers)
    else:
        values, has_none = bytes_items("values", values)
        if keys is None and not header_sizes and not has_none:  # the fast path: two more passes, in C
            sizes = list(map(len, values))
            return BulkRecords(values, None, headers, sizes, max(sizes, default=0), headers is None)
        if keys is not None:
            keys = bytes_items("keys", keys)[0]
    sizes = _sizes(values)
    if keys is not None:
        sizes = list(map(add, sizes, _sizes(keys)))
    if isinstance(header_sizes, list):
        sizes = list(map(add, sizes, header_sizes))
    elif header_sizes:
        sizes = [size + header_sizes for size in sizes]
    return BulkRecords(values, keys, headers, sizes, max(sizes, default=0))


def column_items(name: str, column: Any) -> list:
    """A column argument as a list of its items (not yet checked); TypeError if it is no column."""
    if column.__class__ is list:
        return column
    if isinstance(column, (list, tuple)):
        return list(column)
    if isinstance(column, BytesColumn):
        return column.to_list()
    module = type(column).__module__.partition(".")[0]
    if module == "numpy":
        return _numpy_items(name, column)
    if module == "pyarrow":
        return _arrow_items(name, column)
    raise TypeError(f"{name} must be a list or tuple of bytes, a numpy array or a pyarrow array, "
                    f"got {type(column).__name__}")


def _numpy_items(name: str, column: Any) -> list:
    if getattr(column, "ndim", None) != 1 or column.dtype.kind not in "OS":
        raise TypeError(f"{name} as a numpy array must be 1-dimensional of dtype object or a bytes dtype ('S'), "
                        f"got {getattr(column, 'ndim', '?')} dimension(s) of dtype {getattr(column, 'dtype', '?')}")
    return column.tolist()


def _arrow_items(name: str, column: Any) -> list:
    kind = str(getattr(column, "type", ""))
    if not hasattr(column, "to_pylist") or kind not in _ARROW_BINARY | _ARROW_STRING:
        raise TypeError(f"{name} as a pyarrow array must be of a binary or string type, got {kind or type(column)}")
    if kind in _ARROW_STRING:
        import pyarrow  # installed: the argument is one of its arrays

        column = column.cast(pyarrow.large_binary())
    return column.to_pylist()


def bytes_items(name: str, items: list) -> tuple[list, bool]:
    """``items`` if each is bytes or None (one pass in C), else a copy with bytearray and memoryview items
    made bytes, and whether any is None; TypeError naming the first item of another type."""
    kinds = set(map(type, items))
    if kinds <= _BYTES_AND_NONE:
        return items, type(None) in kinds
    converted = []
    for index, item in enumerate(items):
        if item is not None and item.__class__ is not bytes:
            if not isinstance(item, BYTES_LIKE):
                raise TypeError(f"{name}[{index}] must be bytes, bytearray, memoryview or None, "
                                f"got {type(item).__name__}")
            item = bytes(item)
        converted.append(item)
    return converted, None in converted


def _headers(headers: Any, count: int) -> tuple[dict | list | None, int | list[int]]:
    """Headers for every record (a dict, its size) or per record (a list, a size each); checked as send
    checks them."""
    if headers is None:
        return None, 0
    if isinstance(headers, Mapping) or (isinstance(headers, (list, tuple)) and (not headers or _pair(headers[0]))):
        return record_headers(headers)
    if not isinstance(headers, (list, tuple)):
        raise TypeError(f"headers must be a dict, a list of (str, bytes) pairs, or a list of those per record, "
                        f"got {type(headers).__name__}")
    if len(headers) != count:
        raise ValueError(f"headers has {len(headers)} items and values {count}: one per value (or one dict for all)")
    checked = [(None, 0) if item is None else record_headers(item) for item in headers]
    per_record = [item for item, _ in checked]
    if per_record.count(None) == count:
        return None, 0
    return per_record, [size for _, size in checked]


def _pair(item: Any) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)


def _serialized(serialize: Serialize, keys: list | None, values: list, headers: dict | list | None
                ) -> tuple[list | None, list, list | None, list[int]]:
    """Keys and values through the producer's serializers, record by record (they may add headers)."""
    per_record = headers if isinstance(headers, list) else repeat(headers)
    out_keys, out_values, out_headers, sizes = [], [], [], []
    for key, value, record_headers_ in zip(keys if keys is not None else repeat(None), values, per_record):
        key, value, record_headers_, size = serialize(key, value, record_headers_)
        out_keys.append(key)
        out_values.append(value)
        out_headers.append(record_headers_)
        sizes.append(size)
    has_headers = out_headers.count(None) != len(out_headers)
    return (out_keys if keys is not None else None), out_values, (out_headers if has_headers else None), sizes


def _sizes(items: list) -> list[int]:
    try:
        return list(map(len, items))
    except TypeError:  # some items are None
        return [0 if item is None else len(item) for item in items]


def group_by_partition(partitions: Sequence[int]) -> list[tuple[int, list[int]]]:
    """(partition, ascending input indices) per partition the records go to, in bulk: one sort and a binary
    search per partition, no loop in Python per record."""
    order = sorted(range(len(partitions)), key=partitions.__getitem__)
    groups = []
    start = 0
    while start < len(order):
        partition = partitions[order[start]]
        stop = bisect_right(order, partition, start, key=partitions.__getitem__)
        groups.append((partition, order[start:stop]))
        start = stop
    return groups


def pick(items: list | None, indices: list[int]) -> list | None:
    """``items`` at ``indices`` (None stays None)."""
    if items is None:
        return None
    if len(indices) == 1:
        return [items[indices[0]]]
    return list(itemgetter(*indices)(items))
