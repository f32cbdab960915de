"""Protections aiohttp does not have: a deadline for the request head, one-line 4xx logs.

aiohttp closes a connection that stays idle for `keepalive_timeout`, but a client that keeps
sending one header byte per second ("slowloris") holds a connection, a parser and a file
descriptor for as long as that, and aiohttp's default is an hour. Here each connection gets
`header_timeout` seconds, from the moment it opens (or from the first byte of its next
request on a kept-alive connection), to deliver a complete request head. A connection that
misses the deadline while no request of it is being handled is answered `408 Request
Timeout` and closed. Held polls are not affected: their head arrived long before.

Requests the parser rejects (bad request line, header over --max-header-size, too many
headers, bad chunked body...) get a JSON `400` and one WARNING line naming the error class,
instead of aiohttp's ERROR record whose multi-line text echoes the client's bytes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiohttp import web
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

REQUEST_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 43\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b'{"error": "request timeout", "status": 408}'
)
assert len(REQUEST_TIMEOUT_ANSWER.partition(b"\r\n\r\n")[2]) == 43


class _GuardedHandler(RequestHandler):
    """aiohttp's protocol, plus a timer that runs while a request head is incomplete."""

    __slots__ = ("_head_timeout", "_head_timer", "_on_head_timeout", "_on_bad_request")

    def arm(self, timeout: float, on_timeout: Callable, on_bad_request: Callable) -> None:
        self._head_timeout = timeout
        self._on_head_timeout = on_timeout
        self._on_bad_request = on_bad_request
        self._head_timer: asyncio.TimerHandle | None = None

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> StreamResponse:
        if not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        self._on_bad_request(status, type(exc).__name__ if exc is not None else "-", request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response = web.json_response({"error": "bad request", "status": status}, status=status)
        response.force_close()
        return response

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_deadline_passed)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head_timer()  # a client that connects and sends nothing is cut off too

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._stop_head_timer()  # a head is complete: the request is being handled
        elif data:
            self._start_head_timer()  # bytes of a head that is not complete yet

    def connection_lost(self, exc: BaseException | None) -> None:
        transport = self.transport
        self._stop_head_timer()
        super().connection_lost(exc)
        # Python 3.11's socket transport keeps a bound method of itself in `_read_ready_cb`
        # (a reference cycle; later versions clear it, CPython gh-100348): unbroken, every closed
        # connection's transport and socket wait for a full garbage collection instead of being
        # freed now, and full collections are rare here (longpoll/gcpolicy.py).
        if getattr(transport, "_read_ready_cb", None) is not None:
            transport._read_ready_cb = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._request_in_progress or self._messages:
            return  # the bytes were a body or the next pipelined request: handled later
        peer = transport.get_extra_info("peername")
        transport.write(REQUEST_TIMEOUT_ANSWER)
        self.force_close()
        self._on_head_timeout(peer)


class _GuardedServer(Server):
    """aiohttp's Server, making `_GuardedHandler`s."""

    guard: "HeaderTimeoutRunner"

    def __call__(self) -> RequestHandler:
        handler = _GuardedHandler(self, loop=self._loop, **self._kwargs)
        handler.arm(self.guard.header_timeout, self.guard._cut_off, self.guard._bad_request)
        return handler


class HeaderTimeoutRunner(web.AppRunner):
    """An AppRunner whose connections must send a complete request head within a deadline."""

    def __init__(self, app: web.Application, *, header_timeout: float, logger: logging.Logger, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout
        self.head_timeouts = 0  # connections cut off, for tests and curiosity
        self.bad_requests = 0
        self._head_logger = logger

    def _bad_request(self, status: int, error: str, peer: str | None) -> None:
        self.bad_requests += 1
        self._head_logger.warning(
            "bad request", extra={"fields": {"status": status, "error": error, "peer": peer}}
        )

    def _cut_off(self, peer) -> None:
        self.head_timeouts += 1
        host = peer[0] if isinstance(peer, tuple) and peer else peer
        self._head_logger.warning(
            "request head timed out, connection closed",
            extra={"fields": {"status": 408, "seconds": f"{self.header_timeout:g}", "peer": host}},
        )

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # Same object, our protocol factory: Server has no __slots__ and we add no state to it
        # beyond two attributes, so this keeps every argument aiohttp computed for it.
        server.__class__ = _GuardedServer
        server.guard = self  # type: ignore[attr-defined]
        return server
