"""The client: backoff with full jitter, re-polling on 304, surviving errors and 5xx."""

import asyncio
import io
import random

from aiohttp import web

from longpoll.client import Backoff, run_client
from longpoll.logsetup import configure_logging


def test_backoff_caps_double_up_to_the_maximum():
    backoff = Backoff(1.0, 30.0, random.Random(1))
    caps = []
    for _ in range(8):
        caps.append(backoff.cap())
        delay = backoff.next_delay()
        assert 0 <= delay <= caps[-1]
    assert caps == [1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.cap() == 1.0


def test_backoff_never_overflows():
    backoff = Backoff(1.0, 30.0, random.Random(1))
    backoff.attempt = 5000
    assert backoff.cap() == 30.0


def test_full_jitter_spreads_delays():
    delays = [Backoff(1.0, 30.0, random.Random(seed)).next_delay() for seed in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.9  # uniform over [0, 1], not all at 1


async def test_client_logs_events_repolls_on_304_and_retries_5xx(aiohttp_server):
    answers = iter([500, 304, 200, 503, 200])
    requests = []

    async def handler(request):
        requests.append(request)
        status = next(answers, None)
        if status is None:
            await asyncio.sleep(3600)
        if status == 200:
            return web.json_response({"event": "full"})
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    stream = io.StringIO()
    logger = configure_logging("text", stream).getChild("client")
    backoff = Backoff(0.01, 0.02, random.Random(1))
    task = asyncio.create_task(run_client(str(server.make_url("/")), timeout=5, backoff=backoff, logger=logger))
    for _ in range(500):
        if len(requests) == 6:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    log = stream.getvalue()
    assert len(requests) == 6
    assert log.count("poll failed, retrying error=HTTP 500") == 1
    assert log.count("poll failed, retrying error=HTTP 503") == 1
    assert log.count("no event, polling again status=304") == 1
    assert log.count("event received event=full") == 2


async def test_client_survives_a_dead_server_and_reconnects(unused_tcp_port_factory):
    port = unused_tcp_port_factory()
    stream = io.StringIO()
    logger = configure_logging("text", stream).getChild("client")
    backoff = Backoff(0.01, 0.05, random.Random(2))
    task = asyncio.create_task(
        run_client(f"http://127.0.0.1:{port}/", timeout=5, backoff=backoff, logger=logger)
    )
    for _ in range(500):
        if stream.getvalue().count("poll failed") >= 3:
            break
        await asyncio.sleep(0.01)
    assert not task.done()
    async def new_event(request):
        return web.json_response({"event": "new"})

    app = web.Application()
    app.router.add_get("/", new_event)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        for _ in range(500):
            if "event received event=new" in stream.getvalue():
                break
            await asyncio.sleep(0.01)
        assert "event received event=new" in stream.getvalue()
        assert backoff.attempt == 0  # reset after a success
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
