"""HTTP routes of the event stream: publish, long-poll by cursor, and /metrics.

`POST /events/{channel}` publishes one JSON event (201 {"id", "channel", "epoch"}).
`GET /events/{channel}?cursor=N&timeout=S&limit=L` answers at once with the events after N,
or holds until one is published or S seconds (capped by --max-poll-timeout, plus up to 10 %
jitter) pass: 200 {"events": [...], "cursor": M, "epoch": E}; on timeout or shutdown the same
with no events and the same cursor. `GET /events?channel=a&cursor=3&channel=b` reads several
channels (cursors paired with channels in order; a missing one is the head) and answers
{"events": [...], "cursors": {"a": M, "b": K}, "epoch": E}.

Every refusal is a JSON 4xx whose "limit" names the parameter or flag. Held polls count in
HeldPolls like GET /'s, so --max-held-polls and the shutdown release apply to them too.
Publishes wake held polls through AnswerPacer, a batch per turn of the event loop, so that a
flood of poll answers cannot make publishers wait seconds for their 201.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque

from aiohttp import web

from longpoll.events import EVENTS
from longpoll.server import LOGGER, POLLS, RESPONSES, SETTINGS, json_error, log_request, logged
from longpoll.settings import Settings
from longpoll.stream import PUBLISHED, CursorAhead, CursorGone, EventStream, StreamError, check_channel_name

STREAM = web.AppKey("stream", EventStream)
JITTER_RNG = web.AppKey("jitter_rng", random.Random)
DEMO_TASK = web.AppKey("demo_task", dict)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CHANNELS_PER_POLL = 64
JITTER = 0.1  # share of the timeout added at random


class AnswerPacer:
    """Wakes the polls that publishes woke a batch per turn of the event loop, in order.

    Without it, each publish puts the handlers of every poll of its channel on the loop's ready
    queue at once; under a load of pollers that queue holds seconds of answers, and a `POST`
    that arrives behind them waits that long for its 201. Paced, each turn answers at most
    BATCH polls, then reads the sockets again: publishes are handled within a few turns, and
    the polls still get everything published meanwhile in their answer. While wake-ups are
    waiting here, a poll that finds events at once joins the end of the line too.
    """

    # 32, 64 and 128 gave 998, 969 and 992 events/s published under the events benchmark's
    # 10,000 pollers (from source, one run each; README, Performance); the smaller the batch,
    # the sooner a POST gets its turn.
    BATCH = 32

    def __init__(self) -> None:
        self._line: deque[asyncio.Future] = deque()
        self._scheduled = False

    @property
    def busy(self) -> bool:
        return bool(self._line)

    def wake(self, waiter: asyncio.Future) -> None:
        self._line.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        line = self._line
        for _ in range(min(self.BATCH, len(line))):
            waiter = line.popleft()
            if not waiter.done():
                waiter.set_result(PUBLISHED)
        if line:
            asyncio.get_running_loop().call_soon(self._turn)
        else:
            self._scheduled = False


PACER = web.AppKey("pacer", AnswerPacer)


class BadParameter(Exception):
    def __init__(self, message: str, limit: str, status: int = 400) -> None:
        super().__init__(message)
        self.limit = limit
        self.status = status


def _refused(request: web.Request, started: float, status: int, message: str, limit: str, **extra) -> web.StreamResponse:
    body = {"error": message, "status": status, "limit": limit, **extra}
    return logged(request, started, "refused", web.json_response(body, status=status))


def _gone(request: web.Request, started: float, exc: CursorGone, stream: EventStream) -> web.StreamResponse:
    """410: the events after this cursor are no longer retained; where to go on from."""
    return _refused(
        request, started, 410, str(exc), "--retention-count/--retention-seconds",
        channel=exc.channel, cursor=exc.cursor, oldest_cursor=exc.oldest_cursor, epoch=stream.epoch,
    )  # fmt: skip


def _int_param(text: str | None, name: str, low: int, high: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 10)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number", name) from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be between {low} and {high}", name)
    return value


def _timeout_param(text: str | None, cap: float) -> float:
    if text is None:
        return cap
    try:
        value = float(text)
    except ValueError:
        raise BadParameter("timeout must be a number of seconds", "timeout") from None
    if not value >= 0 or value == float("inf"):
        raise BadParameter("timeout must be a number of seconds, at least 0", "timeout")
    return min(value, cap)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def publish(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    app = request.app
    stream = app[STREAM]
    name = request.match_info["channel"]
    try:
        check_channel_name(name)
    except StreamError as exc:
        return _refused(request, started, 400, str(exc), exc.limit)
    most = stream.max_event_bytes
    if request.content_length is not None and request.content_length > most:
        return _refused(request, started, 413, f"event body over {most} bytes", "--max-event-bytes")
    body = bytearray()
    while len(body) <= most:
        chunk = await request.content.read(most + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > most:
        return _refused(request, started, 413, f"event body over {most} bytes", "--max-event-bytes")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, NaN/Infinity, or nested too deep
        return _refused(request, started, 400, "body must be one JSON value", "body")
    try:
        event_id, _ = stream.publish(name, data)
    except StreamError as exc:
        return _refused(request, started, 422, str(exc), exc.limit)
    answer = web.json_response({"id": event_id, "channel": name, "epoch": stream.epoch}, status=201)
    return logged(request, started, "published", answer)


def _parse_channels(request: web.Request) -> list[tuple[str, int | None]]:
    query = request.query
    name = request.match_info.get("channel")
    if name is not None:
        names = [name]
        cursors = query.getall("cursor", [])
        if len(cursors) > 1:
            raise BadParameter("one cursor per channel", "cursor")
    else:
        names = query.getall("channel", [])
        if not names:
            raise BadParameter("give at least one channel=NAME", "channel")
        if len(names) > MAX_CHANNELS_PER_POLL:
            raise BadParameter(f"at most {MAX_CHANNELS_PER_POLL} channels per request", "channel")
        if len(set(names)) != len(names):
            raise BadParameter("each channel at most once", "channel")
        cursors = query.getall("cursor", [])
        if len(cursors) > len(names):
            raise BadParameter("more cursors than channels", "cursor")
    for each in names:
        try:
            check_channel_name(each)
        except StreamError as exc:
            raise BadParameter(str(exc), exc.limit) from None
    out = []
    for i, each in enumerate(names):
        cursor = _int_param(cursors[i] if i < len(cursors) else None, "cursor", 0, 2**63 - 1)
        out.append((each, cursor))
    return out


def _read_all(stream: EventStream, wanted: list[tuple[str, int]], limit: int) -> tuple[list[bytes], dict[str, int]]:
    events: list[bytes] = []
    cursors: dict[str, int] = {}
    for name, cursor in wanted:
        got, cursors[name] = stream.read(name, cursor, limit - len(events)) if len(events) < limit else ([], cursor)
        events.extend(got)
    return events, cursors


def _answer(stream: EventStream, events: list[bytes], cursors: dict[str, int], single: bool) -> web.Response:
    if single:
        (cursor,) = cursors.values()
        where = b'"cursor":%d' % cursor
    else:
        where = b'"cursors":' + json.dumps(cursors, separators=(",", ":")).encode()
    body = b'{"events":[' + b",".join(events) + b"]," + where + b',"epoch":"' + stream.epoch.encode() + b'"}'
    return web.Response(body=body, content_type="application/json")


async def read_events(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    app = request.app
    stream = app[STREAM]
    settings = app[SETTINGS]
    single = "channel" in request.match_info
    try:
        requested = _parse_channels(request)
        limit = _int_param(request.query.get("limit"), "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
        timeout = _timeout_param(request.query.get("timeout"), settings.max_poll_timeout)
        # A missing cursor is the channel's head now: only events published from now on.
        wanted = [(name, stream.head(name) if cursor is None else cursor) for name, cursor in requested]
        events, cursors = _read_all(stream, wanted, limit)
    except BadParameter as exc:
        return _refused(request, started, exc.status, str(exc), exc.limit)
    except CursorAhead as exc:
        return _refused(request, started, 400, str(exc), "cursor", epoch=stream.epoch)
    except CursorGone as exc:
        return _gone(request, started, exc, stream)
    held = app[POLLS]
    pacer = app[PACER]
    # Answers waiting their turn in the pacer (see AnswerPacer): this one joins the end of the line.
    in_line = bool(events) and pacer.busy and not held.full
    if not in_line:
        if events or timeout <= 0:
            return logged(request, started, "events" if events else "timeout", _answer(stream, events, cursors, single))
        if held.full:
            busy = json_error(503, "too many held polls, retry later", {"Retry-After": "1"})
            return logged(request, started, "over-limit", busy)
    waiter = held.wait(timeout + app[JITTER_RNG].uniform(0, JITTER * timeout))
    names: list[str] = []
    if in_line:
        pacer.wake(waiter)
    else:
        names = [name for name, _ in wanted]
        stream.watch(names, waiter)
    try:
        woken = await waiter
    except asyncio.CancelledError:
        log_request(request, started, 0, "client-gone")
        raise
    finally:
        held.done()
        stream.unwatch(names, waiter)
    if woken is False:
        return logged(request, started, "shutdown", _answer(stream, [], cursors, single))
    try:
        events, cursors = _read_all(stream, wanted, limit)
    except CursorGone as exc:  # retention so small that the new events are gone already
        return _gone(request, started, exc, stream)
    return logged(request, started, "events" if events else "timeout", _answer(stream, events, cursors, single))


def _open_connections(request: web.Request) -> int:
    try:  # aiohttp's Server keeps the list of its open connections
        return len(request.protocol._manager.connections)  # type: ignore[union-attr]
    except AttributeError:
        return 0


async def metrics(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    app = request.app
    lines = [
        "# HELP longpoll_held_polls Polls held now (GET / and GET /events).",
        "# TYPE longpoll_held_polls gauge",
        f"longpoll_held_polls {len(app[POLLS])}",
        "# HELP longpoll_events_published_total Events published since the start.",
        "# TYPE longpoll_events_published_total counter",
        f"longpoll_events_published_total {app[STREAM].published}",
        "# HELP longpoll_channels Channels that exist now.",
        "# TYPE longpoll_channels gauge",
        f"longpoll_channels {len(app[STREAM])}",
        "# HELP longpoll_open_connections Client connections open now.",
        "# TYPE longpoll_open_connections gauge",
        f"longpoll_open_connections {_open_connections(request)}",
        "# HELP longpoll_responses_total Answers sent, by HTTP status.",
        "# TYPE longpoll_responses_total counter",
    ]
    lines += [f'longpoll_responses_total{{status="{status}"}} {count}' for status, count in sorted(app[RESPONSES].items())]
    answer = web.Response(text="\n".join(lines) + "\n", headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
    return logged(request, started, "-", answer)


async def _demo_publisher(app: web.Application) -> None:
    """Publish a random demo event to --publish-demo at the demo's rhythm, until cancelled."""
    settings = app[SETTINGS]
    rng = random.Random(settings.seed)
    stream = app[STREAM]
    logger = app[LOGGER]
    while True:
        await asyncio.sleep(max(0.01, rng.uniform(settings.min_delay, settings.max_delay)))
        name = rng.choice(EVENTS)
        event_id, _ = stream.publish(settings.publish_demo, {"event": name})
        logger.info("demo event published", extra={"fields": {"channel": settings.publish_demo, "id": event_id, "event": name}})


async def _start_demo(app: web.Application) -> None:
    app[DEMO_TASK]["task"] = asyncio.create_task(_demo_publisher(app))


async def _stop_demo(app: web.Application) -> None:
    task = app[DEMO_TASK].pop("task", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def add_event_routes(app: web.Application, settings: Settings, rng: random.Random) -> None:
    """Add the stream and its routes; call before the catch-all route."""
    app[PACER] = pacer = AnswerPacer()
    app[STREAM] = EventStream(
        wake=pacer.wake,
        retention_count=settings.retention_count,
        retention_seconds=settings.retention_seconds,
        max_channels=settings.max_channels,
        max_event_bytes=settings.max_event_bytes,
    )
    app[JITTER_RNG] = rng
    app.router.add_post("/events/{channel}", publish)
    app.router.add_get("/events/{channel}", read_events)
    app.router.add_get("/events", read_events)
    app.router.add_get("/metrics", metrics)
    app[DEMO_TASK] = {}
    if settings.publish_demo:
        app.on_startup.append(_start_demo)
        app.on_shutdown.append(_stop_demo)

