"""The event stream: channels of published events, read by cursor, with bounded retention.

Each channel numbers its events 1, 2, 3... (a sequence, never a timestamp: two events in the
same millisecond keep distinct, ordered ids). A cursor N means "I have everything up to id N";
reading after N gives the retained events with ids > N, in order. Retention is bounded per
channel by count and by age; a cursor whose next event was already dropped raises `CursorGone`
with the oldest cursor still readable, so that a reader learns it missed events.

No aiohttp here: waiters are plain futures that `publish` wakes (see longpoll/events_api.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import deque
from typing import Callable, Iterable

CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CHANNEL_RULE = "[A-Za-z0-9_.:-]{1,64}"
PUBLISHED = "published"  # the result a publish gives a waiter's future


class StreamError(ValueError):
    """A request the stream refuses; `limit` names the flag (or rule) that refused it."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class CursorGone(Exception):
    """The events right after this cursor are no longer retained."""

    def __init__(self, channel: str, cursor: int, oldest_cursor: int) -> None:
        super().__init__(f"cursor {cursor} of channel {channel!r} is older than the oldest retained")
        self.channel = channel
        self.cursor = cursor
        self.oldest_cursor = oldest_cursor

    @property
    def missed(self) -> int:
        return self.oldest_cursor - self.cursor


class CursorAhead(ValueError):
    """A cursor beyond the channel's last id: it was not given by this stream."""


def _settle_published(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(PUBLISHED)


def check_channel_name(name: str) -> str:
    if not CHANNEL_NAME.fullmatch(name):
        raise StreamError(f"channel name must match {CHANNEL_RULE}", "channel name")
    return name


class Channel:
    """One channel: its retained events as (id, time, encoded JSON object) and its head."""

    __slots__ = ("name", "events", "head")

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: deque[tuple[int, float, bytes]] = deque()
        self.head = 0  # the last id given out; 0 before the first event

    @property
    def oldest_cursor(self) -> int:
        """The smallest cursor that can still be read without a gap."""
        return self.events[0][0] - 1 if self.events else self.head


class EventStream:
    """All channels of one server run, identified by `epoch`."""

    def __init__(
        self,
        *,
        retention_count: int = 1000,
        retention_seconds: float = 300.0,
        max_channels: int = 1000,
        max_event_bytes: int = 65536,
        epoch: str | None = None,
        clock: Callable[[], float] = time.time,
        wake: Callable[[asyncio.Future], None] | None = None,
    ) -> None:
        self.retention_count = retention_count
        self.retention_seconds = retention_seconds
        self.max_channels = max_channels
        self.max_event_bytes = max_event_bytes
        # A fresh epoch per process even with --seed: a restart must always be noticed.
        self.epoch = epoch if epoch is not None else os.urandom(8).hex()
        self.clock = clock
        # What a publish does with each waiter of its channel: settle it now, unless the caller
        # paces wake-ups (longpoll/events_api.py, AnswerPacer).
        self.wake = wake if wake is not None else _settle_published
        self.published = 0
        self._channels: dict[str, Channel] = {}
        # Waiters per channel name (the channel may not exist yet); a dict is an ordered set.
        self._waiters: dict[str, dict[asyncio.Future, None]] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def channel(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def publish(self, name: str, data: object) -> tuple[int, float]:
        """Append one event (any JSON value) to a channel; return its id and time."""
        check_channel_name(name)
        channel = self._channels.get(name)
        if channel is None:
            if len(self._channels) >= self.max_channels:
                raise StreamError(f"too many channels (at most {self.max_channels})", "--max-channels")
            channel = self._channels[name] = Channel(name)
        now = self.clock()
        channel.head += 1
        event_id = channel.head
        encoded = json.dumps(
            {"channel": name, "id": event_id, "time": round(now, 6), "data": data},
            separators=(",", ":"),  # ASCII: a lone surrogate in the input cannot break encoding
        ).encode()
        channel.events.append((event_id, now, encoded))
        self._trim(channel, now)
        self.published += 1
        waiters = self._waiters.pop(name, None)
        if waiters:
            wake = self.wake
            for waiter in waiters:
                wake(waiter)
        return event_id, now

    def head(self, name: str) -> int:
        channel = self._channels.get(name)
        return channel.head if channel is not None else 0

    def read(self, name: str, cursor: int | None, limit: int) -> tuple[list[bytes], int]:
        """The encoded events after `cursor` (at most `limit`) and the cursor to send next.

        `cursor` None means the head: only events published from now on.
        Raises CursorGone when events after `cursor` were dropped, CursorAhead past the head.
        """
        channel = self._channels.get(name)
        if channel is None:
            if cursor:
                raise CursorAhead(f"cursor {cursor} is beyond the last id of channel {name!r} (0)")
            return [], 0
        if cursor is None:
            return [], channel.head
        if cursor > channel.head:
            raise CursorAhead(f"cursor {cursor} is beyond the last id of channel {name!r} ({channel.head})")
        self._trim(channel, self.clock())
        oldest = channel.oldest_cursor
        if cursor < oldest:
            raise CursorGone(name, cursor, oldest)
        events = channel.events
        if cursor == channel.head:
            return [], cursor
        # Ids in the deque are consecutive: the event after `cursor` is at a known index.
        start = cursor + 1 - events[0][0]
        out = [events[i][2] for i in range(start, min(start + limit, len(events)))]
        return out, cursor + len(out)

    def watch(self, names: Iterable[str], waiter: asyncio.Future) -> None:
        """Wake `waiter` (result PUBLISHED) at the next publish on any of these channels."""
        for name in names:
            self._waiters.setdefault(name, {})[waiter] = None

    def unwatch(self, names: Iterable[str], waiter: asyncio.Future) -> None:
        for name in names:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.pop(waiter, None)
                if not waiters:
                    del self._waiters[name]

    def _trim(self, channel: Channel, now: float) -> None:
        events = channel.events
        while len(events) > self.retention_count:
            events.popleft()
        horizon = now - self.retention_seconds
        while events and events[0][1] < horizon:
            events.popleft()
