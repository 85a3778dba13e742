"""The baseline's stored event and its resource: EventPost's event shape (API.md).

Stored with UTC datetimes (so the list can sort on an index) and written out as
API.md does (UTC, ``Z``). The bench seeds with ``new_document`` too.
"""
import os
import uuid
from datetime import datetime, timezone

from pymongo import ASCENDING, MongoClient

DATABASE = "baseline"


def collection(uri=None):
    """The events collection (each gunicorn worker opens its own client, after the fork)."""
    client = MongoClient(uri or os.environ.get("BASELINE_MONGO_URI", "mongodb://127.0.0.1:27017/"),
                         tz_aware=True, retryWrites=False)  # as EventPost (bus/mongo.py)
    return client[DATABASE]["events"]


def ensure_indexes(events):
    events.create_index([("starts_at", ASCENDING)])


def iso(moment):
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def to_resource(document):
    """The event as EventPost's API returns it (API.md's event resource)."""
    return {
        "id": document["_id"],
        "title": document["title"],
        "description": document["description"],
        "topics": document["topics"],
        "starts_at": iso(document["starts_at"]),
        "ends_at": iso(document.get("ends_at")),
        "timezone": document["timezone"],
        "place": document.get("place"),
        "organizer": document.get("organizer"),
        "status": document["status"],
        "version": document["version"],
        "created_at": iso(document["created_at"]),
        "updated_at": iso(document["updated_at"]),
    }


class Invalid(Exception):
    def __init__(self, details):
        self.details = details


def _time(value, field, errors, required=True):
    if value is None and not required:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        errors[field] = ["Not a valid time."]
        return None
    if moment.tzinfo is None:
        errors[field] = ["A time needs an offset."]
        return None
    return moment.astimezone(timezone.utc)


def writable_fields(body):
    """The stored form of a POST or PUT body; the light checks a single-service app makes."""
    if not isinstance(body, dict):
        raise Invalid({"_schema": ["Expected an object of event fields."]})
    errors = {}
    title = body.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 120:
        errors["title"] = ["Between 1 and 120 characters."]
    topics = body.get("topics") or []
    if not isinstance(topics, list) or not all(isinstance(t, str) and t.strip() for t in topics):
        errors["topics"] = ["A list of topics."]
        topics = []
    fields = {
        "title": title,
        "description": body.get("description") or "",
        "topics": [t.strip().lower() for t in topics],
        "starts_at": _time(body.get("starts_at"), "starts_at", errors),
        "ends_at": _time(body.get("ends_at"), "ends_at", errors, required=False),
        "timezone": body.get("timezone") or "UTC",
        "place": body.get("place"),
        "organizer": body.get("organizer"),
        "status": body.get("status") or "scheduled",
    }
    if errors:
        raise Invalid(errors)
    return fields


def new_document(body, now=None):
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    return {"_id": uuid.uuid4().hex, **writable_fields(body), "version": 1,
            "created_at": now, "updated_at": now}
