"""The write model: one document per event in the `events` collection.

Times are stored as UTC datetimes. A deleted event stays as a tombstone
(`deleted: True`) so its outgoing `event_deleted` message lives in the same
document until the outbox has published it.
"""

import pymongo
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from bus.mongo import ensure_id_pages
from bus.outbox import outgoing

DUPLICATE_KEY = 11000

COLLECTION = "events"
LIVE = {"deleted": {"$ne": True}}


def ensure_indexes(db):
    # a series' occurrences, soonest first (GET /series)
    db[COLLECTION].create_index([("series_id", pymongo.ASCENDING),
                                 ("starts_at", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)])
    ensure_id_pages(db[COLLECTION], "deleted")  # all_events: rebuilds and snapshots


def series_occurrences(db, series_id):
    """The live occurrences of a series (500 at most), soonest first."""
    return list(db[COLLECTION].find({"series_id": series_id, **LIVE})
                .sort([("starts_at", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)]))


def find_live(db, event_id):
    return db[COLLECTION].find_one({"_id": event_id, **LIVE})


def insert(db, document, message):
    """Store a new event and its outgoing message in one atomic write."""
    db[COLLECTION].update_one(
        {"_id": document["_id"]}, {"$setOnInsert": document, **outgoing(message)}, upsert=True
    )


def insert_all(db, documents):
    """Store new events, each with its outgoing messages (``pending_events``), in one
    write: a series of 500 is one insert_many, not 500 round trips."""
    db[COLLECTION].insert_many(documents, ordered=False)


def replace_version(db, event_id, version, changes, message):
    """Apply ``changes`` (a MongoDB update) if the event is still at ``version``,
    storing ``message`` in its outbox in the same atomic write. False if it moved on."""
    update = {**changes, **outgoing(message)}
    result = db[COLLECTION].update_one({"_id": event_id, "version": version, **LIVE}, update)
    return result.modified_count == 1


def replace_versions(db, writes):
    """Many ``replace_version`` in one round trip (a series' occurrences): ``writes`` is
    [(event_id, version, changes, messages)], each write storing its ``messages`` in
    that event's outbox. Written in order, and the first write that lost (the event
    moved on, or was deleted) stops the rest: so the last write is done only if every
    one before it was (a series change's one message rides on it). Returns the ids not
    written: the one that lost and those after it. How it knows which lost: each write
    is an upsert, so one whose version no longer matches tries to insert its _id, which
    exists (events are never removed, a deleted one stays a tombstone), and fails on it,
    by index."""
    requests = [UpdateOne({"_id": event_id, "version": version, **LIVE},
                          {**changes, **outgoing(*messages)}, upsert=True)
                for event_id, version, changes, messages in writes]
    try:
        db[COLLECTION].bulk_write(requests, ordered=True)
    except BulkWriteError as error:
        [failed] = error.details["writeErrors"]  # ordered: the first error ends the bulk
        if failed["code"] != DUPLICATE_KEY:
            raise
        return {event_id for event_id, *_ in writes[failed["index"]:]}
    return set()


def add_message(db, event_id, message):
    """Store one more outgoing message in an event's outbox (a tombstone's too)."""
    db[COLLECTION].update_one({"_id": event_id}, outgoing(message))


def count_live(db):
    return db[COLLECTION].count_documents(LIVE)

