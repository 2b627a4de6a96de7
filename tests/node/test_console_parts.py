"""The console's pure parts: value previews, rates between two looks, and the lag history ring."""

from __future__ import annotations

import json

import pytest
from rill.node.http.lag_history import MAX_GROUPS, SAMPLE_INTERVAL_S, LagHistory
from rill.node.http.rate_sampler import MAX_WINDOW_S, MIN_WINDOW_S, RateSampler
from rill.node.http.value_preview import JSON_PARSE_BYTES_MAX, PREVIEW_CHARS, preview


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- previews -------------------------------------------------------------------------------------


def test_json_documents_are_indented():
    shown = preview(b'{"a":[1,{"b":null}]}')
    assert shown["encoding"] == "json" and json.loads(shown["data"]) == {"a": [1, {"b": None}]}
    assert shown["data"].startswith('{\n  "a"') and not shown["truncated"]


@pytest.mark.parametrize("value", [b'"a bare string"', b"plain words", b"tab\tand\nnewline", "čaj ☕".encode()])
def test_text_stays_text(value):
    assert preview(value) == {"encoding": "text", "data": value.decode(), "size": len(value), "truncated": False}


@pytest.mark.parametrize("value", [b"\x00\x01\x02", b"text with a \x07 bell", b"\xff\xfe bad utf-8", b"\x1b[31m"])
def test_binary_is_hex(value):
    assert preview(value) == {"encoding": "hex", "data": value.hex(), "size": len(value), "truncated": False}


def test_a_large_value_is_cut_to_the_preview_with_its_size():
    text = ("a" + "é" * (PREVIEW_CHARS * 3)).encode()  # the decoded prefix ends inside a two-byte "é"
    shown = preview(text)
    assert shown["encoding"] == "text" and shown["truncated"] and shown["size"] == len(text)
    assert shown["data"] == "a" + "é" * (PREVIEW_CHARS - 1)
    binary = bytes(range(256)) * 100
    shown = preview(binary)
    assert shown["encoding"] == "hex" and shown["truncated"] and len(shown["data"]) == PREVIEW_CHARS
    assert binary.hex().startswith(shown["data"])


def test_json_too_large_to_parse_is_shown_as_the_text_it_starts_with():
    document = json.dumps([{"n": n} for n in range(JSON_PARSE_BYTES_MAX)]).encode()
    shown = preview(document)
    assert shown["encoding"] == "text" and shown["truncated"] and document.decode().startswith(shown["data"])


def test_pretty_json_longer_than_the_preview_is_cut():
    shown = preview(json.dumps(list(range(2000))).encode())
    assert shown["encoding"] == "json" and shown["truncated"] and len(shown["data"]) == PREVIEW_CHARS


def test_deeply_nested_json_and_none_do_not_fail():
    assert preview(b"[" * 100_000)["encoding"] == "text"
    assert preview(None) is None
    assert preview(b"") == {"encoding": "text", "data": "", "size": 0, "truncated": False}


# ---- rates ----------------------------------------------------------------------------------------


def test_rates_need_a_second_look_at_least_a_window_later():
    clock = Clock()
    sampler = RateSampler(clock)
    assert sampler.rates({"a": 100}) is None
    clock.now += MIN_WINDOW_S / 2
    assert sampler.rates({"a": 150}) is None  # too soon: the previous answer again
    clock.now += MIN_WINDOW_S * 1.5
    assert sampler.rates({"a": 300, "new": 5}) == {"a": 100.0}  # 200 more over 2 windows; "new" has no baseline
    clock.now += MIN_WINDOW_S / 2
    assert sampler.rates({"a": 999}) == {"a": 100.0}


def test_a_counter_that_goes_down_counts_zero_and_an_old_baseline_starts_afresh():
    clock = Clock()
    sampler = RateSampler(clock)
    sampler.rates({"a": 100})
    clock.now += 2
    assert sampler.rates({"a": 10}) == {"a": 0}
    clock.now += MAX_WINDOW_S + 1
    assert sampler.rates({"a": 20}) is None


# ---- lag history ----------------------------------------------------------------------------------


def test_lag_history_samples_at_most_every_interval_and_forgets_old_samples():
    clock = Clock()
    history = LagHistory(clock)
    assert history.record("g", 5) == [(1_000_000, 5)]
    clock.now += SAMPLE_INTERVAL_S / 2
    assert history.record("g", 7) == [(1_000_000, 5)]
    clock.now += SAMPLE_INTERVAL_S
    assert [lag for _, lag in history.record("g", 9)] == [5, 9]
    clock.now += 3600
    assert [lag for _, lag in history.record("g", 1)] == [1]


def test_lag_history_keeps_the_groups_looked_at_last():
    clock = Clock()
    history = LagHistory(clock)
    for number in range(MAX_GROUPS + 1):
        history.record(f"g{number}", number)
    clock.now += SAMPLE_INTERVAL_S
    assert len(history.record("g0", 0)) == 1  # forgotten: a fresh history
    assert len(history.record(f"g{MAX_GROUPS}", 0)) == 2
