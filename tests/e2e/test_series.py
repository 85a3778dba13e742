"""API.md v1.1, "Events, added: recurring events": series over HTTP."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import uuid

import pytest

from tests.e2e.helpers import assert_error
from tests.e2e.reminders_support import (
    Person,
    create_reminder,
    get_reminder,
    no_more_mail,
    parse,
    stamp,
    wait_for_reminder,
)
from tests.support.waiting import wait_for

MADRID = ZoneInfo("Europe/Madrid")
SERIES = {
    "title": "Tuesday choir",
    "topics": ["music"],
    # Sunday 2031-10-19, 19:00 in Madrid (summer time); the clocks go back on the 26th
    "starts_at": "2031-10-19T19:00:00+02:00",
    "ends_at": "2031-10-19T21:00:00+02:00",
    "timezone": "Europe/Madrid",
}


def create(http, headers, **changes):
    response = http.post("/events", json={**SERIES, **changes}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def local(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(MADRID)


def search(http, **params):
    response = http.get("/events", params={"from": "2031-01-01T00:00:00Z", "limit": 100,
                                           **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def occurrences(http, series_id, count):
    """The series' occurrences from GET /events?series_id=, once there are ``count``
    (another gateway process learns of them from the event stream)."""
    return settled(http, series_id, lambda items: len(items) == count)


def settled(http, series_id, check, timeout=10, **params):
    """The series' occurrences from GET /events?series_id= once ``check(items)`` holds
    (on whichever gateway process answers)."""
    seen = {}

    def found():
        seen["items"] = search(http, series_id=series_id, **params)
        return check(seen["items"])

    assert wait_for(found, timeout=timeout), seen
    return seen["items"]


def test_a_weekly_series_keeps_19_00_local_across_the_october_change(http, admin_headers):
    first = create(http, admin_headers, recurrence="FREQ=WEEKLY;COUNT=3")
    assert first["series_id"] and first["recurrence"] == "FREQ=WEEKLY;COUNT=3"
    assert first["starts_at"] == "2031-10-19T17:00:00Z"
    found = occurrences(http, first["series_id"], 3)
    assert found[0] == first
    starts = [local(e["starts_at"]) for e in found]
    assert [s.hour for s in starts] == [19, 19, 19]
    assert [s.utcoffset() for s in starts] == [timedelta(hours=2), timedelta(hours=1),
                                               timedelta(hours=1)]
    assert [e["starts_at"] for e in found] == ["2031-10-19T17:00:00Z", "2031-10-26T18:00:00Z",
                                               "2031-11-02T18:00:00Z"]
    assert [local(e["ends_at"]) - local(e["starts_at"]) for e in found] == \
        [timedelta(hours=2)] * 3
    assert len({e["id"] for e in found}) == 3
    assert {e["series_id"] for e in found} == {first["series_id"]}
    assert all(e["version"] == 1 for e in found)


def test_get_series_counts_occurrences_and_gives_the_next(http, admin_headers):
    first = create(http, admin_headers, recurrence="FREQ=MONTHLY;BYDAY=1FR;COUNT=4",
                   starts_at="2031-01-03T18:00:00Z", ends_at=None, timezone="UTC")
    response = http.get(f"/series/{first['series_id']}")
    assert response.status_code == 200, response.text
    series = response.json()
    assert set(series) == {"id", "recurrence", "occurrences", "next"}
    assert series["id"] == first["series_id"]
    assert series["recurrence"] == "FREQ=MONTHLY;BYDAY=1FR;COUNT=4"
    assert series["occurrences"] == 4
    assert series["next"]["id"] == first["id"]
    assert series["next"]["starts_at"] == "2031-01-03T18:00:00Z"


def test_an_unknown_series_is_a_404(http):
    assert_error(http.get(f"/series/{'0' * 32}"), 404, "not_found")
    assert_error(http.get("/series/nope"), 404, "not_found")


def test_series_id_search_finds_only_that_series(http, admin_headers):
    one = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=2")
    other = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=3")
    single = http.post("/events", json=SERIES, headers=admin_headers).json()
    assert single["series_id"] is None and single["recurrence"] is None
    for series, count in ((one, 2), (other, 3)):
        items = occurrences(http, series["series_id"], count)
        assert {e["series_id"] for e in items} == {series["series_id"]}
    assert search(http, series_id="0" * 32) == []
    # from a year ago: beyond the gateway's in-memory window, the search service answers
    assert wait_for(lambda: len(search(http, series_id=other["series_id"],
                                       **{"from": "2026-01-01T00:00:00Z"})) == 3)
    feed = http.get("/events.ics", params={"series_id": one["series_id"],
                                           "from": "2031-01-01T00:00:00Z"})
    assert feed.status_code == 200 and feed.text.count("BEGIN:VEVENT") == 2


@pytest.mark.parametrize("rule, says", [
    ("FREQ=DAILY;COUNT=501", "COUNT"),
    ("FREQ=WEEKLY;UNTIL=20331020T000000Z", "2 years"),
    ("FREQ=YEARLY;COUNT=2", "FREQ"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1;COUNT=2", "BYSETPOS"),
    ("FREQ=DAILY;COUNT=2;UNTIL=20311101T000000Z", "exactly one"),
    ("FREQ=DAILY", "exactly one"),
    (42, None),
])
def test_bad_rules_are_422_naming_recurrence(http, admin_headers, rule, says):
    response = http.post("/events", json={**SERIES, "recurrence": rule}, headers=admin_headers)
    assert_error(response, 422, "validation_error", ["recurrence"])
    if says:
        assert says in " ".join(response.json()["error"]["details"]["recurrence"])


def test_patch_and_delete_of_an_occurrence_act_on_it_only(http, admin_headers):
    first = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=3")
    items = occurrences(http, first["series_id"], 3)
    changed = http.patch(f"/events/{items[1]['id']}", json={"title": "Moved rehearsal"},
                         headers=admin_headers)
    assert changed.status_code == 200 and changed.json()["series_id"] == first["series_id"]
    assert http.delete(f"/events/{items[2]['id']}", headers=admin_headers).status_code == 204
    after = occurrences(http, first["series_id"], 2)
    assert [e["title"] for e in after] == [SERIES["title"], "Moved rehearsal"]
    assert http.get(f"/series/{first['series_id']}").json()["occurrences"] == 2


def test_idempotency_key_makes_one_series(http, admin_headers):
    headers = {**admin_headers, "Idempotency-Key": f"series-{datetime.now().timestamp()}"}
    body = {**SERIES, "recurrence": "FREQ=DAILY;COUNT=5"}
    first = http.post("/events", json=body, headers=headers)
    again = http.post("/events", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    series = http.get(f"/series/{first.json()['series_id']}").json()
    assert series["occurrences"] == 5


# PATCH /series/{id}

def patch_series(http, headers, series_id, changes):
    return http.patch(f"/series/{series_id}", json=changes, headers=headers)


def test_patch_moves_19_00_to_20_00_local_on_both_sides_of_the_october_change(
        http, admin_headers):
    first = create(http, admin_headers, recurrence="FREQ=WEEKLY;COUNT=3")
    occurrences(http, first["series_id"], 3)
    response = patch_series(http, admin_headers, first["series_id"],
                            {"starts_at": "2031-10-19T20:00:00+02:00"})
    assert response.status_code == 200, response.text
    series = response.json()
    assert set(series) == {"id", "recurrence", "occurrences", "next"}
    assert series["occurrences"] == 3 and series["next"]["starts_at"] == "2031-10-19T18:00:00Z"
    # on both gateways: the one that answered and the one that follows the stream
    found = settled(http, first["series_id"], lambda items: [e["starts_at"] for e in items] == [
        "2031-10-19T18:00:00Z", "2031-10-26T19:00:00Z", "2031-11-02T19:00:00Z"])
    assert [local(e["starts_at"]).hour for e in found] == [20, 20, 20]
    # each keeps its two hours
    assert [local(e["ends_at"]).hour for e in found] == [22, 22, 22]
    assert [e["version"] for e in found] == [2, 2, 2]
    assert http.get(f"/events/{found[2]['id']}").json()["starts_at"] == "2031-11-02T19:00:00Z"


def test_patch_changes_only_the_occurrences_that_have_not_started(http, admin_headers):
    # daily from 36 hours ago: two occurrences past, two to come
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=36)
    first = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=4", timezone="UTC",
                   starts_at=stamp(start), ends_at=stamp(start + timedelta(hours=1)))
    series_id = first["series_id"]
    response = patch_series(http, admin_headers, series_id,
                            {"title": "Choir, new hall", "topics": ["Music", "singing"],
                             "ends_at": stamp(start + timedelta(days=2, hours=3))})
    assert response.status_code == 200, response.text
    assert response.json()["next"]["title"] == "Choir, new hall"
    # the past ones are beyond the gateway's window: the search service answers, once
    # it has applied both changes
    found = settled(http, series_id,
                    lambda items: [e["version"] for e in items] == [1, 1, 2, 2],
                    timeout=15, **{"from": stamp(start - timedelta(hours=1))})
    assert [e["title"] for e in found] == [SERIES["title"]] * 2 + ["Choir, new hall"] * 2
    assert [e["topics"] for e in found[2:]] == [["music", "singing"]] * 2
    # ends_at is the next one's new end: each upcoming one lasts 3 hours, the past ones 1
    assert [parse(e["ends_at"]) - parse(e["starts_at"]) for e in found] == \
        [timedelta(hours=1)] * 2 + [timedelta(hours=3)] * 2
    assert [parse(e["starts_at"]) for e in found] == [start + timedelta(days=d)
                                                      for d in range(4)]


def test_patch_series_moves_relative_reminders_and_keeps_absolute_ones(http, admin_headers):
    first = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=3", timezone="UTC",
                   starts_at="2031-06-01T18:00:00Z", ends_at=None)
    found = occurrences(http, first["series_id"], 3)
    reader = Person(http)
    relative = [create_reminder(http, reader.headers, e["id"], before_minutes=30)
                for e in found[1:]]
    absolute = create_reminder(http, reader.headers, found[2]["id"],
                               remind_at="2031-06-01T08:00:00Z")
    response = patch_series(http, admin_headers, first["series_id"],
                            {"starts_at": "2031-06-01T19:15:00Z"})
    assert response.status_code == 200, response.text
    for day, reminder in zip((2, 3), relative):
        wait_for_reminder(
            http, reader.headers, reminder["id"],
            lambda n, day=day: n["remind_at"] == f"2031-06-0{day}T18:45:00Z",
            what="a relative reminder on an occurrence follows the series' move")
    assert get_reminder(http, reader.headers, absolute["id"])["remind_at"] == \
        "2031-06-01T08:00:00Z"


def test_patch_series_answers_404_403_and_422_naming_the_field(http, admin_headers):
    first = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=3")
    series_id = first["series_id"]
    reader = Person(http)
    assert_error(patch_series(http, admin_headers, "0" * 32, {"title": "x"}), 404, "not_found")
    assert_error(patch_series(http, admin_headers, "nope", {"title": "x"}), 404, "not_found")
    assert_error(patch_series(http, reader.headers, series_id, {"title": "x"}), 403,
                 "forbidden")
    assert_error(http.patch(f"/series/{series_id}", json={"title": "x"}), 401, "unauthorized")
    for changes, field in (({"recurrence": "FREQ=DAILY;COUNT=2"}, "recurrence"),
                           ({"recurrence": None, "title": "x"}, "recurrence"),
                           ({"title": ""}, "title"), ({"title": "x" * 121}, "title"),
                           ({"starts_at": "2031-10-19T20:00:00"}, "starts_at"),
                           ({"timezone": "Mars/Olympus"}, "timezone"),
                           ({"ends_at": "2031-10-19T18:00:00+02:00"}, "ends_at"),
                           ({"status": "postponed"}, "status"), ({"colour": "red"}, "colour")):
        assert_error(patch_series(http, admin_headers, series_id, changes), 422,
                     "validation_error", [field])
    assert_error(patch_series(http, admin_headers, series_id, {}), 422, "validation_error")
    # nothing was changed by the refused ones
    assert http.get(f"/series/{series_id}").json()["next"]["version"] == 1


# DELETE /series/{id}

def test_delete_removes_the_occurrences_that_have_not_started(http, admin_headers):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=36)
    first = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=4", timezone="UTC",
                   starts_at=stamp(start), ends_at=None)
    series_id = first["series_id"]
    since = {"from": stamp(start - timedelta(hours=1))}
    found = settled(http, series_id, lambda items: len(items) == 4, **since)
    reader = Person(http)
    assert_error(http.delete(f"/series/{series_id}", headers=reader.headers), 403, "forbidden")
    response = http.delete(f"/series/{series_id}", headers=admin_headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    # the two past ones stay, the two to come are gone
    assert [e["id"] for e in settled(http, series_id, lambda items: len(items) == 2, **since)] \
        == [e["id"] for e in found[:2]]
    for event in found[2:]:
        assert_error(http.get(f"/events/{event['id']}"), 404, "not_found")
    series = http.get(f"/series/{series_id}").json()
    assert series["occurrences"] == 2 and series["next"] is None
    # nothing left to delete: still a 204; unknown: 404
    assert http.delete(f"/series/{series_id}", headers=admin_headers).status_code == 204
    assert_error(http.delete(f"/series/{'0' * 32}", headers=admin_headers), 404, "not_found")
    assert_error(http.delete("/series/nope", headers=admin_headers), 404, "not_found")


@pytest.mark.parametrize("how", ["delete", "cancel"])
def test_a_deleted_or_cancelled_series_mails_each_user_once(http, system, admin_headers, how):
    title = f"Choir {uuid.uuid4().hex[:8]}"
    first = create(http, admin_headers, recurrence="FREQ=DAILY;COUNT=4", title=title,
                   timezone="UTC", starts_at="2031-06-01T18:00:00Z", ends_at=None)
    found = occurrences(http, first["series_id"], 4)
    alice, bob = Person(http), Person(http)
    alices = [create_reminder(http, alice.headers, e["id"], before_minutes=30,
                              subject=f"Alice {e['starts_at']}") for e in found[:3]]
    alices.append(create_reminder(http, alice.headers, found[0]["id"], before_minutes=90))
    bobs = [create_reminder(http, bob.headers, found[3]["id"], before_minutes=10)]
    if how == "delete":
        response = http.delete(f"/series/{first['series_id']}", headers=admin_headers)
        assert response.status_code == 204, response.text
    else:
        response = patch_series(http, admin_headers, first["series_id"],
                                {"status": "cancelled"})
        assert response.status_code == 200, response.text
    for person, reminders in ((alice, alices), (bob, bobs)):
        for reminder in reminders:
            wait_for_reminder(http, person.headers, reminder["id"],
                              lambda n: n["status"] == "cancelled",
                              what=f"a reminder on an occurrence of a {how}d series")
    [to_alice] = system.wait_for_mail(to=alice.email, subject=title, timeout=20)
    [to_bob] = system.wait_for_mail(to=bob.email, subject=title, timeout=20)
    assert "cancel" in to_alice.subject.lower() and "cancel" in to_bob.subject.lower()
    for event in found[:3]:  # every one of Alice's reminders, in her one email
        assert f"Alice {event['starts_at']}" in to_alice.text, to_alice.text
    assert to_alice.text.count("(due ") == 4
    assert "recurring event" in to_alice.text and "4 occurrences" in to_alice.text
    no_more_mail(system, 1, to=alice.email, subject=title)  # once everything is handled
    no_more_mail(system, 1, to=bob.email, subject=title, timeout=0)
