"""Keyed partitioning is Kafka's, byte for byte: murmur2 against Kafka's own test vectors
(UtilsTest.testMurmur2) and random keys of every length, and the hash cache changes no answer."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from rill.client import partitioner
from rill.client.partitioner import murmur2, partition_for_key

KAFKA_VECTORS = {  # key -> Utils.murmur2(key) as Kafka's (signed) int
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def test_murmur2_gives_kafkas_test_vectors():
    assert {key: signed(murmur2(key)) for key in KAFKA_VECTORS} == KAFKA_VECTORS


def test_partition_is_the_positive_hash_modulo_the_count():
    assert partition_for_key(b"foobar", 7) == (signed(murmur2(b"foobar")) & 0x7FFFFFFF) % 7


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=10_000))
def test_cached_and_fresh_answers_agree(key, partition_count):
    partitioner._positive_hashes.clear()
    fresh = partition_for_key(key, partition_count)
    assert partition_for_key(key, partition_count) == fresh == (murmur2(key) & 0x7FFFFFFF) % partition_count


def test_the_cache_stays_bounded_and_skips_long_keys():
    partitioner._positive_hashes.clear()
    for number in range(partitioner.CACHED_KEYS_MAX + 10):
        partition_for_key(b"k%d" % number, 3)
    partition_for_key(b"x" * (partitioner.CACHED_KEY_BYTES_MAX + 1), 3)
    assert len(partitioner._positive_hashes) <= partitioner.CACHED_KEYS_MAX
    assert b"x" * (partitioner.CACHED_KEY_BYTES_MAX + 1) not in partitioner._positive_hashes


def kafka_murmur2(data: bytes) -> int:
    """Utils.murmur2 transcribed step by step from Kafka's Java (unsigned result): the reference for the
    fast version, whose words come from one Struct and whose masks are fewer."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[(length & ~3) + 2] << 16
    if rest >= 2:
        h ^= data[(length & ~3) + 1] << 8
    if rest >= 1:
        h ^= data[length & ~3]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


@given(st.binary(max_size=300))
def test_murmur2_matches_kafkas_steps_for_keys_short_and_long(key):
    assert murmur2(key) == kafka_murmur2(key)


def test_murmur2_matches_kafkas_steps_at_every_length_to_300():
    rng = random.Random(42)
    for length in range(301):
        key = rng.randbytes(length)
        assert murmur2(key) == kafka_murmur2(key), length
