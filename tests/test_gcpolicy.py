"""The garbage collector's settings, and the property they rely on: a closed connection is
freed at once, without waiting for the cycle collector."""

import asyncio
import gc
import weakref

from longpoll.gcpolicy import THRESHOLDS, tune_for_many_connections
from longpoll.logsetup import configure_logging
from longpoll.server import create_app, start_server
from longpoll.settings import Settings


def test_start_up_objects_are_frozen_and_young_collections_are_rarer():
    before = gc.get_threshold()
    try:
        tune_for_many_connections()
        assert gc.get_threshold() == THRESHOLDS and THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0  # what existed at start-up is never walked again
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_a_closed_connection_is_freed_without_the_cycle_collector(log_stream):
    app = create_app(Settings(host="127.0.0.1", port=0), configure_logging("text", log_stream).getChild("server"))
    runner, port = await start_server(app)
    loop = asyncio.get_running_loop()
    freed = loop.create_future()
    gc.disable()  # from here on, only reference counting frees anything
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"}")  # the answer's body: the server-side connection exists
        (handler,) = runner.server._connections  # aiohttp's handler for this one connection
        server_side = weakref.ref(handler.transport, lambda _: freed.done() or freed.set_result(None))
        del handler
        writer.transport.abort()  # RST, as a client that vanishes
        try:
            await asyncio.wait_for(freed, 5)
        except asyncio.TimeoutError:
            raise AssertionError(f"the closed connection's transport is still alive: {server_side()!r}") from None
    finally:
        gc.enable()
        await runner.cleanup()
