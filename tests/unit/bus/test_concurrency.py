"""bus.concurrency: retried compare-and-set, then a Conflict (409), never a RuntimeError."""
import pytest

from bus.concurrency import ATTEMPTS, LOST, compare_and_set
from bus.errors import Conflict, NotFound


def test_an_attempt_that_wins_returns_its_result_even_none():
    tries = []

    def attempt():
        tries.append(1)
        return LOST if len(tries) < 3 else None

    assert compare_and_set(attempt) is None and len(tries) == 3


def test_an_attempt_that_keeps_losing_is_a_conflict_after_the_bounded_attempts():
    tries = []
    with pytest.raises(Conflict) as error:
        compare_and_set(lambda: tries.append(1) or LOST, "It kept changing.")
    assert len(tries) == ATTEMPTS and error.value.status == 409
    assert error.value.code == "conflict" and error.value.message == "It kept changing."


def test_an_error_inside_an_attempt_ends_the_loop_with_it():
    def attempt():
        raise NotFound("gone")

    with pytest.raises(NotFound):
        compare_and_set(attempt)


def test_the_events_service_answers_a_lost_race_with_a_conflict(monkeypatch):
    from services.events import handlers
    from tests.support.fakes import FakeEventsStorage, in_memory

    db = in_memory(monkeypatch, handlers, FakeEventsStorage())
    event = handlers.create(db, {"title": "Jazz", "topics": ["music"],
                                 "starts_at": "2031-01-01T00:00:00Z"})
    monkeypatch.setattr(db, "replace_version", lambda *args: False)  # always beaten
    for change in (lambda: handlers.update(db, event["id"], {"title": "Blues"}),
                   lambda: handlers.delete(db, event["id"])):
        with pytest.raises(Conflict):
            change()
