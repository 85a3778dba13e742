"""The users collection: one document per account, keyed by a uuid4 hex string.

Uniqueness lives in the database, so two concurrent registrations cannot both win:
- ``username_key``: the lower-cased username, unique.
- ``email_keys``: the lower-cased primary and secondary emails, a unique multikey
  index, so an email belongs to at most one account whichever slot it is in.
Emails are stored as the user typed them but compared lower-cased: in practice no
provider treats local parts case-sensitively, and two accounts for "Ann@x.org" and
"ann@x.org" would be one inbox with two owners.

A deleted account stays as a tombstone (``deleted_at``) so that its ``user_deleted``
message can wait in ``pending_events`` like any other; its personal data and unique
keys are removed in the same write, which frees the username and emails at once.
"""
import json

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from bus.mongo import ensure_id_pages

USERS = "users"
# One document per throttle (a login name from one address, or one address); MongoDB
# deletes it once its last attempt is older than the throttling window.
LOGIN_ATTEMPTS = "login_attempts"
# Idempotency-Key records of the gateway (handlers.claim_request): one per caller and
# key, deleted by MongoDB once ``expires_at`` (24 h after the first request) is past.
REQUESTS = "idempotent_requests"
LIVE = {"deleted_at": None}


def ensure_indexes(db):
    users = db[USERS]
    # sparse: tombstones have neither key
    users.create_index("username_key", unique=True, sparse=True, name="username_unique")
    users.create_index("email_keys", unique=True, sparse=True, name="email_unique")
    ensure_id_pages(users, "deleted_at")  # all_accounts: the gateways' snapshots
    db[LOGIN_ATTEMPTS].create_index("expires_at", expireAfterSeconds=0,
                                    name="login_attempts_expire")
    db[REQUESTS].create_index("expires_at", expireAfterSeconds=0, name="requests_expire")


def email_key(email):
    return email.lower()


def email_keys(user):
    return [email_key(e) for e in [user["email"], *user["secondary_emails"]]]


def duplicate_field(error):
    """"username" or "email": which unique index a DuplicateKeyError hit."""
    pattern = (error.details or {}).get("keyPattern") or {}
    if "username_key" in pattern or "username_key" in str(error):
        return "username"
    return "email"


def live(db, user_id):
    return db[USERS].find_one({"_id": user_id, **LIVE})


def by_username(db, username):
    return db[USERS].find_one({"username_key": username.lower(), **LIVE})


def by_email(db, email):
    return db[USERS].find_one({"email_keys": email_key(email), **LIVE})


def insert(db, user):
    db[USERS].insert_one(user)


def update_unchanged(db, user, update):
    """Apply ``update`` only if the user is still at the version we read; True if it was."""
    query = {"_id": user["_id"], "version": user["version"], **LIVE}
    return db[USERS].update_one(query, update).matched_count == 1


def update_live(db, user_id, update):
    """Apply ``update`` to a live user; the user after it, or None if there is none."""
    return db[USERS].find_one_and_update(
        {"_id": user_id, **LIVE}, update, return_document=ReturnDocument.AFTER
    )


# --- login attempts: what login throttling counts (handlers.authenticate) -------------

def throttle_key(*parts):
    """One throttle's id, e.g. ("name", "username", "ann", "192.0.2.1")."""
    return json.dumps(parts)


def add_login_attempt(db, key, attempt, keep, expires_at):
    """Record ``attempt`` ({at, id}) under ``key``; the last ``keep`` attempts after it."""
    update = {"$push": {"attempts": {"$each": [attempt], "$slice": -keep}},
              "$set": {"expires_at": expires_at}}
    try:
        throttle = db[LOGIN_ATTEMPTS].find_one_and_update(
            {"_id": key}, update, upsert=True, return_document=ReturnDocument.AFTER)
    except DuplicateKeyError:  # two first attempts raced to create it: it exists now
        throttle = db[LOGIN_ATTEMPTS].find_one_and_update(
            {"_id": key}, update, return_document=ReturnDocument.AFTER)
    return throttle["attempts"]


def forget_login_attempt(db, keys, attempt_id):
    db[LOGIN_ATTEMPTS].update_many(
        {"_id": {"$in": keys}}, {"$pull": {"attempts": {"id": attempt_id}}})


def login_succeeded(db, name_key, address_key, attempt_id):
    """The right password: that name's failures from that address are forgiven, and the
    attempt does not count against the address."""
    db[LOGIN_ATTEMPTS].delete_one({"_id": name_key})
    forget_login_attempt(db, [address_key], attempt_id)


# --- idempotent requests (handlers.claim_request) --------------------------------------

def request_key(caller, key):
    return json.dumps([caller, key])


def insert_request(db, record):
    """Store a new record; False if one with its ``_id`` exists."""
    try:
        db[REQUESTS].insert_one(record)
    except DuplicateKeyError:
        return False
    return True


def find_request(db, request_id):
    return db[REQUESTS].find_one({"_id": request_id})


def replace_request(db, before, after):
    """Replace ``before`` by ``after`` if it is unchanged (same claim); True if it was."""
    query = {"_id": before["_id"], "claim": before["claim"]}
    return db[REQUESTS].replace_one(query, after).matched_count == 1


def delete_request(db, request_id, claim):
    db[REQUESTS].delete_one({"_id": request_id, "claim": claim, "state": "running"})
