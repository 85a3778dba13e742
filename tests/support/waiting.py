"""Polling with a deadline, for tests that wait for something asynchronous."""
import time


def wait_for(predicate, timeout=10, interval=0.05):
    """Poll ``predicate()`` until it is truthy (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
