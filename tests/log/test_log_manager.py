"""LogManager: partition directories, loading at startup, topic deletion, periodic work."""

from __future__ import annotations

import asyncio

import pytest
from rill.client.batch import encode_batch
from rill.client.errors import InvalidTopicError
from rill.node.log.config import LogConfig
from rill.node.log.manager import LogManager


def test_get_or_create_opens_one_log_per_partition(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 2, LogConfig())
    assert manager.get_or_create("orders", 2, LogConfig()) is log
    assert manager.get("orders", 2) is log
    assert manager.get("orders", 3) is None
    assert log.directory == tmp_path / "orders-2"


def test_load_existing_splits_directory_names_on_the_last_dash(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock)
    manager.get_or_create("payment-events-v2", 0).append(encode_batch([b"a"]), leader_epoch=0)
    manager.get_or_create("payment-events-v2", 11).append(encode_batch([b"b", b"c"]), leader_epoch=0)
    manager.get_or_create("orders", 1)
    asyncio.run(manager.close_all())
    (tmp_path / "raft-journal").write_bytes(b"not a partition")
    (tmp_path / "not-a-partition-x").mkdir()
    small = LogConfig(segment_bytes=1000)

    reloaded = LogManager(tmp_path, clock_ms=clock)
    opened = asyncio.run(reloaded.load_existing({"payment-events-v2": small}))

    assert sorted(opened) == [("orders", 1), ("payment-events-v2", 0), ("payment-events-v2", 11)]
    assert reloaded.get("payment-events-v2", 11).log_end_offset == 2
    assert reloaded.get("payment-events-v2", 0).config == small
    assert reloaded.get("orders", 1).config == LogConfig()


def test_load_existing_accepts_a_function(tmp_path, clock):
    LogManager(tmp_path, clock_ms=clock).get_or_create("a-b", 0)
    manager = LogManager(tmp_path, clock_ms=clock)
    config = LogConfig(retention_ms=5)
    asyncio.run(manager.load_existing(lambda topic: config))
    assert manager.get("a-b", 0).config == config


def test_delete_topic_removes_its_directories_only(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock)
    for partition in range(3):
        manager.get_or_create("orders", partition)
    manager.get_or_create("orders-archive", 0)
    assert manager.delete_topic("orders") == 3
    assert manager.partitions() == [("orders-archive", 0)]
    renamed = sorted(path.name for path in tmp_path.iterdir() if path.name != "orders-archive-0")
    assert len(renamed) == 3 and all(name.startswith("orders-") and name.endswith("-delete") for name in renamed)
    manager.get_or_create("orders", 0)  # the topic can come back at once, in a fresh directory
    asyncio.run(manager.cleanup(now_ms=0))  # the next pass removes the renamed directories
    assert sorted(path.name for path in tmp_path.iterdir()) == ["orders-0", "orders-archive-0"]


def test_directories_of_deleted_partitions_left_by_a_crash_are_removed_at_start(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock)
    manager.get_or_create("orders", 0).append(encode_batch([b"a"]), leader_epoch=0)
    manager.delete_topic("orders")  # no cleanup pass before the "crash"
    reloaded = LogManager(tmp_path, clock_ms=clock)
    assert asyncio.run(reloaded.load_existing({})) == []
    assert list(tmp_path.iterdir()) == []


def test_cleanup_and_flush_due_run_over_every_log(tmp_path, clock):
    size_bytes = len(encode_batch([b"a"], timestamps=[0]))
    config = LogConfig(segment_bytes=size_bytes, retention_ms=1000, flush_ms=100)
    manager = LogManager(tmp_path, clock_ms=clock)
    for partition in range(2):
        log = manager.get_or_create("orders", partition, config)
        for _ in range(3):
            log.append(encode_batch([b"a"], timestamps=[0]), leader_epoch=0)
    assert asyncio.run(manager.flush_due(clock.now_ms + 100)) == 2
    assert asyncio.run(manager.cleanup(now_ms=5000)) == 4
    assert manager.get("orders", 0).log_start_offset == 2


def test_invalid_topic_names_get_no_directory(tmp_path):
    manager = LogManager(tmp_path)
    for topic in ("", "..", "a/b", "white space"):
        with pytest.raises(InvalidTopicError):
            manager.get_or_create(topic, 0)


def test_load_existing_gives_the_default_config_when_the_function_returns_none(tmp_path, clock):
    LogManager(tmp_path, clock_ms=clock).get_or_create("gone", 0)
    default = LogConfig(retention_ms=77)
    manager = LogManager(tmp_path, default, clock_ms=clock)
    asyncio.run(manager.load_existing(lambda topic: None))
    assert manager.get("gone", 0).config == default
