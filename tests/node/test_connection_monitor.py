"""ConnectionMonitor against a real listening process: stopped is alive, killed is gone, restarted is back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import zmq
import zmq.asyncio
from brokers import free_ports
from rill.node.network.connection_monitor import ConnectionMonitor

LISTENER = """
import sys, time, zmq
socket = zmq.Context().socket(zmq.ROUTER)
socket.bind(f"tcp://127.0.0.1:{sys.argv[1]}")
print("listening", flush=True)
while True:
    time.sleep(1)
"""


def spawn(name: str, coroutine) -> asyncio.Task:
    return asyncio.ensure_future(coroutine)


def listen(port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"listening\n"
    return process


async def until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.01)


async def watch_listener(port: int) -> None:
    context = zmq.asyncio.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.RECONNECT_IVL, 50)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
    monitor = ConnectionMonitor(socket, "the listener", spawn)
    socket.connect(f"tcp://127.0.0.1:{port}")
    listener = listen(port)
    try:
        await until(lambda: monitor.connected, 10, "the connection")
        assert monitor.refused_since is None

        listener.send_signal(signal.SIGSTOP)  # the kernel keeps answering for a stopped process
        try:
            await asyncio.sleep(1.0)
            assert monitor.connected and monitor.refused_since is None, "a stopped process is not gone"
        finally:
            listener.send_signal(signal.SIGCONT)

        killed_at = time.monotonic()
        listener.kill()
        listener.wait()
        await until(lambda: monitor.refused_since is not None, 10, "a refused reconnection")
        assert not monitor.connected and monitor.refused_since >= killed_at

        listener = listen(port)
        await until(lambda: monitor.connected, 10, "the connection to the restarted process")
        assert monitor.refused_since is None
    finally:
        listener.kill()
        listener.wait()
        monitor.close()
        socket.close(linger=0)
        context.term()


def test_stopped_process_is_alive_killed_is_gone_restarted_is_back():
    asyncio.run(watch_listener(free_ports(1)[0]))


async def watch_nothing(port: int) -> None:
    context = zmq.asyncio.Context()
    socket = context.socket(zmq.DEALER)
    monitor = ConnectionMonitor(socket, "nothing", spawn)
    socket.connect(f"tcp://127.0.0.1:{port}")
    try:
        await until(lambda: monitor.refused_since is not None, 10, "a refused connection")
        assert not monitor.connected
    finally:
        monitor.close()
        socket.close(linger=0)
        context.term()


def test_port_nobody_listens_on_is_refused():
    asyncio.run(watch_nothing(free_ports(1)[0]))
