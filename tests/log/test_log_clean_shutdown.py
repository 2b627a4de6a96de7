"""One clean-shutdown marker per data directory: written by LogManager.close_all, removed once a start opened every
log; logs found with it are not scanned, without it they recover. An older version's per-partition markers count."""

from __future__ import annotations

import asyncio

from rill.client.batch import HEADER_SIZE, encode_batch
from rill.client.errors import InvalidConfigError
from rill.node.log.config import LogConfig
from rill.node.log.loader import CLEAN_SHUTDOWN_FILE
from rill.node.log.log import Log
from rill.node.log.manager import OPEN_BATCH, LogManager

FIRST_LOG = "00000000000000000000.log"


def filled_manager(data_dir, clock, partitions: int = 2) -> tuple[LogManager, list[int]]:
    """A manager with ``partitions`` logs of topic orders, three one-record batches each; the file position of
    the second batch."""
    manager = LogManager(data_dir, clock_ms=clock)
    positions = []
    for partition in range(partitions):
        log = manager.get_or_create("orders", partition)
        for value in (b"a", b"b", b"c"):
            positions.append(log.size_bytes)
            log.append(encode_batch([value]), leader_epoch=0)
    return manager, positions[1:2]


def flip_payload_byte(log_file, position: int) -> None:
    """Corrupt the batch at ``position``: a scan finds it (CRC), a trusting open does not."""
    with open(log_file, "r+b") as file:
        file.seek(position + HEADER_SIZE + 2)
        original = file.read(1)
        file.seek(position + HEADER_SIZE + 2)
        file.write(bytes([original[0] ^ 0x5A]))


def reopen(data_dir, clock, configs=None) -> LogManager:
    manager = LogManager(data_dir, clock_ms=clock)
    asyncio.run(manager.load_existing(configs or {}))
    return manager


def test_close_all_leaves_one_marker_and_the_next_start_trusts_the_logs_and_removes_it(tmp_path, clock):
    manager, [second] = filled_manager(tmp_path, clock)
    asyncio.run(manager.close_all())
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert not list(tmp_path.glob(f"*/{CLEAN_SHUTDOWN_FILE}")), "no marker per partition"
    flip_payload_byte(tmp_path / "orders-0" / FIRST_LOG, second)
    reopened = reopen(tmp_path, clock)
    assert reopened.get("orders", 0).log_end_offset == 3, "not scanned: the flipped byte went unnoticed"
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists(), "removed once the logs are open"


def test_without_the_marker_every_log_recovers(tmp_path, clock):
    manager, [second] = filled_manager(tmp_path, clock)
    for log in (manager.get("orders", 0), manager.get("orders", 1)):
        log.close_files()  # a crash: no close_all
    flip_payload_byte(tmp_path / "orders-0" / FIRST_LOG, second)
    reopened = reopen(tmp_path, clock)
    assert reopened.get("orders", 0).log_end_offset == 1, "scanned: cut at the flipped batch"
    assert reopened.get("orders", 1).log_end_offset == 3


def test_an_offline_log_leaves_no_marker(tmp_path, clock):
    manager, _ = filled_manager(tmp_path, clock)
    manager.take_offline("orders", 0)
    asyncio.run(manager.close_all())
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def test_a_log_left_closed_at_a_start_after_a_crash_leaves_no_marker_until_it_is_opened(tmp_path, clock):
    manager, _ = filled_manager(tmp_path, clock)
    manager.get("orders", 0).close_files()  # a crash
    manager.get("orders", 1).close_files()

    def refuse(topic: str) -> LogConfig:
        raise InvalidConfigError("a stored config this version cannot apply")

    left_closed = reopen(tmp_path, clock, refuse)
    assert left_closed.partitions() == []
    asyncio.run(left_closed.close_all())
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists(), "its logs were never recovered"

    opened_later = reopen(tmp_path, clock, refuse)
    opened_later.get_or_create("orders", 0)
    opened_later.get_or_create("orders", 1)
    asyncio.run(opened_later.close_all())
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def test_a_data_directory_of_an_older_version_starts_from_its_per_partition_markers(tmp_path, clock):
    manager, [second] = filled_manager(tmp_path, clock)
    asyncio.run(manager.close_all())
    (tmp_path / CLEAN_SHUTDOWN_FILE).unlink()
    for directory in ("orders-0", "orders-1"):
        (tmp_path / directory / CLEAN_SHUTDOWN_FILE).write_bytes(b"")  # as the older version closed its logs
    flip_payload_byte(tmp_path / "orders-0" / FIRST_LOG, second)
    reopened = reopen(tmp_path, clock)
    assert reopened.get("orders", 0).log_end_offset == 3, "trusted: the older version closed it cleanly"
    assert not list(tmp_path.glob(f"*/{CLEAN_SHUTDOWN_FILE}")), "removed: a later crash is recovered"


def test_more_logs_than_one_batch_open_in_order(tmp_path, clock):
    count = 2 * OPEN_BATCH + 3
    for partition in range(count):
        Log(tmp_path / f"orders-{partition}", LogConfig(), clock_ms=clock).append(encode_batch([b"v"]), 0)
    manager = LogManager(tmp_path, clock_ms=clock)
    opened = asyncio.run(manager.load_existing({}))
    expected = sorted(("orders", partition) for partition in range(count))
    assert opened == sorted(opened, key=lambda key: f"{key[0]}-{key[1]}") and sorted(opened) == expected
    assert sorted(manager.partitions()) == expected
    assert all(manager.get(*key).log_end_offset == 1 for key in expected)
