"""The long-polling client: polls in a loop and never gives up.

A 200 is an event (logged with the time it took), a 304 means the server's timeout ran out
and we poll again at once. Connection errors, time-outs and 5xx answers are retried after a
delay drawn with "full jitter" from a cap that doubles from `backoff_initial` up to
`backoff_max`, so that many clients restarted together do not come back in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp


class Backoff:
    """Capped exponential backoff with full jitter: delay = uniform(0, min(max, initial * 2**n))."""

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self.attempt = 0

    def cap(self) -> float:
        # min() before the power would overflow: 2.0**1100 is an OverflowError.
        return min(self.maximum, self.initial * 2.0 ** min(self.attempt, 64))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0, self.cap())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class RetryableAnswer(Exception):
    """The server answered, but not with something we can use (5xx, bad body...)."""


# What a poll can fail with that is worth retrying: the server is down, slow or confused.
OUTAGES = (aiohttp.ClientError, asyncio.TimeoutError, OSError, RetryableAnswer)


async def retry_later(backoff: Backoff, logger: logging.Logger, exc: BaseException) -> None:
    """Log one line for this failed attempt, then wait the next backoff delay."""
    delay = backoff.next_delay()
    fields = {"error": describe_error(exc), "attempt": backoff.attempt, "retry_in": f"{delay:.3f}"}
    logger.warning("poll failed, retrying", extra={"fields": fields})
    await asyncio.sleep(delay)


async def run_client(
    url: str,
    *,
    timeout: float,
    backoff: Backoff,
    logger: logging.Logger,
) -> None:
    """Poll `url` until cancelled. Every outcome gets one log line."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(timeout=client_timeout, connector=connector) as session:
        logger.info("client polling", extra={"fields": {"url": url}})
        while True:
            started = time.monotonic()
            try:
                event = await _poll_once(session, url)
            except OUTAGES as exc:
                await retry_later(backoff, logger, exc)
                continue
            backoff.reset()
            took = f"{time.monotonic() - started:.3f}"
            if event is None:
                logger.info("no event, polling again", extra={"fields": {"status": 304, "took": took}})
            else:
                logger.info("event received", extra={"fields": {"event": event, "took": took}})


async def _poll_once(session: aiohttp.ClientSession, url: str) -> str | None:
    async with session.get(url) as response:
        if response.status == 304:
            return None
        if response.status != 200:
            raise RetryableAnswer(f"HTTP {response.status}")
        try:
            body = await response.json(content_type=None)
            return str(body["event"])
        except (ValueError, KeyError, TypeError):
            raise RetryableAnswer("answer is not an event") from None


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
