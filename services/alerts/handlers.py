"""What the alerts service does, as plain functions.

Commands (create, list, delete, the stop link) come from the gateway; events come
from ``events.*`` and ``users.*``. An event that newly matches a saved search (it was
created matching, or changed so that it matches now and did not before) is recorded
once per saved search (storage.ALERTS: the pair is the ``_id``, so a redelivered
message or a second alerts process records nothing twice). The sender (``send_due``,
on a timer in every process) turns due alerts into alert emails: an ``instant`` saved
search's alert is due at once, a ``daily`` one's when its digest is (the first alert
of a digest opens it for ``digest_seconds``; every alert until then joins it). Right
before an email is made, each of its events is looked at again: cancelled, deleted,
past or no longer matching, it is left out (and its alert deleted). Each email is a
document of its own with its ``alert_due`` message in the outbox (bus.outbox), under
its send key, which the mailer sends once. ``now`` is passed in so tests control time.
"""
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from bus import fields as rules
from bus import links, times
from bus.errors import Conflict, NotFound, Unauthorized, ValidationError
from bus.messages import new_message

from . import matching, storage
from .schemas import Filters, decode_cursor, encode_cursor, load, load_create, resource

log = logging.getLogger(__name__)
SAVED_SEARCH_ID = re.compile(r"[0-9a-f]{32}")  # the form of the ids this service makes
TOO_MANY = (f"At most {rules.MAX_SAVED_SEARCHES} saved searches per account; "
            "delete one first.")
NO_SUCH = "No such saved search."
RETRIES = 5


@dataclass
class Settings:
    digest_seconds: float = 86400.0  # ALERTS_DIGEST_SECONDS
    batch: int = 200  # due alerts read per tick


# the in-memory index

def refresh(db, index):
    """Reload the index if any process changed a saved search since it was loaded.
    The stamp is read first: every change it counts was written before it moved."""
    stamp = storage.stamp(db)
    if stamp != index.stamp:
        index.replace_all(storage.live_saved_searches(db), stamp)


# commands

def check_user(db, user):
    if not (isinstance(user, dict) and isinstance(user.get("id"), str)
            and isinstance(user.get("email"), str)):
        raise ValidationError({"user": ["Expected the caller's user resource."]})
    if storage.account_deleted(db, user["id"]):
        raise Unauthorized("The account was deleted.")
    return user


def create(db, user, fields, now, command_id=None):
    """A new saved search. ``command_id`` (the gateway's, for an Idempotency-Key)
    becomes its id: the same command again finds the saved search it made."""
    user = check_user(db, user)
    now = times.truncate(now)  # as stored: milliseconds
    if isinstance(command_id, str) and SAVED_SEARCH_ID.fullmatch(command_id):
        done = storage.find_saved_search(db, command_id, user["id"])
        if done is not None:
            return resource(done)
    else:
        command_id = None
    data = load_create(fields)
    if len(storage.users_saved_searches(db, user["id"])) >= rules.MAX_SAVED_SEARCHES:
        raise Conflict(TOO_MANY, {"limit": rules.MAX_SAVED_SEARCHES})
    version = user.get("version")
    document = {
        "_id": command_id or uuid.uuid4().hex,
        "user_id": user["id"],
        "name": data["name"],
        "query": data["query"],
        "frequency": data["frequency"],
        "email": user["email"],
        "account_version": version if isinstance(version, int) else 0,
        "created_at": now,
        "digest_due": None,
        "deleted": False,
    }
    storage.insert_saved_search(db, document)
    # Two creates at once may both have counted 19: the one later in the list goes.
    live = [d["_id"] for d in storage.users_saved_searches(db, user["id"])]
    if document["_id"] in live[rules.MAX_SAVED_SEARCHES:]:
        storage.remove_saved_search(db, document["_id"])
        raise Conflict(TOO_MANY, {"limit": rules.MAX_SAVED_SEARCHES})
    storage.move_stamp(db)
    return resource(document)


def list_saved_searches(db, user_id, filters):
    """The user's saved searches, oldest first (at most 20: paged in memory)."""
    filters = load(Filters(), filters or {})
    found = storage.users_saved_searches(db, user_id)
    if filters.get("cursor"):
        after = decode_cursor(filters["cursor"])
        found = [d for d in found if (d["created_at"], d["_id"]) > after]
    limit = filters.get("limit") or rules.DEFAULT_LIMIT
    next_cursor = encode_cursor(found[limit - 1]) if len(found) > limit else None
    return {"items": [resource(d) for d in found[:limit]], "next_cursor": next_cursor}


def own(db, user_id, saved_search_id):
    """The user's saved search, tombstones included; NotFound for another's or none."""
    document = storage.find_saved_search(db, saved_search_id, user_id)
    if document is None or not isinstance(user_id, str):
        raise NotFound(NO_SUCH)
    return document


def delete(db, user_id, saved_search_id, now):
    if own(db, user_id, saved_search_id)["deleted"] or not stop(db, saved_search_id, now):
        raise NotFound(NO_SUCH)


def stop(db, saved_search_id, now):
    """End a saved search: True if this call ended it."""
    if not storage.delete_saved_search(db, saved_search_id, now):
        return False
    storage.drop_pending(db, {"saved_search_id": saved_search_id})
    storage.move_stamp(db)
    return True


def get(db, user_id, saved_search_id):
    """For a stop link's page: ``{saved_search, stopped}``."""
    document = own(db, user_id, saved_search_id)
    return {"saved_search": resource(document), "stopped": document["deleted"]}


def follow_link(db, user_id, saved_search_id, action, now):
    """A verified one-click link of an alert email (bus.links): ``stop_alert`` ends the
    saved search. ``{done, saved_search}``; ``done`` False if it was stopped already."""
    if action not in links.ALERT_ACTIONS:
        raise NotFound("No such link.")
    document = own(db, user_id, saved_search_id)
    done = not document["deleted"] and stop(db, saved_search_id, now)
    return {"done": done, "saved_search": resource(document)}


# account follow-ups

def on_email_changed(db, message):
    """users.user_email_changed: the saved searches follow the primary email (a late,
    older version changes nothing)."""
    user = message["data"]["user"]
    storage.follow_email(db, user["id"], user["email"], int(message["version"]))


def on_user_deleted(db, message, now):
    """users.user_deleted: the account's saved searches end, their pending alerts too."""
    user_id = message["data"]["user_id"]
    storage.forget_account(db, user_id, int(message["version"]))
    if storage.mark_deleted(db, {"user_id": user_id}, now):
        storage.drop_pending(db, {"user_id": user_id})
        storage.move_stamp(db)


# events

def on_event_message(db, index, message, now, settings):
    """events.event_created / event_updated / event_deleted: keep the copy, then record
    an alert for each saved search the event newly matches."""
    event = message["data"]["event"]
    deleted = message["event_type"] == "event_deleted"
    copy = {"_id": event["id"], "version": int(message["version"]), "deleted": deleted,
            "event": event}
    if not storage.store_event(db, copy):
        return []  # older than the copy: a newer version was handled already
    if deleted or event["status"] != matching.STATUS:
        storage.drop_pending(db, {"event_id": event["id"]})
        return []
    refresh(db, index)
    matched = set(index.match(event, now))
    if matched and message["event_type"] == "event_updated":
        previous = {**event, **(message["data"].get("previous") or {})}
        matched -= set(index.match(previous, now))  # it matched before: nothing new
    recorded = [saved_search_id for saved_search_id in sorted(matched)
                if record(db, saved_search_id, event, now, settings)]
    return recorded


def record(db, saved_search_id, event, now, settings):
    """The alert of one (saved search, event); False if there is one already. A
    recurring event is announced once per saved search, by the first of its
    occurrences that matches, not once for each of up to 500."""
    saved = storage.find_saved_search(db, saved_search_id)
    if saved is None or saved["deleted"]:
        return False
    due_at = now if saved["frequency"] == "instant" else digest_due(db, saved, now, settings)
    return storage.record_alert(db, {
        "_id": storage.alert_id(saved_search_id, event.get("series_id") or event["id"]),
        "saved_search_id": saved_search_id, "user_id": saved["user_id"],
        "event_id": event["id"], "frequency": saved["frequency"], "status": "pending",
        "due_at": due_at, "created_at": now,
    })


def digest_due(db, saved, now, settings):
    """When the saved search's next digest goes: the one collecting now, or a new one
    ``digest_seconds`` from now (one per period at most)."""
    seen = saved.get("digest_due")
    for _ in range(RETRIES):
        if seen is not None and seen > now:
            return seen
        seen = storage.open_digest(db, saved["_id"], seen,
                                   now + timedelta(seconds=settings.digest_seconds))
    return seen


# sending

def send_key(alert):
    if alert["frequency"] == "instant":
        return f"alert:{alert['saved_search_id']}:{alert['event_id']}"
    return f"digest:{alert['saved_search_id']}:{round(alert['due_at'].timestamp() * 1000)}"


def send_due(db, now, relay, settings):
    """Make the alert emails that are due; how many alerts were looked at."""
    due = storage.due_alerts(db, now, settings.batch)
    groups = {}
    for alert in due:
        groups.setdefault(send_key(alert), []).append(alert)
    for key, alerts in groups.items():
        try:
            send_group(db, key, alerts, now, relay, settings)
        except Exception:  # the others still go; this one is tried again next tick
            log.exception("alert email %s could not be made", key)
    return len(due)


def send_group(db, key, alerts, now, relay, settings):
    saved_search_id = alerts[0]["saved_search_id"]
    saved = storage.find_saved_search(db, saved_search_id)
    if saved is None or saved["deleted"]:
        storage.drop_pending(db, {"saved_search_id": saved_search_id})
        return
    copies = storage.find_events(db, [a["event_id"] for a in alerts])
    live, gone = [], []
    for alert in alerts:
        copy = copies.get(alert["event_id"])
        still = (copy is not None and not copy["deleted"]
                 and matching.matches(saved, copy["event"], now))
        (live if still else gone).append(alert)
    if gone:  # cancelled, deleted, past or changed away: never announced
        for chunk in storage.chunks(a["_id"] for a in gone):
            storage.drop_pending(db, {"_id": {"$in": chunk}})
    if not live:
        return
    events = sorted((copies[a["event_id"]]["event"] for a in live),
                    key=lambda e: (e["starts_at"], e["id"]))
    message = new_message("alerts", "alert_due", saved_search_id, 1, send_key=key,
                          email=saved["email"], user_id=saved["user_id"],
                          saved_search=resource(saved), events=events)
    announced = set(storage.claim_mail(db, key, message, [e["id"] for e in events], now))
    storage.mark_sent(db, [a["_id"] for a in live if a["event_id"] in announced], key, now)
    # an alert that joined a digest just as it was made goes in the next one
    later = [a["_id"] for a in live if a["event_id"] not in announced]
    if later:
        storage.reschedule(db, later, digest_due(db, saved, now, settings))
    relay(storage.MAILS, key)
