"""The users domain: plain functions that the Nameko service calls, testable without a broker.

Every write that emits an event stores the message in the same single-document write
(``pending_events``, bus.outbox); the service then publishes it. Each change bumps the
user's ``version`` (1 at registration), which its message carries.
"""
import functools
import ipaddress
import logging
import math
import re
import time
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
# Login throttling (API.md v1.1): failures count per login name *and* client address,
# so a stranger's guesses slow down only the stranger and never lock the owner out;
# a budget per address caps one client trying many names. Unknown names are counted
# exactly like known ones, so a 429 tells nothing about which names exist.
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_FAILURES_PER_CLIENT = 5  # for one name, from one address
LOGIN_FAILURES_PER_ADDRESS = 50  # for all names together, from one address
TOO_MANY_LOGINS = "Too many failed logins from this address; try again later."
# Attempts are recorded before their password is checked and taken back if refused
# or right; a throttle keeps this many more than it allows, so attempts in flight
# (at most the users services' workers) never push out a failure that still counts.
ATTEMPTS_IN_FLIGHT = 100
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


def authenticate(db, config, password, username=None, email=None, client=None):
    """A token for the right password; ``Unauthorized`` alike for any wrong credentials,
    ``RateLimited`` for a client (``client``: its address, as the gateway saw it) that
    failed too often, whether the name it tries exists or not."""
    login = schemas.load(
        schemas.Login(),
        {"password": password, "username": username, "email": email, "client": client},
    )
    if login["username"] is not None:
        name = ("username", login["username"].lower())
    else:
        name = ("email", storage.email_key(login["email"]))
    address = client_address(login["client"])
    throttles = {
        storage.throttle_key("name", *name, address): LOGIN_FAILURES_PER_CLIENT,
        storage.throttle_key("address", address): LOGIN_FAILURES_PER_ADDRESS,
    }
    attempt = _admit(db, throttles)  # counted as a failure until the password is right

    issued_at = time.time()  # before the read: a password changed after it revokes the token
    if login["username"] is not None:
        user = storage.by_username(db, login["username"])
    else:
        user = storage.by_email(db, login["email"])
    if user is None:
        # Same argon2 work as for a real account, so timing does not reveal which exists.
        _verify(_dummy_hash(), login["password"])
        raise Unauthorized(WRONG_CREDENTIALS)
    if not _verify(user["password_hash"], login["password"]):
        log.warning("failed login for user %s", user["_id"])
        raise Unauthorized(WRONG_CREDENTIALS)
    name_key, address_key = throttles
    storage.login_succeeded(db, name_key, address_key, attempt["id"])
    return tokens.issue(config, user["_id"], user["role"], issued_at)


def _admit(db, throttles):
    """Record this login attempt under each throttle ``{key: failures allowed}``, or
    raise RateLimited (and take it back) if one of them has run out.

    The attempt is recorded before the password is checked, so parallel guesses count
    too: each one sees the attempts recorded before its own.
    """
    now = utc_now()
    attempt = {"at": now, "id": uuid.uuid4().hex}
    waits = []
    for key, allowed in throttles.items():
        attempts = storage.add_login_attempt(
            db, key, attempt, keep=allowed + ATTEMPTS_IN_FLIGHT, expires_at=now + LOGIN_WINDOW)
        earlier = sorted(a["at"] for a in attempts
                         if a["id"] != attempt["id"] and a["at"] > now - LOGIN_WINDOW)
        if len(earlier) >= allowed:
            waits.append(earlier[-allowed] + LOGIN_WINDOW - now)
    if waits:
        storage.forget_login_attempt(db, list(throttles), attempt["id"])
        retry_after = max(1, math.ceil(max(waits).total_seconds()))
        raise RateLimited(TOO_MANY_LOGINS, {"retry_after": retry_after})
    return attempt


def client_address(client):
    """The address a client's login failures are counted under: an IPv6 client by its
    /64 (one host usually holds a whole /64), any other as given."""
    if not client:
        return "unknown"
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


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


def change_password(db, user_id, current_password, new_password):
    """Replace the password; every token issued before stops working (``tokens_valid_after``,
    carried by ``user_password_changed`` to the gateways)."""
    fields = schemas.load(schemas.PasswordChange(), {
        "current_password": current_password, "new_password": new_password})
    user = _live_user(db, user_id)
    if not _verify(user["password_hash"], fields["current_password"]):
        raise Unauthorized("The current password is wrong.")
    password_hash = _hash(fields["new_password"])

    def attempt():
        user = _live_user(db, user_id)
        now = utc_now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what BSON keeps
        after = dict(user, version=user["version"] + 1, tokens_valid_after=now)
        message = new_message("users", "user_password_changed", user_id, after["version"],
                              user=schemas.dump_user(after))
        update = {"$set": {"password_hash": password_hash, "tokens_valid_after": now},
                  "$inc": {"version": 1}, **outgoing(message)}
        if not storage.update_unchanged(db, user, update):
            return LOST
        log.info("user %s changed their password", user_id)
        return schemas.dump_user(after)

    return compare_and_set(attempt, KEPT_CHANGING)


# --- Idempotency-Key (API.md v1.1): the gateway's record of each caller's keyed POSTs ---
# Kept here because the gateway owns no database and every gateway process must see the
# same records (README, "Logins, tokens and retries").

REQUEST_TTL = timedelta(hours=24)
# A claim not finished within this long is taken to be dead (its gateway process died):
# the next retry runs the request again. Longer than any RPC timeout the gateway waits.
REQUEST_LEASE = timedelta(seconds=60)
IDEMPOTENCY_HEADER = "Idempotency-Key"


def claim_request(db, caller, key, fingerprint):
    """Start the request ``key`` of ``caller`` (``fingerprint``: a hash of its method,
    path and body). ``{"claim": id}`` to run it, ``{"response": {status, headers,
    body}}`` to answer it again; ``Conflict`` while the first one still runs,
    ``ValidationError`` naming Idempotency-Key if the key came with another request."""
    request_id = storage.request_key(caller, key)
    while True:
        now = utc_now()
        fresh = {"_id": request_id, "fingerprint": fingerprint, "state": "running",
                 "claim": uuid.uuid4().hex, "lease_until": now + REQUEST_LEASE,
                 "expires_at": now + REQUEST_TTL}
        if storage.insert_request(db, fresh):
            return {"claim": fresh["claim"]}
        record = storage.find_request(db, request_id)
        if record is None:
            continue  # expired and removed meanwhile: claim anew
        if record["expires_at"] <= now:
            fresh["_id"] = record["_id"]
        elif record["fingerprint"] != fingerprint:
            raise ValidationError({IDEMPOTENCY_HEADER: [
                "This key was used with another request (method, path or body)."]})
        elif record["state"] == "done":
            return {"response": record["response"]}
        elif record["lease_until"] > now:
            raise Conflict("A request with this Idempotency-Key is still running.",
                           {IDEMPOTENCY_HEADER: ["still running; retry later"]})
        else:  # its gateway died while running it: this retry runs it again
            fresh = dict(fresh, expires_at=record["expires_at"])
        if storage.replace_request(db, record, fresh):
            return {"claim": fresh["claim"]}


def finish_request(db, caller, key, claim, response):
    """Keep ``response`` ({status, headers, body}) as the answer to every retry."""
    request_id = storage.request_key(caller, key)
    record = storage.find_request(db, request_id)
    if record is not None and record["claim"] == claim:
        storage.replace_request(db, record, dict(record, state="done", response=response))


def release_request(db, caller, key, claim):
    """The request's outcome is unknown (a 5xx): forget it, so that a retry runs it."""
    storage.delete_request(db, storage.request_key(caller, key), claim)


def all_accounts(db, after_id=None, limit=500):
    """A page of live accounts ordered by id, for read models (the gateway's)."""
    page = page_by_id(db[storage.USERS], storage.LIVE, after_id, limit)
    return [schemas.dump_user(user) for user in page]


def delete(db, user_id):
    """Remove the account: its personal data goes, its username and emails are free again."""
    erased = {field: "" for field in (
        "username", "username_key", "email", "email_keys", "secondary_emails",
        "password_hash",
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
