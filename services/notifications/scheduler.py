"""Handing due reminders to the mailer, in batches, with any number of instances.

Claim: one ``update_many`` moves a chunk of due reminders from ``scheduled`` to
``sending`` under a fresh claim id, with a lease; only one instance's update can
match a reminder. The claimed ones are read back by that id and go out in one
``reminder_due`` message (bus.messages) that carries all the mailer needs. The
message is not kept in an outbox: the lease is the outbox. A reminder still
``sending`` when its lease runs out (the message was lost, the mailer was down,
its outcome report was lost, this process died between claim and publish) is
handed over again by ``sweep`` under the same send key, and the mailer, which
sends each key at most once, sends it or answers from its log. Deferred
reminders (a transient SMTP failure) come back the same way, sooner
(handlers.on_delivery_report). Nothing stays ``sending`` longer than
``give_up_seconds`` after its claim: then it is ``failed``, with the reason.

The ``Clock`` keeps, per process, when there is next something to do, so a tick
with nothing due asks the database nothing: it sleeps until the next due time it
has seen (looking ``horizon`` seconds ahead, at most), or until a reminder is
created, moved or snoozed here (``wake``).
"""
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import eventlet
from nameko.extensions import DependencyProvider

from bus.messages import new_message, utc_now

from . import storage
from .handlers import cancel_reminders, is_live, send_key
from .schemas import resource

log = logging.getLogger(__name__)
CANDIDATES = 2000  # due reminders read per query: SecantusDB's cost is the range, not the limit


@dataclass
class Settings:
    catch_up_hours: float = 24
    lease_seconds: float = 30
    give_up_seconds: float = 900
    batch: int = 50  # reminders per claim and per reminder_due message
    horizon: float = 2.0  # seconds to look ahead for the next due time
    sweep_every: float = 10.0
    retry_publish_seconds: float = 2.0


class Clock(DependencyProvider):
    """When this process next has work: the next due time it knows of, and the next
    sweep. Shared by every worker of the service (it returns itself)."""

    def setup(self):
        self.next_due = None  # None: ask the database at the next tick
        self.next_sweep = None
        self.started = False  # the first tick hands over again what was in flight
        self.claiming = False  # a claim is under way here

    def get_dependency(self, worker_ctx):
        return self

    def wake(self, at=None):
        """A reminder due at ``at`` (None: something moved, look again)."""
        if at is None or self.next_due is None or at < self.next_due:
            self.next_due = None if at is None else at

    def sweep_at(self, at):
        if self.next_sweep is None or at < self.next_sweep:
            self.next_sweep = at

    def after_claims(self, limit):
        """Wait, up to ``limit`` seconds, until no claim is under way here. For work
        that can wait (recording outcomes): the reminders still due cannot, and both
        queue for one database."""
        deadline = time.monotonic() + limit
        while self.claiming and time.monotonic() < deadline:
            eventlet.sleep(0.02)

    def claim_needed(self, now):
        return self.next_due is None or now >= self.next_due

    def sweep_needed(self, now):
        return self.next_sweep is None or now >= self.next_sweep


def tick(db, clock, now, publish, withdraw, relay, settings):
    """One timer tick: claim what is due, sweep when it is time. Cheap when idle."""
    if not clock.started:
        # This process may be the restart of one that died between a claim and its
        # publish: whatever is in flight is handed over again now rather than after
        # its lease (a second copy is harmless: the mailer sends each key once).
        db[storage.REMINDERS].update_many(
            {"status": "sending", "lease_until": {"$gt": now}}, {"$set": {"lease_until": now}})
        clock.started, clock.next_sweep = True, now
    if clock.claim_needed(now):
        clock.next_due = now + timedelta(seconds=settings.horizon)  # unless we learn better
        clock.claiming = True
        try:
            upcoming = claim_due(db, now, publish, withdraw, relay, settings)
        finally:
            clock.claiming = False
        if upcoming is not None:
            clock.wake(upcoming)
    if clock.sweep_needed(now):
        clock.next_sweep = now + timedelta(seconds=settings.sweep_every)
        next_lease = sweep(db, now, publish, withdraw, relay, settings)
        if next_lease is not None:
            clock.sweep_at(max(next_lease, now + timedelta(seconds=0.5)))


def claim_due(db, now, publish, withdraw, relay, settings, clock=utc_now):
    """Claim and hand over every due reminder; returns the next due time within the
    horizon, or None. Reminders overdue by more than the catch-up window (the system
    was down) are not sent any more: they become ``failed`` with the reason ``missed``."""
    # the publish of one chunk overlaps the claim of the next
    publishing = eventlet.GreenPool(2)
    try:
        return _claim_all(db, now, publish, withdraw, relay, settings, clock, publishing)
    finally:
        publishing.waitall()


def _claim_all(db, now, publish, withdraw, relay, settings, clock, publishing):
    while True:
        window = list(db[storage.REMINDERS].find(
            {"status": "scheduled",
             "remind_at": {"$lte": now + timedelta(seconds=settings.horizon)}},
            {"_id": 1, "remind_at": 1},
        ).sort("remind_at", 1).limit(CANDIDATES))
        due = [r for r in window if r["remind_at"] <= now]
        if not due:
            return window[0]["remind_at"] if window else None
        cutoff = now - timedelta(hours=settings.catch_up_hours)
        missed = [r["_id"] for r in due if r["remind_at"] < cutoff]
        if missed:
            storage.update_by_ids(db, missed, {"status": "scheduled"}, {
                "$set": {"status": "failed", "failure_reason": "missed", "updated_at": now},
                "$inc": {"rev": 1}})
        ids = [r["_id"] for r in due if r["remind_at"] >= cutoff]
        # Each instance starts at a chunk of its own and walks on from there, so
        # instances claim different chunks; once one finds part of a chunk taken, it
        # has met another's and reads again what is left, rather than sending the
        # rest of its list in ever smaller messages.
        chunks = storage.chunks(ids, settings.batch)
        start = random.randrange(len(chunks))
        for chunk in chunks[start:] + chunks[:start]:
            at = clock()
            claimed = take_and_hand_over(
                db, chunk, {"status": "scheduled", "remind_at": {"$lte": now}},
                {"$set": {"status": "sending", "claimed_at": at, "delivery_attempts": 1}},
                at, publish, withdraw, relay, settings, publishing.spawn)
            if claimed < len(chunk):
                break
        now = clock()


def take_and_hand_over(db, ids, condition, change, now, publish, withdraw, relay, settings,
                       run=lambda function, *args: function(*args)):
    """Claim the reminders of ``ids`` that still match ``condition`` and publish their
    ``reminder_due`` (through ``run``: at once, or in a greenthread); returns how many
    were claimed."""
    claim = uuid.uuid4().hex
    lease = now + timedelta(seconds=settings.lease_seconds)
    update = {**change, "$set": {**change.get("$set", {}), "claim": claim, "lease_until": lease}}
    if not storage.update_by_ids(db, ids, condition, update):
        return 0
    claimed = storage.find_by_ids(db, ids, {"claim": claim})
    events = storage.find_events(db, {r["event_id"] for r in claimed})
    live = [r for r in claimed if is_live(events.get(r["event_id"]))]
    for event_id in {r["event_id"] for r in claimed} - {r["event_id"] for r in live}:
        # its event was cancelled or deleted meanwhile: cancel these, never send them
        cancel_reminders(db, events.get(event_id), now, relay, withdraw)
    if live:
        run(_publish, db, publish, due_message(live, events), live, claim, now, settings)
    return len(claimed)


def _publish(db, publish, message, reminders, claim, now, settings):
    try:
        publish(message)
    except Exception:  # noqa: BLE001  the broker is down: try again soon, same keys
        log.exception("publishing reminder_due for %d reminders failed", len(reminders))
        retry_at = now + timedelta(seconds=settings.retry_publish_seconds)
        try:
            storage.update_by_ids(db, [r["_id"] for r in reminders],
                                  {"claim": claim, "status": "sending"},
                                  {"$set": {"lease_until": retry_at}})
        except Exception:  # noqa: BLE001  then the whole lease it is
            log.exception("could not shorten the lease of %d reminders", len(reminders))


def due_message(reminders, events):
    # user_id and arm: what the mailer signs the email's one-click links with (bus.links)
    items = [{"send_key": send_key(r), "notification": resource(r), "event_id": r["event_id"],
              "attempt": int(r.get("delivery_attempts") or 1), "user_id": r["user_id"],
              "arm": r["arm"]} for r in reminders]
    needed = {r["event_id"]: events[r["event_id"]]["event"] for r in reminders}
    return new_message("notifications", "reminder_due", "reminders", 1,
                       reminders=items, events=needed)


def sweep(db, now, publish, withdraw, relay, settings):
    """Reminders whose lease ran out: hand them over again, or give up on them.
    Returns the earliest lease still running (when to sweep next), or None."""
    sending = list(db[storage.REMINDERS].find(
        {"status": "sending"}, {"_id": 1, "lease_until": 1, "claimed_at": 1, "last_error": 1}))
    running = [r["lease_until"] for r in sending if r.get("lease_until") and r["lease_until"] > now]
    expired = [r for r in sending if not r.get("lease_until") or r["lease_until"] <= now]
    if not expired:
        return min(running, default=None)
    give_up = now - timedelta(seconds=settings.give_up_seconds)
    for reminder in expired:
        if reminder.get("claimed_at") and reminder["claimed_at"] < give_up:
            reason = (f"not delivered within {settings.give_up_seconds:g} s"
                      + (f"; last error: {reminder['last_error']}"
                         if reminder.get("last_error") else ""))
            storage.update_by_ids(db, [reminder["_id"]],
                                  {"status": "sending", "lease_until": reminder.get("lease_until")},
                                  {"$set": {"status": "failed", "failure_reason": reason,
                                            "unconfirmed": True, "updated_at": now},
                                   "$inc": {"rev": 1}})
    again = [r["_id"] for r in expired
             if not (r.get("claimed_at") and r["claimed_at"] < give_up)]
    if again:
        log.info("handing %d reminders over again (lease ran out)", len(again))
    for chunk in storage.chunks(again, settings.batch):
        take_and_hand_over(db, chunk, {"status": "sending", "lease_until": {"$not": {"$gt": now}}},
                           {"$inc": {"delivery_attempts": 1}},
                           now, publish, withdraw, relay, settings)
    return min(running, default=None)
