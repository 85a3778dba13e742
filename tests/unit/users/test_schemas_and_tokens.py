"""Input rules of the users domain, the user resource, and the tokens users issues."""
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from bus.errors import ValidationError
from bus.messages import iso
from services.gateway.http import issued_before
from services.users import schemas, tokens

GOOD = {"username": "ann.lee_1-x", "email": "Ann@Example.org", "password": "correct horse"}


def test_a_good_registration_loads_unchanged():
    assert schemas.load(schemas.Registration(), GOOD) == GOOD


@pytest.mark.parametrize("field, value", [
    ("username", "ab"),
    ("username", "a" * 31),
    ("username", "Ann"),  # API.md: [a-z0-9_.-]
    ("username", "ann lee"),
    ("username", {"$ne": ""}),
    ("username", None),
    ("username", 12345),
    ("email", "not-an-email"),
    ("email", {"$gt": ""}),
    ("email", ["a@b.org"]),
    ("email", "a" * 250 + "@b.org"),
    ("password", "short"),
    ("password", "x" * 257),
    ("password", {"$ne": ""}),
    ("password", "lone \ud800 surrogate"),  # valid JSON, but no UTF-8 for argon2 or BSON
    ("email", "a@b\ud800.org"),
])
def test_bad_registration_fields_are_named_in_the_error(field, value):
    with pytest.raises(ValidationError) as caught:
        schemas.load(schemas.Registration(), {**GOOD, field: value})
    assert list(caught.value.details) == [field]


def test_a_missing_field_is_named():
    with pytest.raises(ValidationError) as caught:
        schemas.load(schemas.Registration(), {"username": "ann", "email": "a@b.org"})
    assert "password" in caught.value.details


@pytest.mark.parametrize("login", [
    {"password": "p", "username": None, "email": None},
    {"password": "p", "username": "ann", "email": "a@b.org"},
    {"password": "p", "username": "\udfff", "email": None},
])
def test_a_login_has_exactly_one_storable_username_or_email(login):
    with pytest.raises(ValidationError) as caught:
        schemas.load(schemas.Login(), login)
    assert "username" in caught.value.details


def test_the_user_resource_has_the_api_fields_and_nothing_else():
    stored = {
        "_id": "abc", "username": "ann", "username_key": "ann", "email": "Ann@Example.org",
        "secondary_emails": ["b@c.org"], "email_keys": ["ann@example.org", "b@c.org"],
        "role": "user", "password_hash": "$argon2id$...", "version": 3,
        "created_at": datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc),
        "pending_events": [],
    }
    assert schemas.dump_user(stored) == {
        "id": "abc", "username": "ann", "email": "Ann@Example.org",
        "secondary_emails": ["b@c.org"], "role": "user", "created_at": "2026-03-01T12:30:00Z",
        "version": 3, "tokens_valid_after": None,
    }
    changed = dict(stored, tokens_valid_after=datetime(2026, 3, 2, 8, 0, 0, 125000,
                                                        tzinfo=timezone.utc))
    assert schemas.dump_user(changed)["tokens_valid_after"] == "2026-03-02T08:00:00.125000Z"


def test_a_token_carries_the_contract_claims():
    config = {"JWT_SECRET": "s" * 40, "ACCESS_TOKEN_TTL": "120"}
    issued = tokens.issue(config, "user-1", "admin")
    assert issued["token_type"] == "bearer"
    assert issued["expires_in"] == 120
    claims = jwt.decode(issued["access_token"], "s" * 40, algorithms=["HS256"])
    assert claims["sub"] == "user-1"
    assert claims["role"] == "admin"
    assert claims["exp"] == int(claims["iat"]) + 120
    assert claims["iat"] == round(claims["iat"], 3)  # milliseconds: compared with a change
    assert abs(claims["iat"] - time.time()) < 5
    again = jwt.decode(tokens.issue(config, "user-1", "admin")["access_token"], "s" * 40,
                       algorithms=["HS256"])
    assert claims["jti"] != again["jti"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(issued["access_token"], "t" * 40, algorithms=["HS256"])


def test_a_token_issued_in_the_millisecond_before_a_password_change_is_revoked_by_it():
    config = {"JWT_SECRET": "s" * 40}
    # as stored: whole milliseconds; now, so that the tokens have not expired
    change = (datetime.now(timezone.utc) - timedelta(seconds=2)).replace(microsecond=124000)
    for before in (0.0001, 0.0004, 0.0009):  # the last half of that millisecond included
        issued = tokens.issue(config, "u", "user", issued_at=change.timestamp() - before)
        claims = jwt.decode(issued["access_token"], "s" * 40, algorithms=["HS256"])
        assert issued_before(claims, iso(change)), (before, claims["iat"])
    after = tokens.issue(config, "u", "user", issued_at=change.timestamp() + 0.0004)
    claims = jwt.decode(after["access_token"], "s" * 40, algorithms=["HS256"])
    assert not issued_before(claims, iso(change))  # a login just after the change works


def test_the_token_lifetime_defaults_to_an_hour():
    assert tokens.issue({"JWT_SECRET": "s" * 40}, "u", "user")["expires_in"] == 3600


def test_no_token_is_signed_without_a_secret():
    with pytest.raises(RuntimeError):
        tokens.issue({"JWT_SECRET": ""}, "u", "user")
