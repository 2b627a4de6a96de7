"""Applying the group's assignment to a consumer: what to give up, what to start reading, and from where.

Cooperative, as in KIP-848: partitions kept are read on without a pause.
A partition taken away gets ``on_revoke`` and then (with auto-commit) a
synchronous commit of its position before it is dropped, so its next owner
starts where this member stopped; a partition given starts at the group's
committed offset (else per ``auto_offset_reset``) and gets ``on_assign``.

A callback that raises does not stop the rebalance: the exception is
logged and the partitions move all the same (kafka-python's choice). Were
it to propagate, a member would keep partitions the coordinator already
took away, and the group could not finish the rebalance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from rill.client.consumer_config import RebalanceCallback
from rill.client.group_membership import GroupMembership
from rill.client.offset_committer import OffsetCommitter
from rill.client.subscription_state import SubscriptionState
from rill.client.types import TopicPartition

log = logging.getLogger(__name__)


class Rebalancer:
    """Moves a group member's partitions when the coordinator changes its assignment."""

    def __init__(self, consumer: Any, group: GroupMembership, subscriptions: SubscriptionState,
                 committer: OffsetCommitter, on_assign: RebalanceCallback | None, on_revoke: RebalanceCallback | None):
        self._consumer = consumer
        self._group = group
        self._subscriptions = subscriptions
        self._committer = committer
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    def apply(self, assignment: set[TopicPartition]) -> bool:
        """Give up what the coordinator took (on_revoke, then commit), start reading what it gave.

        Returns whether partitions were added (their leaders may be missing from the metadata).
        """
        owned = self._subscriptions.assigned()
        revoked = sorted(owned - assignment)
        added = sorted(assignment - owned)
        if revoked:
            log.info("group %s: member %s gives up %s", self._group.group_id, self._group.member_id, names(revoked))
            self.revoke(revoked)
            self._group.heartbeat_soon()
        if added:
            self._add(added)
            self._group.heartbeat_soon()
        return bool(added)

    def _add(self, partitions: list[TopicPartition]) -> None:
        committed = self._committer.committed(partitions)
        log.info("group %s: member %s takes %s from %s", self._group.group_id, self._group.member_id,
                 names(partitions), [committed[tp] for tp in partitions])
        for tp in partitions:
            self._subscriptions.add(tp)
            self._subscriptions.seek(tp, committed[tp])
        self._call("on_assign", self._on_assign, partitions)

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """on_revoke, then (with auto-commit) commit the positions, then stop reading the partitions."""
        self._call("on_revoke", self._on_revoke, partitions)
        if self._committer.auto_commit:
            positions = self._subscriptions.positions()
            self._committer.commit_quietly({tp: positions[tp] for tp in partitions if tp in positions},
                                           asynchronous=False)
        self._subscriptions.remove(partitions)

    def _call(self, name: str, callback: RebalanceCallback | None, partitions: list[TopicPartition]) -> None:
        if callback is None:
            return
        try:
            callback(self._consumer, list(partitions))
        except Exception:  # the application's code: the rebalance must go on
            log.exception("group %s: the %s callback raised for %s; the partitions move all the same",
                          self._group.group_id, name, names(partitions))


def names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in partitions)
