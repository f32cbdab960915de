"""healthcheck: 0 on a 200 from /healthz, 1 otherwise, one line on stderr."""

import asyncio
import io

from aiohttp import web

from longpoll.healthcheck import check


async def serve(aiohttp_server, status):
    async def healthz(request):
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return await aiohttp_server(app)


async def test_ok_and_failing_and_down(aiohttp_server, unused_tcp_port_factory):
    ok = await serve(aiohttp_server, 200)
    bad = await serve(aiohttp_server, 503)
    err = io.StringIO()
    assert await asyncio.to_thread(check, ok.port, "127.0.0.1", err) == 0
    assert await asyncio.to_thread(check, bad.port, "127.0.0.1", err) == 1
    assert "answered 503" in err.getvalue()
    assert await asyncio.to_thread(check, unused_tcp_port_factory(), "127.0.0.1", err) == 1
    assert "Connection refused" in err.getvalue()
