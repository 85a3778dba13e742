"""Claiming due reminders: once, with their reminder_due message, however many instances."""
from datetime import timedelta

import eventlet
import pytest

from bus.errors import Conflict
from services.notifications import handlers, scheduler, storage

from .conftest import NOW, event, known, no_fetch, user


def schedule(db, relay, remind_at, who=None):
    return handlers.create(db, who or user(), {"event_id": "e1", "remind_at": remind_at}, NOW,
                           no_fetch, relay)


def test_claims_due_reminders_once_with_their_message(db, relayed):
    known(db, event())
    due = schedule(db, relayed, "2026-12-01T12:00:05Z")
    later = schedule(db, relayed, "2026-12-01T12:00:10Z")
    at = NOW + timedelta(seconds=6)
    assert scheduler.claim_due(db, at, relayed) == 1
    assert scheduler.claim_due(db, at, relayed) == 0
    assert relayed.calls == [(storage.REMINDERS, due["id"])]
    stored = db[storage.REMINDERS].find_one({"_id": due["id"]})
    [message] = stored["pending_events"]
    assert message["event_type"] == "reminder_due"
    assert message["data"]["send_key"] == f"reminder:{due['id']}:1" == stored["send_key"]
    assert message["data"]["notification"]["email"] == "ann@example.com"
    assert message["data"]["event"]["title"] == "Jazz night"
    # in flight, the user still sees it scheduled, and cannot change it any more
    assert handlers.get(db, "u1", due["id"])["status"] == "scheduled"
    with pytest.raises(Conflict):
        handlers.update(db, user(), due["id"], {"subject": "x"}, at)
    assert handlers.get(db, "u1", later["id"])["status"] == "scheduled"


def test_competing_instances_claim_each_reminder_exactly_once(db, relayed):
    known(db, event())
    made = [schedule(db, relayed, "2026-12-01T12:00:05Z") for _ in range(40)]
    at = NOW + timedelta(seconds=6)
    pool = eventlet.GreenPool()
    counts = list(pool.imap(lambda _: scheduler.claim_due(db, at, relayed), range(4)))
    assert sum(counts) == 40
    assert sorted(reminder_id for _, reminder_id in relayed.calls) == sorted(
        m["id"] for m in made)


def test_reminders_missed_longer_than_the_catch_up_window_fail(db, relayed):
    known(db, event())
    old = schedule(db, relayed, "2026-12-01T13:00:00Z")
    recent = schedule(db, relayed, "2026-12-02T12:00:00Z")
    back_up = NOW + timedelta(days=1, hours=2)  # the system was down for a day
    scheduler.tick(db, back_up, relayed, catch_up_hours=24)
    missed = handlers.get(db, "u1", old["id"])
    assert (missed["status"], missed["failure_reason"]) == ("failed", "missed")
    assert relayed.calls == [(storage.REMINDERS, recent["id"])]
    # the user can still ask for it again
    again = handlers.snooze(db, "u1", old["id"], 5, back_up)
    assert (again["status"], again["failure_reason"]) == ("scheduled", None)
    assert again["remind_at"] == "2026-12-02T14:05:00Z"


def test_reminder_of_a_cancelled_event_is_not_claimed(db, relayed):
    known(db, event())
    schedule(db, relayed, "2026-12-01T12:00:05Z")
    db[storage.EVENTS].update_one({"_id": "e1"}, {"$set": {"status": "cancelled"}})
    assert scheduler.claim_due(db, NOW + timedelta(seconds=6), relayed) == 0
