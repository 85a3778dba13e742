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
from pymongo import ReturnDocument

USERS = "users"
LIVE = {"deleted_at": None}


def ensure_indexes(db):
    users = db[USERS]
    # sparse: tombstones have neither key
    users.create_index("username_key", unique=True, sparse=True, name="username_unique")
    users.create_index("email_keys", unique=True, sparse=True, name="email_unique")


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


def record_failed_login(db, user_id, moment, keep):
    db[USERS].update_one(
        {"_id": user_id, **LIVE},
        {"$push": {"failed_logins": {"$each": [moment], "$slice": -keep}}},
    )


def clear_failed_logins(db, user_id):
    db[USERS].update_one({"_id": user_id, **LIVE}, {"$set": {"failed_logins": []}})
