"""Broker-side schema enforcement: a topic with ``schema.validation=true`` takes only records that carry the
id of a registered (not deleted) version of its ``schema.subject`` in their ``schema.id`` header.

The leader checks a producer's batches before it appends them; a batch that
fails refuses the whole produce to that partition (nothing appended) with
SchemaValidationError, naming the topic, the first bad record's index among
the partition's records in the request, and why. The broker checks ids, not
values: it reads the header columns of each batch (client/batch.py
``header_values``, after inflating an LZ4 payload) and never decodes a
value. Topics without the setting cost two dictionary lookups.
"""

from __future__ import annotations

from rill.client.batch import HEADER_SIZE, check_batch, header_values
from rill.client.errors import SchemaValidationError
from rill.client.schema_registry import SCHEMA_ID_HEADER
from rill.node.metadata.state import MetadataState
from rill.node.schema.registry_state import Registry, RegistryState, SubjectState

VALIDATION_SETTING = "schema.validation"
SUBJECT_SETTING = "schema.subject"
MAX_ID_DIGITS = 19  # a schema id is an int64 in ASCII decimal


class SchemaEnforcement:
    """``check(topic, records)`` before a leader appends a producer's records. Runs on the event loop."""

    def __init__(self, metadata: MetadataState, registry: RegistryState):
        self._metadata = metadata
        self._registry = registry
        # subject -> (the SubjectState they were computed from, the header values of its live ids)
        self._allowed: dict[str, tuple[SubjectState | None, frozenset[bytes]]] = {}

    def check(self, topic: str, records: bytes) -> None:
        """SchemaValidationError unless every record names a live version of the topic's subject (when the
        topic enforces schemas); CorruptRecordError for a batch whose columns do not add up."""
        state = self._metadata.topics.get(topic)
        if state is None or state.config.get(VALIDATION_SETTING) != "true":
            return
        subject = state.config.get(SUBJECT_SETTING, "")
        allowed = self._allowed_ids(subject)
        view = memoryview(records)
        position = index = 0
        while position < len(records):
            header = check_batch(records, position, check_crc=False)  # the append checks the CRC
            values = header_values(header, view[position + HEADER_SIZE:position + header.size], SCHEMA_ID_HEADER)
            if not allowed.issuperset(values):
                bad = next(offset for offset, value in enumerate(values) if value not in allowed)
                raise SchemaValidationError(
                    f"topic {topic} takes only records with a registered schema of subject {subject!r} "
                    f"(schema.validation=true): record {index + bad} {self._why(subject, values[bad])}; "
                    "nothing was appended")
            index += header.record_count
            position += header.size

    def _allowed_ids(self, subject: str) -> frozenset[bytes]:
        """The ``schema.id`` header values that name a live version of the subject, kept until it changes."""
        current = self._registry.registry.subjects.get(subject)
        cached = self._allowed.get(subject)
        if cached is not None and cached[0] is current:
            return cached[1]
        live = current.live_ids() if current is not None else frozenset()
        allowed = frozenset(b"%d" % schema_id for schema_id in live)
        self._allowed[subject] = (current, allowed)
        return allowed

    def _why(self, subject: str, value: bytes | None) -> str:
        """Why a header value does not do, for the error (only on that path)."""
        if value is None:
            return f"has no {SCHEMA_ID_HEADER} header"
        if not value.isdigit() or len(value) > MAX_ID_DIGITS:
            return f"has {SCHEMA_ID_HEADER} {value[:40]!r}, which is not a schema id (ASCII decimal)"
        schema_id = int(value)
        registry = self._registry.registry
        stored = registry.schemas.get(schema_id)
        if stored is None:
            return f"has unknown schema id {schema_id}"
        deleted = _deleted_version(registry, subject, schema_id)
        if deleted is not None:
            return f"has schema id {schema_id}, version {deleted} of subject {subject!r}, which is deleted"
        return f"has schema id {schema_id}, of subject {stored.subject!r}, not of {subject!r}"


def _deleted_version(registry: Registry, subject: str, schema_id: int) -> int | None:
    current = registry.subjects.get(subject)
    if current is None:
        return None
    return next((entry.version for entry in current.versions if entry.schema_id == schema_id and entry.deleted), None)
