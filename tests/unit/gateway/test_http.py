"""Error mapping, body reading and token checks of the gateway's HTTP layer."""
import json
import logging
import time

import jwt
import pytest
from nameko.exceptions import RemoteError, deserialize, serialize
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bus import errors
from services.gateway.http import (
    MAX_BODY_BYTES,
    Caller,
    HttpEntrypoint,
    PayloadTooLarge,
    TokenVerifier,
    exception_response,
    issued_before,
    read_json_object,
)
from services.gateway.read_models import AccountsView

SECRET = "unit-test-secret-" + "z" * 48


def body_of(response):
    assert response.mimetype == "application/json"
    return json.loads(response.get_data())


# --- error mapping -------------------------------------------------------------------

@pytest.mark.parametrize("error, status, code", [
    (errors.BadRequest("bad"), 400, "bad_request"),
    (errors.Unauthorized("who?"), 401, "unauthorized"),
    (errors.Forbidden("no"), 403, "forbidden"),
    (errors.NotFound("gone"), 404, "not_found"),
    (errors.Conflict("taken", {"username": ["taken"]}), 409, "conflict"),
    (PayloadTooLarge("big"), 413, "payload_too_large"),
    (errors.ValidationError({"title": ["Too long."]}), 422, "validation_error"),
    (errors.RateLimited("slow down", {"retry_after": 7}), 429, "rate_limited"),
    (errors.Unavailable("down", {"service": "users"}), 503, "unavailable"),
])
def test_domain_errors_map_to_their_status_and_code(error, status, code):
    response = exception_response(error)
    assert response.status_code == status
    assert body_of(response) == {"error": {
        "code": code, "message": error.message, "details": error.details}}


@pytest.mark.parametrize("error", [
    errors.Conflict("taken", {"email": ["Already used."]}),
    errors.ValidationError({"email": ["Not deliverable."]}),
    errors.RateLimited("slow down", {"retry_after": 12}),
    errors.NotFound("No such event."),
])
def test_errors_keep_their_type_status_and_details_across_rpc(error):
    # what the service raises -> nameko's wire form -> what the gateway catches
    received = deserialize(json.loads(json.dumps(serialize(error))))
    assert type(received) is type(error)
    assert (received.status, received.code, received.message, received.details) == (
        error.status, error.code, error.message, error.details)
    assert body_of(exception_response(received)) == body_of(exception_response(error))


def test_rate_limited_carries_retry_after():
    response = exception_response(errors.RateLimited("slow down", {"retry_after": 42}))
    assert response.headers["Retry-After"] == "42"


def test_unauthorized_carries_www_authenticate():
    assert exception_response(errors.Unauthorized("x")).headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("error", [
    RuntimeError("boom"),
    KeyError("id"),
    RemoteError("TypeError", "unexpected keyword argument"),
    errors.DomainError("a bare DomainError has no status of its own"),
])
def test_anything_else_is_a_500_logged_with_its_traceback(error, caplog):
    with caplog.at_level(logging.ERROR, logger="services.gateway.http"):
        response = exception_response(error)
    assert response.status_code == 500
    body = body_of(response)
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["details"] == {}
    assert [record.exc_info for record in caplog.records if record.exc_info]


def test_no_route_and_wrong_method_are_json():
    not_found = exception_response(NoRoute())
    assert not_found.status_code == 404
    assert body_of(not_found)["error"]["code"] == "not_found"
    wrong = exception_response(MethodNotAllowed(valid_methods=["GET", "HEAD"]))
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, HEAD"
    assert body_of(wrong)["error"] == {
        "code": "method_not_allowed", "message": body_of(wrong)["error"]["message"],
        "details": {"allowed": ["GET", "HEAD"]}}


# --- results -------------------------------------------------------------------------

@pytest.mark.parametrize("result, status, body, headers", [
    ({"id": "e1"}, 200, {"id": "e1"}, {}),
    ((201, {"id": "e1"}), 201, {"id": "e1"}, {}),
    ((200, {"Cache-Control": "no-store"}, {"a": 1}), 200, {"a": 1},
     {"Cache-Control": "no-store"}),
])
def test_results_are_json(result, status, body, headers):
    response = HttpEntrypoint("GET", "/x").response_from_result(result)
    assert response.status_code == status
    assert body_of(response) == body
    assert headers.items() <= dict(response.headers).items()


def test_none_is_a_204_with_an_empty_body():
    response = HttpEntrypoint("DELETE", "/x").response_from_result(None)
    assert response.status_code == 204
    assert response.get_data() == b""


# --- bodies --------------------------------------------------------------------------

def request_with(data=None, content_type="application/json", method="POST", headers=None):
    builder = EnvironBuilder(method=method, data=data, content_type=content_type,
                             headers=headers)
    return Request(builder.get_environ())


def test_a_json_object_is_read():
    assert read_json_object(request_with(b'{"a": [1, {"b": null}]}')) == {"a": [1, {"b": None}]}


def test_no_body_is_none_whatever_the_content_type():
    assert read_json_object(request_with(None, content_type=None, method="GET")) is None
    assert read_json_object(request_with(b"", content_type="text/plain")) is None


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON",
])
def test_json_content_types_are_accepted(content_type):
    assert read_json_object(request_with(b"{}", content_type=content_type)) == {}


@pytest.mark.parametrize("data, content_type", [
    (b"{}", "text/plain"),
    (b"{}", "application/jsonp"),
    (b"{}", None),
    (b"{'a': 1}", "application/json"),
    (b"[]", "application/json"),
    (b"1", "application/json"),
    (b'{"a": Infinity}', "application/json"),
    (b'{"a": "\xc3"}', "application/json"),
    (b'{"title": "\\ud800"}', "application/json"),  # a lone surrogate, valid JSON
    (b"[" * 60000, "application/json"),  # deeper than Python's recursion limit
])
def test_anything_but_a_json_object_is_a_bad_request(data, content_type):
    with pytest.raises(errors.BadRequest):
        read_json_object(request_with(data, content_type=content_type))


def test_bodies_are_limited_to_64_kib_by_content_length():
    padding = b" " * (MAX_BODY_BYTES - 2)
    assert read_json_object(request_with(b"{" + padding + b"}")) == {}
    with pytest.raises(PayloadTooLarge):
        read_json_object(request_with(b"{" + padding + b" }"))


def test_bodies_are_limited_by_what_is_read_when_there_is_no_content_length():
    builder = EnvironBuilder(method="POST", data=b"{" + b" " * MAX_BODY_BYTES + b"}",
                             content_type="application/json",
                             headers={"Transfer-Encoding": "chunked"})
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]
    with pytest.raises(PayloadTooLarge):
        read_json_object(Request(environ))


# --- tokens --------------------------------------------------------------------------

def token(secret=SECRET, algorithm="HS256", **overrides):
    now = int(time.time())
    claims = {"sub": "u-1", "role": "user", "iat": now, "exp": now + 60, "jti": "j1",
              **overrides}
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_a_valid_token_gives_its_claims():
    claims = TokenVerifier(SECRET).claims(f"Bearer {token()}")
    assert (claims["sub"], claims["role"]) == ("u-1", "user")
    assert TokenVerifier(SECRET).claims(f"bearer {token()}")["sub"] == "u-1"


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer  ", f"Basic {token()}", f"Token {token()}", "Bearer abc",
    f"Bearer {token()} extra", f"Bearer {token(secret='another-secret-' + 'q' * 32)}",
    f"Bearer {token(exp=int(time.time()) - 1)}", f"Bearer {token(exp=None)}",
    f"Bearer {token(sub=None)}", f"Bearer {token(algorithm='HS512')}",
    f"Bearer {token()[:-2]}",
    "Bearer " + jwt.encode({"sub": "u-1", "exp": int(time.time()) + 60}, None,
                           algorithm="none"),
])
def test_bad_tokens_are_unauthorized(authorization):
    with pytest.raises(errors.Unauthorized):
        TokenVerifier(SECRET).claims(authorization)


class Users:
    """The part of the users service that auth needs, get(user_id), counting calls."""

    def __init__(self, *users):
        self.users = {user["id"]: user for user in users}
        self.calls = 0

    def get(self, user_id):
        self.calls += 1
        if user_id not in self.users:
            raise errors.NotFound("No such user.")
        return self.users[user_id]


ALICE = {"id": "u-1", "username": "alice", "role": "user", "version": 1}
ROOT = {"id": "a-1", "username": "root", "role": "admin", "version": 1}


def caller(held=(), users=None):
    """A Caller whose accounts read model holds ``held``; ``users`` is the service."""
    accounts = AccountsView()
    for user in held:
        accounts.apply(user)
    return Caller(TokenVerifier(SECRET), accounts, users or Users())


def authorized(jwt_token):
    return request_with(method="GET", content_type=None,
                        headers={"Authorization": f"Bearer {jwt_token}"})


def test_the_caller_is_the_tokens_user_from_the_read_model_without_rpc():
    users = Users(ALICE)
    assert caller([ALICE], users).user(authorized(token())) == ALICE
    assert users.calls == 0


def test_an_account_the_read_model_lacks_is_read_from_users_once():
    users = Users(ALICE)
    auth = caller([], users)
    assert auth.user(authorized(token())) == ALICE
    assert auth.user(authorized(token())) == ALICE
    assert users.calls == 1


def test_a_deleted_accounts_token_is_unauthorized():
    with pytest.raises(errors.Unauthorized):  # unknown to the users service
        caller([ROOT], Users(ROOT)).user(authorized(token()))
    auth = caller([ALICE], Users(ALICE))
    auth.accounts.remove(ALICE["id"])  # its user_deleted event, or our own DELETE
    with pytest.raises(errors.Unauthorized):
        auth.user(authorized(token()))
    assert auth.users.calls == 0


def test_admin_routes_need_an_admin_account_whatever_the_token_says():
    assert caller([ROOT]).admin(authorized(token(sub="a-1", role="user"))) == ROOT
    with pytest.raises(errors.Forbidden):  # demoted, or never admin: the token's claim is old
        caller([ALICE]).admin(authorized(token(role="admin")))
    with pytest.raises(errors.Unauthorized):  # 401 comes before 403
        caller([ROOT]).admin(authorized(token(sub="gone", role="admin")))


@pytest.mark.parametrize("iat, changed, before", [
    (1_800_000_000.124, "2027-01-15T08:00:00.125000Z", True),
    (1_800_000_000.125, "2027-01-15T08:00:00.125000Z", False),  # the same millisecond
    (1_800_000_001, "2027-01-15T08:00:00.125000Z", False),
    (1_800_000_000, None, False),  # never changed
    (None, "2027-01-15T08:00:00.125000Z", True),  # no iat: cannot tell, refused
    ("1800000001", "2027-01-15T08:00:00.125000Z", True),
])
def test_a_token_issued_before_the_password_changed_is_refused(iat, changed, before):
    assert issued_before({"iat": iat} if iat is not None else {}, changed) is before
