"""What the notifications service does, as plain functions.

Commands (create, update, snooze, ...) and events (events.*, users.*, mailer.*)
come in; effects are writes to the service's database, with any outgoing message
stored in the same atomic write (bus.outbox) and handed to ``relay(collection,
document_id)`` to publish at once. ``withdraw(send_keys)`` asks the mailer to keep
reminders it has not handed to SMTP yet from going out: ``(withdrawn, taken)``.
``now`` is passed in so tests control time.

Races: every write that depends on what it read is a compare-and-set on the
reminder's ``rev`` and is retried from a fresh read when it loses, so a PATCH,
a snooze and an event move never overwrite one another. A write that used the
event copy checks the copy again afterwards (``settle``), and the event handler
stores the copy before it looks at the reminders, so whichever comes second sees
the other.
"""
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone

from pymongo import UpdateOne

from bus import fields as rules
from bus import times
from bus.concurrency import LOST, compare_and_set
from bus.errors import Conflict, NotFound, Unauthorized, Unavailable, ValidationError
from bus.messages import new_message

from . import storage
from .schemas import (
    Changes,
    CreateFields,
    Filters,
    PreferenceChanges,
    decode_cursor,
    encode_cursor,
    load,
    resource,
)

log = logging.getLogger(__name__)
IN_THE_PAST = "The reminder time must be in the future."
REMINDER_ID = re.compile(r"[0-9a-f]{32}")  # the form of the ids this service makes
NOT_YOURS = "Not one of your account's emails."
DEAD_EVENT = "Unknown or cancelled event."
RETRIES = 5  # attempts of an event follow-up's compare-and-set before it logs and gives up
MAX_DEFERRAL_SECONDS = 10
SNOOZE_LINKS = {"snooze_hour": 60, "snooze_day": 24 * 60}  # bus.links actions, in minutes


# time arithmetic

def parse_time(text):
    """An RFC 3339 string (``...Z`` or with an offset) as an aware datetime."""
    return datetime.fromisoformat(text)


def time_before(starts_at, before_minutes):
    """``before_minutes`` of elapsed time before the start. Computed in UTC, so a
    daylight-saving change in the event's time zone does not stretch or shrink it
    (Python subtracts wall-clock time from a datetime in a zone with DST)."""
    return times.shift(starts_at.astimezone(timezone.utc), -timedelta(minutes=before_minutes))


def send_key(reminder):
    """One key per arming of a reminder: re-arming a sent one (snooze) mails it again."""
    return f"reminder:{reminder['_id']}:{reminder['arm']}"


def parse_send_key(key):
    """(reminder id, arm) of a reminder's send key, or None for any other key."""
    parts = key.split(":") if isinstance(key, str) else []
    if len(parts) != 3 or parts[0] != "reminder" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


# the local copy of events

def event_copy(event, version=None, deleted=False, series_change=None):
    """The document this service keeps for an event resource. ``series_change``: the
    series change (bus.messages) that cancelled or deleted it, which tells its users."""
    return {
        "_id": event["id"],
        "version": int(version if version is not None else event["version"]),
        "deleted": deleted,
        "status": event["status"],
        "starts_at": parse_time(event["starts_at"]),
        "event": event,
        "series_change": series_change,
    }


def is_live(copy):
    return copy is not None and not copy["deleted"] and copy["status"] != "cancelled"


def known_event(db, event_id, fetch_event):
    """The event as the events service has it now, kept in the local copy.

    Why ask: the user has just seen the event on the write side (the gateway reads
    it), and may have just changed it: its ``event_created`` or ``event_updated``
    may not have reached this service yet, and a reminder for an event cancelled a
    moment ago must be a 422 like any other. ``fetch_event`` is an RPC with a
    timeout; it returns None for an unknown (or deleted) event. If the events
    service does not answer, the local copy decides (Unavailable without one).
    """
    try:
        event = fetch_event(event_id)
    except Unavailable:
        copy = storage.find_event(db, event_id)
        if copy is None:
            raise
        return copy
    if event is None:
        return None
    storage.store_event(db, event_copy(event))
    return storage.find_event(db, event_id)


def on_event_message(db, message, now, relay, withdraw):
    """events.event_created / event_updated / event_deleted: keep the copy, then
    make the event's reminders agree with it. Returns how many reminders moved (the
    scheduler need not look again when none did)."""
    event = message["data"]["event"]
    deleted = message["event_type"] == "event_deleted"
    copy = event_copy(event, message["version"], deleted, message["data"].get("series_change"))
    stored = storage.store_event(db, copy, replace_equal=deleted)
    if stored and message["event_type"] == "event_created":
        # The first copy of a new event: no reminder can be on it yet, because creating
        # one stores the copy first (known_event), and then this one is not newer.
        return 0
    # stored: the copy is what the database holds now (every field is set), no need to
    # read it back; else a newer one is there, and reconciling with it is harmless
    return reconcile(db, event["id"], now, relay, withdraw, copy if stored else None)


def reconcile(db, event_id, now, relay, withdraw, copy=None):
    """Idempotent: move relative reminders to the event's current start, or cancel
    reminders of a cancelled or deleted event. Runs after every event message.
    ``copy``: the stored copy, when the caller has it. Returns how many moved."""
    copy = copy if copy is not None else storage.find_event(db, event_id)
    if copy is None:
        return 0
    if is_live(copy):
        return move_relative_reminders(db, copy, now)
    cancel_reminders(db, copy, now, relay, withdraw)
    return 0


def move_relative_reminders(db, copy, now):
    """Relative reminders follow the event's start; absolute ones stay. A new time
    already past (the event moved earlier than the reminder's lead) becomes ``now``:
    the user still wanted to hear about the event before it starts."""
    stale = db[storage.REMINDERS].find({
        "event_id": copy["_id"], "status": "scheduled", "before_minutes": {"$ne": None},
        "event_starts_at": {"$ne": copy["starts_at"]},
    }, {"pending_events": 0})
    count = 0
    for reminder in stale:
        for _ in range(RETRIES):
            if (reminder is None or reminder["status"] != "scheduled"
                    or reminder.get("before_minutes") is None
                    or reminder.get("event_starts_at") == copy["starts_at"]):
                break  # changed meanwhile into something a move does not touch
            remind_at = max(time_before(copy["starts_at"], reminder["before_minutes"]), now)
            moved = storage.update_reminder_if(
                db, reminder, {"status": "scheduled"},
                {"$set": {"remind_at": remind_at, "event_starts_at": copy["starts_at"],
                          "updated_at": now}},
            )
            if moved is not None:
                count += 1
                break
            reminder = db[storage.REMINDERS].find_one({"_id": reminder["_id"]},
                                                      {"pending_events": 0})
        else:
            log.error("reminder %s: could not follow its event's move", reminder["_id"])
    return count


def cancel_reminders(db, copy, now, relay, withdraw):
    """Reminders of a cancelled or deleted event become ``cancelled``, and each
    affected user gets one email listing theirs (one for a whole series when a series
    change did it: on_series_cancelled)."""
    if copy is None:
        return
    mark_cancelled(db, copy["_id"], copy["version"], now, withdraw)
    if copy.get("series_change") is None:
        notify_cancelled(db, copy, now, relay)


def mark_cancelled(db, event_id, version, now, withdraw):
    """The event's active reminders become ``cancelled`` by its ``version``. A reminder
    already in the mailer's hands is withdrawn there first; one it has handed to SMTP
    already goes out (it will end ``sent``). Each cancelled reminder records the event
    version that cancelled it, and the notices are built from that record under a key
    of event (or series change), version and user: a redelivered or retried message can
    neither lose nor repeat one."""
    marks = {"$set": {"status": "cancelled", "cancelled_by": version, "updated_at": now},
             "$inc": {"rev": 1}}
    handed_over = set()
    for _ in range(RETRIES):
        active = [r for r in db[storage.REMINDERS].find(
            {"event_id": event_id, "status": {"$in": storage.ACTIVE}},
            {"_id": 1, "status": 1, "arm": 1}) if r["_id"] not in handed_over]
        if not active:
            break
        scheduled = [r["_id"] for r in active if r["status"] == "scheduled"]
        storage.update_by_ids(db, scheduled, {"status": "scheduled"}, marks)
        sending = {send_key(r): r["_id"] for r in active if r["status"] == "sending"}
        if sending:
            withdrawn, taken = withdraw(sorted(sending))
            storage.update_by_ids(db, [sending[k] for k in withdrawn], {"status": "sending"},
                                  marks)
            handed_over |= {sending[k] for k in taken}


def notify_cancelled(db, copy, now, relay):
    cancelled = db[storage.REMINDERS].find(
        {"event_id": copy["_id"], "status": "cancelled", "cancelled_by": copy["version"]},
        {"pending_events": 0}).sort("remind_at", 1)
    _notify(db, f"cancel:{copy['_id']}:{copy['version']}", copy["_id"], copy["version"],
            copy["event"], cancelled, now, relay, {})


def on_series_cancelled(db, message, now, relay, withdraw):
    """events.series_cancelled: the reminders of every occurrence the series change
    cancelled or deleted become ``cancelled`` (whether or not that occurrence's own
    message has come yet: it leaves the telling to this one), and each affected user
    gets one email listing all of theirs."""
    data = message["data"]
    versions = {o["id"]: o["version"] for o in data["occurrences"]}
    for event_id, version in versions.items():
        mark_cancelled(db, event_id, version, now, withdraw)
    cancelled = [r for r in db[storage.REMINDERS].find(
        {"event_id": {"$in": list(versions)}, "status": "cancelled"},
        {"pending_events": 0}).sort("remind_at", 1)
        if r.get("cancelled_by") == versions[r["event_id"]]]
    _notify(db, f"cancel-series:{data['series_id']}:{data['change_id']}", data["series_id"],
            message["version"], data["first"], cancelled, now, relay,
            {"series": {"id": data["series_id"], "occurrences": len(versions)}})


def _notify(db, key_prefix, aggregate_id, version, event, reminders, now, relay, more):
    """One event_cancelled_notice per user of ``reminders``, under ``key_prefix:user``,
    but none for a user who turned them off (their reminders are cancelled all the
    same); ``more``: its optional data (bus.messages)."""
    by_user = {}
    for reminder in reminders:
        by_user.setdefault(reminder["user_id"], []).append(reminder)
    unwanted = storage.without_notices(db, list(by_user))  # their choice: no notices
    for user_id, theirs in by_user.items():
        if user_id in unwanted:
            continue
        key = f"{key_prefix}:{user_id}"
        if db[storage.NOTICES].find_one({"_id": key}, {"_id": 1}) is not None:
            continue  # recorded by an earlier run: the outbox publishes it
        notice = new_message(
            "notifications", "event_cancelled_notice", aggregate_id, version,
            send_key=key, email=theirs[0]["email"], user_id=user_id, event=event,
            notifications=[resource(r) for r in theirs], **more,
        )
        db[storage.NOTICES].update_one(
            {"_id": key},
            {"$setOnInsert": {"user_id": user_id, "event_id": aggregate_id, "created_at": now,
                              "pending_events": [notice]}},
            upsert=True,
        )
        relay(storage.NOTICES, key)


def settle(db, reminder, now, relay, withdraw):
    """After a write that used the event copy: if the event changed meanwhile, make
    the reminder follow it (the event handler may have looked before we wrote)."""
    latest = storage.find_event(db, reminder["event_id"])
    if not is_live(latest):
        cancel_reminders(db, latest, now, relay, withdraw)
    elif (reminder.get("before_minutes") is not None
          and reminder.get("event_starts_at") != latest["starts_at"]):
        move_relative_reminders(db, latest, now)


# commands

def choose_email(user, requested):
    """The account's own spelling of ``requested`` (case-insensitive), or its primary."""
    owned = [user["email"], *(user.get("secondary_emails") or [])]
    if requested is None:
        return user["email"]
    for email in owned:
        if email.lower() == requested.lower():
            return email
    raise ValidationError({"email": [NOT_YOURS]})


def check_user(db, user):
    """The caller's account: ``user`` as the gateway passed it, unless this service
    has a newer version of it from the follow-up events (an address just removed)."""
    if not (isinstance(user, dict) and isinstance(user.get("id"), str)
            and isinstance(user.get("email"), str)):
        raise ValidationError({"user": ["Expected the caller's user resource."]})
    stored = storage.find_account(db, user["id"])
    if stored is None:
        return user
    if stored.get("deleted"):
        raise Unauthorized("The account was deleted.")
    version = user.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version < stored["version"]:
        return {**user, "email": stored["email"], "secondary_emails": stored["secondary_emails"]}
    return user


def create(db, user, fields, now, fetch_event, relay, withdraw, command_id=None):
    """A new reminder. ``command_id`` (the gateway's, for an Idempotency-Key) becomes its
    id: the same command again finds the reminder it made instead of making another."""
    user = check_user(db, user)
    if isinstance(command_id, str) and REMINDER_ID.fullmatch(command_id):
        done = storage.find_reminder(db, user["id"], command_id)
        if done is not None:
            return resource(done)
    else:
        command_id = None
    data = load(CreateFields(), fields)
    copy = known_event(db, data["event_id"], fetch_event)
    if not is_live(copy):
        raise ValidationError({"event_id": [DEAD_EVENT]})
    email = choose_email(user, data.get("email"))
    if "remind_at" in data:
        remind_at, before_minutes, field = data["remind_at"], None, "remind_at"
    else:
        before_minutes, field = data["before_minutes"], "before_minutes"
        remind_at = time_before(copy["starts_at"], before_minutes)
    if remind_at <= now:
        raise ValidationError({field: [IN_THE_PAST]})
    reminder = {
        "_id": command_id or uuid.uuid4().hex,
        "user_id": user["id"],
        "event_id": copy["_id"],
        "email": email,
        "email_lc": email.lower(),
        "subject": data.get("subject") or f"Reminder: {copy['event']['title']}",
        "message": data.get("message"),
        "remind_at": remind_at,
        "before_minutes": before_minutes,
        "event_starts_at": copy["starts_at"] if before_minutes is not None else None,
        "status": "scheduled",
        "arm": 1,
        "rev": 1,
        "created_at": now,
        "updated_at": now,
        "sent_at": None,
        "failure_reason": None,
    }
    storage.insert_reminder(db, reminder)
    settle(db, reminder, now, relay, withdraw)
    return resource(storage.find_reminder(db, user["id"], reminder["_id"]) or reminder)


def own_reminder(db, user_id, reminder_id):
    """The user's reminder; NotFound for an unknown one, a malformed id or another user's."""
    reminder = storage.find_reminder(db, user_id, reminder_id)
    if reminder is None:
        raise NotFound("No such notification.")
    return reminder


def get(db, user_id, reminder_id):
    return resource(own_reminder(db, user_id, reminder_id))


def list_reminders(db, user_id, filters):
    filters = load(Filters(), filters or {})
    query = {"user_id": user_id}
    status = filters.get("status")
    if status == "scheduled":
        query["status"] = {"$in": storage.ACTIVE}
    elif status:
        query["status"] = status
    if filters.get("event_id"):
        query["event_id"] = filters["event_id"]
    limit = filters.get("limit") or 20
    after = decode_cursor(filters["cursor"]) if filters.get("cursor") else None
    page = storage.page_of_reminders(db, query, after, limit + 1)
    next_cursor = encode_cursor(page[limit - 1]) if len(page) > limit else None
    return {"items": [resource(r) for r in page[:limit]], "next_cursor": next_cursor}


def _retrying(db, user_id, reminder_id, attempt):
    """Run ``attempt(reminder)`` on fresh reads until its compare-and-set wins
    (bus.concurrency): a concurrent event move or follow-up must not turn the user's
    change into a 409."""
    def once():
        updated = attempt(own_reminder(db, user_id, reminder_id))
        return LOST if updated is None else updated

    try:
        return compare_and_set(once, "The notification keeps changing; read it and try again.")
    except Conflict:
        own_reminder(db, user_id, reminder_id)  # NotFound if it was deleted meanwhile
        raise


def update(db, user, reminder_id, changes, now, relay, withdraw):
    user = check_user(db, user)
    data = load(Changes(), changes)
    own_reminder(db, user["id"], reminder_id)  # an unknown id is a 404 before any 409

    def attempt(reminder):
        if reminder["status"] != "scheduled":
            raise Conflict("Only a scheduled notification can be changed.")
        new = {"updated_at": now}
        if "email" in data:
            new["email"] = choose_email(user, data["email"])
            new["email_lc"] = new["email"].lower()
        for name in ("subject", "message"):
            if name in data:
                new[name] = data[name]
        field = None
        if "remind_at" in data:
            new.update(remind_at=data["remind_at"], before_minutes=None, event_starts_at=None)
            field = "remind_at"
        elif "before_minutes" in data:
            copy = storage.find_event(db, reminder["event_id"])
            if not is_live(copy):
                raise ValidationError({"event_id": [DEAD_EVENT]})
            new.update(remind_at=time_before(copy["starts_at"], data["before_minutes"]),
                       before_minutes=data["before_minutes"], event_starts_at=copy["starts_at"])
            field = "before_minutes"
        if field and new["remind_at"] <= now:
            raise ValidationError({field: [IN_THE_PAST]})
        return storage.update_reminder_if(db, reminder, {"status": "scheduled"}, {"$set": new})

    updated = _retrying(db, user["id"], reminder_id, attempt)
    settle(db, updated, now, relay, withdraw)
    return get(db, user["id"], reminder_id)


def snooze(db, user_id, reminder_id, minutes, now, relay, withdraw):
    own_reminder(db, user_id, reminder_id)
    low, high = rules.SNOOZE_MINUTES
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not low <= minutes <= high:
        raise ValidationError({"minutes": [f"Must be a whole number from {low} to {high}."]})

    def attempt(reminder):
        # A snoozed reminder is at a time the user chose: it no longer follows the event.
        new = {"before_minutes": None, "event_starts_at": None, "updated_at": now}
        if reminder["status"] == "scheduled":
            new["remind_at"] = times.shift(reminder["remind_at"], timedelta(minutes=minutes))
            change = {"$set": new}
        elif reminder["status"] in ("sent", "failed"):
            if not is_live(storage.find_event(db, reminder["event_id"])):
                raise Conflict("The event was cancelled or deleted.")
            # a new arm means a new send key, so the mailer sends this one too
            new.update(remind_at=now + timedelta(minutes=minutes), status="scheduled",
                       sent_at=None, failure_reason=None, last_error=None)
            change = {"$set": new, "$inc": {"arm": 1}}
        else:
            raise Conflict("A cancelled notification, or one being sent, cannot be snoozed.")
        return storage.update_reminder_if(db, reminder, {"status": reminder["status"]}, change)

    updated = _retrying(db, user_id, reminder_id, attempt)
    settle(db, updated, now, relay, withdraw)
    return get(db, user_id, reminder_id)


def delete(db, user_id, reminder_id):
    if not storage.delete_reminder(db, user_id, reminder_id):
        raise NotFound("No such notification.")


def follow_link(db, user_id, reminder_id, action, arm, now, relay, withdraw):
    """What a reminder email's one-click link does (bus.links): ``snooze_hour`` and
    ``snooze_day`` re-arm the reminder that email was sent for, once (a later arm means
    it was done already); ``cancel`` ends the reminder ``cancelled``. Returns
    ``{"done": bool, "notification": ...}``; ``done`` is False when nothing was left
    to do."""
    reminder = own_reminder(db, user_id, reminder_id)
    minutes = SNOOZE_LINKS.get(action)
    if minutes is not None:
        if reminder.get("arm") != arm or reminder["status"] not in ("sent", "failed"):
            return {"done": False, "notification": resource(reminder)}
        return {"done": True, "notification": snooze(db, user_id, reminder_id, minutes, now,
                                                     relay, withdraw)}
    if action != "cancel":
        raise NotFound("No such link.")

    def attempt(reminder):
        if reminder["status"] == "cancelled":
            return False
        if reminder["status"] == "sending":
            raise Conflict("The reminder is being sent right now; try again in a moment.")
        cancelled = storage.update_reminder_if(
            db, reminder, {"status": reminder["status"]},
            {"$set": {"status": "cancelled", "updated_at": now}})
        return None if cancelled is None else True  # None: lost the race, read again

    done = _retrying(db, user_id, reminder_id, attempt)
    return {"done": done, "notification": get(db, user_id, reminder_id)}


# the user's email choices (the account page, or a cancellation notice's link)

def email_preferences(db, user_id):
    """``{cancellation_notices}``; NotFound for a deleted account (a link outlives it)."""
    account = storage.find_account(db, user_id)
    if not isinstance(user_id, str) or (account is not None and account.get("deleted")):
        raise NotFound("No such account.")
    return storage.find_preferences(db, user_id)


def change_email_preferences(db, user_id, changes, now):
    """Any subset of the choices (PreferenceChanges); the choices after."""
    email_preferences(db, user_id)
    changes = load(PreferenceChanges(), changes)
    if changes:
        storage.save_preferences(db, user_id, changes, now)
    return storage.find_preferences(db, user_id)


def stop_notices(db, user_id, now):
    """A cancellation notice's one-click link (bus.links ``stop_notices``): no more
    notices for the user. ``{done, preferences}``; ``done`` False if they were off."""
    current = email_preferences(db, user_id)
    if not current["cancellation_notices"]:
        return {"done": False, "preferences": current}
    return {"done": True, "preferences": change_email_preferences(
        db, user_id, {"cancellation_notices": False}, now)}


# what the mailer reports

def on_delivery_report(db, outcomes, now):
    """mailer.delivery_report: ``sent`` and ``failed`` are final; ``deferred`` (a
    transient failure) is handed over again after a backoff. Returns the earliest
    of those times (when to sweep), or None. An outcome that no longer matches the
    reminder (another arming, a deleted reminder) changes nothing; the mailer's
    outcome also wins over a ``failed`` that this service decided itself when it
    gave up waiting for one (``unconfirmed``).

    One ``update_many`` per kind of outcome, not one update per reminder: SecantusDB
    does a multi-document update for about half the cost per document. A report's
    mails went out within milliseconds of each other; ``sent_at`` is the last."""
    sent, failed, deferred = {}, {}, []
    for item in outcomes if isinstance(outcomes, list) else []:
        parsed = parse_send_key(item.get("send_key")) if isinstance(item, dict) else None
        if parsed is None:
            continue  # a welcome or cancellation email, or nothing we know
        reminder_id, arm = parsed
        status, reason = item.get("status"), item.get("reason")
        if status == "sent":
            try:
                at = parse_time(item["at"])
            except (KeyError, TypeError, ValueError):
                at = now
            ids, latest = sent.get(arm, ([], at))
            sent[arm] = (ids + [reminder_id], max(latest, at))
        elif status == "failed":
            failed.setdefault((arm, str(reason or "failed")), []).append(reminder_id)
        elif status == "deferred":
            deferred.append((reminder_id, arm, str(reason or "")))
    for arm, (ids, sent_at) in sent.items():
        _conclude(db, ids, arm, {"status": "sent", "sent_at": sent_at, "failure_reason": None,
                                 "updated_at": now})
    for (arm, reason), ids in failed.items():
        _conclude(db, ids, arm, {"status": "failed", "failure_reason": reason, "updated_at": now})
    return _defer(db, deferred, now) if deferred else None


def _conclude(db, ids, arm, fields):
    done = storage.update_by_ids(db, ids, {"arm": arm, "status": "sending"}, {"$set": fields})
    if done < len(ids):  # some may have been given up on: the mailer's word wins
        storage.update_by_ids(db, ids, {"arm": arm, "status": "failed", "unconfirmed": True},
                              {"$set": fields, "$unset": {"unconfirmed": ""}})


def _defer(db, deferred, now):
    attempts = {r["_id"]: r.get("delivery_attempts") or 1 for r in storage.find_by_ids(
        db, [d[0] for d in deferred], {"status": "sending"}, {"delivery_attempts": 1})}
    writes, next_try = [], None
    for reminder_id, arm, reason in deferred:
        if reminder_id not in attempts:
            continue
        retry_at = now + timedelta(seconds=min(MAX_DEFERRAL_SECONDS, 2 ** attempts[reminder_id]))
        next_try = retry_at if next_try is None else min(next_try, retry_at)
        writes.append(UpdateOne({"_id": reminder_id, "arm": arm, "status": "sending"},
                                {"$set": {"lease_until": retry_at, "last_error": reason}}))
    if writes:
        db[storage.REMINDERS].bulk_write(writes, ordered=False)
    return next_try


# account follow-ups

def account_copy(user, version):
    emails = [user["email"], *(user.get("secondary_emails") or [])]
    return {"_id": user["id"], "version": int(version), "deleted": False,
            "email": user["email"], "secondary_emails": emails[1:],
            "emails": [e.lower() for e in emails]}


def on_account_message(db, message, now):
    """users.user_email_changed / user_email_removed: keep the newest version of the
    account; reminders on an address it no longer has go to its primary. An older
    version arriving late changes nothing, so A -> B, then B -> C, applied in either
    order, leaves the reminders on C."""
    account = account_copy(message["data"]["user"], message["version"])
    if storage.store_account(db, account):
        follow_to_primary(db, account, now)


def follow_to_primary(db, account, now):
    db[storage.REMINDERS].update_many(
        {"user_id": account["_id"], "status": {"$in": storage.ACTIVE},
         "email_lc": {"$nin": account["emails"]}},
        {"$set": {"email": account["email"], "email_lc": account["email"].lower(),
                  "updated_at": now}, "$inc": {"rev": 1}},
    )


def on_user_deleted(db, message, now, withdraw):
    """users.user_deleted: the account's reminders are deleted, and the mailer keeps
    those it has not handed to SMTP yet from going out."""
    user_id = message["data"]["user_id"]
    storage.store_account(db, {"_id": user_id, "version": int(message["version"]),
                               "deleted": True}, replace_equal=True)
    # scheduled ones first: after that the scheduler can claim none of them
    db[storage.REMINDERS].delete_many({"user_id": user_id, "status": "scheduled"})
    sending = [send_key(r) for r in db[storage.REMINDERS].find(
        {"user_id": user_id, "status": "sending"}, {"_id": 1, "arm": 1})]
    if sending:
        withdraw(sending)
    db[storage.REMINDERS].delete_many({"user_id": user_id})
    storage.forget_preferences(db, user_id)
