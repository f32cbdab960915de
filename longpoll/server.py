"""The long-polling HTTP server: an aiohttp app factory and the runner that serves it.

`GET /` answers with an event at once, after a delay, or with 304 when the poll times out.
Held polls wait on one future each (no task, no timer thread), so that shutdown can answer
every one of them at once and a held poll costs little memory.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import time
from typing import Awaitable, Callable

from aiohttp import web

from longpoll.events import EVENTS, EventSource
from longpoll.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Answers are built once: the four event bodies never change.
EVENT_BODIES = {name: b'{"event": "%s"}' % name.encode() for name in EVENTS}
LISTEN_BACKLOG = 4096
SHUTDOWN_GRACE = 0.5  # seconds left to handlers after held polls were answered


class HeldPolls:
    """The polls the server is holding, bounded, and released all at once at shutdown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiters: set[asyncio.Future[bool]] = set()
        self._closing = False

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def full(self) -> bool:
        return len(self._waiters) >= self.limit

    async def hold(self, delay: float) -> bool:
        """Wait `delay` seconds; True if the time ran out, False if shutdown released us."""
        if self._closing:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(delay, _settle, waiter, True)
        self._waiters.add(waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)

    def release_all(self) -> None:
        """Answer every held poll now, and every later one at once."""
        self._closing = True
        for waiter in self._waiters:
            _settle(waiter, False)


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


SETTINGS = web.AppKey("settings", Settings)
SOURCE = web.AppKey("source", EventSource)
POLLS = web.AppKey("polls", HeldPolls)
LOGGER = web.AppKey("logger", logging.Logger)
OUTCOME = web.RequestKey("outcome", str)  # what the handler did, for the log line


async def poll(request: web.Request) -> web.StreamResponse:
    app = request.app
    outcome = app[SOURCE].next_outcome()
    if outcome.delay > 0:
        held = app[POLLS]
        if held.full:
            request[OUTCOME] = "over-limit"
            return _json_error(503, "too many held polls, retry later", {"Retry-After": "1"})
        if not await held.hold(outcome.delay):
            request[OUTCOME] = "shutdown"
            return web.Response(status=304)
    if outcome.event is None:
        request[OUTCOME] = "timeout"
        return web.Response(status=304)
    request[OUTCOME] = outcome.event
    return web.Response(body=EVENT_BODIES[outcome.event], content_type="application/json")


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok", "held_polls": len(request.app[POLLS])})


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def log_and_shape_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log one line per request outcome; turn aiohttp's HTML/text errors into JSON ones."""
    started = time.monotonic()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = _json_error(exc.status, exc.reason.lower(), headers)
        request[OUTCOME] = "error"
    except asyncio.CancelledError:
        _log_request(request, started, 0, "client-gone")
        raise
    _log_request(request, started, response.status, request.get(OUTCOME, "-"))
    return response


def _log_request(request: web.Request, started: float, status: int, outcome: str) -> None:
    request.app[LOGGER].info(
        "request",
        extra={
            "fields": {
                "method": request.method,
                "path": request.rel_url.raw_path,
                "status": status,
                "outcome": outcome,
                "seconds": f"{time.monotonic() - started:.3f}",
                "peer": request.remote,
            }
        },
    )


async def _release_held_polls(app: web.Application) -> None:
    app[POLLS].release_all()


def create_app(settings: Settings, logger: logging.Logger, rng: random.Random | None = None) -> web.Application:
    """The aiohttp application: routes, limits and shutdown behaviour, from one Settings."""
    app = web.Application(middlewares=[log_and_shape_errors])
    app[SETTINGS] = settings
    app[LOGGER] = logger
    app[POLLS] = HeldPolls(settings.max_held_polls)
    app[SOURCE] = EventSource(
        immediate_ratio=settings.immediate_ratio,
        min_delay=settings.min_delay,
        max_delay=settings.max_delay,
        timeout=settings.timeout,
        rng=rng if rng is not None else random.Random(settings.seed),
    )
    app.router.add_get("/", poll)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(_release_held_polls)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """A runner with the request limits from the settings and a short shutdown."""
    settings = app[SETTINGS]
    return web.AppRunner(
        app,
        access_log=None,  # our middleware logs one line per request outcome instead
        handler_cancellation=True,  # a client that goes away frees its held poll at once
        shutdown_timeout=SHUTDOWN_GRACE,
        max_line_size=settings.max_field_size,
        max_field_size=settings.max_field_size,
        keepalive_timeout=settings.keepalive_timeout,
    )


async def start_server(app: web.Application) -> tuple[web.AppRunner, int]:
    """Listen on the configured address; return the runner and the port actually bound."""
    settings = app[SETTINGS]
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=LISTEN_BACKLOG, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    return runner, port


def raise_open_file_limit() -> tuple[int, int]:
    """Lift the soft limit on open files to the hard one: each held poll is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard
