"""Consumer: reads records from subscribed topics or assigned partitions, alone or in a group.

``poll`` returns up to ``max_poll_records`` records, decoding fetched
batches with bulk column calls (client/batch.py). One fetch request per
leader broker is kept in flight, asking from the position after what is
already buffered, so the broker reads the next data while this thread
decodes.

With ``group_id`` and ``topics``/``pattern``, the consumer joins the group
and reads the partitions the coordinator assigns it (client/group_membership.py);
a partition starts at the group's committed offset, else at
``auto_offset_reset`` ("earliest", "latest", or "error"/"none" to raise).
Assignment changes are cooperative: ``on_revoke`` runs (and, with
auto-commit, positions are committed) before a partition is given up;
partitions kept are read on without a pause. Heartbeats, auto-commits and
rebalances happen inside ``poll``, ``commit`` and ``close``. Not
thread-safe, like Kafka's consumer: use it from one thread.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from typing import Callable, Iterable, Iterator

from rill.client import protocol
from rill.client.batch import check_batch, decode_batch, end_offset, read_header
from rill.client.coordinator import CoordinatorLink
from rill.client.errors import (
    ConsumerClosedError,
    FencedMemberEpochError,
    InvalidConfigError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RillError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    error_for_code,
)
from rill.client.group_membership import GroupMembership
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient, parse_bootstrap
from rill.client.offset_lookup import list_offsets
from rill.client.types import Record, TopicPartition
from rill.client.zmq_flavor import new_context

log = logging.getLogger(__name__)

RESET_STRATEGIES = ("earliest", "latest", "error", "none")  # "none" is Kafka's name for "error"
ASSIGNORS = ("sticky", "range", "roundrobin")
RETRY_BACKOFF_S = 0.1
NO_OFFSET = -1
RebalanceCallback = Callable[["Consumer", list[TopicPartition]], None]


class _PartitionState:
    """Where one assigned partition stands: what poll returns next, and what to fetch next."""

    __slots__ = ("position", "fetch_position", "buffered", "records", "high_watermark", "paused")

    def __init__(self) -> None:
        self.position: int | None = None
        self.fetch_position: int | None = None
        self.buffered: deque[bytes] = deque()
        self.records: deque[Record] = deque()
        self.high_watermark = -1
        self.paused = False


class Consumer:
    """Reads records: ``topics``/``pattern`` subscribe (with ``group_id``: as a group member), or use ``assign``."""

    def __init__(
        self,
        bootstrap: str,
        *,
        group_id: str | None = None,
        topics: Iterable[str] | None = None,
        pattern: str | None = None,
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        auto_offset_reset: str = "latest",
        max_poll_records: int = 500,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 1000,
        assignor: str = "sticky",
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        fetch_max_bytes: int = 52428800,
        max_partition_fetch_bytes: int = 1048576,
        request_timeout_ms: int = 30000,
        check_crcs: bool = True,
        client_id: str = "rill-consumer",
    ):
        _check_settings(auto_offset_reset, assignor, pattern, group_id, {
            "fetch_min_bytes": fetch_min_bytes, "fetch_max_bytes": fetch_max_bytes,
            "max_partition_fetch_bytes": max_partition_fetch_bytes, "max_poll_records": max_poll_records,
            "request_timeout_ms": request_timeout_ms, "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms, "auto_commit_interval_ms": auto_commit_interval_ms})
        if not isinstance(fetch_max_wait_ms, int) or fetch_max_wait_ms < 0:
            raise InvalidConfigError(f"fetch_max_wait_ms must be >= 0, got {fetch_max_wait_ms!r}")
        if heartbeat_interval_ms >= session_timeout_ms:
            raise InvalidConfigError("heartbeat_interval_ms must be lower than session_timeout_ms")
        if isinstance(topics, str):
            raise InvalidConfigError(f"topics is a list of topic names, got the string {topics!r}")
        self._reset = auto_offset_reset
        self._fetch_min_bytes = fetch_min_bytes
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_max_bytes = fetch_max_bytes
        self._partition_max_bytes = max_partition_fetch_bytes
        self._max_poll_records = max_poll_records
        self._timeout_ms = request_timeout_ms
        self._check_crcs = check_crcs
        self._auto_commit_s = auto_commit_interval_ms / 1000 if enable_auto_commit else None
        self._next_auto_commit = time.monotonic() + auto_commit_interval_ms / 1000
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._metadata = ClusterMetadata(parse_bootstrap(bootstrap))
        self._context = new_context()
        self._network = NetworkClient(self._context, client_id)
        self._link = CoordinatorLink(self._network, self._metadata, group_id, request_timeout_ms) if group_id else None
        self._group: GroupMembership | None = None
        self._subscription: set[str] = set()
        self._pattern = re.compile(pattern) if pattern else None
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._fetching: set[str] = set()
        self._metadata_stale = False
        self._closed = False
        try:
            if group_id and (topics is not None or pattern):
                self._group = GroupMembership(self._network, self._link, client_id, list(topics or []),
                                              pattern or "", assignor, session_timeout_ms, heartbeat_interval_ms)
            elif topics is not None or pattern:
                self.subscribe(list(topics or []))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- what to read -------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """Read every partition of these topics, and of those matching ``pattern`` (partitions and topics
        added later are picked up on metadata refresh). Without a group only: a group member's
        subscription is the one it was created with."""
        self._check_open()
        if self._group is not None:
            raise InvalidConfigError("a group member's subscription is fixed when the consumer is created")
        self._subscription = set(topics)
        self._metadata.refresh(self._network, self._metadata_topics(), self._timeout_ms)
        for topic in self._subscription:
            if topic not in self._metadata.partitions:
                raise self._metadata.topic_error(topic)
        self._follow_subscription()

    def _metadata_topics(self) -> list[str] | None:
        """The topics to ask metadata for; None (every topic) when a pattern must be matched."""
        if self._pattern is not None and self._group is None:
            return None
        return sorted({tp.topic for tp in self._states} | self._subscription)

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read exactly these partitions, replacing any subscription (not for a group member)."""
        self._check_open()
        if self._group is not None:
            raise InvalidConfigError("a group member reads the partitions its group assigns it")
        self._subscription = set()
        self._pattern = None
        wanted = set(partitions)
        self._states = {tp: self._states.get(tp) or _PartitionState() for tp in wanted}
        self._metadata.refresh(self._network, sorted({tp.topic for tp in wanted}), self._timeout_ms)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now (a group member's: what its group assigned it)."""
        return set(self._states)

    def _follow_subscription(self) -> None:
        if not self._subscription and self._pattern is None:
            return
        topics = set(self._subscription)
        if self._pattern is not None:
            topics |= {name for name in self._metadata.partitions
                       if name not in protocol.INTERNAL_TOPICS and self._pattern.fullmatch(name)}
        wanted = {TopicPartition(topic, p.partition)
                  for topic in topics for p in self._metadata.partitions.get(topic, [])}
        self._states = {tp: self._states.get(tp) or _PartitionState() for tp in wanted}

    # ---- positions ----------------------------------------------------------------

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make the next poll return records of ``partition`` from ``offset``.

        Raises OffsetOutOfRangeError for a negative offset or one beyond the log end.
        """
        self._state(partition)
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot seek {partition.topic}-{partition.partition} to {offset}")
        end = self.end_offsets([partition])[partition]
        if offset > end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is beyond the log end {end} of {partition.topic}-{partition.partition}")
        self._seek(partition, offset)

    def _seek(self, partition: TopicPartition, offset: int | None) -> None:
        state = self._state(partition)
        state.position = state.fetch_position = offset
        state.buffered.clear()
        state.records.clear()

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._reset_positions(list(partitions or self._states), protocol.EARLIEST_TIMESTAMP)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._reset_positions(list(partitions or self._states), protocol.LATEST_TIMESTAMP)

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record poll will return for ``partition``."""
        state = self._state(partition)
        if state.position is None:
            self._initialize_positions()
        return state.position

    def offsets_for_times(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """The earliest offset whose timestamp is at or after each given time (None: no such record)."""
        found = self._list_offsets(timestamps)
        return {tp: (offset if offset >= 0 else None) for tp, offset in found.items()}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._list_offsets({tp: protocol.LATEST_TIMESTAMP for tp in partitions})

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._list_offsets({tp: protocol.EARLIEST_TIMESTAMP for tp in partitions})

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._state(partition).paused = True

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._state(partition).paused = False

    def _state(self, partition: TopicPartition) -> _PartitionState:
        state = self._states.get(partition)
        if state is None:
            raise InvalidConfigError(f"{partition.topic}-{partition.partition} is not assigned to this consumer")
        return state

    def _initialize_positions(self) -> None:
        missing = [tp for tp, state in self._states.items() if state.position is None]
        if not missing:
            return
        if self._reset in ("error", "none"):
            raise NoOffsetForPartitionError(
                f"no committed offset for {_names(sorted(missing))} and auto_offset_reset is {self._reset!r}")
        timestamp = protocol.EARLIEST_TIMESTAMP if self._reset == "earliest" else protocol.LATEST_TIMESTAMP
        self._reset_positions(missing, timestamp)

    def _reset_positions(self, partitions: list[TopicPartition], timestamp: int) -> None:
        for tp, offset in self._list_offsets({tp: timestamp for tp in partitions}).items():
            self._seek(tp, offset)

    def _list_offsets(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return list_offsets(self._network, self._metadata, timestamps, self._timeout_ms)

    # ---- poll ---------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> list[Record]:
        """Records fetched since the last poll, waiting up to ``timeout`` seconds for some."""
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        for _ in range(100_000):
            if self._link is not None:
                self._run_group()
            self._initialize_positions()
            records = self._drain_records()
            if records:
                self._send_fetches()  # keep the next fetch in flight while the caller works
                return records
            self._refresh_metadata_if_stale()
            self._send_fetches()
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                return []
            self._network.poll(min(remaining_ms, 100))
        return []

    def _drain_records(self) -> list[Record]:
        out: list[Record] = []
        budget = self._max_poll_records
        for tp, state in self._states.items():
            if state.paused:
                continue
            while budget > 0 and (state.records or state.buffered):
                if not state.records:
                    self._decode_next(tp, state)
                    continue
                taken = _take(state.records, budget)
                state.position = taken[-1].offset + 1
                out.extend(taken)
                budget -= len(taken)
            if budget == 0:
                break
        return out

    def _decode_next(self, tp: TopicPartition, state: _PartitionState) -> None:
        """Decode one buffered fetch response, keeping the records at or after the position."""
        data = state.buffered.popleft()
        position = 0
        records: list[Record] = []
        for _ in range(1_000_000):
            if position >= len(data):
                break
            header = check_batch(data, position) if self._check_crcs else read_header(data, position)
            if header.next_offset > state.position:
                records.extend(decode_batch(data, tp.topic, tp.partition, position, check_crc=False))
            position += header.size
        if records and records[0].offset < state.position:
            records = [record for record in records if record.offset >= state.position]
        state.records.extend(records)

    def _send_fetches(self) -> None:
        """One fetch per leader broker not already fetching, for partitions with nothing buffered."""
        by_address: dict[str, list[tuple[TopicPartition, _PartitionState]]] = {}
        for tp, state in self._states.items():
            if state.paused or state.buffered or state.fetch_position is None:
                continue
            address = self._metadata.leader_address(tp.topic, tp.partition)
            if address is None:
                self._metadata_stale = True
            elif address not in self._fetching:
                by_address.setdefault(address, []).append((tp, state))
        for address, partitions in by_address.items():
            self._send_fetch(address, partitions)

    def _send_fetch(self, address: str, partitions: list[tuple[TopicPartition, _PartitionState]]) -> None:
        topics: dict[str, list[protocol.PartitionFetch]] = {}
        asked = {}
        for tp, state in partitions:
            topics.setdefault(tp.topic, []).append(
                protocol.PartitionFetch(tp.partition, state.fetch_position, self._partition_max_bytes))
            asked[tp] = state.fetch_position
        request = protocol.FetchRequest(self._fetch_max_wait_ms, self._fetch_min_bytes, self._fetch_max_bytes,
                                        [protocol.TopicFetch(topic, parts) for topic, parts in topics.items()])

        def on_response(response: protocol.FetchResponse | None, error: RillError | None) -> None:
            self._fetching.discard(address)
            if error is not None:
                self._metadata_stale = True
                return
            self._on_fetch(response, asked)

        if self._network.send(address, protocol.FETCH, request, on_response,
                              self._timeout_ms + self._fetch_max_wait_ms):
            self._fetching.add(address)
        else:
            self._metadata_stale = True

    def _on_fetch(self, response: protocol.FetchResponse, asked: dict[TopicPartition, int]) -> None:
        for topic in response.topics:
            for answer in topic.partitions:
                tp = TopicPartition(topic.topic, answer.partition)
                state = self._states.get(tp)
                if state is None or state.fetch_position != asked.get(tp):
                    continue  # unassigned or sought elsewhere since the request left
                if answer.error_code:
                    self._on_partition_error(tp, state, error_for_code(answer.error_code, answer.error_message))
                    continue
                state.high_watermark = answer.high_watermark
                if answer.records:
                    state.buffered.append(answer.records)
                    state.fetch_position = end_offset(answer.records)

    def _on_partition_error(self, tp: TopicPartition, state: _PartitionState, error: RillError) -> None:
        if isinstance(error, OffsetOutOfRangeError):
            if self._reset in ("error", "none"):
                raise error
            state.position = state.fetch_position = None
            self._initialize_positions()
        elif error.retriable:
            self._metadata_stale = True
        else:
            raise error

    def _refresh_metadata_if_stale(self) -> None:
        if not self._metadata_stale:
            return
        try:
            self._metadata.refresh(self._network, self._metadata_topics(), self._timeout_ms)
        except RillError:
            time.sleep(RETRY_BACKOFF_S)
            return
        self._metadata_stale = False
        self._follow_subscription()

    # ---- the group ------------------------------------------------------------------

    def _run_group(self) -> None:
        """Heartbeat, take a new assignment from the coordinator, auto-commit: poll's group duties."""
        self._network.poll(0)  # answers that arrived while poll returned buffered records
        if self._group is not None:
            self._group.tick(set(self._states))
            assignment, self._group.assignment = self._group.assignment, None
            if assignment is not None:
                self._apply_assignment(assignment)
        if self._auto_commit_s is not None and time.monotonic() >= self._next_auto_commit:
            self._next_auto_commit = time.monotonic() + self._auto_commit_s
            if self._group is None or self._group.joined:
                self._commit_quietly(self._positions(), asynchronous=True)

    def _apply_assignment(self, assignment: set[TopicPartition]) -> None:
        """Give up what the coordinator took (on_revoke, then commit), start reading what it gave."""
        owned = set(self._states)
        revoked = sorted(owned - assignment)
        added = sorted(assignment - owned)
        if revoked:
            log.info("group %s: member %s gives up %s", self._link.group_id, self._group.member_id, _names(revoked))
            self._revoke(revoked)
            self._group.heartbeat_soon()
        if added:
            committed = self.committed(added)
            log.info("group %s: member %s takes %s from %s", self._link.group_id, self._group.member_id,
                     _names(added), [committed[tp] for tp in added])
            for tp in added:
                self._states[tp] = _PartitionState()
                if committed[tp] is not None:
                    self._seek(tp, committed[tp])
            self._metadata_stale = True
            if self._on_assign is not None:
                self._on_assign(self, added)
            self._group.heartbeat_soon()

    def _revoke(self, partitions: list[TopicPartition]) -> None:
        if self._on_revoke is not None:
            self._on_revoke(self, partitions)
        if self._auto_commit_s is not None:
            positions = self._positions()
            self._commit_quietly({tp: positions[tp] for tp in partitions if tp in positions}, asynchronous=False)
        for tp in partitions:
            self._states.pop(tp, None)

    def _positions(self) -> dict[TopicPartition, int]:
        return {tp: state.position for tp, state in self._states.items() if state.position is not None}

    def _require_group(self) -> CoordinatorLink:
        if self._link is None:
            raise InvalidConfigError("committed offsets need a group_id")
        return self._link

    def commit(self, offsets: dict[TopicPartition, int] | None = None, asynchronous: bool = False) -> None:
        """Commit ``offsets`` (default: the position of every assigned partition) for the group.

        Synchronous commits wait until the coordinator stored them on the in-sync replicas and raise
        typed errors (PartitionNotOwnedError, StaleMemberEpochError, OffsetOutOfRangeError, ...);
        asynchronous ones return at once and log failures.
        """
        self._check_open()
        self._require_group()
        if offsets is None:
            offsets = self._positions()
        else:
            offsets = dict(offsets)
            self._check_offsets(offsets)
        if offsets:
            self._commit(offsets, asynchronous)

    def _check_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Refuse offsets below 0 or beyond the log end before they reach the group."""
        for tp, offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise OffsetOutOfRangeError(f"cannot commit offset {offset!r} for {tp.topic}-{tp.partition}")
        for tp, end in self.end_offsets(offsets).items():
            if offsets[tp] > end:
                raise OffsetOutOfRangeError(
                    f"offset {offsets[tp]} is beyond the log end {end} of {tp.topic}-{tp.partition}")

    def _commit(self, offsets: dict[TopicPartition, int], asynchronous: bool) -> None:
        """Commit; a synchronous commit refused for an unknown member or an old epoch (the coordinator moved,
        a heartbeat answer was in flight) catches up with the group once and tries again."""
        if asynchronous:
            address = self._link.address
            if address is None:
                self._link.look_up()
                log.warning("group %s: asynchronous commit skipped: the coordinator is not known yet",
                            self._link.group_id)
                return
            request = self._commit_request(offsets)
            if not self._network.send(address, protocol.OFFSET_COMMIT, request,
                                      lambda response, error: self._on_async_commit(request, response, error),
                                      self._timeout_ms):
                log.warning("group %s: asynchronous commit skipped, coordinator not connected", self._link.group_id)
                self._link.invalidate()
            return
        if self._group is not None and not self._group.joined:
            self._await_heartbeat_answer()
        for attempt in range(2):
            request = self._commit_request(offsets)
            try:
                self._on_commit_response(self._link.request(protocol.OFFSET_COMMIT, request))
                return
            except (UnknownMemberIdError, FencedMemberEpochError, StaleMemberEpochError) as error:
                if self._group is None or attempt == 1:
                    raise
                if not isinstance(error, StaleMemberEpochError):
                    self._group.rejoin_after(error, request.member_epoch)
                self._await_heartbeat_answer()

    def _commit_request(self, offsets: dict[TopicPartition, int]) -> protocol.OffsetCommitRequest:
        member_id, epoch = (self._group.member_id, self._group.member_epoch) if self._group else ("", NO_OFFSET)
        topics: dict[str, list[protocol.OffsetCommitPartition]] = {}
        for tp in sorted(offsets):
            topics.setdefault(tp.topic, []).append(protocol.OffsetCommitPartition(tp.partition, offsets[tp], ""))
        return protocol.OffsetCommitRequest(self._link.group_id, member_id, epoch,
                                            [protocol.OffsetCommitTopic(t, parts) for t, parts in topics.items()])

    def _await_heartbeat_answer(self) -> None:
        """Heartbeat now and wait (up to the session timeout) for the answer: the member's current id and epoch."""
        group = self._group
        answered = group.answers
        group.heartbeat_soon()
        deadline = time.monotonic() + group.session_timeout_s
        for _ in range(100_000):
            if group.answers > answered and group.joined or time.monotonic() > deadline:
                return
            group.tick(set(self._states))
            self._network.poll(20)

    def _on_commit_response(self, response: protocol.OffsetCommitResponse) -> None:
        for topic in response.topics:
            for result in topic.partitions:
                if result.error_code:
                    raise error_for_code(result.error_code, result.error_message)

    def _on_async_commit(self, request: protocol.OffsetCommitRequest, response: protocol.OffsetCommitResponse | None,
                         error: RillError | None) -> None:
        try:
            if error is None and response.error_code:
                error = error_for_code(response.error_code, response.error_message)
            if error is None:
                self._on_commit_response(response)
        except RillError as failure:
            error = failure
        if error is not None:
            log.warning("group %s: asynchronous commit failed: %s", self._link.group_id, error)
            if isinstance(error, (UnknownMemberIdError, FencedMemberEpochError)) and self._group is not None:
                self._group.rejoin_after(error, request.member_epoch)
            elif error.retriable:
                self._link.invalidate()

    def _commit_quietly(self, offsets: dict[TopicPartition, int], asynchronous: bool) -> None:
        """Auto-commit: a failure is logged, not raised (the next commit carries newer positions)."""
        if not offsets:
            return
        try:
            self._commit(offsets, asynchronous)
        except RillError as error:
            log.warning("group %s: auto-commit failed: %s", self._link.group_id, error)

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset of each partition (None: nothing committed)."""
        self._check_open()
        link = self._require_group()
        wanted = sorted(set(partitions))
        response = link.request(protocol.OFFSET_FETCH,
                                protocol.OffsetFetchRequest(link.group_id, protocol.topic_partitions(wanted)))
        found = {TopicPartition(t.topic, p.partition): p.offset for t in response.topics for p in t.partitions}
        return {tp: (found[tp] if found.get(tp, NO_OFFSET) >= 0 else None) for tp in wanted}

    # ---- closing ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosedError("the consumer is closed")

    def close(self) -> None:
        """Give up the partitions (on_revoke, then the auto-commit) and leave the group; then disconnect."""
        if self._closed:
            return
        try:
            if self._group is not None and self._group.joined and self._states:
                self._revoke(sorted(self._states))
            elif self._link is not None and self._auto_commit_s is not None:
                self._commit_quietly(self._positions(), asynchronous=False)
            if self._group is not None:
                self._group.leave()
        finally:
            self._closed = True
            self._network.close()
            self._context.term()

    def __iter__(self) -> Iterator[Record]:
        """Records, one at a time, until the consumer is closed."""
        while not self._closed:
            yield from self.poll(1.0)


def _check_settings(auto_offset_reset: str, assignor: str, pattern: str | None, group_id: str | None,
                    positive: dict[str, object]) -> None:
    if auto_offset_reset not in RESET_STRATEGIES:
        raise InvalidConfigError(f"auto_offset_reset must be one of {RESET_STRATEGIES}, got {auto_offset_reset!r}")
    if assignor not in ASSIGNORS:
        raise InvalidConfigError(f"assignor must be one of {ASSIGNORS}, got {assignor!r}")
    if group_id is not None and (not isinstance(group_id, str) or not group_id):
        raise InvalidConfigError(f"group_id must be a non-empty string, got {group_id!r}")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as error:
            raise InvalidConfigError(f"bad subscription pattern {pattern!r}: {error}") from None
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise InvalidConfigError(f"{name} must be a positive integer, got {value!r}")


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in partitions)


def _take(records: deque[Record], count: int) -> list[Record]:
    if count >= len(records):
        taken = list(records)
        records.clear()
        return taken
    return [records.popleft() for _ in range(count)]
