"""Claiming due reminders, safely with any number of service instances.

Every instance's timer runs ``tick``. A reminder is claimed by one compare-and-set
update that moves it from ``scheduled`` to ``sending`` *and* stores its
``reminder_due`` message in the outbox (bus.outbox): only one instance's update can
match, and the claim cannot exist without its message (the outbox sweeper
publishes it even if this process dies right after the write), so no lease has to
expire and be re-claimed. The mailer sends each ``send_key`` at most once.
"""
import random
from datetime import timedelta

import eventlet

from bus.messages import new_message
from bus.outbox import outgoing

from . import storage
from .handlers import is_live
from .schemas import resource

BATCH = 200
PARALLEL = 8


def send_key(reminder):
    """One key per arming of a reminder: re-arming a sent one (snooze) mails it again."""
    return f"reminder:{reminder['_id']}:{reminder['arm']}"


def expire_missed(db, now, catch_up_hours):
    """Reminders that fell due longer ago than the catch-up window (the system was
    down) are not sent any more: they become ``failed`` with the reason ``missed``."""
    db[storage.REMINDERS].update_many(
        {"status": "scheduled", "remind_at": {"$lt": now - timedelta(hours=catch_up_hours)}},
        {"$set": {"status": "failed", "failure_reason": "missed", "updated_at": now}},
    )


def claim_due(db, now, relay, batch=BATCH, parallel=PARALLEL):
    """Claim the due reminders this instance wins and publish their ``reminder_due``.
    Returns how many it claimed."""
    due = list(db[storage.REMINDERS].find(
        {"status": "scheduled", "remind_at": {"$lte": now}}, {"pending_events": 0}
    ).sort("remind_at", 1).limit(batch))
    # All of these are due now; a different order per instance means the instances
    # mostly claim different reminders instead of racing for the same ones.
    random.shuffle(due)
    events = {}
    for event_id in {reminder["event_id"] for reminder in due}:
        events[event_id] = storage.find_event(db, event_id)

    def claim(reminder):
        copy = events[reminder["event_id"]]
        if not is_live(copy):
            return 0  # the event handler is about to cancel it
        key = send_key(reminder)
        message = new_message(
            "notifications", "reminder_due", reminder["_id"], reminder["arm"],
            send_key=key, notification=resource(reminder), event=copy["event"],
        )
        won = db[storage.REMINDERS].update_one(
            {"_id": reminder["_id"], "status": "scheduled", "updated_at": reminder["updated_at"]},
            {"$set": {"status": "sending", "send_key": key, "claimed_at": now},
             **outgoing(message)},
        )
        if not won.modified_count:
            return 0
        relay(storage.REMINDERS, reminder["_id"])
        return 1

    # A burst of due reminders is bound by database and broker round trips: overlap them.
    return sum(eventlet.GreenPool(parallel).imap(claim, due))


def tick(db, now, relay, catch_up_hours):
    expire_missed(db, now, catch_up_hours)
    return claim_due(db, now, relay)
