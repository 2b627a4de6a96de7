"""OffsetIndex, TimeIndex and LogConfig on their own."""

from __future__ import annotations

import dataclasses

import pytest
from rill.client.errors import InvalidConfigError
from rill.node.log.config import LogConfig
from rill.node.log.offset_index import IndexEntry, OffsetIndex
from rill.node.log.time_index import TimeEntry, TimeIndex


def test_offset_index_lookup_returns_the_floor_entry(tmp_path):
    index = OffsetIndex(tmp_path / "a.index", base_offset=100, max_size_bytes=80)
    for offset, position in ((110, 500), (120, 1000), (135, 1700)):
        index.append(offset, position)
    assert index.lookup(105) == IndexEntry(100, 0)
    assert index.lookup(110) == IndexEntry(110, 500)
    assert index.lookup(134) == IndexEntry(120, 1000)
    assert index.lookup(10**9) == IndexEntry(135, 1700)
    assert index.max_entries == 10


def test_offset_index_truncates_and_reloads(tmp_path):
    path = tmp_path / "a.index"
    index = OffsetIndex(path, base_offset=0, max_size_bytes=800)
    for offset in range(1, 11):
        index.append(offset * 10, offset * 100)
    index.truncate_to(50)
    assert index.last_entry() == IndexEntry(40, 400)
    index.close()
    assert path.stat().st_size == 4 * 8
    reloaded = OffsetIndex(path, base_offset=0, max_size_bytes=800)
    assert reloaded.load(log_size_bytes=1000)
    assert reloaded.lookup(45) == IndexEntry(40, 400)
    assert not OffsetIndex(path, base_offset=0, max_size_bytes=800).load(log_size_bytes=400)


def test_offset_index_refuses_entries_that_go_back(tmp_path):
    index = OffsetIndex(tmp_path / "a.index", base_offset=0, max_size_bytes=800)
    index.append(10, 100)
    with pytest.raises(AssertionError):
        index.append(10, 200)


def test_missing_offset_index_does_not_load(tmp_path):
    assert not OffsetIndex(tmp_path / "a.index", base_offset=0, max_size_bytes=800).load(log_size_bytes=0)


def test_time_index_appends_only_when_the_timestamp_grows(tmp_path):
    index = TimeIndex(tmp_path / "a.timeindex", base_offset=0, max_size_bytes=120)
    index.maybe_append(100, 0)
    index.maybe_append(100, 5)
    index.maybe_append(90, 6)
    index.maybe_append(200, 7)
    assert index.entry_count == 2
    assert index.lookup(50) == 0
    assert index.lookup(150) == 0
    assert index.lookup(200) == 7
    assert index.last_entry() == TimeEntry(200, 7)


def test_time_index_truncates_and_reloads(tmp_path):
    path = tmp_path / "a.timeindex"
    index = TimeIndex(path, base_offset=1000, max_size_bytes=120)
    for number in range(5):
        index.maybe_append(10 * number, 1000 + 3 * number)
    index.truncate_to(1006)
    index.close()
    reloaded = TimeIndex(path, base_offset=1000, max_size_bytes=120)
    assert reloaded.load()
    assert reloaded.last_entry() == TimeEntry(10, 1003)


def test_log_config_has_kafka_defaults():
    config = LogConfig()
    assert (config.segment_bytes, config.segment_ms, config.retention_ms) == (1073741824, 604800000, 604800000)
    assert (config.retention_bytes, config.flush_messages, config.flush_ms) == (-1, None, None)
    assert (config.max_message_bytes, config.index_interval_bytes, config.segment_index_bytes) == (
        1048588, 4096, 10485760,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.segment_bytes = 1


@pytest.mark.parametrize(
    "settings",
    [
        {"segment_bytes": 0},
        {"segment_bytes": 2**31},
        {"segment_ms": 0},
        {"retention_ms": -2},
        {"retention_bytes": -5},
        {"flush_messages": 0},
        {"flush_ms": -1},
        {"segment_index_bytes": 4},
    ],
)
def test_log_config_refuses_bad_values(settings):
    with pytest.raises(InvalidConfigError):
        LogConfig(**settings)
