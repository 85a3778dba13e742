"""API.md v1.1, "Saved searches and alerts": saved searches over HTTP, and the alert
emails the SMTP server receives for new events that match them.

Each test's saved searches name a topic of its own, so the events of other tests
never match them. The e2e system runs daily digests every ALERTS_DIGEST_SECONDS
(tests/e2e/conftest.py E2E_ENV) instead of a day. "No more mail" is watched for
1.5 s: the alerts sender makes what is due every second, the mailer sends it at once.
"""
import re
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from pymongo import MongoClient

from tests.e2e.helpers import assert_error, assert_hand_made_cursors_refused
from tests.e2e.reminders_support import Person, create_event, no_more_mail, wait_until
from tests.unit.bus.test_cursors import TIME_ID_HOSTILE

JSON = {"Accept": "application/json"}
FIELDS = {"id", "name", "query", "frequency", "email", "created_at"}


def topic():
    return f"t{uuid.uuid4().hex[:12]}"


def save(http, person, query, frequency="instant", name="My search", **extra):
    response = http.post("/saved-searches", json={"name": name, "query": query,
                                                  "frequency": frequency},
                         headers=person.headers, **extra)
    assert response.status_code == 201, response.text
    return response.json()


def listed(http, person):
    response = http.get("/saved-searches", headers=person.headers)
    assert response.status_code == 200, response.text
    return response.json()


@contextmanager
def alerts_database(system):
    """The alerts service's database of ``system`` (for what HTTP does not show)."""
    env = system.system.child_env
    client = MongoClient(env["MONGO_URI"], serverSelectionTimeoutMS=5000)
    try:
        yield client[f"{env.get('MONGO_DATABASE_PREFIX', '')}alerts"]
    finally:
        client.close()


def stop_link(mail):
    [url] = re.findall(r"^Stop this saved search: (\S+)\r?$", mail.text, flags=re.M)
    return urlsplit(url).path


def test_create_list_and_delete_own_only(http):
    alice, bob = Person(http), Person(http)
    mine = topic()
    created = save(http, alice, {"topic": [f" {mine.upper()} "], "q": "Jazz",
                                 "near": "48.85,2.35", "within_days": 30}, "daily", "Jazz")
    assert set(created) == FIELDS
    assert created["query"] == {"topic": [mine], "q": "Jazz", "near": "48.85,2.35",
                                "radius_km": 10.0, "within_days": 30}
    assert created["frequency"] == "daily" and created["email"] == alice.email
    page = listed(http, alice)
    assert page == {"items": [created], "next_cursor": None}
    assert listed(http, bob)["items"] == []
    # another user's saved search is not there for them
    assert_error(http.delete(f"/saved-searches/{created['id']}", headers=bob.headers), 404,
                 "not_found")
    assert_error(http.delete("/saved-searches/nope", headers=alice.headers), 404, "not_found")
    assert http.delete(f"/saved-searches/{created['id']}", headers=alice.headers) \
        .status_code == 204
    assert listed(http, alice)["items"] == []
    assert_error(http.delete(f"/saved-searches/{created['id']}", headers=alice.headers), 404,
                 "not_found")
    assert_error(http.get("/saved-searches"), 401, "unauthorized")


def test_the_21st_is_refused_and_idempotency_key_replays(http):
    person = Person(http)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "Keyed", "query": {"topic": [topic()]}, "frequency": "instant"}
    made = http.post("/saved-searches", json=body, headers={**person.headers, **key})
    again = http.post("/saved-searches", json=body, headers={**person.headers, **key})
    assert made.status_code == again.status_code == 201
    assert again.json() == made.json() and again.headers["Idempotent-Replayed"] == "true"
    for index in range(19):
        save(http, person, {"topic": [topic()]}, name=f"Search {index}")
    assert len(listed(http, person)["items"]) == 20
    refused = http.post("/saved-searches", json=body, headers=person.headers)
    assert_error(refused, 409, "conflict")
    assert "20" in refused.json()["error"]["message"]
    assert len(listed(http, person)["items"]) == 20


def test_a_hand_made_cursor_is_answered_naming_it(http, per_test_function):
    """GET /saved-searches?cursor=: what the unit tests throw at the codec
    (tests/unit/bus/test_cursors.py), through the gateway and the alerts service: a 400
    or 422 naming `cursor` with the JSON error body, never a 500."""
    person = per_test_function("person", lambda: Person(http))
    save(http, person, {"topic": [topic()]})
    assert_hand_made_cursors_refused(http, "/saved-searches", TIME_ID_HOSTILE, person.headers)
    assert len(listed(http, person)["items"]) == 1


@pytest.mark.parametrize("body, field", [
    ({"query": {"near": "91,0"}}, "query.near"),
    ({"query": {"near": "paris"}}, "query.near"),
    ({"query": {"near": "1,2", "radius_km": 0}}, "query.radius_km"),
    ({"query": {"near": "1,2", "radius_km": 501}}, "query.radius_km"),
    ({"query": {"radius_km": 5}}, "query.radius_km"),
    ({"query": {"within_days": 0}}, "query.within_days"),
    ({"query": {"within_days": 366}}, "query.within_days"),
    ({"query": {"topic": "music"}}, "query.topic"),
    ({"query": {"topic": ["a\nb"]}}, "query.topic.0"),
    ({"query": {"color": "red"}}, "query.color"),
    ({"query": "music"}, "query._schema"),
    ({"frequency": "hourly"}, "frequency"),
    ({"name": ""}, "name"),
])
def test_bad_fields_are_422_naming_them(http, per_test_function, body, field):
    person = per_test_function("person", lambda: Person(http))
    full = {"name": "Bad", "query": {}, "frequency": "instant", **body}
    response = http.post("/saved-searches", json=full, headers=person.headers)
    assert_error(response, 422, "validation_error", [field])


def test_instant_alert_once_per_event_with_a_stop_link(http, system, admin_headers):
    person = Person(http)
    mine = topic()
    saved = save(http, person, {"topic": [mine], "near": "35.66,139.71", "radius_km": 5})
    mark = system.mark()
    event = create_event(http, admin_headers, topics=[mine, "jazz"])
    elsewhere = create_event(http, admin_headers, topics=[mine],  # too far away
                             place={"name": "Osaka", "lat": 34.69, "lng": 135.50})
    [mail] = system.wait_for_mail(to=person.email, subject=event["title"], after=mark)
    assert mail.subject == f"New event: {event['title']}"
    assert "Blue Note Tokyo" in mail.text and "Friday 5 December 2031, 20:30" in mail.text
    path = stop_link(mail)
    # RFC 8058: the unsubscribe header is the stop link, and it says one click works
    assert urlsplit(mail.message["List-Unsubscribe"].strip().strip("<>")).path == path
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # changed into a match: announced; changed again: nothing more for either
    moved = http.patch(f"/events/{elsewhere['id']}", headers=admin_headers,
                       json={"place": {"name": "Shibuya", "lat": 35.66, "lng": 139.70}})
    assert moved.status_code == 200, moved.text
    [second] = system.wait_for_mail(to=person.email, subject=elsewhere["title"], after=mark)
    for changed in (event, elsewhere):
        assert http.patch(f"/events/{changed['id']}", headers=admin_headers,
                          json={"description": "Changed"}).status_code == 200
    no_more_mail(system, 2, to=person.email, after=mark)

    # the stop link: the page changes nothing, the POST stops it, a second one says so
    page = http.get(path)
    assert page.status_code == 200 and "Stop this saved search" in page.text
    assert '<form method="post"' in page.text and saved["name"] in page.text
    assert [s["id"] for s in listed(http, person)["items"]] == [saved["id"]]
    stopped = http.post(path, headers=JSON)
    assert stopped.status_code == 200 and stopped.json()["done"] is True, stopped.text
    assert listed(http, person)["items"] == []
    again = http.post(path, headers=JSON)
    assert again.status_code == 200 and again.json()["done"] is False
    assert "already" in again.json()["message"]
    assert "already" in http.get(path).text
    after_stop = system.mark()
    create_event(http, admin_headers, topics=[mine])
    no_more_mail(system, 0, to=person.email, after=after_stop)
    assert second.message["List-Unsubscribe"]


def test_daily_digest_has_several_events_and_leaves_out_a_cancelled_one(
        http, system, admin_headers):
    person = Person(http)
    mine = topic()
    saved = save(http, person, {"topic": [mine], "q": "jazz"}, "daily", "Jazz daily")
    mark = system.mark()
    first = create_event(http, admin_headers, topics=[mine])
    second = create_event(http, admin_headers, topics=[mine])
    cancelled = create_event(http, admin_headers, topics=[mine])
    create_event(http, admin_headers, topics=[mine], title="Rock night")  # no "jazz"
    assert http.patch(f"/events/{cancelled['id']}", headers=admin_headers,
                      json={"status": "cancelled"}).status_code == 200
    [digest] = system.wait_for_mail(to=person.email, subject="Jazz daily", after=mark,
                                    timeout=20)
    assert digest.subject == "2 new events: Jazz daily"
    assert first["title"] in digest.text and second["title"] in digest.text
    assert cancelled["title"] not in digest.text and "Rock night" not in digest.text
    assert digest.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # a second digest needs an alert still pending: once none is, and what is in flight
    # is handled, nothing more can come
    with alerts_database(system) as alerts:
        wait_until(lambda: alerts["alerts"].count_documents(
            {"saved_search_id": saved["id"], "status": "pending"}) == 0, 10,
            "every alert of the saved search sent or dropped")
    no_more_mail(system, 1, to=person.email, after=mark)


def test_alerts_follow_the_primary_email_and_end_with_the_account(http, system,
                                                                  admin_headers):
    person = Person(http)
    mine = topic()
    save(http, person, {"topic": [mine]})
    new_email = f"{person.account['username']}.new@example.net"
    changed = http.patch("/users/me", json={"email": new_email}, headers=person.headers)
    assert changed.status_code == 200, changed.text
    wait_until(lambda: listed(http, person)["items"][0]["email"] == new_email, 10,
               "the saved search on the new primary")
    mark = system.mark()
    event = create_event(http, admin_headers, topics=[mine])
    system.wait_for_mail(to=new_email, subject=event["title"], after=mark)
    assert http.delete("/users/me", headers=person.headers).status_code == 204
    # the account's saved searches end with it (what HTTP can no longer show)
    with alerts_database(system) as alerts:
        wait_until(lambda: alerts["saved_searches"].count_documents(
            {"user_id": person.user["id"], "deleted": False}) == 0, 10,
            "the deleted account's saved searches ended")
    after = system.mark()
    create_event(http, admin_headers, topics=[mine])
    no_more_mail(system, 0, to=new_email, after=after)
