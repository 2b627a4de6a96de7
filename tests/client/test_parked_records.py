"""PartitionWork, the key-ordered bookkeeping behind run_handler: which records may run, what may be committed."""

from __future__ import annotations

from rill.client.parked_records import Job, PartitionWork
from rill.client.types import EMPTY_HEADERS, Record


def record(offset: int, key: bytes | None) -> Record:
    return Record("t", 0, offset, 0, key, b"v%d" % offset, EMPTY_HEADERS)


def test_a_busy_key_holds_its_later_records_back_and_releases_them_in_order():
    work = PartitionWork(10)
    records = [record(10, b"a"), record(11, b"b"), record(12, b"a"), record(13, None), record(14, b"a")]
    for each in records:
        work.admit(each)
    [first] = work.take_ready(1)
    failed = Job([first])
    work.hold(failed)
    assert [r.offset for r in work.take_ready(10)] == [11, 13], "other keys and keyless records go on"
    work.resolve([records[1], records[3]])
    assert work.low_mark == 10, "the commit stays before the record in retry"
    work.park(failed, due=5.0)
    assert work.due_jobs(4.0) == [] and work.due_jobs(5.0) == [failed]
    work.resolve([first])
    work.release(failed)
    assert [r.offset for r in work.take_ready(10)] == [12, 14], "the key's records, in offset order"
    assert work.low_mark == 12
    work.resolve([records[2], records[4]])
    assert work.low_mark == 15 and work.unresolved == 0


def test_only_the_job_holding_a_key_frees_it():
    work = PartitionWork(0)
    for each in (record(0, b"k"), record(1, b"k"), record(2, b"k")):
        work.admit(each)
    batch = Job(work.take_ready(2))
    work.hold(batch)
    assert work.take_ready(10) == [], "record 2 waits behind the batch"
    work.release(Job([record(9, b"k")]))
    assert work.take_ready(10) == [], "another job cannot free the batch's key"
    work.release(batch)
    assert [r.offset for r in work.take_ready(10)] == [2]


def test_offsets_a_previous_owner_dead_lettered_are_skipped_once():
    work = PartitionWork(0)
    work.already_dead_lettered = {3}
    assert work.skip_if_dead_lettered(3) and not work.skip_if_dead_lettered(3)
    assert not work.skip_if_dead_lettered(4)
