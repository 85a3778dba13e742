"""The notifications database.

- ``notifications``: one document per reminder. Times are UTC datetimes. Besides
  the resource fields it keeps ``user_id``, ``email_lc`` (for case-insensitive
  follow-ups), ``event_starts_at`` (the start a relative reminder was computed
  from, so moving it is idempotent), ``arm`` (bumped when a sent reminder is
  re-armed, part of its send key) and ``send_key`` while it is being sent.
  Internal status ``sending`` (claimed by the scheduler, mail in flight) shows
  as ``scheduled`` in the resource.
- ``events``: this service's copy of the events it needs, fed by ``events.*``,
  each applied only if its ``version`` is newer. A deleted event stays as a
  tombstone so a late ``event_updated`` cannot bring it back.
- ``notices``: one document per "your event was cancelled" email (``_id`` is its
  send key), which holds that email's outgoing message.
"""
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

REMINDERS = "notifications"
EVENTS = "events"
NOTICES = "notices"
ACTIVE = ["scheduled", "sending"]


def ensure_indexes(db):
    reminders = db[REMINDERS]
    # the scheduler: due reminders, oldest first
    reminders.create_index([("status", ASCENDING), ("remind_at", ASCENDING)])
    # a user's list, keyset-paged on (remind_at, _id)
    reminders.create_index([("user_id", ASCENDING), ("remind_at", ASCENDING), ("_id", ASCENDING)])
    # follow-ups of an event
    reminders.create_index([("event_id", ASCENDING), ("status", ASCENDING)])



# reminders

def find_reminder(db, user_id, reminder_id):
    """The user's reminder, or None (also for another user's, or a non-string id)."""
    if not isinstance(reminder_id, str) or not isinstance(user_id, str):
        return None
    return db[REMINDERS].find_one({"_id": reminder_id, "user_id": user_id})


def insert_reminder(db, document):
    db[REMINDERS].insert_one(document)


def update_reminder_if(db, reminder_id, expected, update):
    """Apply ``update`` if the reminder still matches ``expected`` (compare-and-set);
    the updated document, or None if it changed meanwhile."""
    # update_one + find_one: SecantusDB's find_one_and_update scans the whole collection
    result = db[REMINDERS].update_one({"_id": reminder_id, **expected}, update)
    if not result.modified_count:
        return None
    return db[REMINDERS].find_one({"_id": reminder_id}, {"pending_events": 0})


def delete_reminder(db, user_id, reminder_id):
    if not isinstance(reminder_id, str):
        return False
    return db[REMINDERS].delete_one({"_id": reminder_id, "user_id": user_id}).deleted_count == 1


def page_of_reminders(db, query, after, limit):
    """Up to ``limit`` reminders matching ``query`` after the (remind_at, id) key ``after``."""
    order = [("remind_at", ASCENDING), ("_id", ASCENDING)]
    page = []
    if after is not None:
        # two range queries rather than one $or, which SecantusDB cannot serve from an index
        remind_at, reminder_id = after
        ties = {**query, "remind_at": remind_at, "_id": {"$gt": reminder_id}}
        page = list(db[REMINDERS].find(ties, {"pending_events": 0}).sort(order).limit(limit))
        query = {**query, "remind_at": {"$gt": remind_at}}
    if len(page) < limit:
        rest = db[REMINDERS].find(query, {"pending_events": 0}).sort(order)
        page += list(rest.limit(limit - len(page)))
    return page


# the local copy of events

def find_event(db, event_id):
    """The stored copy, tombstones included (``deleted: True``)."""
    return db[EVENTS].find_one({"_id": event_id})


def store_event(db, document, replace_equal=False):
    """Store ``document`` unless the copy already has a newer version (or the same
    one, unless ``replace_equal``: a tombstone wins over its own last version).
    True if stored."""
    older = "$lte" if replace_equal else "$lt"
    result = db[EVENTS].update_one(
        {"_id": document["_id"], "version": {older: document["version"]}},
        {"$set": document},
    )
    if result.matched_count:
        return True
    if db[EVENTS].find_one({"_id": document["_id"]}, {"_id": 1}) is not None:
        return False  # same or newer version already here
    try:
        db[EVENTS].insert_one(document)
        return True
    except DuplicateKeyError:  # a concurrent writer inserted it first: compare again
        return store_event(db, document, replace_equal)
