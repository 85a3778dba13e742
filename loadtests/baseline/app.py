"""The baseline's routes: GET/POST /events, GET/PUT/DELETE /events/{id} on one collection.

Each request makes one database call, ``find_one``, ``insert_one``,
``find_one_and_update`` or ``delete_one``, except the list: the 50 soonest upcoming
events, read in at most two time windows (``upcoming``). Errors have API.md's shape.
``app`` is what gunicorn serves (``loadtests.baseline.app:app``).
"""
import json
from datetime import datetime, timedelta, timezone

import falcon
from pymongo import ASCENDING, ReturnDocument

from loadtests.baseline.events import (
    Invalid,
    collection,
    new_document,
    to_resource,
    writable_fields,
)

LIST_LIMIT = 50
NEXT_DAY = timedelta(days=1)


def upcoming(events, now, limit):
    """The ``limit`` soonest events from ``now`` on: the next 24 hours, then the rest.

    SecantusDB reads every document a range holds before it applies a limit (one
    sorted find over 10,000 events served 1.6 req/s), so the app reads the next day
    first, which at 10,000 events holds the 50 soonest, and only when that falls
    short reads on from there (at 50 events: everything, which is little)."""
    soonest = {"$gte": now, "$lt": now + NEXT_DAY}
    found = list(events.find({"starts_at": soonest}).sort("starts_at", ASCENDING).limit(limit))
    if len(found) < limit:
        found += events.find({"starts_at": {"$gte": now + NEXT_DAY}}).sort(
            "starts_at", ASCENDING).limit(limit - len(found))
    return found


def _error(resp, status, code, message, details=None):
    resp.status = status
    resp.text = json.dumps({"error": {"code": code, "message": message,
                                      "details": details or {}}})


def _body(req):
    try:
        return json.load(req.bounded_stream)
    except ValueError:
        return None


class Events:
    def __init__(self, events):
        self.events = events

    def on_get(self, req, resp):
        documents = upcoming(self.events, datetime.now(timezone.utc), LIST_LIMIT)
        resp.text = json.dumps({"items": [to_resource(d) for d in documents],
                                "next_cursor": None})

    def on_post(self, req, resp):
        try:
            document = new_document(_body(req))
        except Invalid as invalid:
            return _error(resp, 422, "validation_error", "Invalid event.", invalid.details)
        self.events.insert_one(document)
        resp.status = 201
        resp.text = json.dumps(to_resource(document))


class Event:
    def __init__(self, events):
        self.events = events

    def on_get(self, req, resp, event_id):
        document = self.events.find_one({"_id": event_id})
        if document is None:
            return _error(resp, 404, "not_found", "No such event.")
        resp.text = json.dumps(to_resource(document))

    def on_put(self, req, resp, event_id):
        try:
            fields = writable_fields(_body(req))
        except Invalid as invalid:
            return _error(resp, 422, "validation_error", "Invalid event.", invalid.details)
        fields["updated_at"] = datetime.now(timezone.utc).replace(microsecond=0)
        document = self.events.find_one_and_update(
            {"_id": event_id}, {"$set": fields, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        if document is None:
            return _error(resp, 404, "not_found", "No such event.")
        resp.text = json.dumps(to_resource(document))

    def on_delete(self, req, resp, event_id):
        if self.events.delete_one({"_id": event_id}).deleted_count == 0:
            return _error(resp, 404, "not_found", "No such event.")
        resp.status = 204


def create_app(events=None):
    events = collection() if events is None else events
    app = falcon.App()
    app.add_route("/events", Events(events))
    app.add_route("/events/{event_id}", Event(events))
    return app


app = create_app()
