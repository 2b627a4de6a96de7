"""Every partition log of one broker node, and the periodic work over them: retention, compaction, flushing."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable, Mapping

from rill.client.errors import InvalidTopicError, RillError
from rill.node.log.config import LogConfig
from rill.node.log.log import Log, wall_clock_ms

# Kafka's legal topic names; the partition directory is "<topic>-<partition>".
TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
# Greedy on the topic, so the split is on the last "-": topic names may contain "-".
PARTITION_DIRECTORY = re.compile(r"(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>[0-9]+)")

TopicConfigs = Mapping[str, LogConfig] | Callable[[str], LogConfig | None]
EndOffsets = Callable[[str, int], int | None]

logger = logging.getLogger(__name__)


def _no_end_offset(topic: str, partition: int) -> None:
    return None


class LogManager:
    """The partition logs of one node, each in ``<data_dir>/<topic>-<partition>/``.

    On disk: one directory per partition replica, laid out as Log
    describes; nothing else in ``data_dir`` is touched, and directories
    whose names are not ``<topic>-<partition>`` are ignored.

    Invariants: at most one open Log per (topic, partition), and its
    directory name is derived from them.

    ``cleanable_end_offset(topic, partition)`` bounds what compaction of a
    partition may consider; the broker should give the high watermark, so
    that records a leader change could truncate never replace committed
    ones (None: the log end offset). A log whose compaction fails is left
    out of compaction until the node restarts, as Kafka's cleaner does.

    Not thread-safe, and needs no lock: the broker calls it from its one
    asyncio thread.
    """

    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig | None = None,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        cleanable_end_offset: EndOffsets = _no_end_offset,
    ) -> None:
        self.data_dir = data_dir
        self.default_config = default_config or LogConfig()
        self.cleanable_end_offset = cleanable_end_offset
        self._clock_ms = clock_ms
        self._logs: dict[tuple[str, int], Log] = {}
        self._uncleanable: set[tuple[str, int]] = set()
        data_dir.mkdir(parents=True, exist_ok=True)

    def get(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def get_or_create(self, topic: str, partition: int, config: LogConfig | None = None) -> Log:
        """The open log of the partition, opening (and recovering, or creating) it if needed."""
        log = self._logs.get((topic, partition))
        if log is None:
            directory = self._partition_directory(topic, partition)
            log = Log(directory, config or self.default_config, clock_ms=self._clock_ms)
            self._logs[(topic, partition)] = log
        return log

    def _partition_directory(self, topic: str, partition: int) -> Path:
        if not TOPIC_NAME.fullmatch(topic) or topic in (".", "..") or partition < 0:
            raise InvalidTopicError(f"no log directory for topic {topic!r} partition {partition}")
        return self.data_dir / f"{topic}-{partition}"

    def load_existing(self, configs_by_topic: TopicConfigs) -> list[tuple[str, int]]:
        """Open every partition directory in ``data_dir``; return the (topic, partition) pairs opened.

        ``configs_by_topic`` maps a topic to its LogConfig: a mapping, or a
        function; a topic missing from the mapping, or for which the function
        returns None, gets the default config.
        """
        config_for = configs_by_topic if callable(configs_by_topic) else self._lookup_in(configs_by_topic)
        opened = []
        for directory in sorted(self.data_dir.iterdir()):
            match = PARTITION_DIRECTORY.fullmatch(directory.name)
            if match is None or not directory.is_dir():
                continue
            topic, partition = match["topic"], int(match["partition"])
            self.get_or_create(topic, partition, config_for(topic))
            opened.append((topic, partition))
        return opened

    def _lookup_in(self, configs: Mapping[str, LogConfig]) -> Callable[[str], LogConfig]:
        return lambda topic: configs.get(topic, self.default_config)

    def partitions(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs with an open log."""
        return list(self._logs)

    def delete_topic(self, topic: str) -> int:
        """Delete every partition log of ``topic`` held here, files included; return how many."""
        doomed = [key for key in self._logs if key[0] == topic]
        for key in doomed:
            self._logs.pop(key).delete()
            self._uncleanable.discard(key)
        return len(doomed)

    def cleanup(self, now_ms: int) -> int:
        """Retention over every log whose policy has delete, then compaction of at most one log (see
        :meth:`compact_dirtiest`); return the number of segments retention deleted."""
        deleted = sum(log.delete_old_segments(now_ms) for log in self._logs.values())
        self.compact_dirtiest(now_ms)
        return deleted

    def compact_dirtiest(self, now_ms: int) -> tuple[str, int] | None:
        """Compact the log with the highest dirty ratio among those due; return its (topic, partition).

        One log per call keeps a pass on the broker's event loop bounded.
        """
        due = self._due_for_compaction(now_ms)
        if not due:
            return None
        _, key = max(due)
        try:
            self._logs[key].compact(now_ms, self.cleanable_end_offset(*key))
        except RillError:
            logger.exception("compaction of %s-%d failed; it is not compacted again until restart", *key)
            self._uncleanable.add(key)
            return None
        return key

    def _due_for_compaction(self, now_ms: int) -> list[tuple[float, tuple[str, int]]]:
        """(dirty ratio, key) of each compacted log whose ratio reached its min.cleanable.dirty.ratio."""
        due = []
        for key, log in self._logs.items():
            if log.config.compact and key not in self._uncleanable:
                ratio = log.dirty_ratio(now_ms, self.cleanable_end_offset(*key))
                if ratio > 0 and ratio >= log.config.min_cleanable_dirty_ratio:
                    due.append((ratio, key))
        return due

    def flush_due(self, now_ms: int) -> int:
        """Flush every log whose flush.ms has passed; return how many were flushed."""
        return sum(log.flush_if_due(now_ms) for log in self._logs.values())

    def close_all(self) -> None:
        """Close every log cleanly, so the next start skips recovery."""
        while self._logs:
            _, log = self._logs.popitem()
            log.close()
