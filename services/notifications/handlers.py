"""What the notifications service does, as plain functions.

Commands (create, update, snooze, ...) and events (events.*, users.*, mailer.*)
come in; effects are writes to the service's database, with any outgoing message
stored in the same atomic write (bus.outbox) and handed to ``relay(collection,
document_id)`` to publish at once. ``now`` is passed in so tests control time.
"""
import uuid
from datetime import datetime, timedelta, timezone

from bus.errors import Conflict, NotFound, ValidationError
from bus.messages import new_message

from . import storage
from .schemas import Changes, CreateFields, Filters, decode_cursor, encode_cursor, load, resource

IN_THE_PAST = "The reminder time must be in the future."
NOT_YOURS = "Not one of your account's emails."
DEAD_EVENT = "Unknown or cancelled event."


# time arithmetic

def parse_time(text):
    """An RFC 3339 string (``...Z`` or with an offset) as an aware datetime."""
    return datetime.fromisoformat(text)


def time_before(starts_at, before_minutes):
    """``before_minutes`` of elapsed time before the start. Computed in UTC, so a
    daylight-saving change in the event's time zone does not stretch or shrink it
    (Python subtracts wall-clock time from a datetime in a zone with DST)."""
    return starts_at.astimezone(timezone.utc) - timedelta(minutes=before_minutes)


# the local copy of events

def event_copy(event, version=None, deleted=False):
    """The document this service keeps for an event resource."""
    return {
        "_id": event["id"],
        "version": int(version if version is not None else event["version"]),
        "deleted": deleted,
        "status": event["status"],
        "starts_at": parse_time(event["starts_at"]),
        "event": event,
    }


def is_live(copy):
    return copy is not None and not copy["deleted"] and copy["status"] != "cancelled"


def known_event(db, event_id, fetch_event):
    """The local copy of the event, fetched from the events service when it is not here yet.

    Why the fallback: an event created a moment ago may not have reached this
    service's copy when the user asks for a reminder about it (the gateway reads the
    write side, so the user has already seen it). ``fetch_event`` is an RPC with a
    timeout; it returns None for an unknown event.
    """
    copy = storage.find_event(db, event_id)
    if copy is None:
        event = fetch_event(event_id)
        if event is None:
            return None
        storage.store_event(db, event_copy(event))
        copy = storage.find_event(db, event_id)
    return copy


def on_event_message(db, message, now, relay):
    """events.event_created / event_updated / event_deleted: keep the copy, then
    make the event's reminders agree with it."""
    event = message["data"]["event"]
    deleted = message["event_type"] == "event_deleted"
    storage.store_event(db, event_copy(event, message["version"], deleted), replace_equal=deleted)
    reconcile(db, event["id"], now, relay)


def reconcile(db, event_id, now, relay):
    """Idempotent: move relative reminders to the event's current start, or cancel
    reminders of a cancelled or deleted event. Runs after every event message."""
    copy = storage.find_event(db, event_id)
    if copy is None:
        return
    if is_live(copy):
        move_relative_reminders(db, copy, now)
    else:
        cancel_reminders(db, copy, now, relay)


def move_relative_reminders(db, copy, now):
    """Relative reminders follow the event's start; absolute ones stay. A new time
    already past (the event moved earlier than the reminder's lead) becomes ``now``:
    the user still wanted to hear about the event before it starts."""
    stale = db[storage.REMINDERS].find({
        "event_id": copy["_id"], "status": "scheduled", "before_minutes": {"$ne": None},
        "event_starts_at": {"$ne": copy["starts_at"]},
    })
    for reminder in stale:
        remind_at = max(time_before(copy["starts_at"], reminder["before_minutes"]), now)
        storage.update_reminder_if(
            db, reminder["_id"],
            {"status": "scheduled", "updated_at": reminder["updated_at"]},
            {"$set": {"remind_at": remind_at, "event_starts_at": copy["starts_at"],
                      "updated_at": now}},
        )


def cancel_reminders(db, copy, now, relay):
    """Scheduled reminders of a cancelled or deleted event become ``cancelled``, and
    each affected user gets one email. The notice is recorded (with its outgoing
    message) before the reminders change, under a key made of event, version and
    user, so a redelivered or retried message can neither lose nor repeat it."""
    scheduled = list(db[storage.REMINDERS].find(
        {"event_id": copy["_id"], "status": "scheduled"}, {"pending_events": 0}
    ).sort("remind_at", 1))
    by_user = {}
    for reminder in scheduled:
        by_user.setdefault(reminder["user_id"], []).append(reminder)
    for user_id, reminders in by_user.items():
        send_key = f"cancel:{copy['_id']}:{copy['version']}:{user_id}"
        cancelled = [{**resource(r), "status": "cancelled"} for r in reminders]
        message = new_message(
            "notifications", "event_cancelled_notice", copy["_id"], copy["version"],
            send_key=send_key, email=reminders[0]["email"], event=copy["event"],
            notifications=cancelled,
        )
        db[storage.NOTICES].update_one(
            {"_id": send_key},
            {"$setOnInsert": {"user_id": user_id, "event_id": copy["_id"], "created_at": now,
                              "pending_events": [message]}},
            upsert=True,
        )
        relay(storage.NOTICES, send_key)
    if scheduled:
        db[storage.REMINDERS].update_many(
            {"_id": {"$in": [r["_id"] for r in scheduled]}, "status": "scheduled"},
            {"$set": {"status": "cancelled", "updated_at": now}},
        )


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


def check_user(user):
    if not (isinstance(user, dict) and isinstance(user.get("id"), str)
            and isinstance(user.get("email"), str)):
        raise ValidationError({"user": ["Expected the caller's user resource."]})


def create(db, user, fields, now, fetch_event, relay):
    check_user(user)
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
        "_id": uuid.uuid4().hex,
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
        "created_at": now,
        "updated_at": now,
        "sent_at": None,
        "failure_reason": None,
    }
    storage.insert_reminder(db, reminder)
    # The event may have changed since we read it, and its handler may have run
    # before this reminder existed: check again now that it is stored.
    latest = storage.find_event(db, copy["_id"])
    if not is_live(latest):
        cancel_reminders(db, latest, now, relay)
    elif before_minutes is not None and latest["starts_at"] != copy["starts_at"]:
        move_relative_reminders(db, latest, now)
    return resource(storage.find_reminder(db, user["id"], reminder["_id"]))


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


def _changed_or_conflict(db, user_id, reminder_id, updated):
    if updated is not None:
        return resource(updated)
    own_reminder(db, user_id, reminder_id)  # NotFound if it was deleted meanwhile
    raise Conflict("The notification changed meanwhile; read it and try again.")


def update(db, user, reminder_id, changes, now):
    check_user(user)
    reminder = own_reminder(db, user["id"], reminder_id)
    data = load(Changes(), changes)
    if reminder["status"] != "scheduled":
        raise Conflict("Only a scheduled notification can be changed.")
    new = {"updated_at": now}
    if "email" in data:
        new["email"] = choose_email(user, data["email"])
        new["email_lc"] = new["email"].lower()
    for field in ("subject", "message"):
        if field in data:
            new[field] = data[field]
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
    if "remind_at" in new and new["remind_at"] <= now:
        raise ValidationError({field: [IN_THE_PAST]})
    updated = storage.update_reminder_if(
        db, reminder["_id"], {"status": "scheduled", "updated_at": reminder["updated_at"]},
        {"$set": new},
    )
    return _changed_or_conflict(db, user["id"], reminder_id, updated)


def snooze(db, user_id, reminder_id, minutes, now):
    reminder = own_reminder(db, user_id, reminder_id)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 10080:
        raise ValidationError({"minutes": ["Must be a whole number from 1 to 10080."]})
    expected = {"status": reminder["status"], "updated_at": reminder["updated_at"]}
    # A snoozed reminder is at a time the user chose: it no longer follows the event.
    new = {"before_minutes": None, "event_starts_at": None, "updated_at": now}
    if reminder["status"] == "scheduled":
        new["remind_at"] = reminder["remind_at"] + timedelta(minutes=minutes)
        update = {"$set": new}
    elif reminder["status"] in ("sent", "failed"):
        if not is_live(storage.find_event(db, reminder["event_id"])):
            raise Conflict("The event was cancelled or deleted.")
        # a new arm means a new send key, so the mailer sends this one too
        new.update(remind_at=now + timedelta(minutes=minutes), status="scheduled",
                   sent_at=None, send_key=None, failure_reason=None)
        update = {"$set": new, "$inc": {"arm": 1}}
    else:
        raise Conflict("A cancelled notification, or one being sent, cannot be snoozed.")
    updated = storage.update_reminder_if(db, reminder["_id"], expected, update)
    return _changed_or_conflict(db, user_id, reminder_id, updated)


def delete(db, user_id, reminder_id):
    if not storage.delete_reminder(db, user_id, reminder_id):
        raise NotFound("No such notification.")


# what the mailer reports

def on_email_sent(db, data, now):
    if data.get("notification_id") is None:
        return  # a welcome or cancellation email: no reminder to update
    db[storage.REMINDERS].update_one(
        {"_id": data["notification_id"], "send_key": data["send_key"], "status": "sending"},
        {"$set": {"status": "sent", "sent_at": parse_time(data["sent_at"]), "updated_at": now}},
    )


def on_email_failed(db, data, now):
    if data.get("notification_id") is None:
        return
    db[storage.REMINDERS].update_one(
        {"_id": data["notification_id"], "send_key": data["send_key"], "status": "sending"},
        {"$set": {"status": "failed", "failure_reason": data["reason"], "updated_at": now}},
    )


# account follow-ups

def follow_to_primary(db, user, old_email, now):
    """Reminders using an address the account no longer has go to its primary.
    A reminder whose mail is already in flight keeps the address it went to."""
    db[storage.REMINDERS].update_many(
        {"user_id": user["id"], "email_lc": old_email.lower(), "status": {"$ne": "sending"}},
        {"$set": {"email": user["email"], "email_lc": user["email"].lower(), "updated_at": now}},
    )


def on_user_deleted(db, user_id):
    db[storage.REMINDERS].delete_many({"user_id": user_id})

