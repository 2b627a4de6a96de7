"""pysyncobj's Raft thread, sleeping until its next deadline instead of waking on a short fixed tick.

pysyncobj runs Raft on one thread that loops over ``_onTick(period)``:
do what is due, then poll the sockets for up to ``period``. Everything a
metadata change needs is event-driven: submitting a command writes to a
pipe the poll watches (with ``appendEntriesUseBatch`` off), the leader
sends the entry at once, and every answer on the way (the followers'
acknowledgements, the new commit index) ends the poll it arrives in, so a
change commits and is applied everywhere without waiting for a tick
(tests/node/test_raft_ticks.py). Only two things are due by time: the
leader's heartbeat (``appendEntriesPeriod`` after the last append) and a
follower's election deadline (it is pushed back by every heartbeat). A
fixed short tick checks for them hundreds of times a second in every idle
broker; a long one would send heartbeats late and start elections late.

:class:`DeadlineSyncObj` polls until whichever of the two comes first, and
at most ``autoTickPeriod`` (the housekeeping: reconnecting to peers every
``connectionRetryTime``, the leader's step-down check, the journal's flush
timer). An idle follower then wakes once per heartbeat, an idle leader once
per heartbeat and per answer to it.
"""

from __future__ import annotations

from pysyncobj import SyncObj
from pysyncobj.monotonic import monotonic as monotonic_time

HEARTBEAT_DUE = "_SyncObj__newAppendEntriesTime"  # pysyncobj's private deadlines (name-mangled)
ELECTION_DUE = "_SyncObj__raftElectionDeadline"


class DeadlineSyncObj(SyncObj):
    """A SyncObj whose Raft thread sleeps until the next heartbeat or election deadline (see the module).

    Reads two private deadlines of pysyncobj (HEARTBEAT_DUE, ELECTION_DUE;
    tests/node/test_raft_ticks.py checks them on the installed version).
    Should another version lack them, it ticks every heartbeat period: late
    elections by up to a period, no late heartbeats. Sets no attribute of its
    own: SyncObj pickles attributes added after its ``__init__`` into the Raft
    snapshot.
    """

    def _onTick(self, timeToWait: float = 0.0) -> None:
        super()._onTick(self.poll_wait(timeToWait))

    def poll_wait(self, longest: float) -> float:
        """How long this tick may poll the sockets: until the next deadline due by time, at most ``longest``.

        A deadline already passed is handled by this very tick: a leader
        sends its heartbeat (the next one is due a period later); a follower
        calls an election, whose own deadline and answers wake it again, or,
        connected to nobody, waits for the reconnection the housekeeping does.
        """
        period = self.conf.appendEntriesPeriod
        leader = self._isLeader()
        due = getattr(self, HEARTBEAT_DUE if leader else ELECTION_DUE, None)
        if due is None:
            return min(longest, period)
        left = due - monotonic_time()
        if left <= 0:
            left = period if leader else longest
        return min(longest, left)
