"""The gateway's HTTP contract (API.md), over a real socket, against a stand-in users.

What a client sees: status, JSON error body, headers, and how long it had to wait.
"""
import json
import socket
import time

import eventlet
import pytest
from nameko.rpc import rpc

from bus.errors import Conflict, NotFound, RateLimited, ValidationError
from tests.integration.gateway.conftest import RPC_TIMEOUT, bearer

pytestmark = pytest.mark.integration

SECRET_PASSWORD = "correct horse battery staple"

USERS = {
    "u-1": {"id": "u-1", "username": "alice", "email": "alice@example.com",
            "secondary_emails": [], "role": "user", "created_at": "2026-01-01T00:00:00Z",
            "version": 1},
    "a-1": {"id": "a-1", "username": "root", "email": "root@example.com",
            "secondary_emails": [], "role": "admin", "created_at": "2026-01-01T00:00:00Z",
            "version": 1},
}


REMOVABLE = {"old@example.com", "a/b@example.com"}


class UsersStandIn:
    """Answers like the real users service would, for the cases under test."""

    name = "users"

    @rpc
    def health(self):
        return "ok"

    @rpc
    def get(self, user_id):
        if user_id not in USERS:
            raise NotFound("No such user.")
        return USERS[user_id]

    @rpc
    def register(self, username, email, password):
        if username == "taken":
            raise Conflict("That username is taken.", {"username": ["Already taken."]})
        if email == "refused@example.com":
            raise ValidationError({"email": ["This domain does not accept mail."]})
        if username == "sleepy":
            eventlet.sleep(RPC_TIMEOUT * 3)
        if username == "buggy":
            raise RuntimeError("a bug in users")
        return dict(USERS["u-1"], id="u-2", username=username, email=email)

    @rpc
    def authenticate(self, password, username=None, email=None, client=None):
        raise RateLimited("Too many failed attempts.", {"retry_after": 30})

    @rpc
    def delete(self, user_id):
        return None

    @rpc
    def remove_email(self, user_id, email):
        if email not in REMOVABLE:
            raise NotFound("That is not one of your secondary emails.")
        return dict(USERS[user_id], version=2)


@pytest.fixture
def users(start_service):
    return start_service(UsersStandIn)


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


# --- routing -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/events/e-1/extra", "/users/me/", "/web/nope.js"])
def test_unknown_route_is_a_json_404(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_wrong_method_is_a_json_405_with_allow(client):
    response = client.delete("/health")
    error = assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert "GET" in error["details"]["allowed"]


def test_wrong_method_on_a_resource_lists_its_methods(client):
    response = client.request("PUT", "/users/me", json={})
    assert_error(response, 405, "method_not_allowed")
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "PATCH", "DELETE"} <= allowed


# --- bodies --------------------------------------------------------------------------

@pytest.mark.parametrize("data, content_type", [
    (b"not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"a string"', "application/json"),
    (b"null", "application/json"),
    (b'{"username": NaN}', "application/json"),
    (b"\xff\xfe{}", "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b'{"username": "alice"}', "text/plain"),
    (b"username=alice", "application/x-www-form-urlencoded"),
])
def test_a_body_that_is_not_a_json_object_is_a_400(client, data, content_type):
    response = client.post("/users", data=data, headers={"Content-Type": content_type})
    assert_error(response, 400, "bad_request")


def test_a_post_without_a_body_is_a_400(client):
    assert_error(client.post("/users"), 400, "bad_request")


def test_json_with_a_charset_is_accepted(client):
    response = client.post("/users", data=b'{"username": "x"}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert_error(response, 422, "validation_error")  # got past the body checks


def test_a_body_over_64_kib_is_a_413(client):
    prefix, suffix = b'{"username": "', b'"}'
    data = prefix + b"a" * (65537 - len(prefix) - len(suffix)) + suffix
    assert len(data) == 65537
    response = client.post("/users", data=data, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_a_chunked_body_over_64_kib_is_a_413(client):
    def chunks():  # no Content-Length: the gateway must count what it reads
        yield b'{"username": "'
        for _ in range(70):
            yield b"a" * 1024
        yield b'"}'

    response = client.post("/users", data=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_a_body_of_exactly_64_kib_is_read(client):
    prefix, suffix = b'{"username": "', b'"}'
    data = prefix + b"a" * (65536 - len(prefix) - len(suffix)) + suffix
    response = client.post("/users", data=data, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "validation_error")


def test_validation_names_the_fields_and_never_echoes_the_password(client):
    body = {"username": {"$ne": ""}, "email": "nope", "password": "short", "admin": True}
    error = assert_error(client.post("/users", json=body), 422, "validation_error")
    assert set(error["details"]) == {"username", "email", "password", "admin"}
    assert "short" not in json.dumps(error)


# --- backing services ----------------------------------------------------------------

def test_register_returns_201_and_the_user(client, users):
    body = {"username": "bob", "email": "bob@example.com", "password": SECRET_PASSWORD}
    response = client.post("/users", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["username"] == "bob"
    assert SECRET_PASSWORD not in response.text


def test_conflict_from_users_is_a_409(client, users):
    body = {"username": "taken", "email": "t@example.com", "password": SECRET_PASSWORD}
    error = assert_error(client.post("/users", json=body), 409, "conflict")
    assert error["details"] == {"username": ["Already taken."]}


def test_validation_error_from_users_is_a_422_with_its_details(client, users):
    body = {"username": "carol", "email": "refused@example.com", "password": SECRET_PASSWORD}
    error = assert_error(client.post("/users", json=body), 422, "validation_error")
    assert error["details"] == {"email": ["This domain does not accept mail."]}


def test_rate_limited_from_users_is_a_429_with_retry_after(client, users):
    response = client.post("/auth/token", json={"username": "alice", "password": "whatever"})
    assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "30"


def test_a_bug_in_a_backing_service_is_a_logged_500(client, users, caplog):
    body = {"username": "buggy", "email": "b@example.com", "password": SECRET_PASSWORD}
    error = assert_error(client.post("/users", json=body), 500, "internal_error")
    assert "a bug in users" not in error["message"]
    assert any(record.exc_info for record in caplog.records
               if record.name == "services.gateway.http")
    assert SECRET_PASSWORD not in caplog.text


def test_a_slow_service_is_a_503_after_the_timeout(client, users):
    body = {"username": "sleepy", "email": "s@example.com", "password": SECRET_PASSWORD}
    started = time.monotonic()
    error = assert_error(client.post("/users", json=body), 503, "unavailable")
    elapsed = time.monotonic() - started
    assert error["details"] == {"service": "users"}
    assert RPC_TIMEOUT * 0.9 <= elapsed < RPC_TIMEOUT * 2.5


def test_a_service_that_is_not_running_is_a_503_without_waiting(client, make_token):
    started = time.monotonic()
    response = client.get("/users/me", headers=bearer(make_token()))
    error = assert_error(response, 503, "unavailable")
    assert error["details"] == {"service": "users"}
    assert time.monotonic() - started < RPC_TIMEOUT * 2.5


def test_an_admin_write_to_a_stopped_events_service_is_a_503_naming_it(
    client, users, make_token
):
    body = {"title": "Jazz", "starts_at": "2030-01-01T20:00:00+01:00", "topics": ["jazz"]}
    response = client.post("/events", json=body, headers=bearer(make_token("a-1", "admin")))
    error = assert_error(response, 503, "unavailable")
    assert error["details"] == {"service": "events"}


def test_health_marks_the_services_that_do_not_answer(client, users):
    started = time.monotonic()
    response = client.get("/health")
    assert time.monotonic() - started < 4
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["services"] == {"users": "ok", "events": "unavailable",
                                "search": "unavailable", "notifications": "unavailable",
                                "mailer": "unavailable", "alerts": "unavailable"}
    assert body["error"]["code"] == "unavailable"


# --- auth ----------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Bearer not.a.jwt",
    "Bearer a b",
])
def test_a_missing_or_malformed_token_is_a_401(client, users, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/users/me", headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_expired_token_is_a_401(client, users, make_token):
    response = client.get("/users/me", headers=bearer(make_token(expires_in=-10)))
    assert_error(response, 401, "unauthorized")


def test_a_token_signed_with_another_secret_is_a_401(client, users, make_token):
    token = make_token(secret="someone-else-" + "y" * 32)
    assert_error(client.get("/users/me", headers=bearer(token)), 401, "unauthorized")


def test_a_deleted_accounts_token_is_a_401(client, users, make_token):
    token = make_token(sub="u-deleted")
    assert_error(client.get("/users/me", headers=bearer(token)), 401, "unauthorized")


def test_a_valid_token_gets_the_callers_account(client, users, make_token):
    response = client.get("/users/me", headers=bearer(make_token()))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == USERS["u-1"]


def test_delete_me_is_a_204_with_an_empty_body(client, users, make_token):
    response = client.delete("/users/me", headers=bearer(make_token()))
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize("path, status", [
    ("/users/me/emails/old@example.com", 204),
    ("/users/me/emails/a%2Fb%40example.com", 204),
    ("/users/me/emails/a/b@example.com", 204),
    ("/users/me/emails/other@example.com", 404),
])
def test_removing_a_secondary_email_passes_it_on_decoded(client, users, make_token, path,
                                                          status):
    response = client.delete(path, headers=bearer(make_token()))
    assert response.status_code == status, response.text


def test_a_user_token_cannot_create_events(client, users, make_token):
    body = {"title": "Jazz", "starts_at": "2030-01-01T20:00:00+01:00", "topics": ["jazz"]}
    response = client.post("/events", json=body, headers=bearer(make_token()))
    assert_error(response, 403, "forbidden")


def test_auth_comes_before_validation(client, users):
    assert_error(client.post("/events", json={"title": ""}), 401, "unauthorized")


# --- documents -----------------------------------------------------------------------

def test_openapi_document_is_served(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/notifications/{notification_id}/snooze" in document["paths"]


def test_a_body_with_broken_chunk_framing_is_a_400(gateway_config, client):
    host, port = gateway_config["WEB_SERVER_ADDRESS"].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /users HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        )
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] == b"400", reply
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request"
