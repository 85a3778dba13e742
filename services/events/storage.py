"""The write model: one document per event in the `events` collection.

Times are stored as UTC datetimes. A deleted event stays as a tombstone
(`deleted: True`) so its outgoing `event_deleted` message lives in the same
document until the outbox has published it.
"""

from bus.outbox import outgoing

COLLECTION = "events"
LIVE = {"deleted": {"$ne": True}}


def find_live(db, event_id):
    return db[COLLECTION].find_one({"_id": event_id, **LIVE})


def insert(db, document, message):
    """Store a new event and its outgoing message in one atomic write."""
    db[COLLECTION].update_one(
        {"_id": document["_id"]}, {"$setOnInsert": document, **outgoing(message)}, upsert=True
    )


def replace_version(db, event_id, version, changes, message):
    """Apply ``changes`` (a MongoDB update) if the event is still at ``version``,
    storing ``message`` in its outbox in the same atomic write. False if it moved on."""
    update = {**changes, **outgoing(message)}
    result = db[COLLECTION].update_one({"_id": event_id, "version": version, **LIVE}, update)
    return result.modified_count == 1


def count_live(db):
    return db[COLLECTION].count_documents(LIVE)

