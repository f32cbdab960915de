"""The event stream alone: ids, cursors, retention by count and age, limits."""

import json

import pytest

from longpoll.stream import CursorAhead, CursorGone, EventStream, StreamError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ids(encoded):
    return [json.loads(e)["id"] for e in encoded]


def test_ids_are_a_sequence_per_channel_even_within_one_instant():
    stream = EventStream(clock=Clock())  # the clock never moves: timestamps would collide
    assert [stream.publish("a", i)[0] for i in range(5)] == [1, 2, 3, 4, 5]
    assert stream.publish("b", "x")[0] == 1
    events, cursor = stream.read("a", 0, 100)
    assert ids(events) == [1, 2, 3, 4, 5] and cursor == 5
    assert [json.loads(e)["data"] for e in events] == [0, 1, 2, 3, 4]
    assert json.loads(events[0]) == {"channel": "a", "id": 1, "time": 1000.0, "data": 0}


def test_read_after_cursor_with_limit_and_head():
    stream = EventStream()
    for i in range(10):
        stream.publish("a", i)
    events, cursor = stream.read("a", 3, 4)
    assert ids(events) == [4, 5, 6, 7] and cursor == 7
    assert stream.read("a", 10, 100) == ([], 10)
    assert stream.read("a", None, 100) == ([], 10)  # no cursor: from the head on
    assert stream.read("unknown", None, 100) == ([], 0)
    assert stream.read("unknown", 0, 100) == ([], 0)
    with pytest.raises(CursorAhead):
        stream.read("a", 11, 100)
    with pytest.raises(CursorAhead):
        stream.read("unknown", 1, 100)


def test_retention_by_count_raises_cursor_gone_with_oldest_cursor():
    stream = EventStream(retention_count=3)
    for i in range(10):
        stream.publish("a", i)
    events, cursor = stream.read("a", 7, 100)
    assert ids(events) == [8, 9, 10]
    with pytest.raises(CursorGone) as gone:
        stream.read("a", 0, 100)
    assert gone.value.oldest_cursor == 7 and gone.value.missed == 7
    with pytest.raises(CursorGone):
        stream.read("a", 6, 100)


def test_retention_by_age_on_read_and_publish():
    clock = Clock()
    stream = EventStream(retention_seconds=10, clock=clock)
    stream.publish("a", 1)
    clock.now += 5
    stream.publish("a", 2)
    clock.now += 6  # the first is 11 s old
    assert ids(stream.read("a", 1, 100)[0]) == [2]
    with pytest.raises(CursorGone) as gone:
        stream.read("a", 0, 100)
    assert gone.value.oldest_cursor == 1
    clock.now += 100  # everything is gone: the head is still readable, empty
    assert stream.read("a", 2, 100) == ([], 2)
    with pytest.raises(CursorGone) as gone:
        stream.read("a", 1, 100)
    assert gone.value.oldest_cursor == 2


def test_limits_name_the_flag():
    stream = EventStream(max_channels=2)
    stream.publish("a", 1)
    stream.publish("b", 1)
    with pytest.raises(StreamError) as refused:
        stream.publish("c", 1)
    assert refused.value.limit == "--max-channels"
    stream.publish("a", 2)  # existing channels still take events
    for bad in ("", "a b", "x" * 65, "é", "a/b"):
        with pytest.raises(StreamError) as refused:
            stream.publish(bad, 1)
        assert refused.value.limit == "channel name"


async def test_publish_wakes_watchers_of_that_channel_only():
    import asyncio

    stream = EventStream()
    loop = asyncio.get_running_loop()
    a, b = loop.create_future(), loop.create_future()
    stream.watch(["a"], a)
    stream.watch(["b", "c"], b)
    stream.publish("a", 1)
    assert a.done() and not b.done()
    stream.unwatch(["b", "c"], b)
    stream.publish("b", 1)
    assert not b.done()
    assert stream._waiters == {}


async def test_publish_hands_each_waiter_to_the_wake_hook():
    import asyncio

    handed = []
    stream = EventStream(wake=handed.append)
    loop = asyncio.get_running_loop()
    a, b = loop.create_future(), loop.create_future()
    stream.watch(["a"], a)
    stream.watch(["a", "b"], b)
    stream.publish("a", 1)
    assert handed == [a, b] and not a.done()  # settling them is the hook's business
    assert "a" not in stream._waiters


def test_epoch_differs_per_stream():
    assert EventStream().epoch != EventStream().epoch
