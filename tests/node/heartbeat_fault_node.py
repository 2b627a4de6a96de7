"""A real broker (the `rill node` command) whose heartbeat task hits an unexpected exception once a trigger
file exists: ``python heartbeat_fault_node.py TRIGGER_FILE node --id 1 --config node.toml``.

Used by test_garbage_burst.py to show that a dying long-running task takes the process down with a CRITICAL
line and a non-zero exit code, instead of leaving a zombie that the controller fences. No broker code path
raises there today (the serve loop and the heartbeats handle every error they know), so the fault is injected
here, in the test's own launcher, not through a hook in the broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rill.cluster.cli import main
from rill.node.metadata.lifecycle import BrokerLifecycle

TRIGGER = Path(sys.argv.pop(1))
_beat = BrokerLifecycle._beat


async def _beat_until_triggered(self: BrokerLifecycle) -> None:
    if TRIGGER.exists():
        raise RuntimeError("injected fault: the heartbeat loop hit a bug")
    await _beat(self)


BrokerLifecycle._beat = _beat_until_triggered
main(prog_name="rill")
