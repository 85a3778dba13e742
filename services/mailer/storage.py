"""The mailer's sent log: one document per send key (``_id``), so a key exists once.

``status``: ``sending`` (an instance holds it until ``lease_until``), ``committing``
(it is handing the mail to the SMTP server), ``retry`` (a transient failure
released it), then ``sent`` or ``failed`` for good. The outcome's
``email_sent`` / ``email_failed`` message is stored in the same write that records
it (bus.outbox).
"""
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from bus.outbox import outgoing

SENDS = "sends"
DONE = ("sent", "failed")



def claim_first(db, send_key, kind, notification_id, owner, now, lease_seconds):
    """Record ``send_key`` already claimed by ``owner``: the entry, or None if the key
    is known (sent, failed, or held by someone else). One write in the usual case."""
    document = {"_id": send_key, "kind": kind, "notification_id": notification_id,
                "created_at": now, "status": "sending", "owner": owner,
                "lease_until": now + timedelta(seconds=lease_seconds), "attempts": 1}
    try:
        db[SENDS].insert_one(document)
    except DuplicateKeyError:
        return None
    return document


def entry(db, send_key):
    return db[SENDS].find_one({"_id": send_key}, {"pending_events": 0})


def claim(db, send_key, owner, now, lease_seconds):
    """Take a known ``send_key`` for sending if nobody holds it (or the holder's lease
    ran out, i.e. it died). The claimed entry, or None."""
    take = {"$set": {"status": "sending", "owner": owner,
                     "lease_until": now + timedelta(seconds=lease_seconds)},
            "$inc": {"attempts": 1}}
    # two updates rather than one $or, which SecantusDB serves with a collection scan
    for free in ({"status": "retry"},
                 {"status": "sending", "lease_until": {"$lt": now}}):
        if db[SENDS].update_one({"_id": send_key, **free}, take).modified_count:
            return entry(db, send_key)
    return None


def committing(db, send_key, owner):
    """Mark that ``owner`` is about to hand the mail over (the SMTP DATA command)."""
    db[SENDS].update_one({"_id": send_key, "owner": owner, "status": "sending"},
                         {"$set": {"status": "committing"}})


def abandoned_while_committing(db, send_key, owner, now):
    """Take over a key whose holder died while handing its mail over; the entry, or None."""
    result = db[SENDS].update_one(
        {"_id": send_key, "status": "committing", "lease_until": {"$lt": now}},
        {"$set": {"owner": owner}},
    )
    return entry(db, send_key) if result.modified_count else None


def finish(db, send_key, owner, status, now, message, **fields):
    """Record the outcome and its outgoing message in one write. False if this owner
    had lost the claim meanwhile (its lease ran out and another instance took over)."""
    result = db[SENDS].update_one(
        {"_id": send_key, "owner": owner, "status": {"$in": ["sending", "committing"]}},
        {"$set": {"status": status, "finished_at": now, **fields}, **outgoing(message)},
    )
    return result.modified_count == 1


def release(db, send_key, owner, error):
    """Give the key back after a transient failure (an SMTP reply saying so, or no
    connection), for the next attempt."""
    db[SENDS].update_one(
        {"_id": send_key, "owner": owner, "status": {"$in": ["sending", "committing"]}},
        {"$set": {"status": "retry", "last_error": error}, "$unset": {"lease_until": ""}},
    )
