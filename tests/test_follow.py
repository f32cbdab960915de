"""`client --follow`: JSON lines on stdout, dedupe, resume, 410 and epoch changes, against a real app."""

import asyncio
import io
import json
import random

import pytest

from longpoll.client import Backoff
from longpoll.follow import follow
from longpoll.logsetup import configure_logging
from longpoll.server import create_app
from longpoll.settings import Settings
from longpoll.events_api import STREAM


@pytest.fixture
def log_stream():
    return io.StringIO()


def make_app(log_stream, **overrides):
    return create_app(Settings(**overrides), configure_logging("text", log_stream).getChild("server"), random.Random(1))


async def follow_until(server, log_stream, count, cursor=0, timeout=0.5, out=None):
    """Run follow until `count` events were printed; return the printed lines."""
    out = out if out is not None else io.StringIO()
    got = []
    done = asyncio.Event()

    def on_event(event):
        got.append(event)
        if len(got) >= count:
            done.set()

    logger = configure_logging("text", log_stream).getChild("client")
    task = asyncio.ensure_future(
        follow(str(server.make_url("/")), "a", cursor=cursor, timeout=timeout,
               backoff=Backoff(0.01, 0.05, random.Random(1)), logger=logger, out=out, on_event=on_event)
    )
    return task, done, out


async def test_prints_each_event_once_as_a_json_line(aiohttp_server, log_stream):
    server = await aiohttp_server(make_app(log_stream))
    stream = server.app[STREAM]
    for i in range(3):
        stream.publish("a", {"i": i})
    task, done, out = await follow_until(server, log_stream, 5)
    await asyncio.sleep(0.1)
    stream.publish("a", {"i": 3})
    stream.publish("a", {"i": 4})
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["data"]["i"] for line in lines] == [0, 1, 2, 3, 4]
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3, 4, 5]


async def test_410_says_how_many_events_were_missed_and_goes_on(aiohttp_server, log_stream):
    server = await aiohttp_server(make_app(log_stream, retention_count=2))
    stream = server.app[STREAM]
    for i in range(5):
        stream.publish("a", i)
    task, done, out = await follow_until(server, log_stream, 2, cursor=0)
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    assert "missed 3 events" in log_stream.getvalue()
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [4, 5]


async def test_resumes_after_an_outage_and_restarts_on_a_new_epoch(aiohttp_server, unused_tcp_port, log_stream):
    first = await aiohttp_server(make_app(log_stream), port=unused_tcp_port)
    first.app[STREAM].publish("a", "before")
    task, done, out = await follow_until(first, log_stream, 3)
    while not out.getvalue():
        await asyncio.sleep(0.01)
    await first.close()  # outage: the client retries with backoff
    await asyncio.sleep(0.2)
    assert "poll failed, retrying" in log_stream.getvalue()
    second = await aiohttp_server(make_app(log_stream), port=unused_tcp_port)
    second.app[STREAM].publish("a", "after-1")
    second.app[STREAM].publish("a", "after-2")
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    assert "new epoch, starting again from cursor 0" in log_stream.getvalue()
    assert [json.loads(line)["data"] for line in out.getvalue().splitlines()] == ["before", "after-1", "after-2"]
