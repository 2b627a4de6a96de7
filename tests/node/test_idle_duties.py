"""Periodic duties of an idle broker look at nothing they need not: group session checks wait for a member,
and the flush and compaction passes look only at the logs whose config asks for them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rill.client import protocol
from rill.node.coordinator.group_coordinator import GroupCoordinator, GroupLimits
from rill.node.coordinator.offset_records import partition_for
from rill.node.log.config import LogConfig
from rill.node.log.log import Log
from rill.node.log.manager import LogManager

LOOP_ROUNDS = 20  # asyncio.sleep(0) rounds: a duty that could run would have by then


def _join(group_id: str) -> protocol.ConsumerGroupHeartbeatRequest:
    return protocol.ConsumerGroupHeartbeatRequest(group_id, "", 0, "test", ["orders"], "", "range", 10_000, [])


def test_session_checks_wait_until_a_member_joins() -> None:
    async def scenario() -> None:
        coordinator = GroupCoordinator(1, SimpleNamespace(topics={}), None, None, 1 << 20,
                                       GroupLimits(10, 10, 4096, 1000), lag=None)
        coordinator._groups[partition_for("g")] = {}  # this broker leads the group's offsets partition
        check = asyncio.ensure_future(coordinator.expire_members())
        for _ in range(LOOP_ROUNDS):
            await asyncio.sleep(0)
        assert not check.done(), "no member anywhere: the session check waits"
        assert coordinator.heartbeat(_join("g")).error_code == 0
        await asyncio.wait_for(check, 10)  # a member joined: the check runs (and expires nobody yet)
        assert [len(group.members) for group in coordinator.held_groups()] == [1]
        await asyncio.wait_for(coordinator.expire_members(), 10)  # with a member it does not wait

    asyncio.run(scenario())


def test_flush_and_compaction_passes_look_only_at_logs_that_ask(tmp_path, monkeypatch) -> None:
    manager = LogManager(tmp_path)
    manager.get_or_create("plain", 0)
    manager.get_or_create("plain", 1)
    manager.get_or_create("timed", 0, LogConfig(flush_ms=10))
    manager.get_or_create("compacted", 0, LogConfig(compact=True))
    looked_at = []
    real_flush_due, real_dirty_ratio = Log.flush_due, Log.dirty_ratio
    monkeypatch.setattr(Log, "flush_due", lambda log, now: looked_at.append(log.directory.name)
                        or real_flush_due(log, now))
    monkeypatch.setattr(Log, "dirty_ratio", lambda log, *args: looked_at.append(log.directory.name)
                        or real_dirty_ratio(log, *args))
    asyncio.run(manager.flush_due(1_000_000))
    asyncio.run(manager.compact_dirtiest(1_000_000))
    assert looked_at == ["timed-0", "compacted-0"]
    manager.delete_topic("timed")  # a deleted log leaves the passes
    looked_at.clear()
    asyncio.run(manager.flush_due(2_000_000))
    assert looked_at == []
    asyncio.run(manager.close_all())
