"""Every error Rill raises, and the wire error code of each.

Brokers and clients share this module: a broker raises one of these, the
network server turns it into its ``code`` in the response, and the client
turns the code back into the same class with :func:`error_for_code`.
Codes follow Kafka's numbering where Kafka has the same failure, so logs
read the same to people who know Kafka.
"""

from __future__ import annotations


class RillError(Exception):
    """Base class of every Rill error. ``retriable`` says whether a retry may succeed."""

    code: int = -1
    retriable: bool = False


class UnknownServerError(RillError):
    """The broker failed in a way it did not expect; its log has the details."""

    code = -1


class OffsetOutOfRangeError(RillError):
    """The requested offset is below the log start or above the log end."""

    code = 1


class RecordAtOffsetError(RillError):
    """Base of the errors a consumer's poll raises at one record: ``topic``, ``partition`` and ``offset``
    name it (None when a broker raised it)."""

    def __init__(self, message: str = "", topic: str | None = None, partition: int | None = None,
                 offset: int | None = None):
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class CorruptRecordError(RecordAtOffsetError):
    """A record batch failed its CRC, size or format check; nothing was stored.

    From a consumer's poll it names where: ``topic``, ``partition`` and ``offset``, the offset of the
    next record the consumer would have returned (the bad batch holds it); None from a broker.
    """

    code = 2


class UnknownTopicError(RillError):
    """The topic or partition does not exist on this cluster."""

    code = 3
    retriable = True


class NotLeaderError(RillError):
    """This broker does not lead the partition; refresh metadata and retry."""

    code = 6
    retriable = True


class RequestTimeoutError(RillError):
    """The request did not complete within its timeout."""

    code = 7
    retriable = True


class BrokerNotAvailableError(RillError):
    """No broker answered at the address tried."""

    code = 8
    retriable = True


class RecordTooLargeError(RillError):
    """A record or batch is larger than ``max.message.bytes`` (or the producer's limit)."""

    code = 10


class StaleControllerEpochError(RillError):
    """A request carried a controller epoch older than the current one."""

    code = 11


class InvalidTopicError(RillError):
    """The topic name is not valid (empty, too long, or has characters outside [a-zA-Z0-9._-])."""

    code = 17


class RecordListTooLargeError(RillError):
    """A produce request is larger than the broker accepts."""

    code = 18


class NotEnoughReplicasError(RillError):
    """The in-sync replica set is smaller than ``min.insync.replicas``."""

    code = 19
    retriable = True


class UnsupportedVersionError(RillError):
    """The broker does not support this request type or version."""

    code = 35


class TopicAlreadyExistsError(RillError):
    """A topic with this name exists already."""

    code = 36


class InvalidPartitionsError(RillError):
    """The partition count is not valid."""

    code = 37


class InvalidReplicationFactorError(RillError):
    """The replication factor is not valid, or above the number of live brokers."""

    code = 38


class InvalidConfigError(RillError):
    """A topic, broker or client setting is unknown or has a bad value."""

    code = 40


class NotControllerError(RillError):
    """This broker is not the controller; the request must go to the one that is."""

    code = 41
    retriable = True


class InvalidRequestError(RillError):
    """The request frame could not be decoded or breaks the protocol."""

    code = 42


class ClusterAuthorizationError(RillError):
    """A broker-internal request (replication, registration, heartbeat, ISR change, controlled
    shutdown) came from a client: only brokers holding the cluster secret may send them, on the
    inter-broker port."""

    code = 31


class FencedLeaderEpochError(RillError):
    """The request carried a leader epoch older than the partition's current one."""

    code = 74
    retriable = True


class StaleBrokerEpochError(RillError):
    """A broker spoke with an incarnation the controller no longer knows; it must register again."""

    code = 77
    retriable = True


class OffsetNotAvailableError(RillError):
    """A new leader cannot answer for the log end yet (its high watermark is catching up); retry."""

    code = 78
    retriable = True


class StorageError(RillError):
    """The broker could not read or write its log on disk."""

    code = 56
    retriable = True


class CoordinatorLoadInProgressError(RillError):
    """The group coordinator is still loading the group's offsets; retry."""

    code = 14
    retriable = True


class CoordinatorNotAvailableError(RillError):
    """No coordinator for the group right now (its offsets partition has no leader, or is being created)."""

    code = 15
    retriable = True


class NotCoordinatorError(RillError):
    """This broker does not coordinate the group; find the coordinator again and retry."""

    code = 16
    retriable = True


class InvalidGroupIdError(RillError):
    """The group id is empty or too long."""

    code = 24


class UnknownMemberIdError(RillError):
    """The coordinator does not know this member (expired, or the coordinator moved); it must join again."""

    code = 25


class GroupNotEmptyError(RillError):
    """The group still has members; stop them (or wait for their sessions to expire) first."""

    code = 68


class GroupIdNotFoundError(RillError):
    """No such group: it has no members and no committed offsets."""

    code = 69


class FencedMemberEpochError(RillError):
    """The member's epoch is not the one the coordinator gave it; it must join again."""

    code = 110


class StaleMemberEpochError(RillError):
    """A commit carried an older member epoch than the member's current one; nothing was committed."""

    code = 113


class PartitionNotOwnedError(RillError):
    """A member committed an offset for a partition the group does not assign to it; nothing was committed."""

    code = 1001


class OffsetMetadataTooLargeError(RillError):
    """A committed offset's metadata is longer than the broker's ``offset_metadata_max_bytes``; it was not
    committed."""

    code = 12


class GroupMaxSizeReachedError(RillError):
    """The group has as many members as the broker's ``group_max_size`` allows; this one cannot join."""

    code = 81


class ThrottlingQuotaExceededError(RillError):
    """The broker holds as many waiting requests (long-poll fetches, acks=all produces, ...) as it allows,
    from this connection or in all, or as many unconfirmed acks=all writes to the partition; retry later."""

    code = 89
    retriable = True


class InvalidRegularExpressionError(InvalidConfigError):
    """The subscription pattern is not a regular expression the coordinator accepts: bad syntax for RE2
    (no backreferences or lookarounds), longer than ``max_subscription_pattern_length``, or too large once
    compiled."""

    code = 121


class TooManyGroupsError(RillError):
    """The coordinator holds as many groups as the broker's ``max_groups`` allows; a new group cannot start
    until others are deleted or become empty."""

    code = 1002


class NoOffsetForPartitionError(RillError):
    """No committed offset for a partition and ``auto_offset_reset`` is "error"."""

    code = -4


class ProducerClosedError(RillError):
    """The producer was closed before the record could be sent."""

    code = -2


class ConsumerClosedError(RillError):
    """The consumer was closed."""

    code = -3


class ClientInternalError(RillError):
    """The client library hit an unexpected error (a bug) while handling this record; the log has the
    traceback. The client goes on; the record may or may not have been stored."""

    code = -5


class SerializationError(RillError):
    """A key or value could not be serialized (or failed its schema) at ``send``; nothing was sent."""

    code = -6


class DeserializationError(RecordAtOffsetError):
    """A record's key or value could not be deserialized; ``topic``, ``partition`` and ``offset`` name it.

    A consumer's poll returns the records before it first, then raises this every poll until the
    application seeks past it: a record is never skipped silently.
    """

    code = -7


class OutOfOrderSequenceError(RillError):
    """An idempotent producer's batch does not continue its sequence on this partition (a batch before it
    was lost); nothing was stored."""

    code = 45


class DuplicateSequenceError(RillError):
    """A batch repeats sequences the partition already stored, but not as one of the producer's latest
    batches; nothing was stored. (A retried batch the broker remembers is answered with success instead.)"""

    code = 46


class InvalidProducerEpochError(RillError):
    """An idempotent producer's epoch is older than the one the partition has seen: another producer
    instance took over its id; nothing was stored."""

    code = 47


class UnknownProducerIdError(RillError):
    """The partition holds no state for this producer id (never seen, expired, or evicted) and the batch's
    sequence is not 0; nothing was stored. The producer bumps its epoch and restarts the sequence at 0."""

    code = 59


class SchemaNotFoundError(RillError):
    """The schema registry has no such subject, version or schema id (or it was deleted)."""

    code = 1010


class IncompatibleSchemaError(RillError):
    """A schema breaks the subject's compatibility mode against its latest version; nothing was registered.
    ``messages`` says, per problem, the JSON path and what breaks."""

    code = 1011

    def __init__(self, message: str = "", messages: list[str] | None = None):
        super().__init__(message)
        self.messages = list(messages or [])


class InvalidSchemaError(RillError):
    """A schema is not a JSON Schema the registry accepts: not a JSON object, not compilable, too deeply
    nested, or with references outside itself."""

    code = 1012


class SchemaValidationError(RillError):
    """A broker refused a batch for a topic with ``schema.validation=true``: a record lacks the
    ``schema.id`` header or names an id that is not a registered version of the topic's
    ``schema.subject``; nothing was appended."""

    code = 1013


class SchemaTooLargeError(RillError):
    """A schema is larger than the registry accepts (64 KiB of canonical JSON)."""

    code = 1014


class TooManySchemaVersionsError(RillError):
    """The subject holds as many versions (deleted ones included) as the registry allows; delete some
    permanently first."""

    code = 1015


class TooManySubjectsError(RillError):
    """The registry holds as many subjects as it allows; delete some permanently first."""

    code = 1016


class SchemaRegistryFullError(RillError):
    """The registry's schemas take as many bytes as it allows; delete some permanently first."""

    code = 1017


class InvalidSubjectError(RillError):
    """A subject name is empty, longer than 255 characters, or has control characters."""

    code = 1018


_BY_CODE: dict[int, type[RillError]] = {}
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, RillError) and _cls.code >= -1:
        _BY_CODE.setdefault(_cls.code, _cls)
_BY_CODE[-1] = UnknownServerError


def error_for_code(code: int, message: str = "") -> RillError:
    """Build the typed exception that a wire error code stands for."""
    cls = _BY_CODE.get(code, UnknownServerError)
    if cls is UnknownServerError and code != -1:
        message = f"error code {code}: {message}"
    return cls(message or cls.__doc__.splitlines()[0])


def code_of(error: BaseException) -> int:
    """The wire code for an exception raised while serving a request."""
    return error.code if isinstance(error, RillError) else UnknownServerError.code

