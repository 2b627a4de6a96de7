"""The controller: turns metadata requests into replicated Raft commands.

Only the broker that is the Raft leader acts; elsewhere requests get
NotControllerError. Decisions (replica placement, topic ids) are made here
and then submitted as replicated calls, so a deposed leader's decisions never
commit (ARCHITECTURE.md, "pysyncobj, used safely"). pysyncobj calls back on
its own thread; the callback hands the result to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import zlib
from typing import Any, Callable

from pysyncobj import FAIL_REASON, SyncObj

from rill.client.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    NotControllerError,
    RequestTimeoutError,
    TopicAlreadyExistsError,
    UnknownTopicError,
    error_for_code,
)
from rill.node.metadata_state import BrokerRegistration, MetadataState, PartitionState, TopicState
from rill.node.topic_config import validate_topic_config

TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
MAX_PARTITIONS = 10_000


def check_topic_name(name: str) -> None:
    """Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], and not '.' or '..'."""
    if not TOPIC_NAME.match(name) or name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} must be 1-249 characters of [a-zA-Z0-9._-]")


def place_replicas(brokers: list[int], partitions: int, replication_factor: int, start: int) -> list[tuple[int, ...]]:
    """Replica lists spread round-robin, so leaders (the first replica) spread evenly too."""
    ordered = sorted(brokers)
    count = len(ordered)
    return [
        tuple(ordered[(start + partition + replica) % count] for replica in range(replication_factor))
        for partition in range(partitions)
    ]


class Controller:
    """Creates and deletes topics and registers brokers through Raft. Runs on the asyncio loop."""

    def __init__(self, raft: SyncObj, state: MetadataState, topic_defaults: dict[str, str], timeout_s: float = 10.0):
        self._raft = raft
        self._state = state
        self._topic_defaults = topic_defaults
        self._timeout_s = timeout_s

    async def _submit(self, command: Callable[..., Any], *args: Any) -> Any:
        """Run a replicated command on the leader and wait for its result."""
        if not self._raft._isLeader():
            raise NotControllerError("this broker is not the Raft leader")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done(result: Any, error: int) -> None:
            loop.call_soon_threadsafe(_resolve, future, result, error)

        command(*args, callback=done)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeoutError("the metadata change did not commit in time") from None

    async def register_broker(self, registration: BrokerRegistration) -> None:
        await self._submit(self._state.register_broker, registration)

    async def create_topic(self, name: str, partitions: int, replication_factor: int, config: dict[str, str]) -> None:
        check_topic_name(name)
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(f"partitions must be 1..{MAX_PARTITIONS}, got {partitions}")
        live = list(self._state.brokers)
        if not 1 <= replication_factor <= len(live):
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} needs 1..{len(live)} (the live brokers)"
            )
        if name in self._state.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} exists already")
        full_config = validate_topic_config(config, self._topic_defaults)
        replica_lists = place_replicas(live, partitions, replication_factor, start=zlib.crc32(name.encode()) % len(live))
        topic = TopicState(
            name=name,
            topic_id=uuid.uuid4().hex,
            config=full_config,
            partitions=tuple(PartitionState(replicas, replicas[0], 0, replicas) for replicas in replica_lists),
        )
        code = await self._submit(self._state.create_topic, topic)
        if code:
            raise error_for_code(code, f"topic {name!r} exists already")

    async def delete_topic(self, name: str) -> None:
        topic = self._state.topics.get(name)
        if topic is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        code = await self._submit(self._state.delete_topic, name, topic.topic_id)
        if code:
            raise error_for_code(code, f"topic {name!r} does not exist")


def _resolve(future: asyncio.Future, result: Any, error: int) -> None:
    if future.done():
        return
    if error == FAIL_REASON.SUCCESS:
        future.set_result(result)
    else:
        future.set_exception(NotControllerError(f"the metadata change failed in Raft (reason {error})"))
