"""The pyzmq flavour the client uses: plain, or ``zmq.green`` when gevent has patched the process.

Locust runs users as gevent greenlets and monkey-patches threads into
greenlets; a blocking pyzmq poll would then stall every user. Under gevent
the client's contexts (hence sockets) and pollers come from ``zmq.green``,
whose blocking calls yield to the gevent hub. Elsewhere nothing changes.
"""

from __future__ import annotations

import sys

import zmq


def gevent_patched() -> bool:
    """Whether gevent monkey-patched sockets in this process (as Locust does)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def new_context() -> zmq.Context:
    if gevent_patched():
        from zmq import green

        return green.Context()
    return zmq.Context()


def new_poller() -> zmq.Poller:
    if gevent_patched():
        from zmq import green

        return green.Poller()
    return zmq.Poller()
