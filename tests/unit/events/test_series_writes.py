"""How a series change that cancels is written: its one series_cancelled message goes
in the same atomic write as an occurrence's own change (no window where the
occurrences are cancelled and the message not stored), exactly once whatever races it
meets. Against the events storage in memory (tests.support.fakes)."""

import pytest

from bus.concurrency import ATTEMPTS
from bus.errors import Conflict
from services.events import handlers
from tests.support.fakes import FakeEventsStorage, in_memory

SERIES = {"title": "Choir practice", "description": "", "topics": ["music"],
          "starts_at": "2031-10-19T19:00:00+02:00", "timezone": "Europe/Madrid",
          "recurrence": "FREQ=WEEKLY;COUNT=4"}


class Crashed(Exception):
    """The events service died here."""


class CrashingStorage(FakeEventsStorage):
    """The events storage in memory, where the process dies at its second write:
    what a crash right after the first write leaves stored."""

    WRITES = ("insert", "insert_all", "replace_version", "replace_versions", "add_message")

    def __init__(self):
        super().__init__()
        self.writes = []
        self.crash_after = None  # writes allowed from now on; None: never crash

    def __getattribute__(self, name):
        method = super().__getattribute__(name)
        if name not in CrashingStorage.WRITES:
            return method

        def write(*args):
            if self.crash_after is not None and len(self.writes) >= self.crash_after:
                raise Crashed(name)
            self.writes.append(name)
            return method(*args)

        return write


@pytest.fixture
def db(monkeypatch):
    return in_memory(monkeypatch, handlers, CrashingStorage())


def outbox(db, event_id):
    return db.events.find_one({"_id": event_id})["pending_events"]


def series_messages(db):
    return [m for d in db.events.find({}) for m in d["pending_events"]
            if m["event_type"] == "series_cancelled"]


def new_series(db):
    occurrences = handlers.create_series(db, SERIES)
    db.writes.clear()
    return occurrences, occurrences[0]["series_id"]


CANCELLING = {
    "DELETE": lambda db, series_id: handlers.delete_series(db, series_id),
    "PATCH cancelled": lambda db, series_id: handlers.update_series(
        db, series_id, {"status": "cancelled"}),
}


@pytest.mark.parametrize("command", CANCELLING)
def test_the_series_message_is_stored_in_the_same_write_as_the_first_cancellation(db, command):
    occurrences, series_id = new_series(db)
    db.crash_after = 1  # the process dies at any write after the first

    CANCELLING[command](db, series_id)

    assert db.writes == ["replace_versions"]  # one write, nothing after it to crash in
    own, summary = outbox(db, occurrences[0]["id"])[1:]
    assert own["event_type"] in ("event_deleted", "event_updated")
    assert summary["event_type"] == "series_cancelled"
    assert summary["data"]["change_id"] == own["data"]["series_change"]
    assert summary["data"]["occurrences"] == [{"id": e["id"], "version": 2}
                                              for e in occurrences]
    assert series_messages(db) == [summary]


def racing(monkeypatch, db, occurrence_id, times=1):
    """Another admin's PATCH /events/{id} of ``occurrence_id`` lands between the series
    command's read and its write, ``times`` times in a row."""
    read = handlers.storage.series_occurrences
    left = [times]

    def then_changed(_db, series_id):
        found = read(_db, series_id)
        if left[0]:
            left[0] -= 1
            handlers.update(db, occurrence_id, {"description": f"Room {left[0]}"})
        return found

    monkeypatch.setattr(db, "series_occurrences", then_changed)


@pytest.mark.parametrize("command", CANCELLING)
@pytest.mark.parametrize("raced", [0, 2], ids=["first", "third"])
def test_a_race_on_an_occurrence_still_stores_one_series_message_covering_every_one(
        db, monkeypatch, command, raced):
    occurrences, series_id = new_series(db)
    racing(monkeypatch, db, occurrences[raced]["id"])

    CANCELLING[command](db, series_id)

    [summary] = series_messages(db)
    # the raced one was written again from a fresh read, at version 3; the message names
    # what each occurrence's stored outbox says, in the first occurrence's outbox
    versions = {e["id"]: outbox(db, e["id"])[-1]["version"] for e in occurrences}
    versions[occurrences[0]["id"]] = outbox(db, occurrences[0]["id"])[-2]["version"]
    assert summary["data"]["occurrences"] == [{"id": e["id"], "version": versions[e["id"]]}
                                              for e in occurrences]
    assert versions[occurrences[raced]["id"]] == 3
    assert outbox(db, occurrences[0]["id"])[-1] == summary
    assert db.writes.count("add_message") == 0


def test_a_change_that_keeps_losing_covers_what_it_did_with_one_message(db, monkeypatch):
    occurrences, series_id = new_series(db)
    racing(monkeypatch, db, occurrences[2]["id"], times=ATTEMPTS)

    with pytest.raises(Conflict) as answer:
        handlers.delete_series(db, series_id)

    # written in order, the first occurrence (the message's carrier) last: the raced
    # third stopped each round after the second
    done = answer.value.details["changed"]
    assert done == [occurrences[1]["id"]]
    [summary] = series_messages(db)
    assert [o["id"] for o in summary["data"]["occurrences"]] == done
    assert outbox(db, occurrences[1]["id"])[-1] == summary
    stored = [db.events.find_one({"_id": e["id"]}) for e in occurrences]
    assert [(d["version"], d.get("deleted", False)) for d in stored] == [
        (1, False), (2, True), (1 + ATTEMPTS, False), (1, False)]


def test_a_409_names_what_changed_and_the_same_patch_again_completes_it(db, monkeypatch):
    occurrences, series_id = new_series(db)
    racing(monkeypatch, db, occurrences[2]["id"], times=ATTEMPTS)
    move = {"starts_at": "2031-10-19T20:30:00+02:00", "title": "Choir practice (late)"}

    with pytest.raises(Conflict) as answer:
        handlers.update_series(db, series_id, move)

    # written in order until the raced third: the first two changed, the last two not
    assert answer.value.details == {"changed": [e["id"] for e in occurrences[:2]],
                                    "unchanged": [e["id"] for e in occurrences[2:]]}
    assert "2 occurrences were changed and 2" in answer.value.message
    assert handlers.get(db, occurrences[1]["id"])["starts_at"] == "2031-10-26T19:30:00Z"
    assert handlers.get(db, occurrences[3]["id"])["starts_at"] == "2031-11-09T18:00:00Z"

    again = handlers.update_series(db, series_id, move)

    # the rest moved as far on the wall clock (20:30 Madrid, after the October change
    # too), and the first two were not moved a second time
    assert [e["id"] for e in again["changed"]] == [e["id"] for e in occurrences[2:]]
    after = [handlers.get(db, e["id"]) for e in occurrences]
    assert [e["starts_at"] for e in after] == ["2031-10-19T18:30:00Z", "2031-10-26T19:30:00Z",
                                              "2031-11-02T19:30:00Z", "2031-11-09T19:30:00Z"]
    assert {e["title"] for e in after} == {"Choir practice (late)"}
    assert [e["version"] for e in after] == [2, 2, 2 + ATTEMPTS, 2]
    assert after[2]["description"] == "Room 0"  # the racing PATCH's change stays
    # and once complete, the same PATCH changes nothing more
    assert handlers.update_series(db, series_id, move)["changed"] == []


def test_a_different_patch_or_an_occurrence_changed_since_is_not_skipped(db):
    occurrences, series_id = new_series(db)
    handlers.update_series(db, series_id, {"title": "Choir"})
    handlers.update(db, occurrences[1]["id"], {"title": "Choir (in the crypt)"})

    again = handlers.update_series(db, series_id, {"title": "Choir"})

    assert [e["id"] for e in again["changed"]] == [occurrences[1]["id"]]
    assert handlers.get(db, occurrences[1]["id"])["title"] == "Choir"
    moved = handlers.update_series(db, series_id, {"starts_at": "2031-10-19T18:00:00+02:00"})
    assert len(moved["changed"]) == 4
    assert handlers.get(db, occurrences[3]["id"])["starts_at"] == "2031-11-09T17:00:00Z"
