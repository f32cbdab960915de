"""The long-polling HTTP server: an aiohttp app factory and the runner that serves it.

`GET /` answers with an event at once, after a delay, or with 304 when the poll times out.
Held polls wait on one future each (no task, no timer thread), so that shutdown can answer
every one of them at once and a held poll costs little memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import resource
import time

from aiohttp import web

from longpoll.events import EVENTS, EventSource
from longpoll.limits import HeaderTimeoutRunner
from longpoll.settings import Settings


# Answers are built once: the four event bodies never change.
EVENT_BODIES = {name: b'{"event": "%s"}' % name.encode() for name in EVENTS}
LISTEN_BACKLOG = 4096
SHUTDOWN_GRACE = 0.5  # seconds left to handlers after held polls were answered


class HeldPolls:
    """The polls the server is holding, bounded, and released all at once at shutdown.

    A held poll costs one future and a slot in a list, nothing more: polls due in the same
    TICK share one timer (deadlines are rounded up, never down, to a multiple of TICK), and
    the handler awaits the future itself (no coroutine of ours in between). See the README,
    "What a held poll costs".
    """

    TICK = 0.01  # seconds

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._due: dict[int, list[asyncio.Future[bool]]] = {}  # tick number -> its waiters
        self._closing = False

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.limit

    def wait(self, delay: float) -> asyncio.Future[bool]:
        """A future that turns True after `delay` seconds, or False when shutdown releases it.

        The poll counts as held until the caller calls `done()`, whatever became of the future.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._count += 1
        if self._closing:
            waiter.set_result(False)
            return waiter
        tick = math.ceil((loop.time() + delay) / self.TICK)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = []
            loop.call_at(tick * self.TICK, self._expire, tick)
        due.append(waiter)
        return waiter

    def done(self) -> None:
        self._count -= 1

    def _expire(self, tick: int) -> None:
        for waiter in self._due.pop(tick, ()):
            _settle(waiter, True)

    def release_all(self) -> None:
        """Answer every held poll now, and every later one at once."""
        self._closing = True
        due, self._due = self._due, {}
        for waiters in due.values():
            for waiter in waiters:
                _settle(waiter, False)


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():  # a cancelled one (its client went away) stays as it is
        waiter.set_result(value)


SETTINGS = web.AppKey("settings", Settings)
SOURCE = web.AppKey("source", EventSource)
POLLS = web.AppKey("polls", HeldPolls)
LOGGER = web.AppKey("logger", logging.Logger)
ALLOWED = web.AppKey("allowed", dict)  # path -> its Allow header, for 405 answers
RESPONSES = web.AppKey("responses", dict)  # status -> answers sent, for /metrics


async def poll(request: web.Request) -> web.StreamResponse:
    # Each handler logs its own outcome: an aiohttp middleware would cost every held poll
    # about 0.9 KB more (its coroutine, aiohttp's current-app wrapper and partials).
    started = time.monotonic()
    app = request.app
    outcome = app[SOURCE].next_outcome()
    if outcome.delay > 0:
        held = app[POLLS]
        if held.full:
            busy = json_error(503, "too many held polls, retry later", {"Retry-After": "1"})
            return logged(request, started, "over-limit", busy)
        # The future itself is awaited (no coroutine of ours around it): one frame less per poll.
        try:
            timed_out = await held.wait(outcome.delay)
        except asyncio.CancelledError:
            log_request(request, started, 0, "client-gone")
            raise
        finally:
            held.done()
        if not timed_out:
            return logged(request, started, "shutdown", web.Response(status=304))
    if outcome.event is None:
        return logged(request, started, "timeout", web.Response(status=304))
    answer = web.Response(body=EVENT_BODIES[outcome.event], content_type="application/json")
    return logged(request, started, outcome.event, answer)


async def healthz(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    answer = web.json_response({"status": "ok", "held_polls": len(request.app[POLLS])})
    return logged(request, started, "-", answer)


async def not_routed(request: web.Request) -> web.StreamResponse:
    """Every other path or method: a JSON 404, or a JSON 405 with Allow for a known path."""
    started = time.monotonic()
    allowed = request.app[ALLOWED].get(request.path)
    if not allowed and request.path.startswith("/events/") and "/" not in request.path[8:]:
        allowed = request.app[ALLOWED].get("/events/{channel}")
    if allowed:
        response = json_error(405, "method not allowed", {"Allow": allowed})
    else:
        response = json_error(404, "not found")
    return logged(request, started, "error", response)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


def logged(request: web.Request, started: float, outcome: str, response: web.StreamResponse) -> web.StreamResponse:
    log_request(request, started, response.status, outcome)
    return response


def log_request(request: web.Request, started: float, status: int, outcome: str) -> None:
    app = request.app
    if status:
        counts = app[RESPONSES]
        counts[status] = counts.get(status, 0) + 1
    # Building and writing a line per answer took about a fifth of the server's time in a
    # profile under the events benchmark (README, Settings): --access-log errors or none skip it.
    which = app[SETTINGS].access_log
    if which != "all" and (which == "none" or status < 400):
        return
    app[LOGGER].info(
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
    app = web.Application()  # no middleware: see poll()
    app[SETTINGS] = settings
    app[LOGGER] = logger
    app[POLLS] = HeldPolls(settings.max_held_polls)
    app[RESPONSES] = {}
    rng = rng if rng is not None else random.Random(settings.seed)
    app[SOURCE] = EventSource(
        immediate_ratio=settings.immediate_ratio,
        min_delay=settings.min_delay,
        max_delay=settings.max_delay,
        timeout=settings.timeout,
        rng=rng,
    )
    app.router.add_get("/", poll)
    app.router.add_get("/healthz", healthz)
    from longpoll.events_api import add_event_routes  # it imports this module's helpers

    add_event_routes(app, settings, rng)
    app[ALLOWED] = {
        routed.canonical: ",".join(sorted({route.method for route in routed}))
        for routed in app.router.resources()
    }
    app.router.add_route("*", "/{path:.*}", not_routed)  # last: only what nothing else took
    app.on_shutdown.append(_release_held_polls)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """A runner with the request limits from the settings and a short shutdown."""
    settings = app[SETTINGS]
    # web.AppRunner plus a deadline for request heads and one-line 400s (longpoll/limits.py).
    return HeaderTimeoutRunner(
        app,
        header_timeout=settings.header_timeout,
        logger=app[LOGGER],
        access_log=None,  # each handler logs one line per request outcome instead
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
