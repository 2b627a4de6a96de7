"""Consumer: reads records from subscribed topics or assigned partitions, alone or in a group.

The facade over the parts, laid out as kafka-python's: the subscription
state (client/subscription_state.py: what is read and the positions), the
fetcher (client/fetcher.py: fetch requests, buffering, decoding), the
offset committer (client/offset_committer.py), group membership
(client/group_membership.py: join, heartbeats) and the rebalancer
(client/rebalance.py: applying assignments, callbacks).

With ``group_id`` and a subscription (``topics``/``pattern`` given to the
constructor or to ``subscribe``), the consumer joins the group and reads
the partitions the coordinator assigns it; a partition starts at the
group's committed offset, else at ``auto_offset_reset`` ("earliest",
"latest", or "error"/"none" to raise). Heartbeats, auto-commits and
rebalances happen inside ``poll``, ``commit`` and ``close``. Bad arguments
raise TypeError, ValueError or InvalidConfigError at the call. Not
thread-safe, like Kafka's consumer: use it from one thread.

With ``key_deserializer``/``value_deserializer`` (client/serialization.py)
records carry what they return instead of bytes; a record one cannot read
stops its partition there, as a corrupt batch does (DeserializationError).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from rill.client import protocol
from rill.client.arguments import check_type
from rill.client.consumer_arguments import (
    check_partition,
    check_partition_ints,
    check_partitions,
    check_poll_timeout,
    check_subscription,
)
from rill.client.consumer_config import ConsumerConfig, RebalanceCallback, check_bootstrap, check_settings_subscription
from rill.client.consumer_metrics import ConsumerMetrics
from rill.client.coordinator import CoordinatorLink
from rill.client.errors import (
    ConsumerClosedError,
    InvalidConfigError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RillError,
)
from rill.client.fetcher import Fetcher
from rill.client.group_lag import partition_lags
from rill.client.group_membership import GroupMembership
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient, parse_bootstrap
from rill.client.offset_committer import OffsetCommitter
from rill.client.offset_lookup import list_offsets
from rill.client.rebalance import Rebalancer, names
from rill.client.record_columns import RecordColumns
from rill.client.serialization import DeserializerLike
from rill.client.subscription_state import SubscriptionState
from rill.client.types import PartitionLag, Record, TopicPartition
from rill.client.zmq_flavor import new_context

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.1
NETWORK_POLL_MS_MAX = 100
POLL_ROUNDS_MAX = 100_000


class Consumer:
    """Reads records: ``topics``/``pattern``/``subscribe`` (with ``group_id``: as a group member), or ``assign``."""

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
        key_deserializer: DeserializerLike | None = None,
        value_deserializer: DeserializerLike | None = None,
        client_id: str = "rill-consumer",
    ):
        self._config = config = ConsumerConfig(
            group_id, enable_auto_commit, auto_commit_interval_ms, auto_offset_reset, max_poll_records,
            session_timeout_ms, heartbeat_interval_ms, assignor, on_assign, on_revoke, fetch_min_bytes,
            fetch_max_wait_ms, fetch_max_bytes, max_partition_fetch_bytes, request_timeout_ms, check_crcs, client_id,
            key_deserializer=key_deserializer, value_deserializer=value_deserializer)
        topic_names, pattern = check_settings_subscription(topics, pattern)
        self._metadata = ClusterMetadata(parse_bootstrap(check_bootstrap(bootstrap)))
        self._context = new_context()
        self._network = NetworkClient(self._context, client_id)
        self._subscriptions = SubscriptionState()
        self._metrics = ConsumerMetrics()
        self._fetcher = Fetcher(self._network, self._metadata, self._subscriptions, config, self._metrics)
        self._link: CoordinatorLink | None = None
        self._committer: OffsetCommitter | None = None
        if group_id is not None:
            self._link = CoordinatorLink(self._network, self._metadata, group_id, request_timeout_ms)
            self._committer = OffsetCommitter(self._network, self._metadata, self._link, self._subscriptions,
                                              auto_commit_interval_ms if enable_auto_commit else None,
                                              request_timeout_ms, self._metrics)
        self._group: GroupMembership | None = None
        self._rebalancer: Rebalancer | None = None
        self._closed = False
        try:
            if topics is not None or pattern:
                self._subscribe(topic_names, pattern)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- what to read -------------------------------------------------------------

    def subscribe(self, topics: Iterable[str] = (), *, pattern: str | None = None) -> None:
        """Read every partition of these topics and of those ``pattern`` matches, replacing the subscription.

        With a ``group_id`` the consumer joins the group (or, a member already, sends the new subscription)
        and reads what the group assigns it; topics that do not exist yet are fine. Without one it reads
        every partition itself (partitions and matching topics added later are picked up on metadata
        refresh), and an unknown topic raises its error now.
        """
        self._check_open()
        topic_names, pattern = check_subscription(topics, pattern)
        self._subscribe(topic_names, pattern)

    def _subscribe(self, topics: list[str], pattern: str | None) -> None:
        if self._link is None:
            self._subscribe_alone(topics, pattern)
            return
        if self._group is None and len(self._subscriptions):
            raise InvalidConfigError("this consumer reads partitions it assigned itself; assign([]) before "
                                     "subscribing (assign and subscribe are exclusive, as in Kafka)")
        self._subscriptions.subscribe(topics, pattern)
        if self._group is None:
            self._join_group(topics, pattern or "")
        else:
            self._group.subscribe(topics, pattern or "")

    def _join_group(self, topics: list[str], pattern: str) -> None:
        config = self._config
        self._group = GroupMembership(self._network, self._link, config.client_id, topics, pattern, config.assignor,
                                      config.session_timeout_ms, config.heartbeat_interval_ms)
        self._committer.group = self._group
        self._rebalancer = Rebalancer(self, self._group, self._subscriptions, self._committer,
                                      config.on_assign, config.on_revoke)

    def _subscribe_alone(self, topics: list[str], pattern: str | None) -> None:
        self._subscriptions.subscribe(topics, pattern)
        self._metadata.refresh(self._network, self._metadata_topics(), self._config.request_timeout_ms)
        for topic in topics:
            if topic not in self._metadata.partitions:
                raise self._metadata.topic_error(topic)
        self._follow_subscription()

    def _metadata_topics(self) -> list[str] | None:
        """The topics to ask metadata for; None (every topic) when a pattern must be matched here."""
        if self._subscriptions.pattern is not None and self._group is None:
            return None
        return sorted({tp.topic for tp in self._subscriptions.assigned()} | self._subscriptions.topics)

    def _follow_subscription(self) -> None:
        """Without a group: read every partition of the subscribed and matching topics the metadata knows."""
        if self._group is not None or not self._subscriptions.subscribed:
            return
        topics = self._subscriptions.matching_topics(self._metadata.partitions)
        self._subscriptions.set_assignment(TopicPartition(topic, p.partition)
                                           for topic in topics for p in self._metadata.partitions.get(topic, []))

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions, replacing any subscription (not for a group member)."""
        self._check_open()
        wanted = check_partitions("partitions", partitions)
        if self._group is not None:
            raise InvalidConfigError("a group member reads the partitions its group assigns it")
        self._subscriptions.assign(wanted)
        self._metadata.refresh(self._network, sorted({tp.topic for tp in wanted}), self._config.request_timeout_ms)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now (a group member's: what its group assigned it)."""
        return self._subscriptions.assigned()

    # ---- positions ----------------------------------------------------------------

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make the next poll return records of ``partition`` from ``offset``.

        Raises OffsetOutOfRangeError for a negative offset or one beyond the log end.
        """
        self._check_open()
        check_partition("partition", partition)
        check_type("offset", offset, int)
        self._subscriptions.state(partition)
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot seek {partition.topic}-{partition.partition} to {offset}")
        end = self._list_offsets({partition: protocol.LATEST_TIMESTAMP})[partition]
        if offset > end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is beyond the log end {end} of {partition.topic}-{partition.partition}")
        self._subscriptions.seek(partition, offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Move to the first offset still in the log (default: of every assigned partition)."""
        self._reset_positions(self._assigned_or_all(partitions), protocol.EARLIEST_TIMESTAMP)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Move past the last record (default: of every assigned partition)."""
        self._reset_positions(self._assigned_or_all(partitions), protocol.LATEST_TIMESTAMP)

    def _assigned_or_all(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        self._check_open()
        if partitions is None:
            return sorted(self._subscriptions.assigned())
        chosen = check_partitions("partitions", partitions)
        self._subscriptions.check_assigned(chosen)
        return chosen

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record poll will return for ``partition``."""
        self._check_open()
        state = self._subscriptions.state(check_partition("partition", partition))
        if state.position is None:
            self._initialize_positions()
        return state.position

    def offsets_for_times(self, timestamps: Mapping[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """The earliest offset whose timestamp is at or after each given time (None: no such record)."""
        self._check_open()
        wanted = check_partition_ints("timestamps", timestamps)
        for tp, timestamp in wanted.items():
            if timestamp < 0:
                raise ValueError(f"a timestamp is milliseconds since the epoch, got {timestamp} for {tp!r}")
        found = self._list_offsets(wanted)
        return {tp: (offset if offset >= 0 else None) for tp, offset in found.items()}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last record of each partition (its high watermark)."""
        self._check_open()
        return self._list_offsets({tp: protocol.LATEST_TIMESTAMP for tp in check_partitions("partitions", partitions)})

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offset still in the log of each partition."""
        self._check_open()
        return self._list_offsets({tp: protocol.EARLIEST_TIMESTAMP
                                   for tp in check_partitions("partitions", partitions)})

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning and fetching records of these partitions; their positions stay."""
        self._check_open()
        self._subscriptions.set_paused(check_partitions("partitions", partitions), True)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Return and fetch records of these paused partitions again."""
        self._check_open()
        self._subscriptions.set_paused(check_partitions("partitions", partitions), False)

    def _initialize_positions(self) -> None:
        missing = self._subscriptions.missing_positions()
        if not missing:
            return
        if self._config.raises_without_offset:
            raise NoOffsetForPartitionError(f"no committed offset for {names(missing)} and auto_offset_reset is "
                                            f"{self._config.auto_offset_reset!r}")
        earliest = self._config.auto_offset_reset == "earliest"
        self._reset_positions(missing, protocol.EARLIEST_TIMESTAMP if earliest else protocol.LATEST_TIMESTAMP)

    def _reset_positions(self, partitions: list[TopicPartition], timestamp: int) -> None:
        for tp, offset in self._list_offsets({tp: timestamp for tp in partitions}).items():
            self._subscriptions.seek(tp, offset)

    def _list_offsets(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return list_offsets(self._network, self._metadata, timestamps, self._config.request_timeout_ms)

    # ---- poll ---------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> list[Record]:
        """Records fetched since the last poll, waiting up to ``timeout`` seconds for some.

        Raises CorruptRecordError (with topic, partition and offset) once the records before a corrupt
        batch were returned, on every poll until the application seeks past it; DeserializationError
        likewise for a record the key or value deserializer fails on (its ``__cause__`` the failure).
        Positions, and so commits, never pass the offset that failed.
        """
        self._check_open()
        return self._poll_rounds(check_poll_timeout(timeout), self._fetcher.collect, self._config.max_poll_records)

    def poll_batch(self, timeout: float = 1.0, max_records: int | None = None) -> list[RecordColumns]:
        """``poll`` as columns: one RecordColumns (client/record_columns.py) per partition that had records,
        at most ``max_records`` records in all (default max_poll_records), never an object per record.

        Everything else is as ``poll``: group duties run inside it, positions move past what it returns
        (so ``commit()`` commits it), paused partitions are skipped, deserializers apply, and
        CorruptRecordError / DeserializationError stop a partition after the records before them.
        """
        self._check_open()
        wait_s = check_poll_timeout(timeout)
        if max_records is None:
            max_records = self._config.max_poll_records
        else:
            check_type("max_records", max_records, int)
            if max_records < 1:
                raise ValueError(f"max_records must be at least 1, got {max_records}")
        return self._poll_rounds(wait_s, self._fetcher.collect_columns, max_records)

    def _poll_rounds(self, wait_s: float, collect: Callable[[int], list], max_records: int) -> list:
        """What poll and poll_batch share: group duties, fetches and waiting, until ``collect`` has records."""
        deadline = time.monotonic() + wait_s
        for _ in range(POLL_ROUNDS_MAX):
            if self._link is not None:
                self._run_group()
            self._initialize_positions()
            records = collect(max_records)
            if records:
                self._fetcher.send_fetches()  # keep the next fetch in flight while the caller works
                return records
            self._refresh_metadata_if_stale()
            self._fetcher.send_fetches()
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                return []
            self._network.poll(min(remaining_ms, NETWORK_POLL_MS_MAX))
        return []

    def _refresh_metadata_if_stale(self) -> None:
        if not self._fetcher.metadata_stale:
            return
        try:
            self._metadata.refresh(self._network, self._metadata_topics(), self._config.request_timeout_ms)
        except RillError:
            time.sleep(RETRY_BACKOFF_S)
            return
        self._fetcher.metadata_stale = False
        self._follow_subscription()

    # ---- the group ------------------------------------------------------------------

    def _run_group(self) -> None:
        """Heartbeat, take a new assignment from the coordinator, auto-commit: poll's group duties."""
        self._network.poll(0)  # answers that arrived while poll returned buffered records
        if self._group is not None:
            self._group.tick(self._subscriptions.assigned())
            assignment = self._group.take_assignment()
            if assignment is not None and self._rebalancer.apply(assignment):
                self._fetcher.metadata_stale = True
        self._committer.maybe_auto_commit()

    def _require_group(self) -> OffsetCommitter:
        if self._committer is None:
            raise InvalidConfigError("committed offsets need a group_id")
        return self._committer

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None, asynchronous: bool = False) -> None:
        """Commit ``offsets`` (default: the position of every assigned partition) for the group.

        Synchronous commits wait until the coordinator stored them on the in-sync replicas and raise
        typed errors (PartitionNotOwnedError, StaleMemberEpochError, OffsetOutOfRangeError, ...);
        asynchronous ones return at once and log failures.
        """
        self._check_open()
        chosen = None if offsets is None else check_partition_ints("offsets", offsets)
        check_type("asynchronous", asynchronous, bool)
        committer = self._require_group()
        if chosen is None:
            chosen = self._subscriptions.positions()
        else:
            committer.check_offsets(chosen)
        if chosen:
            committer.commit(chosen, asynchronous)

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset of each partition (None: nothing committed)."""
        self._check_open()
        wanted = check_partitions("partitions", partitions)
        committer = self._require_group()
        return committer.committed(wanted) if wanted else {}

    def lag(self) -> dict[TopicPartition, PartitionLag]:
        """The group's lag on each partition assigned to this member, as the coordinator reads it now (one request).

        Per partition: ``lag`` in records (log end minus the group's committed offset: what was polled but
        not committed counts), ``lag_seconds`` (how old the first uncommitted record is; 0.0 when caught
        up), the log end and committed offsets, and ``owner`` (this member). The same numbers as
        ``Admin.describe_group`` and the brokers' /metrics. kafka-python has no such call (its ``metrics()``
        has the fetch position's lag, as ``metrics()`` here does). A partition assigned a moment ago may be
        missing until the coordinator sees the assignment; empty while nothing is assigned. Raises
        InvalidConfigError without a group_id.
        """
        self._check_open()
        self._require_group()
        assigned = self._subscriptions.assigned()
        if not assigned:
            return {}
        answer = self._link.request(protocol.DESCRIBE_GROUP, protocol.DescribeGroupRequest(self._link.group_id))
        return {TopicPartition(lag.topic, lag.partition): lag for lag in partition_lags(answer)
                if TopicPartition(lag.topic, lag.partition) in assigned}

    # ---- metrics ------------------------------------------------------------------

    def metrics(self) -> dict[str, object]:
        """A snapshot of this consumer's metrics: a flat dict of ints and floats (``records_lag`` a dict of
        "topic-partition" to records), each key explained in client/consumer_metrics.py's METRICS.

        Rates, averages and maximums are over the last 30 s; totals since the consumer was built. Unlike
        the rest of the consumer, safe to call from another thread (a metrics scrape), and after close.
        For Prometheus, see ``rill.client.prometheus.register``.
        """
        return self._metrics.snapshot()

    @property
    def client_id(self) -> str:
        return self._config.client_id

    # ---- closing ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosedError("the consumer is closed")

    def close(self) -> None:
        """Give up the partitions (on_revoke, then the auto-commit) and leave the group; then disconnect."""
        if self._closed:
            return
        try:
            if self._group is not None and self._group.joined and len(self._subscriptions):
                self._rebalancer.revoke(sorted(self._subscriptions.assigned()))
            elif self._committer is not None and self._committer.auto_commit:
                self._committer.commit_quietly(self._subscriptions.positions(), asynchronous=False)
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
