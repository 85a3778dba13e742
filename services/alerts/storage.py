"""The alerts database.

- ``saved_searches``: one document per saved search: the resource's fields, ``user_id``,
  ``account_version`` (the account version its ``email`` comes from, so a late
  ``user_email_changed`` cannot undo a newer one), ``digest_due`` (daily ones: when
  the digest now collecting is sent, or None) and ``deleted`` (a stopped or deleted
  saved search stays as a tombstone, so its stop link can say it was stopped).
- ``stamps``: one counter (``_id: "saved_searches"``), moved after every change of
  a saved search. Each alerts process keeps the saved searches in memory (matching.py)
  and reloads them when it sees the counter moved: a change is written before the
  counter moves, so a process that read the counter and then reloaded has every
  change the counter counts.
- ``alerts``: one document per (saved search, event) that matched, ``_id``
  ``<saved search id>:<event id>``: a second insert of the same pair fails, whatever
  process or redelivery tries it, so an event is announced once per saved search at
  most. ``status`` ``pending`` (due at ``due_at``) then ``sent`` (with ``mail``,
  its send key). A pending one whose event is cancelled, deleted or no longer
  matching is deleted, not sent (so it may match, and be announced, later).
- ``mails``: one document per alert email, ``_id`` its send key, holding the
  ``alert_due`` message in its outbox (bus.outbox) and the ``event_ids`` it announces.
- ``events``: this service's copy of each event, the newest version only; a deleted
  event stays as a tombstone.
- ``accounts``: tombstones of deleted accounts (a late create for one is refused).
"""
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from bus.mongo import save_if_newer

SAVED_SEARCHES = "saved_searches"
STAMPS = "stamps"
ALERTS = "alerts"
MAILS = "mails"
EVENTS = "events"
ACCOUNTS = "accounts"
CHUNK = 50  # ids per $in: SecantusDB matches $in linearly


def ensure_indexes(db):
    db[SAVED_SEARCHES].create_index([("user_id", ASCENDING), ("deleted", ASCENDING)])
    # the sender's query: due pending alerts, oldest first
    db[ALERTS].create_index([("status", ASCENDING), ("due_at", ASCENDING)])
    db[ALERTS].create_index([("event_id", ASCENDING), ("status", ASCENDING)])
    db[ALERTS].create_index([("saved_search_id", ASCENDING), ("status", ASCENDING)])


def chunks(items, size=CHUNK):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


# saved searches

def insert_saved_search(db, document):
    db[SAVED_SEARCHES].insert_one(document)


def find_saved_search(db, saved_search_id, user_id=None):
    """The document (tombstones included), or None; with ``user_id`` only that user's."""
    if not isinstance(saved_search_id, str):
        return None
    query = {"_id": saved_search_id}
    if user_id is not None:
        query["user_id"] = user_id
    return db[SAVED_SEARCHES].find_one(query)


def users_saved_searches(db, user_id):
    """The user's live saved searches, oldest first."""
    return list(db[SAVED_SEARCHES].find({"user_id": user_id, "deleted": False})
                .sort([("created_at", ASCENDING), ("_id", ASCENDING)]))


def live_saved_searches(db):
    """Every live saved search, as the matcher needs it."""
    return list(db[SAVED_SEARCHES].find({"deleted": False}, {"query": 1, "frequency": 1}))


def remove_saved_search(db, saved_search_id):
    """Take back an insert nobody has seen (the 21st of an account)."""
    db[SAVED_SEARCHES].delete_one({"_id": saved_search_id})


def delete_saved_search(db, saved_search_id, now):
    """Tombstone one saved search; True if this call did (it was live)."""
    return db[SAVED_SEARCHES].update_one(
        {"_id": saved_search_id, "deleted": False},
        {"$set": {"deleted": True, "deleted_at": now}}).modified_count == 1


def mark_deleted(db, query, now):
    """Tombstone the live saved searches matching ``query``; their ids."""
    ids = [d["_id"] for d in db[SAVED_SEARCHES].find({**query, "deleted": False}, {"_id": 1})]
    for chunk in chunks(ids):
        db[SAVED_SEARCHES].update_many({"_id": {"$in": chunk}, "deleted": False},
                                       {"$set": {"deleted": True, "deleted_at": now}})
    return ids


def follow_email(db, user_id, email, version):
    """The account's primary email is now ``email`` (as of account ``version``)."""
    db[SAVED_SEARCHES].update_many(
        {"user_id": user_id, "account_version": {"$lt": version}},
        {"$set": {"email": email, "account_version": version}})


def open_digest(db, saved_search_id, seen, due_at):
    """Set the digest's due time to ``due_at`` if it is still ``seen`` (compare-and-set);
    the due time that holds afterwards (ours, or the one another process set first)."""
    result = db[SAVED_SEARCHES].update_one({"_id": saved_search_id, "digest_due": seen},
                                           {"$set": {"digest_due": due_at}})
    if result.modified_count:
        return due_at
    found = db[SAVED_SEARCHES].find_one({"_id": saved_search_id}, {"digest_due": 1})
    return None if found is None else found.get("digest_due")


def stamp(db):
    found = db[STAMPS].find_one({"_id": SAVED_SEARCHES})
    return 0 if found is None else found["stamp"]


def move_stamp(db):
    """After a change of any saved search: every process reloads them."""
    db[STAMPS].update_one({"_id": SAVED_SEARCHES}, {"$inc": {"stamp": 1}}, upsert=True)


# accounts

def forget_account(db, user_id, version):
    db[ACCOUNTS].update_one({"_id": user_id}, {"$set": {"deleted": True, "version": version}},
                            upsert=True)


def account_deleted(db, user_id):
    return db[ACCOUNTS].find_one({"_id": user_id, "deleted": True}, {"_id": 1}) is not None


# alerts

def alert_id(saved_search_id, announced_id):
    """``announced_id``: the event's, or for an occurrence its series'."""
    return f"{saved_search_id}:{announced_id}"


def record_alert(db, document):
    """Insert a new alert; False if that (saved search, event) has one already."""
    try:
        db[ALERTS].insert_one(document)
        return True
    except DuplicateKeyError:
        return False


def due_alerts(db, now, limit):
    return list(db[ALERTS].find({"status": "pending", "due_at": {"$lte": now}})
                .sort("due_at", ASCENDING).limit(limit))


def drop_pending(db, query):
    """Delete pending alerts matching ``query`` (never sent, so they may come again)."""
    return db[ALERTS].delete_many({**query, "status": "pending"}).deleted_count


def mark_sent(db, ids, mail_key, now):
    for chunk in chunks(ids):
        db[ALERTS].update_many({"_id": {"$in": chunk}, "status": "pending"},
                               {"$set": {"status": "sent", "mail": mail_key, "sent_at": now}})


def reschedule(db, ids, due_at):
    for chunk in chunks(ids):
        db[ALERTS].update_many({"_id": {"$in": chunk}, "status": "pending"},
                               {"$set": {"due_at": due_at}})


def claim_mail(db, send_key, message, event_ids, now):
    """Store the alert email ``send_key`` with its outgoing message unless it exists;
    the event ids the stored one announces (ours, or those of the one made first)."""
    # update_one + find_one: SecantusDB's find_one_and_update scans the whole collection
    try:
        db[MAILS].update_one(
            {"_id": send_key},
            {"$setOnInsert": {"event_ids": event_ids, "created_at": now,
                              "pending_events": [message]}}, upsert=True)
    except DuplicateKeyError:  # another process inserted it at the same moment
        pass
    return db[MAILS].find_one({"_id": send_key}, {"event_ids": 1})["event_ids"]


# the local copy of events

def find_events(db, event_ids):
    found = {}
    for chunk in chunks(event_ids):
        found.update((e["_id"], e) for e in db[EVENTS].find({"_id": {"$in": chunk}}))
    return found


def store_event(db, document):
    """Store ``document`` unless the copy has a newer version; a version stored already
    is stored again (a redelivered message is handled again: everything it does is
    idempotent; a deletion is a version of its own). True if stored."""
    return save_if_newer(db[EVENTS], document, same_too=True)
