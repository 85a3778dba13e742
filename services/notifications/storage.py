"""The notifications database.

- ``notifications``: one document per reminder. Times are UTC datetimes. Besides
  the resource fields it keeps ``user_id``, ``email_lc`` (for case-insensitive
  follow-ups), ``event_starts_at`` (the start a relative reminder was computed
  from, so moving it is idempotent), ``arm`` (bumped when a sent reminder is
  re-armed, part of its send key) and ``rev`` (bumped by every change a
  compare-and-set depends on: two writes in one millisecond share an
  ``updated_at``). While the mailer has it (internal status ``sending``, shown as
  ``scheduled``): ``claim`` (which hand-over), ``claimed_at`` (the first),
  ``lease_until`` (when to hand it over again if no outcome came),
  ``delivery_attempts`` and ``last_error``. ``cancelled_by``: the event version
  that cancelled it (its notice is built from that).
- ``events``: this service's copy of the events it needs, fed by ``events.*``,
  each applied only if its ``version`` is newer. A deleted event stays as a
  tombstone so a late ``event_updated`` cannot bring it back.
- ``accounts``: the account behind the follow-ups, the same way: ``version``,
  ``email``, ``emails`` (all of them, lower-case); ``deleted`` for a tombstone.
- ``notices``: one document per "your event was cancelled" email (``_id`` is its
  send key), which holds that email's outgoing message.
- ``preferences``: a user's email choices, ``{_id: user_id, cancellation_notices,
  updated_at}``, only once they made one (the defaults: ``DEFAULT_PREFERENCES``). Kept
  apart from ``accounts``, which bus.mongo.save_if_newer replaces whole.

SecantusDB costs: an update rewrites every index entry of the document, so the
reminders have no index beyond what a query needs; ``$in`` is matched linearly per
document, so lists of ids go in chunks of ``CHUNK``.
"""
from pymongo import ASCENDING

from bus.mongo import save_if_newer

REMINDERS = "notifications"
EVENTS = "events"
ACCOUNTS = "accounts"
NOTICES = "notices"
PREFERENCES = "preferences"
DEFAULT_PREFERENCES = {"cancellation_notices": True}
ACTIVE = ["scheduled", "sending"]
CHUNK = 50


def ensure_indexes(db):
    reminders = db[REMINDERS]
    # the scheduler: due reminders, oldest first; and the ones in the mailer's hands
    reminders.create_index([("status", ASCENDING), ("remind_at", ASCENDING)])
    # a user's list, keyset-paged on (remind_at, _id)
    reminders.create_index([("user_id", ASCENDING), ("remind_at", ASCENDING), ("_id", ASCENDING)])
    # follow-ups of an event
    reminders.create_index([("event_id", ASCENDING), ("status", ASCENDING)])


def chunks(items, size=CHUNK):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


# reminders

def find_reminder(db, user_id, reminder_id):
    """The user's reminder, or None (also for another user's, or a non-string id)."""
    if not isinstance(reminder_id, str) or not isinstance(user_id, str):
        return None
    return db[REMINDERS].find_one({"_id": reminder_id, "user_id": user_id},
                                  {"pending_events": 0})


def insert_reminder(db, document):
    db[REMINDERS].insert_one(document)


def update_reminder_if(db, reminder, expected, update):
    """Apply ``update`` if ``reminder`` is unchanged since it was read (same ``rev``)
    and still matches ``expected`` (compare-and-set); the updated document, or None if
    it changed meanwhile."""
    # update_one + find_one: SecantusDB's find_one_and_update scans the whole collection
    update = {**update, "$inc": {**update.get("$inc", {}), "rev": 1}}
    result = db[REMINDERS].update_one(
        {"_id": reminder["_id"], "rev": reminder.get("rev"), **expected}, update)
    if not result.modified_count:
        return None
    return db[REMINDERS].find_one({"_id": reminder["_id"]}, {"pending_events": 0})


def delete_reminder(db, user_id, reminder_id):
    if not isinstance(reminder_id, str):
        return False
    return db[REMINDERS].delete_one({"_id": reminder_id, "user_id": user_id}).deleted_count == 1


def find_by_ids(db, ids, query=None, projection=None):
    found = []
    for chunk in chunks(ids):
        found += db[REMINDERS].find({"_id": {"$in": chunk}, **(query or {})},
                                    projection or {"pending_events": 0})
    return found


def update_by_ids(db, ids, query, update):
    """``update_many`` over ``ids`` (in chunks) that still match ``query``; how many."""
    changed = 0
    for chunk in chunks(ids):
        changed += db[REMINDERS].update_many({"_id": {"$in": chunk}, **query},
                                             update).modified_count
    return changed


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


# the local copies of events and accounts

def find_event(db, event_id):
    """The stored copy, tombstones included (``deleted: True``)."""
    return db[EVENTS].find_one({"_id": event_id})


def find_events(db, event_ids):
    found = {}
    for chunk in chunks(event_ids):
        found.update((e["_id"], e) for e in db[EVENTS].find({"_id": {"$in": chunk}}))
    return found


def store_event(db, document, replace_equal=False):
    """Store ``document`` unless the copy already has a newer version (or the same
    one, unless ``replace_equal``: a tombstone wins over its own last version).
    True if stored."""
    return save_if_newer(db[EVENTS], document, same_too=replace_equal)


def find_account(db, user_id):
    return db[ACCOUNTS].find_one({"_id": user_id}) if isinstance(user_id, str) else None


def store_account(db, document, replace_equal=False):
    """The same rule as for events: only a newer version is stored. True if stored."""
    return save_if_newer(db[ACCOUNTS], document, same_too=replace_equal)


# a user's email choices

def find_preferences(db, user_id):
    """The user's choices, the defaults where they made none."""
    stored = db[PREFERENCES].find_one({"_id": user_id}) or {}
    return {name: stored.get(name, default) for name, default in DEFAULT_PREFERENCES.items()}


def save_preferences(db, user_id, changes, now):
    db[PREFERENCES].update_one({"_id": user_id}, {"$set": {**changes, "updated_at": now}},
                               upsert=True)


def without_notices(db, user_ids):
    """Those of ``user_ids`` who turned cancellation notices off."""
    off = set()
    for chunk in chunks(user_ids):
        off |= {d["_id"] for d in db[PREFERENCES].find(
            {"_id": {"$in": chunk}, "cancellation_notices": False}, {"_id": 1})}
    return off


def forget_preferences(db, user_id):
    db[PREFERENCES].delete_one({"_id": user_id})
