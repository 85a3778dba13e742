"""The users domain: plain functions that the Nameko service calls, testable without a broker.

Every write that emits an event stores the message in the same single-document write
(``pending_events``, bus.outbox); the service then publishes it. Each change bumps the
user's ``version`` (1 at registration), which its message carries.
"""
import functools
import logging
import math
import re
import uuid
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from eventlet import tpool
from pymongo.errors import DuplicateKeyError

from bus.concurrency import LOST, compare_and_set
from bus.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationError
from bus.messages import new_message, utc_now
from bus.mongo import page_by_id
from bus.outbox import outgoing
from services.users import schemas, storage, tokens

log = logging.getLogger(__name__)

WRONG_CREDENTIALS = "Wrong username, email or password."
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW = timedelta(minutes=15)
# Keeps the account document small and the unique multikey index bounded.
MAX_SECONDARY_EMAILS = 10
# Optimistic writes (bus.concurrency): retried, then a 409.
KEPT_CHANGING = "The account is changing too often; try again."
# Ids are opaque to callers, but we make them: anything else is unknown without a query.
USER_ID = re.compile(r"[0-9a-f]{32}")

_hasher = PasswordHasher()


# argon2 is CPU-bound C code that releases the GIL; a real thread keeps the service's
# eventlet hub answering other calls (and AMQP heartbeats) while it runs.
def _hash(password):
    return tpool.execute(_hasher.hash, password)


def _verify(password_hash, password):
    try:
        return tpool.execute(_hasher.verify, password_hash, password)
    except VerificationError:
        return False


@functools.cache
def _dummy_hash():
    return _hash(uuid.uuid4().hex)


def register(db, username, email, password):
    fields = schemas.load(
        schemas.Registration(), {"username": username, "email": email, "password": password}
    )
    return _create(db, fields, role="user")


def create_admin(db, username, email, password):
    """Promote the user called ``username``, or create them as an admin; idempotent.

    An existing user keeps their email and password (the given ones are ignored).
    """
    fields = schemas.load(
        schemas.Registration(), {"username": username, "email": email, "password": password}
    )
    def attempt():
        user = storage.by_username(db, fields["username"])
        if user is not None:
            if user["role"] == "admin":
                return schemas.dump_user(user)
            after = dict(user, role="admin", version=user["version"] + 1)
            message = new_message("users", "user_role_changed", user["_id"], after["version"],
                                  user=schemas.dump_user(after))
            promoted = storage.update_live(
                db, user["_id"], {"$set": {"role": "admin"}, "$inc": {"version": 1},
                                  **outgoing(message)}
            )
            if promoted is None:
                return LOST  # deleted meanwhile: create anew
            log.info("user %s promoted to admin", user["_id"])
            return schemas.dump_user(promoted)
        try:
            return _create(db, fields, role="admin")
        except Conflict as conflict:
            if "username" not in conflict.details:
                raise
            return LOST  # a concurrent call created the username first: promote that one

    return compare_and_set(attempt, KEPT_CHANGING)


def _create(db, fields, role):
    now = utc_now().replace(microsecond=0)
    user = {
        "_id": uuid.uuid4().hex,
        "username": fields["username"],
        "username_key": fields["username"].lower(),
        "email": fields["email"],
        "secondary_emails": [],
        "role": role,
        "password_hash": _hash(fields["password"]),
        "failed_logins": [],
        "created_at": now,
        "version": 1,
    }
    user["email_keys"] = storage.email_keys(user)
    message = new_message(
        "users", "user_registered", user["_id"], 1, user=schemas.dump_user(user)
    )
    try:
        storage.insert(db, {**user, "pending_events": [message]})
    except DuplicateKeyError as error:
        raise _taken(storage.duplicate_field(error)) from None
    log.info("user %s registered as %s", user["_id"], role)
    return schemas.dump_user(user)


def authenticate(db, config, password, username=None, email=None):
    """A token for the right password; ``Unauthorized`` alike for any wrong credentials."""
    login = schemas.load(
        schemas.Login(), {"password": password, "username": username, "email": email}
    )
    if login["username"] is not None:
        user = storage.by_username(db, login["username"])
    else:
        user = storage.by_email(db, login["email"])
    if user is None:
        # Same argon2 work as for a real account, so timing does not reveal which exists.
        _verify(_dummy_hash(), login["password"])
        raise Unauthorized(WRONG_CREDENTIALS)

    now = utc_now()
    retry_after = _locked_for(user.get("failed_logins") or [], now)
    if retry_after:
        raise RateLimited("Too many failed logins.", {"retry_after": retry_after})
    if not _verify(user["password_hash"], login["password"]):
        storage.record_failed_login(db, user["_id"], now, keep=MAX_FAILED_LOGINS)
        log.warning("failed login for user %s", user["_id"])
        raise Unauthorized(WRONG_CREDENTIALS)
    if user.get("failed_logins"):
        storage.clear_failed_logins(db, user["_id"])
    return tokens.issue(config, user["_id"], user["role"])


def _locked_for(failures, now):
    """Seconds until the account may try again, or 0 if it may now."""
    recent = [moment for moment in failures if moment > now - FAILED_LOGIN_WINDOW]
    if len(recent) < MAX_FAILED_LOGINS:
        return 0
    unlocks_at = recent[-MAX_FAILED_LOGINS] + FAILED_LOGIN_WINDOW
    return max(1, math.ceil((unlocks_at - now).total_seconds()))


def get(db, user_id):
    return schemas.dump_user(_live_user(db, user_id))


def change_email(db, user_id, email):
    """Make ``email`` the primary; the old primary is dropped, not kept as a secondary."""
    email = schemas.load(schemas.NewEmail(), {"email": email})["email"]

    def change(user):
        if email == user["email"]:
            return None
        key = storage.email_key(email)
        after = dict(
            user, email=email,
            # one of the user's secondaries is promoted rather than kept twice
            secondary_emails=[e for e in user["secondary_emails"] if storage.email_key(e) != key],
        )
        return after, "user_email_changed", {"old_email": user["email"], "new_email": email}

    return _change_emails(db, user_id, change)


def add_email(db, user_id, email):
    email = schemas.load(schemas.NewEmail(), {"email": email})["email"]

    def change(user):
        if storage.email_key(email) in storage.email_keys(user):
            raise Conflict("The email is already yours.", {"email": ["already one of your emails"]})
        if len(user["secondary_emails"]) >= MAX_SECONDARY_EMAILS:
            raise ValidationError(
                {"email": [f"at most {MAX_SECONDARY_EMAILS} secondary emails per account"]}
            )
        after = dict(user, secondary_emails=[*user["secondary_emails"], email])
        return after, "user_email_added", {"email": email}

    return _change_emails(db, user_id, change)


def remove_email(db, user_id, email):
    email = schemas.load(schemas.KnownEmail(), {"email": email})["email"]
    key = storage.email_key(email)

    def change(user):
        if storage.email_key(user["email"]) == key:
            raise ValidationError({"email": ["cannot remove the primary email; change it instead"]})
        removed = [e for e in user["secondary_emails"] if storage.email_key(e) == key]
        if not removed:
            raise NotFound("The account has no such secondary email.")
        after = dict(user, secondary_emails=[
            e for e in user["secondary_emails"] if storage.email_key(e) != key
        ])
        return after, "user_email_removed", {"email": removed[0]}

    return _change_emails(db, user_id, change)


def _change_emails(db, user_id, change):
    """Apply ``change(user) -> (user after, event type, event data) | None``.

    The write is conditional on the version that ``change`` saw, so events of one
    user carry strictly increasing versions in the order the changes happened; if
    another write got there first, ``change`` runs again on the fresh user.
    """
    def attempt():
        user = _live_user(db, user_id)
        planned = change(user)
        if planned is None:
            return schemas.dump_user(user)
        after, event_type, data = planned
        after["version"] = user["version"] + 1
        after["email_keys"] = storage.email_keys(after)
        update = {
            "$set": {field: after[field] for field in ("email", "secondary_emails", "email_keys")},
            "$inc": {"version": 1},
        }
        update.update(outgoing(new_message(
            "users", event_type, user_id, after["version"], user=schemas.dump_user(after), **data,
        )))
        try:
            saved = storage.update_unchanged(db, user, update)
        except DuplicateKeyError:
            raise _taken("email") from None
        return schemas.dump_user(after) if saved else LOST

    return compare_and_set(attempt, KEPT_CHANGING)


def all_accounts(db, after_id=None, limit=500):
    """A page of live accounts ordered by id, for read models (the gateway's)."""
    page = page_by_id(db[storage.USERS], storage.LIVE, after_id, limit)
    return [schemas.dump_user(user) for user in page]


def delete(db, user_id):
    """Remove the account: its personal data goes, its username and emails are free again."""
    erased = {field: "" for field in (
        "username", "username_key", "email", "email_keys", "secondary_emails",
        "password_hash", "failed_logins",
    )}
    def attempt():
        user = _live_user(db, user_id)
        message = new_message("users", "user_deleted", user_id, user["version"] + 1,
                              user_id=user_id)
        update = {
            "$set": {"deleted_at": utc_now()}, "$unset": erased, "$inc": {"version": 1},
            **outgoing(message),
        }
        if not storage.update_unchanged(db, user, update):
            return LOST
        log.info("user %s deleted", user_id)
        return None

    compare_and_set(attempt, KEPT_CHANGING)


def _live_user(db, user_id):
    user = (storage.live(db, user_id)
            if isinstance(user_id, str) and USER_ID.fullmatch(user_id) else None)
    if user is None:
        raise NotFound("No such user.")
    return user


def _taken(field):
    return Conflict(f"That {field} is already taken.", {field: [f"{field} already taken"]})
