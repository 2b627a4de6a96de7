"""RecordColumns: one partition's consumed records as columns, what ``Consumer.poll_batch`` returns.

``poll`` hands out a Record object per record; ``poll_batch`` hands out,
per partition, the columns a record batch already stores them as
(client/batch.py): offsets as a ``range`` (an ``array('q')`` across a
gap), timestamps as ``array('q')``, keys and values as
:class:`BytesColumn`. A BytesColumn keeps each batch's concatenated bytes
and its length column as they were decoded (no object per record): items
are cut out as bytes the first time the column is read (indexed,
iterated, ``to_list``), and ``to_arrow`` wraps the buffers without
copying them. With a key or value deserializer the column is a plain
list of what it returned.

Decoding follows ``batch.decode_payload``'s layout with its column
helpers; the fetcher (client/fetcher.py) decodes a fetch response into
one RecordColumns per batch, joins them, and splits off what
``max_records`` leaves for the next call.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate, chain, pairwise, repeat
from typing import Any, NamedTuple

from rill.client import batch as batch_format
from rill.client.batch import (
    BatchHeader,
    _column_bytes,
    _decode_headers,
    _read_array,
    _split,
    _uncompressed,
)
from rill.client.errors import CorruptRecordError, DeserializationError
from rill.client.int_columns import is_zero, shifted
from rill.client.serialization import CAUSE_CHARS_MAX, Deserialize
from rill.client.types import EMPTY_HEADERS, Record

_LITTLE_ENDIAN = sys.byteorder == "little"


class Chunk(NamedTuple):
    """Part of a BytesColumn: ``data[start:start + nbytes]`` holds the items back to back, ``lengths``
    (``array('i')``) their lengths, -1 for a null."""

    data: bytes
    start: int
    lengths: array
    nbytes: int


class BytesColumn(Sequence):
    """A column of bytes items (None for a null), kept as the chunks a fetch decoded them into: one buffer
    and one length column per record batch, not an object per item. Read-only; items are cut out once,
    on first read (index, iteration, ``to_list``), and kept."""

    __slots__ = ("_chunks", "_count", "_items")

    def __init__(self, chunks: list[Chunk]):
        self._chunks = chunks
        self._count = sum(len(chunk.lengths) for chunk in chunks)
        self._items: list[bytes | None] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self.to_list()[index]

    def __iter__(self) -> Iterator[bytes | None]:
        return iter(self.to_list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (BytesColumn, list, tuple)):
            return len(self) == len(other) and self.to_list() == list(other)
        return NotImplemented

    __hash__ = None  # a sequence that compares by content, as a list

    def __repr__(self) -> str:
        return f"BytesColumn({len(self)} items, {self.nbytes} bytes)"

    @property
    def nbytes(self) -> int:
        """Bytes of all items together."""
        return sum(chunk.nbytes for chunk in self._chunks)

    def to_list(self) -> list[bytes | None]:
        """The items as a list of bytes (and None); built once, then the same list is returned."""
        if self._items is None:
            items: list[bytes | None] = []
            for chunk in self._chunks:
                items += _cut(chunk)
            self._items = items
        return self._items

    def to_numpy(self) -> Any:
        """The items as a numpy array of dtype object (numpy is imported here, only when called)."""
        import numpy

        column = numpy.empty(len(self), dtype=object)
        column[:] = self.to_list()
        return column

    def to_arrow(self) -> Any:
        """The items as a pyarrow binary ChunkedArray, a chunk over each of this column's buffers without
        copying the bytes (with nulls the items are copied). pyarrow is imported only here."""
        import pyarrow

        if any(chunk.lengths.count(-1) for chunk in self._chunks):
            return pyarrow.chunked_array([pyarrow.array(self.to_list(), pyarrow.binary())])
        return pyarrow.chunked_array([_arrow_chunk(pyarrow, chunk) for chunk in self._chunks], pyarrow.binary())


def _arrow_chunk(pyarrow: Any, chunk: Chunk) -> Any:
    offsets = array("i", accumulate(chunk.lengths, initial=chunk.start))
    if not _LITTLE_ENDIAN:
        offsets.byteswap()
    return pyarrow.Array.from_buffers(pyarrow.binary(), len(chunk.lengths),
                                      [None, pyarrow.py_buffer(offsets), pyarrow.py_buffer(chunk.data)])


def _sum_bytes(lengths: array) -> int:
    """Bytes of the items of a checked length column (-1s count nothing)."""
    return sum(lengths) + lengths.count(-1)


def _cut(chunk: Chunk) -> list[bytes | None]:
    """A chunk's items as bytes (None where the length is -1), cut by batch.py's column splitter."""
    return _split(memoryview(chunk.data), chunk.start, chunk.lengths)[0]


def _split_column(column: BytesColumn, count: int) -> tuple[BytesColumn, BytesColumn]:
    """The first ``count`` items and the rest, sharing the buffers."""
    head: list[Chunk] = []
    chunks = column._chunks
    for index, chunk in enumerate(chunks):
        size = len(chunk.lengths)
        if count >= size:
            head.append(chunk)
            count -= size
            continue
        if count == 0:
            return BytesColumn(head), BytesColumn(chunks[index:])
        first = chunk.lengths[:count]
        first_bytes = _sum_bytes(first) if chunk.nbytes else 0
        head.append(Chunk(chunk.data, chunk.start, first, first_bytes))
        rest = Chunk(chunk.data, chunk.start + first_bytes, chunk.lengths[count:], chunk.nbytes - first_bytes)
        return BytesColumn(head), BytesColumn([rest, *chunks[index + 1:]])
    return BytesColumn(head), BytesColumn([])


class RecordColumns:
    """Records of one partition, consecutive in offset order, as columns of equal length.

    ``offsets`` is a ``range`` when the offsets follow each other without a gap (the usual case; a
    compacted topic may have gaps), else an ``array('q')``; ``timestamps`` an ``array('q')``; ``keys``
    and ``values`` BytesColumns (lists of what the deserializers returned, with deserializers);
    ``headers`` a list of read-only mappings, one per record, or None when no record has headers.
    Each column supports ``len``, indexing and iteration.
    """

    __slots__ = ("headers", "keys", "offsets", "partition", "timestamps", "topic", "values")

    def __init__(self, topic: str, partition: int, offsets: Sequence[int], timestamps: array, keys: Sequence,
                 values: Sequence, headers: list[Mapping[str, bytes]] | None = None):
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
        self.timestamps = timestamps
        self.keys = keys
        self.values = values
        self.headers = headers

    def __len__(self) -> int:
        return len(self.offsets)

    def __repr__(self) -> str:
        span = f"{self.offsets[0]}..{self.offsets[-1]}" if self.offsets else "none"
        return f"RecordColumns({self.topic!r}, {self.partition}, {len(self)} records, offsets {span})"

    def to_records(self) -> list[Record]:
        """One Record per record, as ``poll`` returns them (what the columns exist to avoid; for interop)."""
        headers = self.headers if self.headers is not None else repeat(EMPTY_HEADERS)
        return list(map(Record, repeat(self.topic), repeat(self.partition), self.offsets, self.timestamps,
                        self.keys, self.values, headers))

    def to_numpy(self) -> dict[str, Any]:
        """{"offset", "timestamp": int64 arrays (timestamps, and offsets across a gap, share this object's
        memory); "key", "value": object arrays}. numpy is imported only here."""
        import numpy

        return {
            "offset": (numpy.arange(self.offsets.start, self.offsets.stop, dtype=numpy.int64)
                       if isinstance(self.offsets, range) else numpy.frombuffer(self.offsets, dtype=numpy.int64)),
            "timestamp": numpy.frombuffer(self.timestamps, dtype=numpy.int64),
            "key": _numpy_items(numpy, self.keys),
            "value": _numpy_items(numpy, self.values),
        }

    def to_arrow(self) -> Any:
        """A pyarrow Table with columns offset, timestamp (int64), key and value (binary, over this object's
        buffers without a copy), for raw bytes columns; headers are left out. pyarrow is imported only here."""
        import pyarrow

        offsets = self.offsets if isinstance(self.offsets, array) else array("q", self.offsets)
        return pyarrow.table({
            "offset": _arrow_int64(pyarrow, offsets),
            "timestamp": _arrow_int64(pyarrow, self.timestamps),
            "key": _arrow_items(pyarrow, self.keys),
            "value": _arrow_items(pyarrow, self.values),
        })


def _numpy_items(numpy: Any, items: Sequence) -> Any:
    if isinstance(items, BytesColumn):
        return items.to_numpy()
    column = numpy.empty(len(items), dtype=object)
    column[:] = list(items)
    return column


def _arrow_int64(pyarrow: Any, column: array) -> Any:
    if not _LITTLE_ENDIAN:
        column = array("q", column)
        column.byteswap()
    return pyarrow.Array.from_buffers(pyarrow.int64(), len(column), [None, pyarrow.py_buffer(column)])


def _arrow_items(pyarrow: Any, items: Sequence) -> Any:
    return items.to_arrow() if isinstance(items, BytesColumn) else pyarrow.array(list(items))


# ---- what the fetcher calls ------------------------------------------------------------------


def decode_columns(buffer: bytes | memoryview, position: int, header: BatchHeader, topic: str, partition: int,
                   skip: int = 0) -> RecordColumns:
    """The records of the (checked) batch at ``position``, from its ``skip``-th on, as columns.

    Bulk calls only, as ``batch.decode_payload``, except that keys and values stay one buffer each.
    CorruptRecordError if the columns do not fit the payload.
    """
    body = _uncompressed(header, memoryview(buffer)[position + batch_format.HEADER_SIZE: position + header.size])
    count = header.record_count
    if len(body) < 1:
        raise CorruptRecordError("batch payload is empty")
    flags = body[0]
    start = 1
    key_lengths = None
    if flags & batch_format.FLAG_KEYS:
        key_lengths, start = _read_array("i", body, start, count)
    value_lengths, start = _read_array("i", body, start, count)
    deltas, start = _read_array("q", body, start, count)
    key_bytes = 0 if key_lengths is None else _column_bytes(key_lengths)
    value_bytes = _column_bytes(value_lengths)
    data_end = end = start + key_bytes + value_bytes
    if end > len(body):
        raise CorruptRecordError("batch column lengths exceed the payload")
    headers = None
    if flags & batch_format.FLAG_HEADERS:
        headers, end = _decode_headers(body, end, count)
    if end != len(body):
        raise CorruptRecordError("batch payload has bytes after its last column")
    data = bytes(body[start:data_end])  # keys, then values
    keys = Chunk(data, 0, key_lengths if key_lengths is not None else array("i", [-1]) * count, key_bytes)
    columns = RecordColumns(topic, partition, range(header.base_offset, header.next_offset),
                            _timestamps(header.first_timestamp, deltas), BytesColumn([keys]),
                            BytesColumn([Chunk(data, key_bytes, value_lengths, value_bytes)]), headers)
    return split_columns(columns, skip)[1] if skip > 0 else columns


def _timestamps(first: int, deltas: array) -> array:
    """Absolute timestamps; a batch whose records share one timestamp (a send_many's) costs no loop."""
    if is_zero(deltas):
        return array("q", [first]) * len(deltas)
    return shifted(deltas, first)


def split_columns(columns: RecordColumns, count: int) -> tuple[RecordColumns, RecordColumns]:
    """The first ``count`` records and the rest, sharing the key and value buffers."""
    def cut(items: Sequence) -> tuple[Sequence, Sequence]:
        if isinstance(items, BytesColumn):
            return _split_column(items, count)
        return items[:count], items[count:]

    keys, values = cut(columns.keys), cut(columns.values)
    headers = (None, None) if columns.headers is None else (columns.headers[:count], columns.headers[count:])
    topic, partition = columns.topic, columns.partition
    return (RecordColumns(topic, partition, columns.offsets[:count], columns.timestamps[:count], keys[0],
                          values[0], headers[0]),
            RecordColumns(topic, partition, columns.offsets[count:], columns.timestamps[count:], keys[1],
                          values[1], headers[1]))


def concat_columns(parts: list[RecordColumns]) -> RecordColumns:
    """One RecordColumns of consecutive parts of one partition (the one part itself if there is one)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    timestamps = array("q")
    for part in parts:
        timestamps.extend(part.timestamps)
    headers = None
    if any(part.headers is not None for part in parts):
        headers = list(chain.from_iterable(
            part.headers if part.headers is not None else repeat(EMPTY_HEADERS, len(part)) for part in parts))
    return RecordColumns(first.topic, first.partition, _concat_offsets([part.offsets for part in parts]), timestamps,
                         _concat_items([p.keys for p in parts]),
                         _concat_items([p.values for p in parts]), headers)


def _concat_items(columns: list[Sequence]) -> Sequence:
    if not all(isinstance(column, BytesColumn) for column in columns):
        return list(chain.from_iterable(columns))
    return BytesColumn([chunk for column in columns for chunk in column._chunks])


def _concat_offsets(parts: list[Sequence[int]]) -> Sequence[int]:
    """One range if the parts follow each other without a gap (the usual case), else an array('q')."""
    if all(isinstance(part, range) for part in parts) and all(
            before.stop == after.start for before, after in pairwise(parts)):
        return range(parts[0].start, parts[-1].stop)
    offsets = array("q")
    for part in parts:
        offsets.extend(part)
    return offsets


def columns_of_records(topic: str, partition: int, records: Sequence[Record]) -> RecordColumns:
    """Records decoded by ``poll`` and not yet returned, as columns for ``poll_batch`` (interop only)."""
    return RecordColumns(topic, partition, array("q", [record.offset for record in records]),
                         array("q", [record.timestamp for record in records]),
                         [record.key for record in records], [record.value for record in records],
                         [record.headers for record in records])


def deserialize_columns(columns: RecordColumns, key: Deserialize | None, value: Deserialize | None
                        ) -> tuple[RecordColumns, DeserializationError | None]:
    """The columns with keys and values deserialized (lists), in offset order, as deserialize_records does
    it for Records: at the first record that fails, the records before it and a DeserializationError at
    its offset (its ``__cause__`` what the deserializer raised); else all of them and None."""
    topic = columns.topic
    keys, values = list(columns.keys), list(columns.values)
    headers = columns.headers if columns.headers is not None else repeat(EMPTY_HEADERS)
    for index, record_headers in zip(range(len(keys)), headers):
        field = "key"
        try:
            if key is not None and keys[index] is not None:
                keys[index] = key(topic, keys[index], record_headers)
            field = "value"
            if value is not None and values[index] is not None:
                values[index] = value(topic, values[index], record_headers)
        except Exception as error:
            offset = columns.offsets[index]
            failure = DeserializationError(
                f"{topic}-{columns.partition}: cannot deserialize the {field} of the record at offset {offset} "
                f"({type(error).__name__}: {str(error):.{CAUSE_CHARS_MAX}}); seek past it to read on",
                topic, columns.partition, offset)
            failure.__cause__ = error
            kept = RecordColumns(topic, columns.partition, columns.offsets, columns.timestamps, keys, values,
                                 columns.headers)
            return split_columns(kept, index)[0], failure
    return RecordColumns(topic, columns.partition, columns.offsets, columns.timestamps, keys, values,
                         columns.headers), None
