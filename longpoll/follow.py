"""`long-poll client --follow CHANNEL`: print a channel's events as JSON lines, never losing one
silently.

It long-polls GET /events/CHANNEL?cursor=N and prints each event as one JSON line on stdout
(logs stay on stderr). After an outage it resumes from its last cursor (retrying with the
same Backoff as the GET / client); a 410 is logged with how many events were missed and the
loop goes on from the oldest cursor still retained; a new epoch (the server restarted) is
logged and the loop starts again from cursor 0. Ids already printed are never printed twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Callable, TextIO
from urllib.parse import urljoin

import aiohttp

from longpoll.client import OUTAGES, Backoff, RetryableAnswer, retry_later


def events_url(base: str, channel: str) -> str:
    return urljoin(base, f"events/{channel}")


async def follow(
    base_url: str,
    channel: str,
    *,
    cursor: int | None,
    timeout: float,
    backoff: Backoff,
    logger: logging.Logger,
    out: TextIO | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> None:
    """Follow `channel` until cancelled."""
    url = events_url(base_url, channel)
    out = out if out is not None else sys.stdout
    epoch: str | None = None
    last_id = cursor if cursor is not None else 0  # the highest id printed (dedupe)
    client_timeout = aiohttp.ClientTimeout(total=timeout + max(1.0, timeout * 0.2))
    async with aiohttp.ClientSession(timeout=client_timeout, connector=aiohttp.TCPConnector(limit=1)) as session:
        logger.info("following", extra={"fields": {"url": url, "cursor": "head" if cursor is None else cursor}})
        while True:
            params = {"timeout": f"{timeout:g}"}
            if cursor is not None:
                params["cursor"] = str(cursor)
            try:
                async with session.get(url, params=params) as response:
                    status = response.status
                    try:
                        body = await response.json(content_type=None)
                    except ValueError:
                        raise RetryableAnswer(f"HTTP {status}, not JSON") from None
                if status not in (200, 400, 410) or not isinstance(body, dict) or "epoch" not in body:
                    raise RetryableAnswer(f"HTTP {status}")
            except OUTAGES as exc:
                await retry_later(backoff, logger, exc)
                continue
            backoff.reset()
            new_epoch = body.get("epoch")
            if epoch is not None and new_epoch != epoch:
                logger.warning("server restarted: new epoch, starting again from cursor 0",
                               extra={"fields": {"old": epoch, "new": new_epoch}})
                epoch, cursor, last_id = new_epoch, 0, 0
                continue
            epoch = new_epoch
            if status == 400:  # a cursor this run of the server never gave out
                delay = backoff.next_delay()
                logger.warning("cursor refused, retrying",
                               extra={"fields": {"error": body.get("error"), "retry_in": f"{delay:.3f}"}})
                await asyncio.sleep(delay)
                continue
            if status == 410:
                oldest = int(body["oldest_cursor"])
                missed = oldest - (cursor or 0)
                logger.warning(f"missed {missed} events: no longer retained by the server",
                               extra={"fields": {"cursor": cursor, "oldest_cursor": oldest}})
                cursor = oldest
                last_id = max(last_id, oldest)
                continue
            for event in body.get("events", ()):
                if event["id"] <= last_id:
                    continue  # already printed
                last_id = event["id"]
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
                if on_event is not None:
                    on_event(event)
            out.flush()
            cursor = int(body["cursor"])
