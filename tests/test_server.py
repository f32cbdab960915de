"""The aiohttp app: answers, timing with small delays, JSON errors, limits and shutdown."""

import asyncio
import io
import json

import pytest

from longpoll.logsetup import configure_logging
from longpoll.server import HeldPolls, create_app
from longpoll.settings import Settings


async def test_immediate_answer_is_json_event(make_client, log_stream):
    client = await make_client(immediate_ratio=1.0)
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    body = await response.json()
    assert body["event"] in {"empty", "full", "new", "removed"}
    assert f"status=200 outcome={body['event']}" in log_stream.getvalue()


async def test_delayed_event_arrives_after_the_delay(make_client):
    client = await make_client(immediate_ratio=0.0, min_delay=0.2, max_delay=0.2, timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.get("/")
    assert response.status == 200
    assert loop.time() - started >= 0.2


async def test_poll_times_out_with_304(make_client, log_stream):
    client = await make_client(immediate_ratio=0.0, min_delay=0.3, max_delay=0.3, timeout=0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.get("/")
    elapsed = loop.time() - started
    assert response.status == 304
    assert await response.read() == b""
    assert 0.1 <= elapsed < 0.3  # at the timeout, not at the delay
    assert "status=304 outcome=timeout" in log_stream.getvalue()


async def test_healthz_reports_held_polls(make_client):
    client = await make_client(immediate_ratio=0.0, min_delay=5, max_delay=5, timeout=10)
    poll = asyncio.create_task(client.get("/"))
    for _ in range(200):
        health = await (await client.get("/healthz")).json()
        if health["held_polls"] == 1:
            break
        await asyncio.sleep(0.005)
    assert health == {"status": "ok", "held_polls": 1}
    poll.cancel()


async def test_unknown_path_and_method_are_json_errors(make_client):
    client = await make_client()
    response = await client.get("/missing")
    assert response.status == 404
    assert await response.json() == {"error": "not found", "status": 404}
    response = await client.post("/")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert (await response.json())["status"] == 405


async def test_over_the_held_limit_answers_503_with_retry_after(make_client):
    client = await make_client(immediate_ratio=0.0, min_delay=5, max_delay=5, timeout=10, max_held_polls=1)
    first = asyncio.create_task(client.get("/"))
    for _ in range(200):
        if (await (await client.get("/healthz")).json())["held_polls"] == 1:
            break
        await asyncio.sleep(0.005)
    response = await client.get("/")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    first.cancel()


async def test_shutdown_answers_every_held_poll_with_304(make_client):
    client = await make_client(immediate_ratio=0.0, min_delay=30, max_delay=30, timeout=60)
    polls = [asyncio.create_task(client.get("/")) for _ in range(5)]
    for _ in range(400):
        if (await (await client.get("/healthz")).json())["held_polls"] == 5:
            break
        await asyncio.sleep(0.005)
    await client.app.shutdown()
    responses = await asyncio.wait_for(asyncio.gather(*polls), 2)
    assert [r.status for r in responses] == [304] * 5


async def hold(held: HeldPolls, delay: float) -> bool:
    """What the poll handler does with HeldPolls."""
    try:
        return await held.wait(delay)
    finally:
        held.done()


async def test_held_polls_time_out_release_and_cancellation():
    held = HeldPolls(limit=2)
    assert await hold(held, 0.01) is True  # the delay ran out
    waiter = asyncio.create_task(hold(held, 10))
    await asyncio.sleep(0)
    assert len(held) == 1 and not held.full
    held.release_all()
    assert await waiter is False
    assert len(held) == 0
    assert await hold(held, 10) is False  # after shutdown: answered at once
    other = HeldPolls(limit=1)
    task = asyncio.create_task(hold(other, 10))
    await asyncio.sleep(0)
    assert other.full
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(other) == 0  # a client that went away frees its slot


@pytest.mark.parametrize("which, logged", [("all", {200, 404}), ("errors", {404}), ("none", set())])
async def test_access_log_setting_picks_the_answers_logged(make_client, log_stream, which, logged):
    client = await make_client(immediate_ratio=1.0, access_log=which)
    assert (await client.get("/")).status == 200
    assert (await client.get("/missing")).status == 404
    lines = [line for line in log_stream.getvalue().splitlines() if " request " in line]
    assert {int(line.split("status=")[1].split()[0]) for line in lines} == logged
    metrics = await (await client.get("/metrics")).text()
    assert 'longpoll_responses_total{status="200"} 1' in metrics  # counted whatever is logged
    assert 'longpoll_responses_total{status="404"} 1' in metrics


async def test_json_log_format(aiohttp_client):
    stream = io.StringIO()
    app = create_app(Settings(immediate_ratio=1.0), configure_logging("json", stream).getChild("server"))
    client = await aiohttp_client(app)
    await client.get("/")
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["status"] == 200 and entry["path"] == "/" and entry["level"] == "INFO"
