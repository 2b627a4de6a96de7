"""``rill top``: a live view of a cluster's brokers, topics and consumer groups, refreshed every ``--interval``.

A sampler thread gathers a ClusterView (cluster/top_sampler.py) every
interval, so a slow or dead broker never delays a key press; the main
thread draws the newest view (cluster/top_tables.py) with rich Live on the
terminal's alternate screen, and reads keys in cbreak mode
(cluster/keys.py). ``q`` quits; so does Ctrl-C, with the same exit status
0 (quitting is the only way to end a live view, not a failure). SIGTERM
ends it with status 143. Either way the screen and the terminal's settings
are restored. When stdin is not a terminal, Ctrl-C is the only way out;
when stdout is not one, the last view is printed at the end.

Registered on the ``rill`` group by cli.py, whose group turns every
RillError into one line ``error: ...`` and exit code 1.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.live import Live
from rill.cluster.keys import key_reader
from rill.cluster.top_sampler import ClusterSampler, ClusterView
from rill.cluster.top_tables import render

QUIT_KEYS = frozenset("qQ")
KEY_POLL_S = 0.1  # how often the screen looks for a new view or a new terminal size
REQUEST_TIMEOUT_MS = 2_000
SAMPLER_JOIN_S = REQUEST_TIMEOUT_MS / 1000 + 1


def _cli():
    """cluster/cli.py, looked up when the command runs (it imports this module to register the command)."""
    return importlib.import_module("rill.cluster.cli")


class Refresher(threading.Thread):
    """Takes a sample every ``interval_s`` (or as fast as samples come, if slower) until stopped; the newest
    view is ``latest``. It owns the sampler from start on and closes it when it ends. An unexpected error (a
    bug) ends the thread and is kept in ``failure`` for the screen's thread to raise."""

    def __init__(self, sampler: ClusterSampler, interval_s: float):
        super().__init__(name="rill-top-sampler", daemon=True)
        self._sampler = sampler
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self.latest: ClusterView | None = None
        self.failure: Exception | None = None

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                self.latest = self._sampler.sample()
                self._stopping.wait(max(0.0, self._interval_s - (time.monotonic() - started)))
        except Exception as error:  # noqa: BLE001 - a bug: the screen's thread raises it after restoring the terminal
            self.failure = error
        finally:
            self._sampler.close()

    def stop(self) -> None:
        self._stopping.set()


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) here, so the blocks that restore the terminal run."""
    def exit_on_sigterm(signal_number: int, frame: object) -> None:
        raise SystemExit(128 + signal_number)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show(refresher: Refresher, bootstrap: str, interval_s: float) -> None:
    """Draw each new view (and redraw on a new terminal size) until q is pressed."""
    console = Console()
    with key_reader(sys.stdin) as keys, \
            Live(console=console, screen=console.is_terminal, auto_refresh=False) as live:
        shown_view, shown_size = None, None
        while True:
            if refresher.failure is not None:
                raise refresher.failure
            view, size = refresher.latest, console.size
            if shown_size is None or view is not shown_view or size != shown_size:
                live.update(render(view, bootstrap, interval_s, size.height), refresh=True)
                shown_view, shown_size = view, size
            if QUIT_KEYS.intersection(keys.wait(KEY_POLL_S)):
                return


bootstrap_option = click.option(
    "--bootstrap", envvar="RILL_BOOTSTRAP", default=lambda: _cli().DEFAULT_BOOTSTRAP,
    show_default="the local cluster's nodes", help="Brokers to connect to first: host:port[,host:port...] "
    "(env RILL_BOOTSTRAP).")


@click.command()
@bootstrap_option
@click.option("--interval", "interval_s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
def top(bootstrap: str, interval_s: float) -> None:
    """Watch brokers, topics and consumer groups live; q or Ctrl-C quits.

    Brokers: id, address, state (up, down: does not answer, fenced), Raft
    role, controller, partitions led, under-replicated partitions. Topics
    (internal ones left out): partitions, sum of log end offsets, records
    per second appended (in) and committed by consumer groups (out), from
    the change between refreshes. Groups: state, members, total lag and the
    coordinator's lag state. Readable in 80 columns; rows that do not fit
    the terminal's height are left out (busiest topics and groups with the
    most lag stay). Exits with status 0 on q and on Ctrl-C.
    """
    sampler = ClusterSampler(bootstrap, REQUEST_TIMEOUT_MS)  # a bad --bootstrap fails here, as one error line
    refresher = Refresher(sampler, interval_s)
    refresher.start()
    try:
        with _sigterm_exits():
            _show(refresher, bootstrap, interval_s)
    except KeyboardInterrupt:
        pass  # Ctrl-C is a way to quit, as q is
    finally:
        refresher.stop()
        refresher.join(SAMPLER_JOIN_S)
