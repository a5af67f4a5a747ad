"""core.ratelimit: a sliding window, on the local-memory cache and on Redis, with a frozen clock."""

from __future__ import annotations

import threading

from core import ratelimit


def test_no_stretch_of_the_window_lets_more_than_the_limit_through(ratelimit_clock):
    for _ in range(3):
        assert ratelimit.hit("t", "k", limit=3, window=60) is None
    assert ratelimit.hit("t", "k", limit=3, window=60) == 60
    ratelimit_clock.now += 1  # across the minute boundary: the three are still within 60 seconds
    assert ratelimit.hit("t", "k", limit=3, window=60) == 59
    assert ratelimit.blocked("t", "k", limit=3, window=60) == 59
    ratelimit_clock.now += 59  # exactly a window after the first three
    assert ratelimit.blocked("t", "k", limit=3, window=60) is None
    assert ratelimit.hit("t", "k", limit=3, window=60) is None


def test_the_window_slides_one_event_at_a_time(ratelimit_clock):
    start = ratelimit_clock.now
    for offset in (0, 10):
        ratelimit_clock.now = start + offset
        assert ratelimit.hit("t", "k", limit=2, window=60) is None
    ratelimit_clock.now = start + 20
    assert ratelimit.hit("t", "k", limit=2, window=60) == 40
    # Refused events are not counted: waiting the time given is enough.
    ratelimit_clock.now = start + 60
    assert ratelimit.hit("t", "k", limit=2, window=60) is None
    assert ratelimit.hit("t", "k", limit=2, window=60) == 10
    ratelimit_clock.now = start + 70
    assert ratelimit.hit("t", "k", limit=2, window=60) is None


def test_blocked_does_not_count_and_keys_and_scopes_are_apart(ratelimit_clock):
    for _ in range(5):
        assert ratelimit.blocked("t", "k", limit=1, window=60) is None
    assert ratelimit.hit("t", "k", limit=1, window=60) is None
    assert ratelimit.blocked("t", "k", limit=1, window=60) == 60
    assert ratelimit.hit("t", "other", limit=1, window=60) is None
    assert ratelimit.hit("other", "k", limit=1, window=60) is None
    assert ratelimit.hit("t", "k", limit=0, window=60) is None  # 0: no limit


def test_concurrent_hits_never_pass_the_limit(ratelimit_clock):
    admitted = []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(5):
            if ratelimit.hit("t", "shared", limit=10, window=60) is None:
                admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 10
