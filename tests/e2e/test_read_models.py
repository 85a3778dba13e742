"""The gateway's in-memory read models, seen from outside: two gateway processes on one
port (the e2e system runs two), each current within a second of a write made through
the other, and tokens that follow their account's deletion and role at once."""
import time
import uuid

import requests

from tests.e2e.conftest import E2E_INSTANCES
from tests.e2e.helpers import login, new_account

PROCESS_HEADER = "X-EventPost-Gateway"
EVENT = {"title": "Read model check", "topics": ["readmodel"],
         "starts_at": "2032-03-01T19:00:00+01:00"}


def fresh(system, method, path, **kwargs):
    """One request on a new connection: the kernel picks the gateway process."""
    kwargs.setdefault("timeout", 10)
    response = requests.request(method, system.base_url + path,
                                headers={"Connection": "close", **kwargs.pop("headers", {})},
                                **kwargs)
    return response.headers.get(PROCESS_HEADER), response


def until_every_process(system, path, agrees, headers=None, timeout=1.0):
    """GET ``path`` over new connections until each gateway process gave a response
    that ``agrees(response)``; returns {process: seconds until it did}. Fails after
    ``timeout`` (a second: API.md's bound for search) if one never did."""
    started = time.monotonic()
    agreed = {}
    while True:
        process, response = fresh(system, "GET", path, headers=headers or {})
        if process not in agreed and agrees(response):
            agreed[process] = time.monotonic() - started
        if len(agreed) == E2E_INSTANCES["gateway"]:
            return agreed
        assert time.monotonic() - started < timeout, f"only {sorted(agreed)} agreed in time"


def test_both_gateway_processes_serve_the_one_port(system):
    seen = set()
    for _ in range(200):
        process, response = fresh(system, "GET", "/health")
        assert response.status_code == 200
        seen.add(process)
        if len(seen) == E2E_INSTANCES["gateway"]:
            break
    assert len(seen) == E2E_INSTANCES["gateway"] == 2


def test_a_write_through_one_process_is_searchable_in_every_process_within_a_second(
        system, http, admin_headers):
    topic = f"rm{uuid.uuid4().hex[:10]}"
    created = http.post("/events", json={**EVENT, "topics": [topic]}, headers=admin_headers)
    assert created.status_code == 201, created.text
    event = created.json()
    # the process that took the write shows it at once, on the same connection
    assert http.get(f"/events?topic={topic}").json()["items"] == [event]

    def listed(response):
        return response.json()["items"] == [event]

    until_every_process(system, f"/events?topic={topic}", listed)

    changed = http.patch(f"/events/{event['id']}", json={"title": "Moved"},
                         headers=admin_headers)
    assert changed.status_code == 200
    until_every_process(system, f"/events?topic={topic}",
                        lambda r: [e["title"] for e in r.json()["items"]] == ["Moved"])
    until_every_process(system, f"/events/{event['id']}", lambda r: r.json()["version"] == 2)

    assert http.delete(f"/events/{event['id']}", headers=admin_headers).status_code == 204
    assert http.get(f"/events/{event['id']}").status_code == 404
    until_every_process(system, f"/events/{event['id']}", lambda r: r.status_code == 404)
    until_every_process(system, f"/events?topic={topic}", lambda r: r.json()["items"] == [])


def test_a_deleted_accounts_token_stops_working_in_every_process(system, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    headers = login(http, account)
    until_every_process(system, "/users/me", lambda r: r.status_code == 200, headers)
    assert http.delete("/users/me", headers=headers).status_code == 204
    assert http.get("/users/me", headers=headers).status_code == 401  # at once, here
    until_every_process(system, "/users/me", lambda r: r.status_code == 401, headers)


def test_a_promoted_account_is_admin_with_the_token_it_already_has(system, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    headers = login(http, account)
    assert http.post("/events", json=EVENT, headers=headers).status_code == 403
    system.create_admin(username=account["username"], email=account["email"])
    until_every_process(system, "/users/me", lambda r: r.json()["role"] == "admin", headers)
    created = http.post("/events", json=EVENT, headers=headers)
    assert created.status_code == 201, created.text
    assert http.delete(f"/events/{created.json()['id']}", headers=headers).status_code == 204


def test_an_email_change_is_read_back_at_once_and_everywhere_soon(system, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    headers = login(http, account)
    new_email = f"new_{uuid.uuid4().hex[:8]}@example.org"
    assert http.patch("/users/me", json={"email": new_email}, headers=headers).status_code == 200
    assert http.get("/users/me", headers=headers).json()["email"] == new_email
    until_every_process(system, "/users/me", lambda r: r.json()["email"] == new_email,
                        headers)


def test_a_password_change_revokes_older_tokens_in_every_process(system, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    old, other_old = login(http, account), login(http, account)
    until_every_process(system, "/users/me", lambda r: r.status_code == 200, old)
    new_password = "a new long password"
    changed = http.post("/users/me/password", headers=old, json={
        "current_password": account["password"], "new_password": new_password})
    assert (changed.status_code, changed.content) == (204, b"")
    assert http.get("/users/me", headers=old).status_code == 401  # at once, here
    until_every_process(system, "/users/me", lambda r: r.status_code == 401, other_old)
    # the old password no longer logs in; the new one does, and its token works everywhere
    assert http.post("/auth/token", json={"username": account["username"],
                                          "password": account["password"]}).status_code == 401
    new = login(http, {**account, "password": new_password})
    until_every_process(system, "/users/me", lambda r: r.status_code == 200, new)
