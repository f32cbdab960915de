"""The /events routes and /metrics through the aiohttp app: contract, limits, exactly-once."""

import asyncio

import pytest

from longpoll.events_api import PACER, AnswerPacer
from longpoll.stream import PUBLISHED


async def publish(client, channel, data):
    response = await client.post(f"/events/{channel}", json=data)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_publish_then_read_from_cursor_0(make_client, log_stream):
    client = await make_client()
    first = await publish(client, "news", {"n": 1})
    second = await publish(client, "news", [2])
    assert (first["id"], second["id"], first["channel"]) == (1, 2, "news")
    assert first["epoch"] == second["epoch"] and len(first["epoch"]) == 16
    response = await client.get("/events/news?cursor=0")
    assert response.status == 200
    body = await response.json()
    assert [e["id"] for e in body["events"]] == [1, 2]
    assert [e["data"] for e in body["events"]] == [{"n": 1}, [2]]
    assert body["cursor"] == 2 and body["epoch"] == first["epoch"]
    assert all(e["channel"] == "news" and isinstance(e["time"], float) for e in body["events"])
    limited = await (await client.get("/events/news?cursor=0&limit=1")).json()
    assert [e["id"] for e in limited["events"]] == [1] and limited["cursor"] == 1
    log = log_stream.getvalue()
    assert "method=POST path=/events/news status=201 outcome=published" in log
    assert "method=GET path=/events/news status=200 outcome=events" in log


async def test_poll_is_held_until_a_publish(make_client):
    client = await make_client()
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.ensure_future(client.get("/events/a?cursor=0&timeout=5"))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await publish(client, "a", "hello")
    response = await asyncio.wait_for(poll, 2)
    body = await response.json()
    assert [e["data"] for e in body["events"]] == ["hello"] and body["cursor"] == 1
    assert 0.2 <= loop.time() - started < 2


async def test_poll_without_cursor_gets_only_new_events(make_client):
    client = await make_client()
    await publish(client, "a", 1)
    poll = asyncio.ensure_future(client.get("/events/a?timeout=5"))
    await asyncio.sleep(0.1)
    await publish(client, "a", 2)
    body = await (await asyncio.wait_for(poll, 2)).json()
    assert [e["id"] for e in body["events"]] == [2]


async def test_timeout_answers_empty_with_same_cursor_capped_with_jitter(make_client, log_stream):
    client = await make_client(max_poll_timeout=0.3)
    await publish(client, "a", 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.get("/events/a?cursor=1&timeout=100")  # capped to 0.3 s
    elapsed = loop.time() - started
    body = await response.json()
    assert response.status == 200 and body["events"] == [] and body["cursor"] == 1
    assert 0.3 <= elapsed < 0.3 * 1.1 + 0.2
    assert "status=200 outcome=timeout" in log_stream.getvalue()
    zero = await (await client.get("/events/a?cursor=1&timeout=0")).json()
    assert zero["events"] == [] and zero["cursor"] == 1


async def test_cursor_older_than_retention_is_410_with_oldest_cursor(make_client):
    client = await make_client(retention_count=3)
    for i in range(5):
        await publish(client, "a", i)
    response = await client.get("/events/a?cursor=0")
    assert response.status == 410
    body = await response.json()
    assert body["oldest_cursor"] == 2 and body["cursor"] == 0 and body["channel"] == "a"
    assert "epoch" in body and "--retention-count" in body["limit"]
    ok = await (await client.get("/events/a?cursor=2")).json()
    assert [e["id"] for e in ok["events"]] == [3, 4, 5]


async def test_multi_channel_poll(make_client):
    client = await make_client()
    await publish(client, "a", "a1")
    await publish(client, "b", "b1")
    await publish(client, "b", "b2")
    body = await (await client.get("/events?channel=a&cursor=0&channel=b&cursor=1")).json()
    assert [(e["channel"], e["id"]) for e in body["events"]] == [("a", 1), ("b", 2)]
    assert body["cursors"] == {"a": 1, "b": 2}
    poll = asyncio.ensure_future(client.get("/events?channel=a&cursor=1&channel=b&cursor=2&channel=c&timeout=5"))
    await asyncio.sleep(0.1)
    await publish(client, "c", "c1")
    body = await (await asyncio.wait_for(poll, 2)).json()
    assert [(e["channel"], e["data"]) for e in body["events"]] == [("c", "c1")]
    assert body["cursors"] == {"a": 1, "b": 2, "c": 1}


@pytest.mark.parametrize(
    "path, status, limit",
    [
        ("/events/a?cursor=x", 400, "cursor"),
        ("/events/a?cursor=-1", 400, "cursor"),
        ("/events/a?cursor=5", 400, "cursor"),  # beyond the head
        ("/events/a?timeout=-1", 400, "timeout"),
        ("/events/a?timeout=nan", 400, "timeout"),
        ("/events/a?limit=0", 400, "limit"),
        ("/events/a?limit=1001", 400, "limit"),
        ("/events/" + "x" * 65, 400, "channel name"),
        ("/events/a%20b", 400, "channel name"),
        ("/events", 400, "channel"),
        ("/events?channel=a&channel=a", 400, "channel"),
        ("/events?channel=a&cursor=0&cursor=0", 400, "cursor"),
    ],
)
async def test_bad_parameters_are_json_400_naming_the_parameter(make_client, path, status, limit):
    client = await make_client()
    response = await client.get(path)
    assert response.status == status
    body = await response.json()
    assert body["limit"] == limit and body["status"] == status and body["error"]


async def test_publish_limits_name_the_flag(make_client):
    client = await make_client(max_event_bytes=10, max_channels=1)
    big = await client.post("/events/a", data=b'"' + b"x" * 20 + b'"')
    assert big.status == 413 and (await big.json())["limit"] == "--max-event-bytes"
    async def chunks():
        yield b"[1,2,3,"
        yield b"4,5,6,7]"

    chunked = await client.post("/events/a", data=chunks())  # no Content-Length
    assert chunked.status == 413
    bad = await client.post("/events/a", data=b"{nope")
    assert bad.status == 400 and (await bad.json())["limit"] == "body"
    await publish(client, "a", 1)
    full = await client.post("/events/b", json=1)
    assert full.status == 422 and (await full.json())["limit"] == "--max-channels"
    name = await client.post("/events/a:b:" + "x" * 70, json=1)
    assert name.status == 400 and (await name.json())["limit"] == "channel name"
    wrong = await client.delete("/events/a")
    assert wrong.status == 405 and set(wrong.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize(
    "body", [b"", b"NaN", b"[Infinity]", b"[" * 100000 + b"]" * 100000, b"\xff\xfe", b'{"a": 1} x'],
)
async def test_hostile_bodies_are_400_not_500(make_client, body):
    client = await make_client(max_event_bytes=300000)
    response = await client.post("/events/a", data=body)
    assert response.status == 400 and (await response.json())["limit"] == "body"


async def test_any_unicode_round_trips(make_client):
    client = await make_client()
    await client.post("/events/a", data='["é", "\\ud800", "😀"]'.encode())
    body = await (await client.get("/events/a?cursor=0")).json()
    assert body["events"][0]["data"] == ["é", "\ud800", "😀"]


async def test_held_event_polls_count_and_are_answered_at_shutdown(make_client):
    client = await make_client(max_held_polls=2)
    polls = [asyncio.ensure_future(client.get("/events/a?timeout=30")) for _ in range(2)]
    while (await (await client.get("/healthz")).json())["held_polls"] < 2:
        await asyncio.sleep(0.01)
    busy = await client.get("/events/a?timeout=30")
    assert busy.status == 503 and busy.headers["Retry-After"] == "1"
    await client.server.app.shutdown()
    answers = [await asyncio.wait_for(p, 2) for p in polls]
    for answer in answers:
        assert answer.status == 200
        assert await answer.json() == {"events": [], "cursor": 0, "epoch": (await answer.json())["epoch"]}


async def test_metrics_in_prometheus_text_format(make_client):
    client = await make_client()
    await publish(client, "a", 1)
    await client.get("/nope")
    held = asyncio.ensure_future(client.get("/events/a?timeout=30"))
    while (await (await client.get("/healthz")).json())["held_polls"] < 1:
        await asyncio.sleep(0.01)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    values = dict(line.rsplit(" ", 1) for line in lines)
    assert values["longpoll_held_polls"] == "1"
    assert values["longpoll_events_published_total"] == "1"
    assert values['longpoll_responses_total{status="201"}'] == "1"
    assert values['longpoll_responses_total{status="404"}'] == "1"
    assert int(values["longpoll_open_connections"]) >= 2
    assert "# TYPE longpoll_responses_total counter" in text
    held.cancel()


async def test_concurrent_publishers_and_pollers_see_every_event_once_in_order(make_client):
    """4 publishers x 250 events on 2 channels, 50 pollers from cursor 0: exactly once, in order."""
    client = await make_client(max_poll_timeout=2)
    channels = ("left", "right")
    per_publisher = 250

    async def publisher(number):
        for i in range(per_publisher):
            channel = channels[(number + i) % 2]
            await publish(client, channel, {"p": number, "i": i})
            if i % 10 == 0:
                await asyncio.sleep(0)

    async def poller(channel, expected):
        cursor, seen = 0, []
        while len(seen) < expected:
            response = await client.get(f"/events/{channel}?cursor={cursor}&limit=37")
            assert response.status == 200
            body = await response.json()
            seen.extend(body["events"])
            assert body["cursor"] == (seen[-1]["id"] if seen else 0)
            cursor = body["cursor"]
        return seen

    expected = 4 * per_publisher // 2
    pollers = [asyncio.ensure_future(poller(channels[n % 2], expected)) for n in range(50)]
    await asyncio.sleep(0.05)  # some pollers are held before the first publish
    await asyncio.gather(*(publisher(n) for n in range(4)))
    results = await asyncio.wait_for(asyncio.gather(*pollers), 60)
    for n, seen in enumerate(results):
        assert [e["id"] for e in seen] == list(range(1, expected + 1))
        assert all(e["channel"] == channels[n % 2] for e in seen)
        # every publisher's events in the order it published them
        for p in range(4):
            mine = [e["data"]["i"] for e in seen if e["data"]["p"] == p]
            assert mine == sorted(mine) and len(mine) == per_publisher // 2


async def test_pacer_wakes_a_batch_per_loop_turn_in_order():
    loop = asyncio.get_running_loop()
    pacer = AnswerPacer()
    waiters = [loop.create_future() for _ in range(2 * AnswerPacer.BATCH + 1)]
    gone = waiters[1]
    gone.cancel()  # a client that went away: skipped, never set
    for waiter in waiters:
        pacer.wake(waiter)
    assert pacer.busy and not any(w.done() for w in waiters if w is not gone)
    woken = []
    for _ in range(3):
        await asyncio.sleep(0)  # one turn of the loop
        woken.append(sum(1 for w in waiters if w.done() and not w.cancelled()))
    assert woken == [AnswerPacer.BATCH - 1, 2 * AnswerPacer.BATCH - 1, 2 * AnswerPacer.BATCH]
    assert all(w.result() == PUBLISHED for w in waiters if w is not gone)
    assert not pacer.busy


async def test_poll_with_events_waits_its_turn_behind_paced_wakeups(make_client):
    """While woken polls wait in the pacer's line, a poll that finds events joins its end."""
    client = await make_client()
    await publish(client, "a", 1)
    app = client.server.app
    pacer = app[PACER]
    loop = asyncio.get_running_loop()
    # Far more turns' worth than one request takes: answered at once, it would overtake them.
    ahead = [loop.create_future() for _ in range(AnswerPacer.BATCH * 200)]
    for waiter in ahead:
        pacer.wake(waiter)
    response = await client.get("/events/a?cursor=0")
    assert all(w.done() for w in ahead)  # they were answered first
    body = await response.json()
    assert response.status == 200 and [e["id"] for e in body["events"]] == [1]
