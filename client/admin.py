"""Admin: topics (create, list, describe, delete), consumer groups (list, describe with lag, reset, delete)
and the schema registry (register, get, list, check, delete JSON Schemas).

Blocking calls, safe to share between threads (one lock around the
network client). Metadata changes go to the controller; a NotController or
connection error refreshes metadata and retries until the request timeout.
Group calls go to the group's coordinator through a CoordinatorLink, which
retries across coordinator moves; each broker lists the groups it
coordinates, so ``list_groups`` asks every live broker. Lag comes from the
group's coordinator (client/group_lag.py): the partition's high watermark
minus the group's committed offset, and the age of the first uncommitted
record. Schema changes go to the controller and return
once every live broker serves them; schema reads go to any broker.

Arguments of the wrong type raise TypeError at the call, before any request;
values are the brokers' to judge (InvalidTopicError, InvalidPartitionsError,
InvalidConfigError, ...), so the client and the brokers cannot disagree.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rill.client import protocol
from rill.client.arguments import MAX_INT32, check_type, config_int, config_str
from rill.client.coordinator import CoordinatorLink
from rill.client.errors import (
    BrokerNotAvailableError,
    GroupNotEmptyError,
    IncompatibleSchemaError,
    InvalidConfigError,
    InvalidGroupIdError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    NotControllerError,
    RequestTimeoutError,
    RillError,
    SchemaNotFoundError,
    UnknownTopicError,
    error_for_code,
)
from rill.client.group_lag import partition_lags
from rill.client.metadata import ClusterMetadata
from rill.client.network import (
    FAST_CONNECT_TIMEOUT_MS,
    NetworkClient,
    attempt_ms,
    parse_bootstrap,
)
from rill.client.offset_lookup import list_offsets
from rill.client.schema_registry import CompatibilityReport, SchemaVersion, canonical_text
from rill.client.types import (
    BrokerInfo,
    ClusterDescription,
    GroupDescription,
    GroupMember,
    GroupSummary,
    PartitionInfo,
    TopicDescription,
    TopicPartition,
)
from rill.client.zmq_flavor import new_context

RETRY_BACKOFF_S = 0.1
METADATA_POLL_S = 0.01
METADATA_ATTEMPT_MS = 1_000  # a stalled broker delays a topic create or delete this long at most
CONTROLLER_RETRIABLE = (NotControllerError, BrokerNotAvailableError, RequestTimeoutError)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INT64 = 2**63 - 1
NO_MEMBER_ID, NO_MEMBER_EPOCH = "", -1  # an offset commit from outside the group (only while it has no members)
ResetTarget = tuple[str, int]  # ("earliest" | "latest" | "offset" | "timestamp", the offset or time in ms)


class Admin:
    """Topic and consumer-group administration against a cluster reached through ``bootstrap`` ("host:port[,...]")."""

    def __init__(self, bootstrap: str, request_timeout_ms: int = 30_000, client_id: str = "rill-admin"):
        addresses = parse_bootstrap(bootstrap)
        self._timeout_ms = config_int("request_timeout_ms", request_timeout_ms, 1)
        self._metadata = ClusterMetadata(addresses)
        self._context = new_context()
        self._network = NetworkClient(self._context, config_str("client_id", client_id))
        self._lock = threading.Lock()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._network.close()
            self._context.term()

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: dict[str, Any] | None = None) -> None:
        """Create a topic; raises TopicAlreadyExistsError, InvalidConfigError, InvalidReplicationFactorError, ...

        ``config`` maps setting names (str) to str, int, float or bool values.
        """
        check_type("name", name, str)
        _check_count("partitions", partitions, InvalidPartitionsError)
        _check_count("replication_factor", replication_factor, InvalidReplicationFactorError)
        body = protocol.CreateTopicRequest(name, partitions, replication_factor, _topic_config(config),
                                           self._timeout_ms)
        _raise_for(self._controller_request(protocol.CREATE_TOPIC, body))
        self._wait_until_every_broker_sees(name, exists=True)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its data; raises UnknownTopicError if there is none."""
        check_type("name", name, str)
        _raise_for(self._controller_request(protocol.DELETE_TOPIC, protocol.DeleteTopicRequest(name, self._timeout_ms)))
        self._wait_until_every_broker_sees(name, exists=False)

    def _wait_until_every_broker_sees(self, name: str, exists: bool) -> None:
        """Return once every live broker's metadata shows the change the controller committed, so that the
        next call, whichever broker it asks, sees it (brokers apply Raft entries a moment after the commit).
        Bounded by the request timeout; a broker that does not answer within METADATA_ATTEMPT_MS is skipped."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        with self._lock:
            for address in list(self._metadata.brokers.values()):
                self._wait_for_broker(address, name, exists, deadline)

    def _wait_for_broker(self, address: str, name: str, exists: bool, deadline: float) -> None:
        request = protocol.MetadataRequest([name])
        while time.monotonic() < deadline:
            try:
                response = self._network.request(address, protocol.METADATA, request,
                                                 min(attempt_ms(deadline), METADATA_ATTEMPT_MS),
                                                 connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
            except RillError:
                return
            if (response.topics[0].error_code == 0) == exists:
                return
            time.sleep(METADATA_POLL_S)

    def list_topics(self) -> list[str]:
        """Names of every topic, sorted."""
        with self._lock:
            self._metadata.refresh(self._network, None, self._timeout_ms)
            return sorted(self._metadata.partitions)

    def describe_cluster(self) -> ClusterDescription:
        """The live (unfenced) brokers and the controller's node id."""
        with self._lock:
            response = self._any_broker(protocol.METADATA, protocol.MetadataRequest([]))
        brokers = sorted((BrokerInfo(b.node_id, b.host, b.port) for b in response.brokers), key=lambda b: b.node_id)
        return ClusterDescription(brokers, response.controller_id)

    def elect_leaders(self) -> int:
        """Move each partition's leadership back to its preferred (first) replica where that one is in
        sync; returns how many partitions moved."""
        response = self._controller_request(protocol.ELECT_LEADERS, protocol.ElectLeadersRequest(self._timeout_ms))
        if response.error_code:
            raise error_for_code(response.error_code, response.error_message)
        return response.moved

    def describe_topic(self, name: str) -> TopicDescription:
        """Partitions (leader, replicas, ISR, leader epoch, high watermark, log start) and full config."""
        check_type("name", name, str)
        with self._lock:
            self._metadata.refresh(self._network, [name], self._timeout_ms)
            if name not in self._metadata.partitions:
                raise self._metadata.topic_error(name)
            config = self._any_broker(protocol.DESCRIBE_CONFIGS, protocol.DescribeConfigsRequest(name))
            if config.error_code:
                raise error_for_code(config.error_code, config.error_message)
            partitions = [self._partition_info(name, p) for p in self._metadata.partitions[name]]
        return TopicDescription(name, partitions, config.config)

    def _partition_info(self, topic: str, metadata: protocol.PartitionMetadata) -> PartitionInfo:
        high_watermark = start = -1
        address = self._metadata.brokers.get(metadata.leader)
        if address is not None:
            high_watermark = self._offset(address, topic, metadata.partition, protocol.LATEST_TIMESTAMP)
            start = self._offset(address, topic, metadata.partition, protocol.EARLIEST_TIMESTAMP)
        return PartitionInfo(metadata.partition, metadata.leader, list(metadata.replicas), list(metadata.isr),
                             metadata.leader_epoch, high_watermark, start)

    def _offset(self, address: str, topic: str, partition: int, timestamp: int) -> int:
        request = protocol.ListOffsetsRequest(
            [protocol.TopicListOffsets(topic, [protocol.PartitionListOffsets(partition, timestamp)])]
        )
        try:
            response = self._network.request(address, protocol.LIST_OFFSETS, request, self._timeout_ms,
                                             connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
        except RillError:
            return -1
        result = response.topics[0].partitions[0]
        return -1 if result.error_code else result.offset

    # ---- consumer groups ---------------------------------------------------------------

    def list_groups(self) -> list[GroupSummary]:
        """Every consumer group with its state and member count, sorted by id (each broker lists its own)."""
        with self._lock:
            self._metadata.refresh(self._network, [], self._timeout_ms)
            answers = self._every_broker(protocol.LIST_GROUPS, protocol.ListGroupsRequest())
        groups = {listing.group_id: GroupSummary(listing.group_id, listing.state, listing.members)
                  for answer in answers for listing in answer.groups}
        return [groups[group_id] for group_id in sorted(groups)]

    def describe_group(self, group_id: str) -> GroupDescription:
        """A group's state, epoch, members, per partition its committed offset, log end, lag (records and
        seconds) and owner, and its lag state ("OK", "CATCHING_UP", "STALLED"), all from its coordinator.

        Partitions are those with a committed offset or assigned to a member. Raises
        GroupIdNotFoundError for a group with neither members nor committed offsets.
        """
        _check_group_id(group_id)
        with self._lock:
            answer = self._group_request(group_id, protocol.DESCRIBE_GROUP, protocol.DescribeGroupRequest(group_id))
        members = [_member(description) for description in answer.members]
        partitions = partition_lags(answer)
        return GroupDescription(answer.group_id, answer.state, answer.group_epoch, answer.assignor, members,
                                partitions, sum(p.lag for p in partitions if p.lag is not None), answer.lag_state)

    def reset_offsets(self, group_id: str, topic: str, *, to_earliest: bool = False, to_latest: bool = False,
                      to_offset: int | None = None, to_datetime: datetime | str | None = None,
                      partitions: list[int] | None = None) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of ``topic`` (every partition, or ``partitions``); returns them.

        Exactly one target: ``to_earliest``, ``to_latest``, ``to_offset`` (clamped into [log start, log
        end] as kafka-consumer-groups does) or ``to_datetime`` (first record at or after it, else the log
        end; a naive datetime is UTC). The group must have no members (GroupNotEmptyError).
        """
        _check_group_id(group_id)
        check_type("topic", topic, str)
        _check_partition_list(partitions)
        target = _reset_target(to_earliest, to_latest, to_offset, to_datetime)
        with self._lock:
            offsets = self._target_offsets(self._topic_partitions(topic, partitions), target)
            self._commit_from_outside(group_id, offsets)
        return offsets

    def delete_group(self, group_id: str) -> None:
        """Delete a group and its committed offsets; GroupNotEmptyError while it has members."""
        _check_group_id(group_id)
        with self._lock:
            self._group_request(group_id, protocol.DELETE_GROUP, protocol.DeleteGroupRequest(group_id))

    def _group_request(self, group_id: str, api: protocol.Api, body: Any) -> Any:
        """Ask the group's coordinator, following it if it moves; raises the error it answers."""
        return CoordinatorLink(self._network, self._metadata, group_id, self._timeout_ms).request(api, body)

    def _commit_from_outside(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        """One OffsetCommit as no member (the coordinator accepts it only while the group has none)."""
        topics = [protocol.OffsetCommitTopic(entry.topic, [
                      protocol.OffsetCommitPartition(p, offsets[TopicPartition(entry.topic, p)], "")
                      for p in entry.partitions])
                  for entry in protocol.topic_partitions(offsets)]
        request = protocol.OffsetCommitRequest(group_id, NO_MEMBER_ID, NO_MEMBER_EPOCH, topics)
        try:
            answer = self._group_request(group_id, protocol.OFFSET_COMMIT, request)
        except GroupNotEmptyError:
            raise GroupNotEmptyError(
                f"group {group_id!r} has active members: stop its consumers before resetting its offsets") from None
        for topic in answer.topics:
            for result in topic.partitions:
                if result.error_code:
                    raise error_for_code(result.error_code, result.error_message)

    def _topic_partitions(self, topic: str, partitions: list[int] | None) -> list[TopicPartition]:
        """The named partitions of the topic (all when None); UnknownTopicError for a missing topic or partition."""
        self._metadata.refresh(self._network, [topic], self._timeout_ms)
        if topic not in self._metadata.partitions:
            raise self._metadata.topic_error(topic)
        count = len(self._metadata.partitions[topic])
        indexes = list(range(count)) if partitions is None else sorted(set(partitions))
        if not indexes:
            raise InvalidConfigError("no partitions given")
        missing = [index for index in indexes if not 0 <= index < count]
        if missing:
            raise UnknownTopicError(f"topic {topic!r} has partitions 0..{count - 1}, not {_ids(missing)}")
        return [TopicPartition(topic, index) for index in indexes]

    def _target_offsets(self, partitions: list[TopicPartition], target: ResetTarget) -> dict[TopicPartition, int]:
        """Where a reset puts each partition, from ListOffsets (log start, log end, or by timestamp)."""
        kind, value = target
        if kind == "earliest":
            return self._list_offsets(partitions, protocol.EARLIEST_TIMESTAMP)
        ends = self._list_offsets(partitions, protocol.LATEST_TIMESTAMP)
        if kind == "latest":
            return ends
        if kind == "offset":
            starts = self._list_offsets(partitions, protocol.EARLIEST_TIMESTAMP)
            return {tp: min(max(value, starts[tp]), ends[tp]) for tp in partitions}
        found = self._list_offsets(partitions, value)
        return {tp: found[tp] if found[tp] >= 0 else ends[tp] for tp in partitions}

    def _list_offsets(self, partitions: list[TopicPartition], timestamp: int) -> dict[TopicPartition, int]:
        return list_offsets(self._network, self._metadata, {tp: timestamp for tp in partitions}, self._timeout_ms)

    # ---- schema registry ---------------------------------------------------------------

    def register_schema(self, subject: str, schema: Mapping[str, Any], compatibility: str | None = None
                        ) -> SchemaVersion:
        """Register a JSON Schema (a dict) under a subject; its version and global id, the existing ones if the
        subject holds this schema already. Returns once every live broker serves it.

        ``compatibility`` (BACKWARD, FORWARD, FULL or NONE) sets the subject's mode: at its first
        registration (else BACKWARD), or from this registration on; None keeps the subject's. The schema
        is checked against the subject's latest version in that mode: IncompatibleSchemaError (its
        ``messages`` say what breaks), InvalidSchemaError, SchemaTooLargeError, TooManySchemaVersionsError,
        TooManySubjectsError, SchemaRegistryFullError, InvalidSubjectError.
        """
        _check_subject(subject)
        text = canonical_text(schema)
        request = protocol.RegisterSchemaRequest(subject, text, _mode(compatibility), self._timeout_ms)
        response = _raise_for_schema(self._controller_request(protocol.REGISTER_SCHEMA, request))
        self._wait_on_every_broker(protocol.GET_SCHEMA, protocol.GetSchemaRequest("", -1, response.id),
                                   lambda answer: answer.error_code == 0)
        return SchemaVersion(subject, response.version, response.id)

    def set_compatibility(self, subject: str, compatibility: str) -> None:
        """Set a subject's compatibility mode (BACKWARD, FORWARD, FULL or NONE) for its next registrations."""
        _check_subject(subject)
        check_type("compatibility", compatibility, str)
        request = protocol.RegisterSchemaRequest(subject, None, compatibility, self._timeout_ms)
        _raise_for_schema(self._controller_request(protocol.REGISTER_SCHEMA, request))

    def get_compatibility(self, subject: str) -> str:
        """A subject's compatibility mode (BACKWARD for a subject that has none yet)."""
        return self._list_schemas(subject).compatibility

    def get_schema(self, subject: str, version: int | str = "latest") -> SchemaVersion:
        """A version of a subject ("latest" or a number from 1) with its schema; SchemaNotFoundError if the
        subject or version does not exist or is deleted."""
        _check_subject(subject)
        number = protocol.LATEST_VERSION if version == "latest" else _version(version)
        return self._get_schema(protocol.GetSchemaRequest(subject, number, protocol.NO_SCHEMA_ID))

    def get_schema_by_id(self, schema_id: int) -> SchemaVersion:
        """The schema with a global id, with the subject and version it was first registered as; ids of
        soft-deleted versions still resolve. SchemaNotFoundError for an id the registry does not hold."""
        check_type("schema_id", schema_id, int)
        if not 1 <= schema_id <= MAX_INT64:
            raise SchemaNotFoundError(f"no schema with id {schema_id}")
        return self._get_schema(protocol.GetSchemaRequest("", protocol.LATEST_VERSION, schema_id))

    def list_subjects(self) -> list[str]:
        """Every subject with at least one version that is not deleted, sorted."""
        return list(self._list_schemas("").subjects)

    def list_schema_versions(self, subject: str) -> list[int]:
        """A subject's versions that are not deleted; SchemaNotFoundError if it has none."""
        versions = self._list_schemas(subject).versions
        if not versions:
            raise SchemaNotFoundError(f"subject {subject!r} not found")
        return list(versions)

    def check_compatibility(self, subject: str, schema: Mapping[str, Any], compatibility: str | None = None
                            ) -> CompatibilityReport:
        """Whether ``schema`` could be registered next under the subject, in its mode (or ``compatibility``),
        and what breaks if not; nothing is registered. Compatible when the subject has no version."""
        _check_subject(subject)
        request = protocol.CheckSchemaRequest(subject, canonical_text(schema), _mode(compatibility))
        with self._lock:
            answer = _raise_for_schema(self._any_broker(protocol.CHECK_SCHEMA_COMPATIBILITY, request))
        return CompatibilityReport(answer.compatible, list(answer.messages), answer.compatibility,
                                   answer.version if answer.version > 0 else None)

    def delete_schema(self, subject: str, version: int | None = None, permanent: bool = False) -> list[int]:
        """Delete one version of a subject, or all of them (None); the versions deleted.

        A soft delete (the default) stops the versions from being listed, the latest, or accepted by
        topics with schema.validation, but their ids still resolve (records written with them stay
        readable) and they still count against the subject's version limit. ``permanent`` forgets
        them (soft-deleted ones too); an id is never given to another schema. Returns once every
        live broker serves the change.
        """
        _check_subject(subject)
        number = -1 if version is None else _version(version)
        check_type("permanent", permanent, bool)
        request = protocol.DeleteSchemaRequest(subject, number, permanent, self._timeout_ms)
        deleted = list(_raise_for_schema(self._controller_request(protocol.DELETE_SCHEMA, request)).versions)
        last = protocol.GetSchemaRequest(subject, max(deleted), protocol.NO_SCHEMA_ID)
        self._wait_on_every_broker(protocol.GET_SCHEMA, last, lambda answer: answer.error_code != 0)
        return deleted

    def _get_schema(self, request: protocol.GetSchemaRequest) -> SchemaVersion:
        with self._lock:
            answer = _raise_for_schema(self._any_broker(protocol.GET_SCHEMA, request))
        return SchemaVersion(answer.subject, answer.version, answer.id, json.loads(answer.schema))

    def _list_schemas(self, subject: str) -> protocol.ListSchemasResponse:
        if subject != "":
            _check_subject(subject)
        with self._lock:
            return _raise_for_schema(self._any_broker(protocol.LIST_SCHEMAS, protocol.ListSchemasRequest(subject)))

    def _wait_on_every_broker(self, api: protocol.Api, body: Any, done: Callable[[Any], bool]) -> None:
        """Return once every live broker's answer to ``body`` is ``done``: the registry change the controller
        committed is then served wherever the next call goes. Bounded by the request timeout; a broker that
        does not answer within METADATA_ATTEMPT_MS is skipped."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        with self._lock:
            for address in list(self._metadata.brokers.values()):
                while time.monotonic() < deadline:
                    try:
                        answer = self._network.request(address, api, body,
                                                       min(attempt_ms(deadline), METADATA_ATTEMPT_MS),
                                                       connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
                    except RillError:
                        break
                    if done(answer):
                        break
                    time.sleep(METADATA_POLL_S)

    def _every_broker(self, api: protocol.Api, body: Any) -> list[Any]:
        """One answer from each live broker; one that does not answer is retried until the request timeout."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        answers: dict[int, Any] = {}
        last_error: RillError = RequestTimeoutError(f"{api.name}: not every broker answered")
        for _ in range(10_000):
            for node_id, address in self._metadata.brokers.items():
                if node_id in answers:
                    continue
                try:
                    answers[node_id] = self._network.request(address, api, body, attempt_ms(deadline),
                                                             connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
                except RillError as error:
                    if not error.retriable:
                        raise
                    last_error = error
            if answers.keys() >= self._metadata.brokers.keys():
                return list(answers.values())
            if time.monotonic() + RETRY_BACKOFF_S >= deadline:
                raise last_error
            time.sleep(RETRY_BACKOFF_S)
            self._metadata.refresh(self._network, [], self._timeout_ms)
        raise last_error

    def _any_broker(self, api: protocol.Api, body: Any) -> Any:
        last_error: RillError | None = None
        for address in self._metadata.addresses():
            try:
                return self._network.request(address, api, body, self._timeout_ms)
            except RillError as error:
                last_error = error
        raise last_error or UnknownTopicError("no broker answered")

    def _controller_request(self, api: protocol.Api, body: Any) -> Any:
        """Send to the controller, refreshing metadata and retrying retriable errors until the timeout."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        with self._lock:
            for _ in range(1_000):
                try:
                    self._metadata.refresh(self._network, [], self._timeout_ms)
                    address = self._metadata.controller_address() or self._metadata.addresses()[0]
                    result = self._network.request(address, api, body, self._timeout_ms)
                    error: RillError = error_for_code(result.error_code, result.error_message)
                    if not result.error_code or not isinstance(error, CONTROLLER_RETRIABLE):
                        return result
                except CONTROLLER_RETRIABLE as raised:
                    error = raised
                if time.monotonic() + RETRY_BACKOFF_S >= deadline:
                    raise error
                time.sleep(RETRY_BACKOFF_S)
        raise error


def _topic_config(config: Any) -> dict[str, str]:
    """Topic settings as the wire carries them (str to str); TypeError for anything else."""
    if config is None:
        return {}
    check_type("config", config, Mapping)
    wire = {}
    for name, value in config.items():
        check_type("a config name", name, str)
        check_type(f"config {name!r:.80}", value, (str, int, float, bool))
        wire[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return wire


def _check_count(name: str, value: Any, error: type[RillError]) -> None:
    """A partition count or replication factor: an int (TypeError), that the wire can carry (else ``error``)."""
    check_type(name, value, int)
    if not -MAX_INT32 - 1 <= value <= MAX_INT32:
        raise error(f"{name} {value} is out of range")


def _check_partition_list(partitions: Any) -> None:
    if partitions is None:
        return
    check_type("partitions", partitions, (list, tuple))
    for index in partitions:
        check_type("each partition", index, int)


def _raise_for(result: protocol.TopicResult) -> None:
    if result.error_code:
        raise error_for_code(result.error_code, result.error_message)


def _ids(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _check_group_id(group_id: str) -> None:
    if not isinstance(group_id, str) or not group_id:
        raise InvalidGroupIdError(f"a group id is a non-empty string, got {group_id!r}")


def _member(description: protocol.MemberDescription) -> GroupMember:
    assignment = [TopicPartition(topic.topic, p) for topic in description.assignment for p in topic.partitions]
    return GroupMember(description.member_id, description.client_id, description.member_epoch,
                       list(description.subscribed_topics), description.subscribed_pattern, sorted(assignment))


def _reset_target(to_earliest: bool, to_latest: bool, to_offset: int | None,
                  to_datetime: datetime | str | None) -> ResetTarget:
    """The one reset target given; InvalidConfigError for none, several, or a bad value."""
    for name, flag in (("to_earliest", to_earliest), ("to_latest", to_latest)):
        if not isinstance(flag, bool):
            raise InvalidConfigError(f"{name} must be True or False, got {flag!r:.80}")
    given = [name for name, value in (("to_earliest", to_earliest), ("to_latest", to_latest),
                                      ("to_offset", to_offset is not None), ("to_datetime", to_datetime is not None))
             if value]
    if len(given) != 1:
        raise InvalidConfigError("give exactly one of to_earliest, to_latest, to_offset, to_datetime; got "
                                 + (", ".join(given) or "none"))
    if to_earliest:
        return "earliest", protocol.EARLIEST_TIMESTAMP
    if to_latest:
        return "latest", protocol.LATEST_TIMESTAMP
    if to_offset is not None:
        if not isinstance(to_offset, int) or isinstance(to_offset, bool):
            raise InvalidConfigError(f"to_offset must be an integer, got {to_offset!r}")
        return "offset", to_offset
    return "timestamp", _timestamp_ms(to_datetime)


def _timestamp_ms(moment: datetime | str) -> int:
    """Milliseconds since the epoch, rounded up (no record before ``moment`` counts); naive means UTC."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise InvalidConfigError(f"to_datetime {moment!r} is not an ISO-8601 date and time") from None
    if not isinstance(moment, datetime):
        raise InvalidConfigError(f"to_datetime must be a datetime or an ISO-8601 string, got {moment!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    return max(0, -(-micros // 1000))  # negative times would read as ListOffsets' "latest"/"earliest"


def _check_subject(subject: Any) -> None:
    """A subject is a str the wire can carry; what names are allowed is the registry's to judge."""
    check_type("subject", subject, str)
    subject.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate


def _mode(compatibility: Any) -> str:
    """A compatibility mode as the wire carries it: "" for None (the subject's own)."""
    if compatibility is None:
        return ""
    check_type("compatibility", compatibility, str)
    compatibility.encode()
    return compatibility


def _version(version: Any) -> int:
    check_type("version", version, int)
    if not 1 <= version <= MAX_INT32:
        raise ValueError(f"version must be 'latest' or a number from 1 to {MAX_INT32}, got {version}")
    return version


def _raise_for_schema(answer: Any) -> Any:
    """The answer of a schema request, or its error raised (IncompatibleSchemaError with its messages)."""
    if answer.error_code:
        error = error_for_code(answer.error_code, answer.error_message)
        if isinstance(error, IncompatibleSchemaError):
            error.messages = list(answer.messages)
        raise error
    return answer
