"""The event source: seeded, all four events reachable, delays in range, 304 past the timeout."""

import random

import pytest

from longpoll.events import EVENTS, EventSource


def source(seed=1, **overrides):
    params = dict(immediate_ratio=0.5, min_delay=1.0, max_delay=10.0, timeout=5.0)
    params.update(overrides)
    return EventSource(rng=random.Random(seed), **params)


def test_same_seed_same_outcomes():
    a, b = source(seed=42), source(seed=42)
    assert [a.next_outcome() for _ in range(100)] == [b.next_outcome() for _ in range(100)]


def test_all_events_reachable_and_mix_is_about_half_immediate():
    outcomes = iter_outcomes(5, 4000)
    assert {o.event for o in outcomes if o.event} == set(EVENTS)
    immediate = sum(1 for o in outcomes if o.delay == 0)
    assert 0.45 < immediate / len(outcomes) < 0.55


def iter_outcomes(seed, n, **overrides):
    s = source(seed=seed, **overrides)
    return [s.next_outcome() for _ in range(n)]


def test_delays_are_uniform_in_range_and_fire_before_the_timeout():
    outcomes = iter_outcomes(9, 4000, immediate_ratio=0.0)
    delayed = [o for o in outcomes if o.event]
    timed_out = [o for o in outcomes if o.event is None]
    assert all(1.0 <= o.delay < 5.0 for o in delayed)
    assert all(o.delay == 5.0 for o in timed_out)
    # uniform in [1, 10] with a 5 s timeout: 4/9 fire, 5/9 time out
    assert 0.40 < len(delayed) / len(outcomes) < 0.49


@pytest.mark.parametrize("ratio, immediate", [(1.0, True), (0.0, False)])
def test_ratio_bounds(ratio, immediate):
    assert all((o.delay == 0) is immediate for o in iter_outcomes(3, 200, immediate_ratio=ratio))


def test_zero_delay_range_still_fires():
    # The original never fired a delay of 0; here [0, 0] answers at once with an event.
    outcomes = iter_outcomes(3, 50, immediate_ratio=0.0, min_delay=0.0, max_delay=0.0)
    assert all(o.event in EVENTS and o.delay == 0.0 for o in outcomes)
