"""The users domain: accounts, credentials, emails, outbox messages; against the storage
in memory (conftest's ``db``). The race that the unique index decides:
tests/integration/users/test_storage_on_server.py."""
import logging
import time
from datetime import datetime, timedelta

import eventlet
import jwt
import pytest

from bus.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationError
from services.users import handlers, storage
from tests.support.waiting import wait_for

PASSWORD = "correct horse battery"


def register(db, username="ann", email="ann@example.org", password=PASSWORD):
    return handlers.register(db, username, email, password)


def stored(db, user_id):
    return db.users.find_one({"_id": user_id})


def pending(db, user_id):
    return stored(db, user_id)["pending_events"]


# registration


def test_register_returns_the_user_and_stores_its_message(db):
    user = register(db, email="Ann@Example.org")
    assert set(user) == {"id", "username", "email", "secondary_emails", "role", "created_at",
                         "version", "tokens_valid_after"}
    assert user["tokens_valid_after"] is None
    assert user["version"] == 1
    assert user["username"] == "ann"
    assert user["email"] == "Ann@Example.org"  # stored as given
    assert user["secondary_emails"] == []
    assert user["role"] == "user"
    assert user["created_at"].endswith("Z")
    assert handlers.get(db, user["id"]) == user

    [message] = pending(db, user["id"])
    assert message["event_type"] == "user_registered"
    assert message["aggregate_id"] == user["id"]
    assert message["version"] == 1
    assert message["data"] == {"user": user}


def test_the_password_is_kept_only_as_an_argon2_hash(db, caplog):
    caplog.set_level(logging.DEBUG, logger="services.users")  # pymongo: WARNING in config.yml
    user = register(db)
    document = stored(db, user["id"])
    assert document["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(document)
    assert PASSWORD not in caplog.text and "argon2" not in caplog.text


@pytest.mark.parametrize("second", [
    {"username": "ann", "email": "other@example.org"},
    {"username": "other", "email": "ANN@example.ORG"},
])
def test_a_taken_username_or_email_conflicts_whatever_its_case(db, second):
    register(db)
    with pytest.raises(Conflict) as caught:
        register(db, **second)
    field = "username" if second["username"] == "ann" else "email"
    assert list(caught.value.details) == [field]


def test_another_users_secondary_email_cannot_be_registered(db):
    ann = register(db)
    handlers.add_email(db, ann["id"], "ann.work@example.org")
    with pytest.raises(Conflict) as caught:
        register(db, username="bob", email="Ann.Work@example.org")
    assert "email" in caught.value.details


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_operator_injection_is_a_validation_error(db, field):
    args = {"username": "ann", "email": "ann@example.org", "password": PASSWORD}
    args[field] = {"$ne": ""}
    with pytest.raises(ValidationError) as caught:
        handlers.register(db, **args)
    assert list(caught.value.details) == [field]


# authentication


def decode(config, token):
    return jwt.decode(token["access_token"], config["JWT_SECRET"], algorithms=["HS256"])


def test_authenticate_by_username_or_email_in_any_case(db, config):
    user = register(db, email="Ann@Example.org")
    for identifier in [{"username": "ann"}, {"username": "ANN"}, {"email": "ann@EXAMPLE.org"}]:
        token = handlers.authenticate(db, config, PASSWORD, **identifier)
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == 900
        claims = decode(config, token)
        assert (claims["sub"], claims["role"]) == (user["id"], "user")


def test_wrong_password_and_unknown_user_look_the_same(db, config):
    register(db)
    with pytest.raises(Unauthorized) as wrong_password:
        handlers.authenticate(db, config, "not the password", username="ann")
    with pytest.raises(Unauthorized) as unknown_user:
        handlers.authenticate(db, config, PASSWORD, username="nobody")
    with pytest.raises(Unauthorized) as unknown_email:
        handlers.authenticate(db, config, PASSWORD, email="nobody@example.org")
    assert wrong_password.value.args == unknown_user.value.args == unknown_email.value.args


@pytest.mark.parametrize("login", [
    {"password": {"$ne": ""}, "username": "ann"},
    {"password": PASSWORD, "username": {"$ne": ""}},
    {"password": PASSWORD, "email": {"$gt": ""}},
    {"password": PASSWORD},
    {"password": "pass\ud800word", "username": "ann"},
    {"password": PASSWORD, "email": "ann\ud800@example.org"},
])
def test_malformed_logins_are_validation_errors(db, config, login):
    register(db)
    with pytest.raises(ValidationError):
        handlers.authenticate(db, config, **login)


STRANGER = "203.0.113.7"
OWNER = "198.51.100.20"


def login(db, config, password, client=STRANGER, **name):
    return handlers.authenticate(db, config, password, client=client,
                                 **(name or {"username": "ann"}))


def fail_logins(db, config, times, client=STRANGER, **name):
    for _ in range(times):
        with pytest.raises(Unauthorized):
            login(db, config, "wrong password", client, **name)


def outcome(db, config, password, client=STRANGER, **name):
    """What a client sees: (status, message, Retry-After) of one login attempt."""
    try:
        login(db, config, password, client, **name)
    except (Unauthorized, RateLimited) as error:
        return error.status, error.message, getattr(error, "retry_after", None)
    return 200, None, None


def test_a_strangers_failures_never_refuse_the_owners_right_password(db, config):
    register(db)
    fail_logins(db, config, 5)
    with pytest.raises(RateLimited) as refused:  # that client is refused, whatever it sends
        login(db, config, PASSWORD)
    assert 0 < refused.value.retry_after <= 15 * 60
    assert refused.value.details == {"retry_after": refused.value.retry_after}
    for _ in range(3):  # the owner, from elsewhere, is let in every time
        assert login(db, config, PASSWORD, client=OWNER)["access_token"]
        with pytest.raises(RateLimited):
            login(db, config, "another guess")


def test_unknown_and_known_names_are_answered_alike_at_every_step(db, config):
    register(db)
    known, unknown, started = [], [], {}
    for _ in range(7):
        for name, outcomes in (("ann", known), ("nobody", unknown)):
            started.setdefault(name, time.monotonic())
            outcomes.append((*outcome(db, config, "wrong password", username=name),
                             time.monotonic() - started[name]))
    assert [o[:2] for o in known] == [o[:2] for o in unknown]
    assert [o[0] for o in known] == [401] * 5 + [429] * 2
    # Retry-After counts from the first failure, for either name
    for _, _, wait, since_first in known[5:] + unknown[5:]:
        assert 15 * 60 - 2 <= since_first + wait <= 15 * 60 + 2
    # and by email too
    emails = [outcome(db, config, "wrong", email=e) for e in ("ann@example.org", "no@x.org")]
    assert emails[0] == emails[1]


def test_the_refusal_lifts_once_the_failures_are_older_than_fifteen_minutes(db, config):
    register(db)
    fail_logins(db, config, 5)
    for throttle in db.login_attempts.find():
        aged = [dict(a, at=a["at"] - timedelta(minutes=15, seconds=1))
                for a in throttle["attempts"]]
        db.login_attempts.update_one({"_id": throttle["_id"]}, {"$set": {"attempts": aged}})
    assert login(db, config, PASSWORD)["access_token"]


def test_a_successful_login_forgives_that_clients_failures(db, config):
    register(db)
    fail_logins(db, config, 4)
    login(db, config, PASSWORD)
    fail_logins(db, config, 4)  # would be RateLimited without the reset
    assert login(db, config, PASSWORD)["access_token"]


def test_one_address_trying_many_names_runs_out_for_every_name(db, config, monkeypatch):
    monkeypatch.setattr(handlers, "LOGIN_FAILURES_PER_ADDRESS", 6)
    register(db)
    for name in ("bob", "carol", "dave"):
        fail_logins(db, config, 2, username=name)
    with pytest.raises(RateLimited):  # a name this address never tried, and the owner's
        login(db, config, PASSWORD)
    assert login(db, config, PASSWORD, client=OWNER)["access_token"]


def test_right_passwords_do_not_use_up_the_addresss_budget(db, config, monkeypatch):
    monkeypatch.setattr(handlers, "LOGIN_FAILURES_PER_ADDRESS", 3)
    register(db)
    for _ in range(6):  # e.g. many people behind one NAT, all typing it right
        assert login(db, config, PASSWORD)["access_token"]


def test_parallel_guesses_are_counted_as_they_start(db, config):
    register(db)
    pool = eventlet.GreenPool()
    outcomes = list(pool.imap(lambda _: outcome(db, config, "guess"), range(12)))
    assert sorted(o[0] for o in outcomes) == [401] * 5 + [429] * 7


@pytest.mark.parametrize("client, counted_as", [
    ("192.0.2.1", "192.0.2.1"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    (None, "unknown"),
])
def test_clients_are_counted_by_address_and_ipv6_by_its_64(client, counted_as):
    assert handlers.client_address(client) == counted_as


# reading


@pytest.mark.parametrize("user_id", [
    "0" * 32, "not-an-id", "", None, 42, {"$ne": ""}, "\ud800" * 32,
])
def test_unknown_or_malformed_ids_are_not_found(db, user_id):
    register(db)
    with pytest.raises(NotFound):
        handlers.get(db, user_id)


# emails


def test_change_email_replaces_the_primary_and_frees_the_old_one(db):
    ann = register(db)
    user = handlers.change_email(db, ann["id"], "ann@new.example.org")
    assert user["email"] == "ann@new.example.org"
    assert user["secondary_emails"] == []
    assert handlers.get(db, ann["id"]) == user

    changed = pending(db, ann["id"])[-1]
    assert changed["event_type"] == "user_email_changed"
    assert changed["version"] == 2
    assert changed["data"] == {
        "user": user, "old_email": "ann@example.org", "new_email": "ann@new.example.org",
    }
    register(db, username="bob", email="ann@example.org")  # free again


def test_change_email_to_a_secondary_promotes_it(db):
    ann = register(db)
    handlers.add_email(db, ann["id"], "ann@work.example.org")
    user = handlers.change_email(db, ann["id"], "ANN@work.example.org")
    assert user["email"] == "ANN@work.example.org"
    assert user["secondary_emails"] == []


def test_change_email_to_another_users_email_conflicts(db):
    ann = register(db)
    register(db, username="bob", email="bob@example.org")
    with pytest.raises(Conflict) as caught:
        handlers.change_email(db, ann["id"], "Bob@example.org")
    assert "email" in caught.value.details
    assert handlers.get(db, ann["id"])["email"] == "ann@example.org"


def test_change_email_to_the_same_email_changes_nothing(db):
    ann = register(db)
    assert handlers.change_email(db, ann["id"], "ann@example.org") == ann
    assert len(pending(db, ann["id"])) == 1


@pytest.mark.parametrize("email", ["nope", {"$ne": ""}, None])
def test_change_email_validates_the_email(db, email):
    ann = register(db)
    with pytest.raises(ValidationError) as caught:
        handlers.change_email(db, ann["id"], email)
    assert list(caught.value.details) == ["email"]


def test_add_email_adds_a_secondary_and_bumps_the_version(db):
    ann = register(db)
    user = handlers.add_email(db, ann["id"], "Ann@Work.example.org")
    assert user["secondary_emails"] == ["Ann@Work.example.org"]
    assert handlers.get(db, ann["id"]) == user
    assert stored(db, ann["id"])["version"] == 2


@pytest.mark.parametrize("email", ["ANN@example.org", "ann@work.example.org", "bob@example.org"])
def test_add_email_already_used_by_anyone_conflicts(db, email):
    ann = register(db)
    handlers.add_email(db, ann["id"], "ann@work.example.org")
    register(db, username="bob", email="bob@example.org")
    with pytest.raises(Conflict) as caught:
        handlers.add_email(db, ann["id"], email)
    assert "email" in caught.value.details


def test_an_account_has_at_most_ten_secondary_emails(db):
    ann = register(db)
    for n in range(10):
        handlers.add_email(db, ann["id"], f"ann{n}@example.org")
    with pytest.raises(ValidationError) as caught:
        handlers.add_email(db, ann["id"], "ann10@example.org")
    assert "email" in caught.value.details


def test_remove_email_removes_a_secondary_and_frees_it(db):
    ann = register(db)
    handlers.add_email(db, ann["id"], "Ann@Work.example.org")
    removed = handlers.remove_email(db, ann["id"], "ann@work.EXAMPLE.org")
    user = handlers.get(db, ann["id"])
    assert user["secondary_emails"] == [] and removed == user

    removed = pending(db, ann["id"])[-1]
    assert removed["event_type"] == "user_email_removed"
    assert removed["version"] == 3
    assert removed["data"] == {"user": user, "email": "Ann@Work.example.org"}
    register(db, username="bob", email="ann@work.example.org")


def test_remove_email_of_a_non_secondary_is_not_found(db):
    ann = register(db)
    register(db, username="bob", email="bob@example.org")
    for email in ["bob@example.org", "nobody@example.org", "not an email"]:
        with pytest.raises(NotFound):
            handlers.remove_email(db, ann["id"], email)


def test_the_primary_email_cannot_be_removed(db):
    ann = register(db)
    with pytest.raises(ValidationError) as caught:
        handlers.remove_email(db, ann["id"], "ANN@example.org")
    assert list(caught.value.details) == ["email"]
    assert handlers.get(db, ann["id"])["email"] == "ann@example.org"


def test_remove_email_rejects_operators(db):
    ann = register(db)
    with pytest.raises(ValidationError):
        handlers.remove_email(db, ann["id"], {"$ne": ""})


def test_email_changes_of_an_unknown_user_are_not_found(db):
    for change in [handlers.change_email, handlers.add_email, handlers.remove_email]:
        with pytest.raises(NotFound):
            change(db, "0" * 32, "x@example.org")


# deletion


def test_a_deleted_account_is_gone_and_its_names_are_free(db, config):
    ann = register(db)
    handlers.add_email(db, ann["id"], "ann@work.example.org")
    assert handlers.delete(db, ann["id"]) is None

    with pytest.raises(NotFound):
        handlers.get(db, ann["id"])
    with pytest.raises(Unauthorized):
        handlers.authenticate(db, config, PASSWORD, username="ann")
    with pytest.raises(NotFound):
        handlers.delete(db, ann["id"])
    with pytest.raises(NotFound):
        handlers.add_email(db, ann["id"], "x@example.org")

    deleted = pending(db, ann["id"])[-1]
    assert deleted["event_type"] == "user_deleted"
    assert deleted["version"] == 3
    assert deleted["data"] == {"user_id": ann["id"]}
    # personal data is erased (messages still waiting to be published aside)
    tombstone = stored(db, ann["id"])
    assert set(tombstone) == {"_id", "role", "created_at", "version", "deleted_at",
                              "pending_events"}

    register(db, username="ann", email="ann@example.org")
    register(db, username="ann2", email="ann@work.example.org")


# password change


NEW_PASSWORD = "a brand new password"


def test_change_password_needs_the_current_one_and_follows_the_registration_rule(db, config):
    ann = register(db)
    with pytest.raises(Unauthorized):
        handlers.change_password(db, ann["id"], "not the password", NEW_PASSWORD)
    with pytest.raises(ValidationError) as short:
        handlers.change_password(db, ann["id"], PASSWORD, "short")
    assert list(short.value.details) == ["new_password"]
    with pytest.raises(ValidationError) as injected:
        handlers.change_password(db, ann["id"], {"$ne": ""}, NEW_PASSWORD)
    assert list(injected.value.details) == ["current_password"]
    with pytest.raises(NotFound):
        handlers.change_password(db, "0" * 32, PASSWORD, NEW_PASSWORD)
    assert stored(db, ann["id"])["version"] == 1  # nothing changed
    assert login(db, config, PASSWORD)["access_token"]


def test_change_password_replaces_it_and_dates_the_tokens_that_stay_valid(db, config):
    ann = register(db)
    before = decode(config, login(db, config, PASSWORD))
    # times have millisecond precision: a token of the change's own millisecond counts as
    # issued with it (it stays valid), so the change comes in a later one
    assert wait_for(lambda: time.time() >= before["iat"] + 0.001, timeout=1)
    changed = handlers.change_password(db, ann["id"], PASSWORD, NEW_PASSWORD)
    assert changed["version"] == 2
    valid_after = datetime.fromisoformat(changed["tokens_valid_after"].replace("Z", "+00:00"))
    assert before["iat"] < valid_after.timestamp()  # the old token: issued before
    message = pending(db, ann["id"])[-1]
    assert message["event_type"] == "user_password_changed"
    assert (message["version"], message["data"]) == (2, {"user": changed})
    assert handlers.get(db, ann["id"]) == changed
    assert NEW_PASSWORD not in str(stored(db, ann["id"]))

    with pytest.raises(Unauthorized):
        login(db, config, PASSWORD)
    after = decode(config, login(db, config, NEW_PASSWORD))
    assert after["iat"] >= valid_after.timestamp()  # a new token: issued after


# admins


def test_create_admin_creates_a_new_admin(db, config):
    admin = handlers.create_admin(db, "root", "root@example.org", PASSWORD)
    assert admin["role"] == "admin"
    assert pending(db, admin["id"])[0]["event_type"] == "user_registered"
    claims = decode(config, handlers.authenticate(db, config, PASSWORD, username="root"))
    assert claims["role"] == "admin"


def test_create_admin_promotes_an_existing_user_once(db, config):
    ann = register(db)
    promoted = handlers.create_admin(db, "ann", "other@example.org", "another password")
    assert promoted == {**ann, "role": "admin", "version": 2}  # email kept
    assert handlers.create_admin(db, "ann", "other@example.org", "another password") == promoted
    assert stored(db, ann["id"])["version"] == 2
    # the registration, then the role change (read models hold the role)
    assert [m["event_type"] for m in pending(db, ann["id"])] == [
        "user_registered", "user_role_changed"]
    assert pending(db, ann["id"])[1]["data"]["user"] == promoted
    claims = decode(config, handlers.authenticate(db, config, PASSWORD, username="ann"))
    assert claims["role"] == "admin"  # and the old password still works


def test_create_admin_validates_like_register(db):
    with pytest.raises(ValidationError) as caught:
        handlers.create_admin(db, {"$ne": ""}, "root@example.org", PASSWORD)
    assert list(caught.value.details) == ["username"]


# Idempotency-Key records


def test_a_keyed_request_is_claimed_once_then_answered_again(db):
    claimed = handlers.claim_request(db, "user:u1", "k1", "fp")
    with pytest.raises(Conflict) as running:  # the first is still running
        handlers.claim_request(db, "user:u1", "k1", "fp")
    assert "Idempotency-Key" in running.value.details
    with pytest.raises(ValidationError) as other:
        handlers.claim_request(db, "user:u1", "k1", "another body")
    assert list(other.value.details) == ["Idempotency-Key"]
    response = {"status": 201, "headers": [["Content-Type", "application/json"]],
                "body": '{"id": "e1"}'}
    handlers.finish_request(db, "user:u1", "k1", claimed["claim"], response)
    assert handlers.claim_request(db, "user:u1", "k1", "fp") == {"response": response}
    assert "claim" in handlers.claim_request(db, "user:u2", "k1", "fp")  # another caller


def test_a_released_or_abandoned_claim_lets_a_retry_run(db):
    claimed = handlers.claim_request(db, "user:u1", "k1", "fp")
    handlers.release_request(db, "user:u1", "k1", claimed["claim"])
    again = handlers.claim_request(db, "user:u1", "k1", "fp")
    assert again["claim"] != claimed["claim"]
    # its gateway died: once the lease is over, a retry runs it
    record = db[storage.REQUESTS].documents[storage.request_key("user:u1", "k1")]
    record["lease_until"] -= handlers.REQUEST_LEASE
    taken = handlers.claim_request(db, "user:u1", "k1", "fp")
    assert taken["claim"] not in (claimed["claim"], again["claim"])
    handlers.finish_request(db, "user:u1", "k1", again["claim"], {"status": 200})  # too late:
    with pytest.raises(Conflict):  # the retry that took over is the one running
        handlers.claim_request(db, "user:u1", "k1", "fp")


def test_a_record_older_than_a_day_is_forgotten(db):
    claimed = handlers.claim_request(db, "user:u1", "k1", "fp")
    handlers.finish_request(db, "user:u1", "k1", claimed["claim"], {"status": 201})
    record = db[storage.REQUESTS].documents[storage.request_key("user:u1", "k1")]
    record["expires_at"] -= handlers.REQUEST_TTL
    assert "claim" in handlers.claim_request(db, "user:u1", "k1", "another body")
