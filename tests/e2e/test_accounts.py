"""Every row of API.md's Accounts table, over HTTP, against the system as `invoke run` starts it."""
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.helpers import ClientAt, assert_error, login, new_account
from tests.support.waiting import wait_for


def register(http, account=None):
    account = account or new_account()
    response = http.post("/users", json=account)
    assert response.status_code == 201, response.text
    return account, response.json()


# POST /users


def test_register_returns_the_user_without_secrets(http):
    account, user = register(http)
    assert set(user) == {"id", "username", "email", "secondary_emails", "role", "created_at",
                         "version"}
    assert user["username"] == account["username"]
    assert user["email"] == account["email"]
    assert user["secondary_emails"] == []
    assert user["role"] == "user"
    assert user["created_at"].endswith("Z")
    assert account["password"] not in json.dumps(user)


def test_register_sends_one_welcome_email(http, system):
    account, user = register(http)
    [welcome] = system.wait_for_mail(to=account["email"], subject="Welcome")
    assert user["username"] in welcome.text
    assert account["password"] not in welcome.text
    assert len(system.mails_to(account["email"])) == 1


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_register_names_each_missing_field(http, missing):
    body = new_account()
    del body[missing]
    assert_error(http.post("/users", json=body), 422, "validation_error", [missing])


@pytest.mark.parametrize(
    "field, value",
    [
        ("username", 123),
        ("username", "ab"),
        ("username", "x" * 31),
        ("username", "Has Space"),
        ("username", {"$ne": ""}),
        ("email", "not-an-email"),
        ("email", ["a@example.org"]),
        ("email", {"$gt": ""}),
        ("password", "short7!"),
        ("password", "x" * 257),
        ("password", 12345678),
        ("password", None),
    ],
)
def test_register_rejects_bad_values_and_stores_nothing(http, field, value):
    body = new_account()
    body[field] = value
    assert_error(http.post("/users", json=body), 422, "validation_error", [field])
    if field != "username":  # nothing stored: the username is still free
        register(http, {**body, field: new_account()[field]})


def test_register_accepts_the_length_boundaries(http):
    account = new_account()
    account["username"] = ("b" + uuid.uuid4().hex)[:3]
    account["password"] = "p" * 8
    register(http, account)
    other = new_account()
    other["username"] = ("c" + uuid.uuid4().hex * 2)[:30]
    other["password"] = "p" * 256
    register(http, other)


def test_register_refuses_unknown_fields(http):
    body = {**new_account(), "role": "admin"}
    assert_error(http.post("/users", json=body), 422, "validation_error", ["role"])


@pytest.mark.parametrize(
    "data, content_type",
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"a string"', "application/json"),
        ("username=a&password=b", "application/x-www-form-urlencoded"),
    ],
)
def test_register_with_a_body_that_is_not_a_json_object_is_a_400(http, data, content_type):
    response = http.post("/users", data=data, headers={"Content-Type": content_type})
    assert_error(response, 400, "bad_request")


def test_register_with_an_oversized_body_is_a_413(http):
    body = {**new_account(), "password": "x" * (64 * 1024)}
    assert_error(http.post("/users", json=body), 413, "payload_too_large")


def test_duplicate_username_is_a_409_whatever_the_case(http):
    account, _ = register(http)
    again = {**new_account(), "username": account["username"]}
    assert_error(http.post("/users", json=again), 409, "conflict")
    upper = {**new_account(), "username": account["username"].upper()}
    response = http.post("/users", json=upper)
    assert response.status_code in (409, 422)  # upper case is not even a valid username


def test_duplicate_email_is_a_409_across_primary_and_secondary_emails(http):
    account, _ = register(http)
    clash = {**new_account(), "email": account["email"].upper()}
    assert_error(http.post("/users", json=clash), 409, "conflict", ["email"])

    headers = login(http, account)
    secondary = f"second_{uuid.uuid4().hex[:8]}@example.org"
    added = http.post("/users/me/emails", json={"email": secondary}, headers=headers)
    assert added.status_code == 201
    clash = {**new_account(), "email": secondary}
    assert_error(http.post("/users", json=clash), 409, "conflict", ["email"])


# POST /auth/token


def test_token_by_username_and_by_email(http):
    account, user = register(http)
    for credentials in ({"username": account["username"]}, {"email": account["email"]}):
        response = http.post("/auth/token", json={**credentials, "password": account["password"]})
        assert response.status_code == 200, response.text
        token = response.json()
        assert token["token_type"] == "bearer"
        assert isinstance(token["expires_in"], int) and token["expires_in"] > 0
        me = http.get("/users/me", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert me.json()["id"] == user["id"]


def test_wrong_password_and_unknown_user_get_the_same_401(http):
    account, _ = register(http)
    wrong = http.post("/auth/token", json={"username": account["username"], "password": "nope" * 3})
    unknown = http.post("/auth/token", json={"username": "nobody_" + uuid.uuid4().hex[:8],
                                            "password": "whatever1"})
    assert_error(wrong, 401, "unauthorized")
    assert_error(unknown, 401, "unauthorized")
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_operator_objects_in_credentials_never_log_in(http):
    account, _ = register(http)
    response = http.post("/auth/token", json={"username": account["username"],
                                              "password": {"$ne": ""}})
    assert_error(response, 422, "validation_error", ["password"])
    response = http.post("/auth/token", json={"username": {"$ne": ""}, "password": "x" * 9})
    assert_error(response, 422, "validation_error", ["username"])


def attempts_until_refused(client, credentials, most=10):
    answers = []
    for _ in range(most):
        answers.append(client.post("/auth/token", json=credentials))
        if answers[-1].status_code == 429:
            break
    return answers


def test_a_strangers_failed_logins_refuse_the_stranger_not_the_owner(http, system):
    account, _ = register(http)
    right = {"username": account["username"], "password": account["password"]}
    with ClientAt(system.base_url, "127.0.0.2") as stranger, \
            ClientAt(system.base_url, "127.0.0.3") as owner:
        answers = attempts_until_refused(stranger, {**right, "password": "wrong-password"})
        assert [a.status_code for a in answers] == [401] * 5 + [429]
        assert_error(answers[-1], 429, "rate_limited")
        assert 0 < int(answers[-1].headers["Retry-After"]) <= 15 * 60
        # that client is refused even with the right password: it cannot go on guessing
        assert_error(stranger.post("/auth/token", json=right), 429, "rate_limited")
        # the owner, from elsewhere, is never refused (the gateway passes the address on)
        assert owner.post("/auth/token", json=right).status_code == 200
        assert owner.post("/auth/token", json={"email": account["email"],
                                               "password": account["password"]}).status_code == 200


def without_wait(body):
    """The body with Retry-After's seconds left out (they count down between the two)."""
    details = dict(body["error"]["details"])
    if "retry_after" in details:
        details["retry_after"] = int(details["retry_after"]) > 0
    return {"error": {**body["error"], "details": details}}


def headers_of(answer):
    return {name.lower() for name in answer.headers} - {"date", "x-eventpost-gateway"}


def test_throttling_answers_unknown_names_as_it_answers_known_ones(http, system):
    account, _ = register(http)
    unknown = "nobody_" + uuid.uuid4().hex[:8]
    with ClientAt(system.base_url, "127.0.0.4") as client:
        known_answers = attempts_until_refused(
            client, {"username": account["username"], "password": "wrong-password"})
        unknown_answers = attempts_until_refused(
            client, {"username": unknown, "password": "wrong-password"})
    assert [a.status_code for a in known_answers] == [a.status_code for a in unknown_answers]
    for known, other in zip(known_answers, unknown_answers, strict=True):
        assert without_wait(known.json()) == without_wait(other.json())
        assert headers_of(known) == headers_of(other)
    assert "Retry-After" in known_answers[-1].headers
    assert "Retry-After" in unknown_answers[-1].headers


# POST /users/me/password


def test_change_password_checks_the_current_one_and_the_new_ones_rule(http):
    account, _ = register(http)
    headers = login(http, account)
    wrong = http.post("/users/me/password", headers=headers, json={
        "current_password": "not it at all", "new_password": "a new long password"})
    assert_error(wrong, 401, "unauthorized")
    short = http.post("/users/me/password", headers=headers, json={
        "current_password": account["password"], "new_password": "short"})
    assert_error(short, 422, "validation_error", ["new_password"])
    missing = http.post("/users/me/password", headers=headers, json={"new_password": "x" * 9})
    assert_error(missing, 422, "validation_error", ["current_password"])
    assert_error(http.post("/users/me/password", json={
        "current_password": account["password"], "new_password": "a new long password"}),
        401, "unauthorized")
    # none of these changed anything: the token and the password still work
    assert http.get("/users/me", headers=headers).status_code == 200
    login(http, account)


# GET /users/me


def test_me_needs_a_valid_bearer_token(http):
    assert_error(http.get("/users/me"), 401, "unauthorized")
    assert_error(http.get("/users/me", headers={"Authorization": "Bearer garbage"}),
                 401, "unauthorized")
    assert_error(http.get("/users/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
                 401, "unauthorized")


def test_me_returns_the_caller(http):
    account, user = register(http)
    response = http.get("/users/me", headers=login(http, account))
    assert response.status_code == 200
    assert response.json() == user


# PATCH /users/me


def test_change_primary_email(http):
    account, _ = register(http)
    headers = login(http, account)
    new_email = f"new_{uuid.uuid4().hex[:8]}@example.org"
    response = http.patch("/users/me", json={"email": new_email}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["email"] == new_email
    assert http.get("/users/me", headers=headers).json()["email"] == new_email
    by_email = http.post("/auth/token", json={"email": new_email, "password": account["password"]})
    assert by_email.status_code == 200


def test_change_primary_email_to_a_taken_or_bad_one(http):
    other, _ = register(http)
    account, _ = register(http)
    headers = login(http, account)
    assert_error(http.patch("/users/me", json={"email": other["email"]}, headers=headers),
                 409, "conflict", ["email"])
    assert_error(http.patch("/users/me", json={"email": "bad"}, headers=headers),
                 422, "validation_error", ["email"])
    assert_error(http.patch("/users/me", json={"email": {"$ne": ""}}, headers=headers),
                 422, "validation_error", ["email"])
    assert_error(http.patch("/users/me", json={}, headers=headers), 422, "validation_error")
    assert http.get("/users/me", headers=headers).json()["email"] == account["email"]


def test_parallel_email_changes_are_answered_and_none_is_lost(http, system):
    """Optimistic concurrency (issue 9) on an account: secondary emails added and the
    primary changed at once, each on a connection of its own (either gateway). Every
    answer is a success or a 409, never a 500; every added email that was answered 201
    stays, and the primary is one that was answered 200."""
    account, _ = register(http)
    headers = login(http, account)
    tag = uuid.uuid4().hex[:8]
    requested = [("POST", "/users/me/emails", f"alt{n}_{tag}@example.org") for n in range(8)]
    requested += [("PATCH", "/users/me", f"new{n}_{tag}@example.org") for n in range(4)]
    base = system.base_url.rstrip("/")

    def send(request):
        method, path, address = request
        return requests.request(method, base + path, json={"email": address},
                                headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=len(requested)) as pool:
        responses = list(pool.map(send, requested))
    answers = [(r.status_code, r.text) for r in responses]
    # 503: the availability answer on a loaded machine (the change may or may not be made)
    assert {r.status_code for r in responses} <= {200, 201, 409, 503}, answers
    assert all(r.json()["error"]["code"] == "conflict" for r in responses
               if r.status_code == 409), answers
    outcomes = list(zip(requested, responses, strict=True))
    added = {address for (_, _, address), r in outcomes if r.status_code == 201}
    primaries = {address for (_, _, address), r in outcomes if r.status_code == 200}
    assert added or primaries, answers
    unknown = any(r.status_code == 503 for r in responses)
    tried = {address for _, _, address in requested} | {account["email"]}

    def settled():
        """GET /users/me, once the answering gateway's account shows every change
        answered (the other gateway applies them from the event stream); a lost one
        would keep it short for good."""
        me = http.get("/users/me", headers=headers).json()
        primary_ok = me["email"] in (primaries or {account["email"]}) or unknown
        if (added <= set(me["secondary_emails"]) and primary_ok
                and {me["email"], *me["secondary_emails"]} <= tried):
            return me
        return None

    assert wait_for(settled, timeout=5), (http.get("/users/me", headers=headers).json(),
                                          answers)


# POST /users/me/emails and DELETE /users/me/emails/{email}


def test_add_and_remove_a_secondary_email(http):
    account, _ = register(http)
    headers = login(http, account)
    secondary = f"alt_{uuid.uuid4().hex[:8]}@example.org"
    response = http.post("/users/me/emails", json={"email": secondary}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["secondary_emails"] == [secondary]
    assert_error(http.post("/users/me/emails", json={"email": secondary}, headers=headers),
                 409, "conflict", ["email"])

    response = http.delete(f"/users/me/emails/{secondary}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert http.get("/users/me", headers=headers).json()["secondary_emails"] == []
    assert_error(http.delete(f"/users/me/emails/{secondary}", headers=headers), 404, "not_found")


def test_add_email_rejects_bad_input(http):
    account, _ = register(http)
    headers = login(http, account)
    for body, field in (({}, "email"), ({"email": "nope"}, "email"), ({"email": 5}, "email")):
        assert_error(http.post("/users/me/emails", json=body, headers=headers),
                     422, "validation_error", [field])
    assert_error(http.post("/users/me/emails", data="[]",
                           headers={**headers, "Content-Type": "application/json"}),
                 400, "bad_request")


def test_removing_another_users_email_is_a_404(http):
    other, _ = register(http)
    account, _ = register(http)
    assert_error(http.delete(f"/users/me/emails/{other['email']}", headers=login(http, account)),
                 404, "not_found")


# DELETE /users/me


def test_delete_account_revokes_the_token_and_frees_the_username(http):
    account, _ = register(http)
    headers = login(http, account)
    response = http.delete("/users/me", headers=headers)
    assert response.status_code == 204
    assert_error(http.get("/users/me", headers=headers), 401, "unauthorized")
    assert_error(http.post("/auth/token", json={"username": account["username"],
                                                "password": account["password"]}),
                 401, "unauthorized")
    register(http, account)  # username and email are free again


# the error format everywhere


def test_unknown_routes_and_methods_use_the_error_format(http):
    assert_error(http.get("/no/such/route"), 404, "not_found")
    assert_error(http.put("/users/me", json={}), 405, "method_not_allowed")
