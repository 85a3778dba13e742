"""A user's secret calendar feed (API.md v1.1, "Calendar feeds"): handlers and storage.

The feed's URL carries a random token; only its SHA-256 is stored (`calendar_feeds`:
``_id`` the user id, ``token_hash``, ``created_at``), so the database never holds a
working URL. A new token replaces the old one, which then finds nothing (404). The
feed lists the user's reminders that are ``scheduled`` (one VALARM each, drawn by the
gateway), ``sent``, or cancelled by their event's cancellation (the event shows as
cancelled); the gateway adds the events and renders them.
"""
import hashlib
import secrets

from pymongo import ASCENDING

from bus.errors import NotFound

from . import storage
from .schemas import resource

FEEDS = "calendar_feeds"
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 100  # a longer one is not ours: no need to hash it
NO_SUCH_FEED = "No such calendar."


def ensure_indexes(db):
    db[FEEDS].create_index([("token_hash", ASCENDING)], unique=True)


def new_feed(db, user_id, now):
    """A new secret token for ``user_id``'s feed; the previous one stops working."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db[FEEDS].replace_one({"_id": user_id},
                          {"token_hash": _digest(token), "created_at": now}, upsert=True)
    return token


def feed(db, token):
    """``{"user_id", "reminders"}`` behind ``token``; NotFound for any other token."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise NotFound(NO_SUCH_FEED)
    owner = db[FEEDS].find_one({"token_hash": _digest(token)}, {"_id": 1})
    if owner is None:
        raise NotFound(NO_SUCH_FEED)
    found = db[storage.REMINDERS].find(
        {"user_id": owner["_id"], "status": {"$in": [*storage.ACTIVE, "sent", "cancelled"]}},
        {"pending_events": 0}).sort([("remind_at", ASCENDING), ("_id", ASCENDING)])
    reminders = [resource(r) for r in found
                 if r["status"] != "cancelled" or r.get("cancelled_by") is not None]
    return {"user_id": owner["_id"], "reminders": reminders}


def forget(db, user_id):
    """The account is gone: so is its feed."""
    db[FEEDS].delete_one({"_id": user_id})


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()
