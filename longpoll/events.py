"""The event source: decides, for each poll, what the answer is and when it is due.

This is the seed's behaviour with its bugs fixed: all four events are reachable, delays are
uniform in [min_delay, max_delay] and a delay shorter than the timeout always fires.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

EVENTS = ("empty", "full", "new", "removed")


@dataclass(frozen=True)
class Outcome:
    """The answer to one poll: `event` after `delay` seconds, or no event (304) when None."""

    delay: float
    event: str | None


class EventSource:
    """Draws outcomes from one random generator, so that a seed makes a run repeatable."""

    def __init__(
        self,
        *,
        immediate_ratio: float,
        min_delay: float,
        max_delay: float,
        timeout: float,
        rng: random.Random,
    ) -> None:
        self._immediate_ratio = immediate_ratio
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._timeout = timeout
        self._rng = rng

    def next_outcome(self) -> Outcome:
        rng = self._rng
        if rng.random() < self._immediate_ratio:
            return Outcome(0.0, rng.choice(EVENTS))
        delay = rng.uniform(self._min_delay, self._max_delay)
        if delay < self._timeout:
            return Outcome(delay, rng.choice(EVENTS))
        return Outcome(self._timeout, None)
