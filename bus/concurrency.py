"""Optimistic concurrency: the one rule for every compare-and-set write.

A write that depends on what it read is conditional on the version (or revision) it
read. When another write got there first, it reads again and retries, after a short
random pause that grows with each try (so writers that collided do not collide again
in step), at most ``ATTEMPTS`` times; then the caller gets a ``Conflict`` (409
`conflict`), never a 500. Under eventlet (every service) the pause is a green sleep.
"""
import random
import time

from bus.errors import Conflict

ATTEMPTS = 8
FIRST_PAUSE = 0.002  # seconds; the n-th retry pauses up to FIRST_PAUSE * 2 ** n
LOST = object()  # what an attempt returns when its conditional write lost the race


def compare_and_set(attempt, conflict="The resource kept changing; read it again and retry.",
                    attempts=ATTEMPTS):
    """``attempt()``'s result once it is not ``LOST``; ``Conflict(conflict)`` after
    ``attempts`` lost races. ``attempt`` reads afresh each time and may raise (a
    NotFound, a ValidationError) to end the loop with that answer."""
    for tried in range(attempts):
        result = attempt()
        if result is not LOST:
            return result
        if tried + 1 < attempts:
            time.sleep(random.uniform(0, FIRST_PAUSE * 2 ** tried))
    raise Conflict(conflict)
