"""Every row of API.md's Events table (except search, test_search.py), over HTTP."""
import uuid

import pytest

from tests.support.waiting import wait_for

EVENT = {
    "title": "Jazz night",
    "description": "Live quartet",
    "topics": [" Music ", "Jazz"],
    "starts_at": "2031-12-05T20:30:00+01:00",
    "ends_at": "2031-12-05T23:00:00+01:00",
    "timezone": "Europe/Paris",
    "place": {"name": "New Morning", "address": "7 Rue des Petites Écuries", "lat": 48.8729,
              "lng": 2.3526},
    "organizer": "Paris Jazz Club",
}
FIELDS = {"id", "title", "description", "topics", "starts_at", "ends_at", "timezone", "place",
          "organizer", "status", "version", "created_at", "updated_at", "series_id", "recurrence"}


def assert_error(response, status, code, fields=()):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    for field in fields:
        assert field in error["details"], error["details"]


@pytest.fixture
def user_headers(http):
    name = f"u_{uuid.uuid4().hex[:12]}"
    account = {"username": name, "email": f"{name}@example.org", "password": "correct horse 1"}
    assert http.post("/users", json=account).status_code == 201
    token = http.post("/auth/token", json={"username": name, "password": account["password"]})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def create(http, headers, **changes):
    response = http.post("/events", json={**EVENT, **changes}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


# POST /events


def test_an_admin_creates_an_event_visible_at_once(http, admin_headers):
    event = create(http, admin_headers)
    assert set(event) == FIELDS
    assert event["topics"] == ["music", "jazz"]
    assert event["starts_at"] == "2031-12-05T19:30:00Z"
    assert event["ends_at"] == "2031-12-05T22:00:00Z"
    assert event["status"] == "scheduled" and event["version"] == 1
    assert event["created_at"].endswith("Z")
    response = http.get(f"/events/{event['id']}")  # public, and reads the write side
    assert response.status_code == 200 and response.json() == event


def test_creating_needs_an_admin(http, user_headers):
    assert_error(http.post("/events", json=EVENT), 401, "unauthorized")
    assert_error(http.post("/events", json=EVENT, headers=user_headers), 403, "forbidden")


@pytest.mark.parametrize("changes, field", [
    ({"title": ""}, "title"),
    ({"title": {"$gt": ""}}, "title"),
    ({"topics": []}, "topics"),
    ({"starts_at": "2031-12-05T20:30:00"}, "starts_at"),
    ({"ends_at": "2031-12-05T20:00:00+01:00"}, "ends_at"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"status": "postponed"}, "status"),
])
def test_bad_fields_are_422_naming_them(http, admin_headers, changes, field):
    response = http.post("/events", json={**EVENT, **changes}, headers=admin_headers)
    assert_error(response, 422, "validation_error")
    assert any(key.split(".")[0] == field for key in response.json()["error"]["details"])


def test_place_coordinates_out_of_range_are_422(http, admin_headers):
    response = http.post("/events", json={**EVENT, "place": {**EVENT["place"], "lat": 91}},
                         headers=admin_headers)
    assert_error(response, 422, "validation_error")
    assert any(key.startswith("place") for key in response.json()["error"]["details"])


# PATCH /events/{id}


def test_patch_changes_a_subset_and_bumps_the_version(http, admin_headers):
    event = create(http, admin_headers)
    response = http.patch(f"/events/{event['id']}", json={"title": "Jazz night, late set"},
                          headers=admin_headers)
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["title"] == "Jazz night, late set" and changed["version"] == 2
    assert {k: v for k, v in changed.items() if k not in ("title", "version", "updated_at")} \
        == {k: v for k, v in event.items() if k not in ("title", "version", "updated_at")}
    assert http.get(f"/events/{event['id']}").json() == changed


def test_patching_status_cancelled_cancels(http, admin_headers):
    event = create(http, admin_headers)
    response = http.patch(f"/events/{event['id']}", json={"status": "cancelled"},
                          headers=admin_headers)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_patch_keeps_ends_after_starts(http, admin_headers):
    event = create(http, admin_headers)  # ends 22:00Z
    response = http.patch(f"/events/{event['id']}", json={"starts_at": "2031-12-05T23:00:00Z"},
                          headers=admin_headers)
    assert_error(response, 422, "validation_error", ["starts_at"])
    assert http.get(f"/events/{event['id']}").json()["version"] == 1


def test_patch_needs_an_admin(http, admin_headers, user_headers):
    event = create(http, admin_headers)
    assert_error(http.patch(f"/events/{event['id']}", json={"title": "x"}), 401,
                 "unauthorized")
    assert_error(http.patch(f"/events/{event['id']}", json={"title": "x"},
                            headers=user_headers), 403, "forbidden")


# DELETE /events/{id}


def test_delete_is_204_then_the_event_is_gone(http, admin_headers):
    event = create(http, admin_headers)
    response = http.delete(f"/events/{event['id']}", headers=admin_headers)
    assert response.status_code == 204 and not response.content
    assert_error(http.get(f"/events/{event['id']}"), 404, "not_found")
    assert_error(http.delete(f"/events/{event['id']}", headers=admin_headers), 404,
                 "not_found")
    assert_error(http.patch(f"/events/{event['id']}", json={"title": "x"},
                            headers=admin_headers), 404, "not_found")


def test_delete_needs_an_admin(http, admin_headers, user_headers):
    event = create(http, admin_headers)
    assert_error(http.delete(f"/events/{event['id']}", headers=user_headers), 403, "forbidden")
    assert http.get(f"/events/{event['id']}").status_code == 200


# GET /events/{id}


@pytest.mark.parametrize("event_id", ["nope", "0" * 32, "%7B%22%24ne%22%3A1%7D", "A" * 32])
def test_malformed_or_unknown_ids_are_404(http, admin_headers, event_id):
    assert_error(http.get(f"/events/{event_id}"), 404, "not_found")
    assert_error(http.patch(f"/events/{event_id}", json={"title": "x"}, headers=admin_headers),
                 404, "not_found")
    assert_error(http.delete(f"/events/{event_id}", headers=admin_headers), 404, "not_found")


# Optimistic concurrency (issue 9): retried, then 409, never 500


def test_twenty_parallel_patches_of_one_event_are_200s_and_409s_and_none_is_lost(
        http, admin_headers, system):
    from concurrent.futures import ThreadPoolExecutor

    import requests

    event = create(http, admin_headers)
    url = f"{system.base_url.rstrip('/')}/events/{event['id']}"

    def patch(number):
        return requests.patch(url, json={"description": f"change {number}"},
                              headers=admin_headers, timeout=30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(patch, range(20)))
    statuses = sorted(r.status_code for r in responses)
    # 503 is the availability answer (the events service did not answer within the RPC
    # timeout, as happens on a heavily loaded machine), not the concurrency one: allowed,
    # but such a change may or may not have been applied.
    assert set(statuses) <= {200, 409, 503}, [(r.status_code, r.text) for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "conflict"
    succeeded, unknown = statuses.count(200), statuses.count(503)
    assert succeeded >= 1
    # The e2e system runs two gateways: the one that answers this GET may not have
    # applied the last change yet (its event reaches it within a second, API.md), so
    # wait for the change count; losing one would leave it short forever.
    def read_event():
        return http.get(f"/events/{event['id']}").json()
    wait_for(lambda: read_event()["version"] >= succeeded + 1, timeout=5)
    final = read_event()
    if unknown == 0:
        assert final["version"] == succeeded + 1
    else:
        assert succeeded + 1 <= final["version"] <= succeeded + unknown + 1
    # every 200 answered a distinct version
    versions = [r.json()["version"] for r in responses if r.status_code == 200]
    assert len(set(versions)) == succeeded and max(versions) <= final["version"]
