"""IsrUpkeep sends the ISR changes one check finds as AlterPartition requests (and one AlterIsr each to a
controller that does not know AlterPartition); a refused change is forgotten alone."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rill.client import protocol
from rill.client.errors import FencedLeaderEpochError, UnsupportedVersionError
from rill.node.metadata.state import PartitionState
from rill.node.replication import isr as isr_module
from rill.node.replication.isr import IsrUpkeep

LEADER = 1


@dataclass
class FakeLog:
    log_end_offset: int = 0


@dataclass
class FakePartition:
    """What IsrUpkeep reads of a Partition: a leader that wants follower 2 in its ISR."""

    topic: str
    index: int
    state: PartitionState = field(default_factory=lambda: PartitionState((1, 2), LEADER, 3, (1,), 5))
    proposed_isr: tuple[int, ...] | None = None
    is_leader: bool = True
    offline: bool = False
    under_replicated: bool = True
    high_watermark: int = 0
    log: FakeLog = field(default_factory=FakeLog)

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.index}"

    def wanted_isr(self, lag_max_s: float) -> tuple[int, ...] | None:
        return (1, 2) if self.state.isr == (1,) else None

    def propose_isr(self, isr: tuple[int, ...] | None) -> None:
        self.proposed_isr = isr


class FakeReplicas:
    def __init__(self, partitions: list[FakePartition]):
        self.partitions = {(p.topic, p.index): p for p in partitions}
        self.touched = set(self.partitions)

    def leader_partitions(self) -> list[FakePartition]:
        return list(self.partitions.values())


class FakeClient:
    """Answers AlterPartition with ``refuse`` codes per (topic, partition), or as an older controller."""

    def __init__(self, knows_alter_partition: bool = True, refuse: dict | None = None):
        self.knows_alter_partition = knows_alter_partition
        self.refuse = refuse or {}
        self.requests: list[tuple[str, object]] = []

    async def request(self, node_id: int, api: protocol.Api, body, timeout_ms: int):
        self.requests.append((api.name, body))
        if api is protocol.ALTER_ISR:
            return protocol.BrokerResult(0, "")
        if not self.knows_alter_partition:
            raise UnsupportedVersionError("unknown request type 31")
        return protocol.AlterPartitionResponse(0, "", [protocol.AlterPartitionTopicResult(topic.topic, [
            protocol.AlterPartitionResult(item.partition, self.refuse.get((topic.topic, item.partition), 0), "")
            for item in topic.partitions]) for topic in body.topics])


def run_check(client: FakeClient, partitions: list[FakePartition]) -> None:
    upkeep = IsrUpkeep(LEADER, client, FakeReplicas(partitions), lambda: 3, 10_000)

    async def scenario() -> None:
        await upkeep.check()
        while upkeep._in_flight:
            await asyncio.sleep(0.001)

    asyncio.run(scenario())


def test_one_check_sends_one_request_topic_by_topic_and_a_refused_change_is_forgotten_alone():
    partitions = [FakePartition("orders", 1), FakePartition("payments", 0), FakePartition("orders", 0)]
    client = FakeClient(refuse={("orders", 1): FencedLeaderEpochError.code})
    run_check(client, partitions)
    assert [name for name, _ in client.requests] == ["alter_partition"]
    request = client.requests[0][1]
    assert request.node_id == LEADER
    assert [(t.topic, [(p.partition, p.leader_epoch, p.partition_epoch, p.isr) for p in t.partitions])
            for t in request.topics] == [("orders", [(0, 3, 5, [1, 2]), (1, 3, 5, [1, 2])]),
                                         ("payments", [(0, 3, 5, [1, 2])])]
    assert [p.proposed_isr for p in partitions] == [None, (1, 2), (1, 2)]


def test_requests_hold_at_most_alter_partition_max_partitions(monkeypatch):
    monkeypatch.setattr(isr_module, "ALTER_PARTITION_MAX", 2)
    client = FakeClient()
    run_check(client, [FakePartition("orders", index) for index in range(5)])
    sizes = [sum(len(t.partitions) for t in body.topics) for _, body in client.requests]
    assert sizes == [2, 2, 1]


def test_a_controller_without_alter_partition_gets_one_alter_isr_each():
    client = FakeClient(knows_alter_partition=False)
    partitions = [FakePartition("orders", 0), FakePartition("orders", 1)]
    run_check(client, partitions)
    assert [name for name, _ in client.requests] == ["alter_partition", "alter_isr", "alter_isr"]
    assert sorted((body.topic, body.partition, body.isr) for name, body in client.requests if name == "alter_isr") \
        == [("orders", 0, [1, 2]), ("orders", 1, [1, 2])]
    assert [p.proposed_isr for p in partitions] == [(1, 2), (1, 2)]
