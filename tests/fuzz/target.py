"""The broker under fuzz: one real process, the data stored in it before, and the checks around each case.

Before fuzzing, ``STORED_TOPIC`` gets known batches (plain and LZ4, with
and without keys and headers) in each partition and ``STORED_GROUP`` a
committed offset; their bytes, as Fetch and OffsetFetch return them, are
kept. ``run_case`` sends one fuzz message and checks the answer against
wire.py's oracle. Every ``CHECK_EVERY`` cases, and after every test,
``check_invariants`` asks a fresh client for metadata and reads the stored
data back byte for byte. No fuzz case may rightly change the stored topic
or group (strategies.py's leaves_stored_data_alone), so any change to them
is the broker's doing.

A case that leaves the broker dead or deaf fails; the next case restarts
it (SIGKILL by pid, same data dir and ports), so hypothesis can replay and
shrink the case that broke it without every later case failing too.
"""

from __future__ import annotations

from pathlib import Path

import zmq
from brokers import BrokerProcess, wait_until
from rill.client import protocol
from rill.client.batch import COMPRESSION_LZ4, COMPRESSION_NONE, encode_batch
from rill.client.errors import RillError

from fuzz.wire import Answer, WireProbe, check_answer, expected_answer

STORED_TOPIC = "fuzz-stored"
STORED_PARTITIONS = 2
STORED_GROUP = "fuzz-stored-group"
STORED_OFFSET = 3
CLUSTER_ID = "fuzz-cluster"
MAX_REQUEST_BYTES = 1 << 20  # small, so a frame over the limit is cheap to send
ANSWER_WAIT_S = 5.0  # a healthy broker answers in milliseconds; this bounds a failing case (and its shrinking)
SERVING_WAIT_S = 3.0  # how long a fresh client waits for metadata before the broker counts as deaf
CHECK_EVERY = 250  # cases between two invariant checks within a hypothesis run
FETCH_BYTES = 16 << 20
SETUP_TIMEOUT_S = 30.0


def stored_batches() -> list[bytes]:
    """The batches each stored partition gets: every codec, with and without keys and headers."""
    values = [b"value-%d" % number * (number + 1) for number in range(20)]
    keys = [b"key-%d" % (number % 3) for number in range(20)]
    timestamps = [1_700_000_000_000 + number for number in range(20)]
    headers = [{"h": b"%d" % number} if number % 2 else None for number in range(20)]
    return [
        encode_batch(values[:5], None, timestamps[:5]),
        encode_batch(values[5:10], keys[5:10], timestamps[5:10], headers[5:10], compression=COMPRESSION_LZ4),
        encode_batch([None, b""], [b"k", None], timestamps[10:12], compression=COMPRESSION_NONE),
        encode_batch(values[12:20] * 8, None, timestamps[12:20] * 8, compression=COMPRESSION_LZ4),
    ]


class FuzzTarget:
    """One broker process under fuzz, with what it stored before and the checks after each case."""

    def __init__(self, data_dir: Path):
        self.broker = BrokerProcess(data_dir, cluster_id=CLUSTER_ID, settings={"max_request_bytes": MAX_REQUEST_BYTES})
        self._context = zmq.Context()
        self._probe: WireProbe | None = None
        self._broken = False
        self.cases = 0
        self.stored: dict[int, bytes] = {}
        self.committed: protocol.OffsetFetchResponse | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FuzzTarget:
        """Start the broker, store the known data, and keep what it reads back as."""
        self.broker.start()
        self._probe = WireProbe(self._context, self.broker.bootstrap)
        with self._fresh_probe() as probe:
            self._create_stored_topic(probe)
            for partition in range(STORED_PARTITIONS):
                for batch in stored_batches():
                    self._produce(probe, partition, batch)
            self._commit_stored_offset(probe)
            self.stored = {partition: self._read_partition(probe, partition) for partition in range(STORED_PARTITIONS)}
            self.committed = self._read_committed(probe)
        assert all(self.stored.values()), "the stored data reads back"
        return self

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
        self.broker.stop()
        self._context.term()

    def _restart(self) -> None:
        """Bring back a broker that a case killed or deafened: SIGKILL by pid, start on the same data."""
        self.broker.kill()
        self.broker.start()
        self._probe.reconnect()
        self._broken = False

    # ---- one case ---------------------------------------------------------------------------------

    def run_case(self, frames: list[bytes]) -> Answer | None:
        """Send one fuzz message; assert a right answer (or allowed silence) and a broker still serving.

        Returns the answer, or None where the message may stay unanswered.
        """
        if self._broken or not self.broker.alive:
            self._restart()
        expected = expected_answer(frames, MAX_REQUEST_BYTES)
        self._probe.send(frames)
        answer = None
        if expected.may_stay_silent:
            self._probe.reconnect()  # a late answer (long poll) must not meet a later case
            self._check_serving("after a request that may stay unanswered")
        else:
            reply = self._probe.receive(ANSWER_WAIT_S)
            if reply is None:
                self._check_serving(f"no answer within {ANSWER_WAIT_S} s")
                self._probe.reconnect()
                raise AssertionError(f"no answer within {ANSWER_WAIT_S} s, though the broker still serves")
            answer = check_answer(expected, reply)
        self.cases += 1
        if self.cases % CHECK_EVERY == 0:
            self.check_invariants()
        return answer

    def _check_serving(self, context: str) -> None:
        """A fresh client gets metadata; otherwise the broker is marked broken and the case fails."""
        problem = self._serving_problem()
        if problem is not None:
            self._broken = True
            raise AssertionError(f"{context}: {problem}")

    def _serving_problem(self) -> str | None:
        if not self.broker.alive:
            return f"the broker exited with {self.broker.process.returncode}:\n{self.broker.output()[-3000:]}"
        try:
            with self._fresh_probe() as probe:
                probe.request(protocol.METADATA, protocol.MetadataRequest([STORED_TOPIC]), SERVING_WAIT_S)
        except (AssertionError, RillError) as error:
            return f"a fresh client gets no metadata ({error}); broker output:\n{self.broker.output()[-3000:]}"
        return None

    # ---- invariants -------------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """The broker serves a fresh client, and everything stored before reads back byte-identical
        (after a restart, if a case broke the broker: what it stored must survive that too)."""
        if self._broken or not self.broker.alive:
            self._restart()
        self._check_serving("invariant check")
        with self._fresh_probe() as probe:
            for partition, before in self.stored.items():
                now = self._read_partition(probe, partition)
                assert now[:len(before)] == before, (
                    f"{STORED_TOPIC}-{partition}: the batches stored before the fuzzing changed")
            assert self._read_committed(probe) == self.committed, f"{STORED_GROUP}'s committed offsets changed"

    # ---- helpers ----------------------------------------------------------------------------------

    def _fresh_probe(self) -> WireProbe:
        """A new connection, as a new client makes (close it: use it in a ``with`` block)."""
        return WireProbe(self._context, self.broker.bootstrap)

    def _create_stored_topic(self, probe: WireProbe) -> None:
        request = protocol.CreateTopicRequest(STORED_TOPIC, STORED_PARTITIONS, 1, {}, 10_000)
        result = probe.request(protocol.CREATE_TOPIC, request, SETUP_TIMEOUT_S)
        assert result.error_code == 0, result.error_message

        def leaders_known() -> bool:
            answer = probe.request(protocol.METADATA, protocol.MetadataRequest([STORED_TOPIC]), SETUP_TIMEOUT_S)
            return all(p.leader > 0 for p in answer.topics[0].partitions)

        wait_until(leaders_known, SETUP_TIMEOUT_S, f"{STORED_TOPIC} to have leaders")

    def _produce(self, probe: WireProbe, partition: int, batch: bytes) -> None:
        request = protocol.ProduceRequest(-1, 10_000, [
            protocol.TopicProduceData(STORED_TOPIC, [protocol.PartitionProduceData(partition, batch)])])
        result = probe.request(protocol.PRODUCE, request, SETUP_TIMEOUT_S).topics[0].partitions[0]
        assert result.error_code == 0, result.error_message

    def _commit_stored_offset(self, probe: WireProbe) -> None:
        """Commit for a group without members (as an admin reset does), once the offsets topic exists."""

        def coordinator_found() -> bool:
            answer = probe.request(protocol.FIND_COORDINATOR, protocol.FindCoordinatorRequest(STORED_GROUP),
                                   SETUP_TIMEOUT_S)
            return answer.error_code == 0

        wait_until(coordinator_found, SETUP_TIMEOUT_S, "a group coordinator", interval_s=0.2)
        request = protocol.OffsetCommitRequest(STORED_GROUP, "", -1, [protocol.OffsetCommitTopic(
            STORED_TOPIC, [protocol.OffsetCommitPartition(0, STORED_OFFSET, "stored before fuzzing")])])
        answer = probe.request(protocol.OFFSET_COMMIT, request, SETUP_TIMEOUT_S)
        assert answer.error_code == 0 and not any(p.error_code for t in answer.topics for p in t.partitions), answer

    def read_partition(self, partition: int, offset: int) -> bytes:
        """The batches of a stored partition from ``offset`` on, as a consumer's fetch returns them."""
        with self._fresh_probe() as probe:
            return self._read_partition(probe, partition, offset)

    @staticmethod
    def _read_partition(probe: WireProbe, partition: int, offset: int = 0) -> bytes:
        request = protocol.FetchRequest(0, 0, FETCH_BYTES, [
            protocol.TopicFetch(STORED_TOPIC, [protocol.PartitionFetch(partition, offset, FETCH_BYTES)])])
        result = probe.request(protocol.FETCH, request, ANSWER_WAIT_S).topics[0].partitions[0]
        assert result.error_code == 0, f"{STORED_TOPIC}-{partition} does not read back: {result.error_message}"
        return result.records

    @staticmethod
    def _read_committed(probe: WireProbe) -> protocol.OffsetFetchResponse:
        return probe.request(protocol.OFFSET_FETCH, protocol.OffsetFetchRequest(STORED_GROUP, None), ANSWER_WAIT_S)

