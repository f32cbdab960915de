"""Garbage collection for a server that holds thousands of connections.

Python's cyclic collector runs a full collection, a walk over every tracked object, each time
ten collections of the middle generation have happened, and with the defaults (700, 10, 10)
that is every 70,000 net allocations. With 10,000 held polls the heap holds millions of
objects, so under the events benchmark a full collection came every second or so and took
0.2-0.4 s, stopping the event loop each time: about 30 % of the server's time and most of the
slow `201`s (README, Performance).

So the server, once started, freezes what exists (modules, the app: never garbage, never walked
again) and collects the young generation less often. Full collections then become rare, which
is safe only if connections do not depend on them to be freed: `longpoll/limits.py` breaks the
one reference cycle each closed connection left behind (Python 3.11's socket transport), and
`tests/test_hostile_input.py` checks that memory comes back after 10,000 clients vanish.
"""

from __future__ import annotations

import gc

# gc.set_threshold's three numbers: a young collection every 50,000 net allocations, a middle one
# after 20 young ones, a full one after 10 middle ones (every 10,000,000 net allocations, and
# CPython also waits until the old generation has grown by a quarter). See README, Performance.
THRESHOLDS = (50_000, 20, 10)


def tune_for_many_connections() -> None:
    """Never walk again what exists now, and collect the young generation less often."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
