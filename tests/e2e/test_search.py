"""GET /events (search) over HTTP: every parameter of API.md's table, and its 422s.

Each test tags its events with a topic of its own, so tests sharing the session's
system never see each other's events. Writes reach search through the projection;
tests poll for them (API.md: within a second), never sleep a fixed time.
"""
import math
import time
import uuid

import pytest
import requests

from tests.e2e.helpers import assert_hand_made_cursors_refused
from tests.unit.bus.test_cursors import HOSTILE

EARTH_RADIUS_KM = 6378.1  # the sphere MongoDB's $geoNear measures on
PARIS = (48.8566, 2.3522)


def north_of(km, origin=PARIS):
    return origin[0] + math.degrees(km / EARTH_RADIUS_KM), origin[1]


@pytest.fixture(scope="module")
def admin_headers(system):
    user, password = system.create_admin()
    response = requests.post(f"{system.base_url}/auth/token",
                             json={"username": user["username"], "password": password},
                             timeout=30)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def tag():
    return f"t{uuid.uuid4().hex[:10]}"


def add(http, headers, tag, title, starts_at="2032-05-01T19:00:00Z", km=1.0, topics=(),
        **more):
    lat, lng = north_of(km)
    body = {"title": title, "topics": [tag, *topics], "starts_at": starts_at,
            "place": {"name": f"{title} hall", "address": None, "lat": lat, "lng": lng},
            **more}
    response = http.post("/events", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def search(http, **params):
    response = http.get("/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def titles(page):
    return [item["title"] for item in page["items"]]


def eventually(check, timeout=1.0):
    """Poll until ``check()`` is truthy; API.md promises search within a second."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"not visible in search within {timeout}s"
            return result
        time.sleep(0.02)


def projected(http, tag, count, **params):
    params = {"topic": tag, "from": "2000-01-01T00:00:00Z", "status": "all", "limit": 100,
              **params}
    return eventually(lambda: len(search(http, **params)["items"]) == count)


def assert_422(response, parameter):
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert parameter in error["details"], error["details"]


def test_a_new_event_shows_up_within_a_second_and_changes_follow(http, admin_headers, tag):
    event = add(http, admin_headers, tag, "Jazz night")
    projected(http, tag, 1)
    [found] = search(http, topic=tag, **{"from": "2032-01-01T00:00:00Z"})["items"]
    assert found == event

    http.patch(f"/events/{event['id']}", json={"title": "Jazz night (moved)"},
               headers=admin_headers)
    eventually(lambda: titles(search(http, topic=tag, **{"from": "2032-01-01T00:00:00Z"}))
               == ["Jazz night (moved)"])
    http.delete(f"/events/{event['id']}", headers=admin_headers)
    projected(http, tag, 0)


def test_topic_is_any_of_case_insensitive_repeatable_or_comma_separated(http, admin_headers,
                                                                         tag):
    add(http, admin_headers, tag, "Gig", "2032-05-01T10:00:00Z", topics=["music"])
    add(http, admin_headers, tag, "Hack", "2032-05-01T11:00:00Z", topics=["tech"])
    add(http, admin_headers, tag + "x", "Other", "2032-05-01T12:00:00Z")
    projected(http, tag, 2)
    window = {"from": "2032-05-01T00:00:00Z", "to": "2032-05-02T00:00:00Z"}
    assert titles(search(http, topic=tag.upper(), **window)) == ["Gig", "Hack"]
    assert titles(search(http, topic=[tag, tag + "x"], **window)) == ["Gig", "Hack", "Other"]
    assert titles(search(http, topic=f"{tag},{tag}x", **window)) == ["Gig", "Hack", "Other"]


def test_q_needs_every_word_in_title_description_topics_or_place(http, admin_headers, tag):
    add(http, admin_headers, tag, "Python meetup", "2032-05-01T10:00:00Z",
        description="Talks about asyncio")
    add(http, admin_headers, tag, "Rust meetup", "2032-05-01T11:00:00Z")
    projected(http, tag, 2)
    assert titles(search(http, topic=tag, q="MEETUP", **{"from": "2032-01-01T00:00:00Z"})) == [
        "Python meetup", "Rust meetup"]
    assert titles(search(http, topic=tag, q="meetup asyncio",
                         **{"from": "2032-01-01T00:00:00Z"})) == ["Python meetup"]
    assert titles(search(http, topic=tag, q="rust hall", **{"from": "2032-01-01T00:00:00Z"})) \
        == ["Rust meetup"]  # place name
    assert titles(search(http, q=f"{tag} python", **{"from": "2032-01-01T00:00:00Z"})) == [
        "Python meetup"]  # topics
    assert titles(search(http, topic=tag, q="meetup opera",
                         **{"from": "2032-01-01T00:00:00Z"})) == []


def test_from_to_is_half_open_and_from_defaults_to_now(http, admin_headers, tag):
    add(http, admin_headers, tag, "At from", "2032-05-01T10:00:00Z")
    add(http, admin_headers, tag, "At to", "2032-05-01T12:00:00Z")
    add(http, admin_headers, tag, "Past", "2001-05-01T12:00:00Z")
    projected(http, tag, 3)
    assert titles(search(http, topic=tag, **{"from": "2032-05-01T10:00:00Z",
                                             "to": "2032-05-01T12:00:00Z"})) == ["At from"]
    assert titles(search(http, topic=tag, **{"from": "2032-05-01T11:00:00+01:00",
                                             "to": "2032-05-01T13:00:00+01:00"})) == ["At from"]
    assert titles(search(http, topic=tag)) == ["At from", "At to"]  # upcoming only
    assert_422(http.get("/events", params={"from": "2032-05-01T10:00:00"}), "from")
    assert_422(http.get("/events", params={"to": "soon"}), "to")


def test_near_and_radius_with_distance(http, admin_headers, tag):
    add(http, admin_headers, tag, "Inside", km=9.99)
    add(http, admin_headers, tag, "Outside", km=10.01)
    add(http, admin_headers, tag, "Centre", km=0.5)
    projected(http, tag, 3)
    near = f"{PARIS[0]},{PARIS[1]}"
    page = search(http, topic=tag, near=near, sort="distance", **{"from": "2032-01-01T00:00:00Z"})
    assert titles(page) == ["Centre", "Inside"]  # radius_km defaults to 10
    assert [item["distance_km"] for item in page["items"]] == [0.5, 9.99]
    assert len(search(http, topic=tag, near=near, radius_km=10.02,
                      **{"from": "2032-01-01T00:00:00Z"})["items"]) == 3
    assert "distance_km" not in search(http, topic=tag, **{"from": "2032-01-01T00:00:00Z"})[
        "items"][0]
    for params, parameter in [({"near": "91,0"}, "near"), ({"near": "abc"}, "near"),
                              ({"near": near, "radius_km": "501"}, "radius_km"),
                              ({"near": near, "radius_km": "0"}, "radius_km"),
                              ({"sort": "distance"}, "sort"), ({"sort": "title"}, "sort")]:
        assert_422(http.get("/events", params=params), parameter)


def test_status_scheduled_cancelled_all(http, admin_headers, tag):
    add(http, admin_headers, tag, "On", "2032-05-01T10:00:00Z")
    off = add(http, admin_headers, tag, "Off", "2032-05-01T11:00:00Z")
    http.patch(f"/events/{off['id']}", json={"status": "cancelled"}, headers=admin_headers)
    eventually(lambda: titles(search(http, topic=tag, status="cancelled")) == ["Off"])
    assert titles(search(http, topic=tag)) == ["On"]
    assert titles(search(http, topic=tag, status="all")) == ["On", "Off"]
    assert_422(http.get("/events", params={"status": "deleted"}), "status")


def test_paging_through_everything_while_events_are_added(http, admin_headers, tag):
    for i in range(7):
        add(http, admin_headers, tag, f"E{i}", f"2032-05-0{1 + i % 3}T10:00:00Z")
    projected(http, tag, 7)
    seen, cursor = [], None
    while True:
        params = {"topic": tag, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = search(http, **params)
        seen += [item["id"] for item in page["items"]]
        add(http, admin_headers, tag, "Added", "2032-04-01T10:00:00Z")  # before the position
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert_422(http.get("/events", params={"cursor": "not-ours"}), "cursor")
    for limit in ("0", "101", "x"):
        assert_422(http.get("/events", params={"limit": limit}), "limit")


def test_a_hand_made_cursor_is_answered_naming_it(http):
    """What the unit tests throw at the codec, at GET /events (the gateway's read model),
    sorted by start and by distance: never a 500 (issue 9)."""
    for path in ("/events", f"/events?near={PARIS[0]},{PARIS[1]}&sort=distance"):
        assert_hand_made_cursors_refused(http, path, HOSTILE)


def test_an_event_in_year_9000_and_the_last_day_of_the_calendar_are_answered(
        http, admin_headers, tag):
    near = add(http, admin_headers, tag, "Next spring", "2032-05-01T19:00:00Z")
    far = add(http, admin_headers, tag, "Far future", "9000-01-01T19:00:00Z")
    projected(http, tag, 2)
    to_the_end = {"topic": tag, "to": "9999-12-30T00:00:00Z"}
    assert titles(search(http, **to_the_end)) == ["Next spring", "Far future"]
    assert titles(search(http, topic=tag, near=f"{PARIS[0]},{PARIS[1]}", radius_km=50,
                         **{"from": "8999-12-31T00:00:00Z"})) == ["Far future"]
    assert http.delete(f"/events/{far['id']}", headers=admin_headers).status_code == 204
    eventually(lambda: titles(search(http, **to_the_end)) == ["Next spring"])
    assert [e["id"] for e in search(http, topic=tag)["items"]] == [near["id"]]
