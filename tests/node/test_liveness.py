"""BrokerLiveness: which brokers the controller fences, with a clock the test moves by hand."""

from __future__ import annotations

from rill.node.metadata.liveness import OWN_STALL_S, BrokerLiveness

SESSION_TIMEOUT_MS = 3_000
TICK_S = 0.1


class Ports:
    """What the connection monitors say: since when connecting to each broker fails."""

    def __init__(self):
        self.refused: dict[int, float] = {}

    def refused_since(self, node_id: int) -> float | None:
        return self.refused.get(node_id)


def checked_every_tick(liveness: BrokerLiveness, node_ids: list[int], start: float, end: float,
                       heartbeats: dict[int, float] | None = None) -> dict[int, str]:
    """Run the controller's checks every TICK_S from ``start`` to ``end`` (brokers in ``heartbeats``
    heartbeat every that many seconds); what the first check that fences anything returned."""
    now = start
    last_beat = {node_id: start for node_id in heartbeats or {}}
    while now <= end:
        for node_id, interval_s in (heartbeats or {}).items():
            if now - last_beat[node_id] >= interval_s:
                liveness.heard_from(node_id, now)
                last_beat[node_id] = now
        due = liveness.to_fence(node_ids, now)
        if due:
            return due
        now = round(now + TICK_S, 6)
    return {}


def test_silent_broker_is_fenced_after_the_session_timeout_only():
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, Ports().refused_since)
    liveness.take_over([1, 2], 0.0)
    assert checked_every_tick(liveness, [1, 2], 0.0, 2.9, heartbeats={1: 0.2}) == {}
    due = checked_every_tick(liveness, [1, 2], 3.0, 3.5, heartbeats={1: 0.2})
    assert list(due) == [2] and "no heartbeat" in due[2]


def test_broker_whose_port_refuses_is_fenced_at_once():
    ports = Ports()
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, ports.refused_since)
    liveness.take_over([1, 2], 0.0)
    liveness.registered(2, 0.2)
    liveness.heard_from(2, 0.5)
    ports.refused[2] = 0.6
    due = liveness.to_fence([1, 2], 0.7)
    assert list(due) == [2] and "process is gone" in due[2]


def test_heartbeat_of_the_dead_process_read_after_the_refusal_does_not_save_it():
    """A heartbeat sent before the kill may be handled after the failed reconnection."""
    ports = Ports()
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, ports.refused_since)
    liveness.take_over([1, 2], 0.0)
    liveness.registered(2, 0.2)
    ports.refused[2] = 0.6
    liveness.heard_from(2, 0.65)
    assert list(liveness.to_fence([1, 2], 0.7)) == [2]


def test_new_controller_fences_a_dead_broker_at_once():
    """The old controller died: the new one never heard from it, and its port refuses."""
    ports = Ports()
    ports.refused[3] = 10.05
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, ports.refused_since)
    liveness.take_over([1, 2, 3], 10.3)
    assert list(liveness.to_fence([1, 2, 3], 10.3)) == [3]


def test_restarted_broker_that_registered_since_the_refusal_is_not_fenced():
    """The port refused while the broker restarted; the new process registered before the monitor
    connected again: it is alive."""
    ports = Ports()
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, ports.refused_since)
    liveness.take_over([1, 2], 0.0)
    ports.refused[2] = 1.0
    liveness.registered(2, 1.4)
    assert liveness.to_fence([1, 2], 1.45) == {}


def test_broker_this_controller_cannot_reach_is_fenced_once_at_most():
    """Connecting fails (a firewall, a wrong address) but the broker registers and heartbeats: after one
    fence by a new controller, which knows no registration, it registers again and stays."""
    ports = Ports()
    ports.refused[2] = 0.0
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, ports.refused_since)
    liveness.take_over([1, 2], 1.0)
    assert list(liveness.to_fence([1, 2], 1.0)) == [2]
    liveness.registered(2, 1.2)
    assert checked_every_tick(liveness, [1, 2], 1.3, 10.0, heartbeats={1: 0.2, 2: 0.2}) == {}


def test_new_controller_gives_every_broker_a_full_session():
    """A controller stopped for 2 s caused the election: it is not fenced by the new controller either."""
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, Ports().refused_since)
    liveness.take_over([1, 2, 3], 100.0)
    assert checked_every_tick(liveness, [1, 2, 3], 100.0, 102.9, heartbeats={1: 0.2, 2: 0.2}) == {}
    assert list(checked_every_tick(liveness, [1, 2, 3], 103.0, 103.5, heartbeats={1: 0.2, 2: 0.2})) == [3]


def test_controller_stall_does_not_count_as_the_brokers_silence():
    """The controller's own loop stalled for 5 s (a slow fsync): the brokers could not be heard meanwhile."""
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, Ports().refused_since)
    liveness.take_over([1, 2], 0.0)
    liveness.heard_from(2, 0.9)
    assert liveness.to_fence([1, 2], 1.0) == {}
    assert liveness.to_fence([1, 2], 1.0 + 5.0) == {}
    # Broker 1 was silent for 1 s before the stall and broker 2 for 0.1 s: they have 2 s and 2.9 s left.
    assert checked_every_tick(liveness, [1, 2], 6.1, 7.9) == {}
    assert list(checked_every_tick(liveness, [1, 2], 8.0, 8.8)) == [1]
    assert list(checked_every_tick(liveness, [2], 8.0, 9.0)) == [2]


def test_short_gaps_between_checks_are_not_forgiven():
    liveness = BrokerLiveness(SESSION_TIMEOUT_MS, Ports().refused_since)
    liveness.take_over([1], 0.0)
    now = 0.0
    while now < 3.5 and not liveness.to_fence([1], now):
        now += OWN_STALL_S * 0.9
    assert 3.0 < now < 3.0 + OWN_STALL_S, f"fenced at {now} s"
