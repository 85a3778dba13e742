"""Matching events against saved searches (services/alerts/matching.py) and what the
alerts handlers record and send, on the in-memory fake of their storage."""
from datetime import datetime, timedelta, timezone

import pytest

from bus.errors import Conflict, NotFound, ValidationError
from bus.messages import new_message
from services.alerts import handlers
from services.alerts.matching import SavedSearchIndex, matches
from tests.support.fakes import FakeAlertsStorage, in_memory

NOW = datetime(2031, 1, 1, 12, tzinfo=timezone.utc)
SETTINGS = handlers.Settings(digest_seconds=60)


def event(event_id="e1", **changes):
    return {"id": event_id, "title": "Jazz night", "description": "A quartet",
            "topics": ["music", "jazz"], "status": "scheduled", "version": 1,
            "starts_at": "2031-01-05T20:00:00Z",
            "place": {"name": "Blue Note", "address": None, "lat": 48.85, "lng": 2.35},
            **changes}


@pytest.mark.parametrize("query, matched", [
    ({}, True),
    ({"topic": ["jazz"]}, True),
    ({"topic": ["rock", "music"]}, True),
    ({"topic": ["rock"]}, False),
    ({"q": "quartet JAZZ"}, True),
    ({"q": "blue note"}, True),  # the place's name counts, as in GET /events
    ({"q": "jazz trio"}, False),
    ({"near": {"lat": 48.86, "lng": 2.35}, "radius_km": 5}, True),
    ({"near": {"lat": 45.76, "lng": 4.84}, "radius_km": 100}, False),  # Lyon
    ({"within_days": 5}, True),
    ({"within_days": 3}, False),
    ({"topic": ["jazz"], "q": "night", "within_days": 30,
      "near": {"lat": 48.85, "lng": 2.35}, "radius_km": 1}, True),
])
def test_each_part_of_a_query_as_the_search_means_it(query, matched):
    index = SavedSearchIndex()
    index.replace_all([{"_id": "s", "query": query}], stamp=1)
    assert index.match(event(), NOW) == (["s"] if matched else [])
    assert matches({"_id": "s", "query": query}, event(), NOW) is matched


@pytest.mark.parametrize("changes", [
    {"status": "cancelled"}, {"starts_at": "2030-12-31T00:00:00Z"}, {"place": None}])
def test_cancelled_past_or_placeless_events_do_not_match(changes):
    index = SavedSearchIndex()
    index.replace_all([{"_id": "s", "query": {"near": {"lat": 48.85, "lng": 2.35}}}], 1)
    assert index.match(event(**changes), NOW) == []


def test_the_index_keeps_topics_current_through_changes():
    index = SavedSearchIndex()
    index.put("a", {"topic": ["jazz", "music"]})
    index.put("b", {})
    assert sorted(index.match(event(), NOW)) == ["a", "b"]  # once, though two topics match
    index.put("a", {"topic": ["rock"]})
    index.remove("b")
    assert index.match(event(), NOW) == [] and len(index) == 1


@pytest.fixture
def db(monkeypatch):
    return in_memory(monkeypatch, handlers, FakeAlertsStorage())


def person(number=1):
    return {"id": f"u{number}", "email": f"u{number}@example.org", "version": 1}


def create(db, query, frequency="instant", user=None):
    return handlers.create(db, user or person(), {"name": "Mine", "query": query,
                                                  "frequency": frequency}, NOW)


def message(kind, ev, version=1, previous=None):
    data = {"event": ev}
    if kind == "event_updated":
        data.update(changed=sorted(previous or {}), previous=previous or {})
    return new_message("events", kind, ev["id"], version, **data)


def test_a_new_matching_event_is_recorded_once_per_saved_search(db):
    saved = create(db, {"topic": ["jazz"]})
    create(db, {"topic": ["rock"]})
    index = SavedSearchIndex()
    created = message("event_created", event())
    assert handlers.on_event_message(db, index, created, NOW, SETTINGS) == [saved["id"]]
    # redelivered, or handled by a second process with its own index: nothing new
    assert handlers.on_event_message(db, SavedSearchIndex(), created, NOW, SETTINGS) == []
    assert len(db.alerts.documents) == 1


def test_a_series_is_announced_once_per_saved_search_not_once_per_occurrence(db):
    saved = create(db, {"topic": ["jazz"]})
    index = SavedSearchIndex()
    occurrences = [event(f"o{n}", series_id="o0", recurrence="FREQ=WEEKLY;COUNT=3",
                         starts_at=f"2031-01-{5 + 7 * n:02d}T20:00:00Z") for n in range(3)]
    recorded = [handlers.on_event_message(db, index, message("event_created", ev), NOW,
                                          SETTINGS) for ev in occurrences]
    assert recorded == [[saved["id"]], [], []]
    # a single event beside it is still its own alert
    assert handlers.on_event_message(db, index, message("event_created", event("single")),
                                     NOW, SETTINGS) == [saved["id"]]


def test_an_event_changed_into_a_match_is_new_and_one_that_matched_before_is_not(db):
    saved = create(db, {"topic": ["jazz"], "q": "quartet"})
    index = SavedSearchIndex()
    before = event(description="A trio")
    assert handlers.on_event_message(db, index, message("event_created", before), NOW,
                                     SETTINGS) == []
    now_matching = message("event_updated", event(version=2), 2, {"description": "A trio"})
    assert handlers.on_event_message(db, index, now_matching, NOW, SETTINGS) == [saved["id"]]
    retitled = message("event_updated", event(version=3, title="Jazz evening"), 3,
                       {"title": "Jazz night"})
    assert handlers.on_event_message(db, index, retitled, NOW, SETTINGS) == []
    # an older version arriving late is ignored
    assert handlers.on_event_message(db, index, now_matching, NOW, SETTINGS) == []


def test_instant_alerts_are_mailed_once_and_a_cancelled_event_is_not(db):
    create(db, {"topic": ["jazz"]})
    index = SavedSearchIndex()
    relayed = []
    for event_id in ("e1", "e2"):
        handlers.on_event_message(db, index, message("event_created", event(event_id)), NOW,
                                  SETTINGS)
    cancel = message("event_updated", event("e2", status="cancelled", version=2), 2,
                     {"status": "scheduled"})
    handlers.on_event_message(db, index, cancel, NOW, SETTINGS)
    handlers.send_due(db, NOW, lambda *key: relayed.append(key), SETTINGS)
    [(collection, key)] = relayed
    [sent] = db.pending(collection, key)
    assert sent["data"]["events"][0]["id"] == "e1" and key.startswith("alert:")
    assert handlers.send_due(db, NOW, relayed.append, SETTINGS) == 0  # nothing left due


def test_a_daily_digest_collects_its_period_and_drops_what_was_deleted(db):
    saved = create(db, {"topic": ["jazz"]}, "daily")
    index, relayed = SavedSearchIndex(), []
    for number, event_id in enumerate(("e1", "e2", "e3")):
        moment = NOW + timedelta(seconds=10 * number)
        handlers.on_event_message(db, index, message("event_created", event(event_id)),
                                  moment, SETTINGS)
    handlers.on_event_message(db, index, message("event_deleted", event("e3"), 2),
                              NOW + timedelta(seconds=30), SETTINGS)
    assert handlers.send_due(db, NOW + timedelta(seconds=59), relayed.append, SETTINGS) == 0
    handlers.send_due(db, NOW + timedelta(seconds=61), lambda *key: relayed.append(key),
                      SETTINGS)
    [(collection, key)] = relayed
    [digest] = db.pending(collection, key)
    assert [e["id"] for e in digest["data"]["events"]] == ["e1", "e2"]
    assert digest["data"]["saved_search"]["id"] == saved["id"]
    # the next new event opens the next digest, a period later
    later = NOW + timedelta(seconds=70)
    handlers.on_event_message(db, index, message("event_created", event("e4")), later, SETTINGS)
    [pending] = [a for a in db.alerts.documents.values() if a["status"] == "pending"]
    assert pending["due_at"] == later + timedelta(seconds=60)


def test_twenty_per_account_and_own_only(db):
    made = [create(db, {"topic": [f"t{i}"]}) for i in range(20)]
    with pytest.raises(Conflict):
        create(db, {})
    assert len(handlers.list_saved_searches(db, "u1", {})["items"]) == 20
    with pytest.raises(NotFound):
        handlers.delete(db, "u2", made[0]["id"], NOW)
    handlers.delete(db, "u1", made[0]["id"], NOW)
    with pytest.raises(NotFound):
        handlers.delete(db, "u1", made[0]["id"], NOW)
    assert handlers.follow_link(db, "u1", made[1]["id"], "stop_alert", NOW)["done"] is True
    assert handlers.follow_link(db, "u1", made[1]["id"], "stop_alert", NOW)["done"] is False


@pytest.mark.parametrize("query, field", [
    ({"near": {"lat": 91, "lng": 0}}, "query.near"),
    ({"radius_km": 3}, "query.radius_km"),
    ({"within_days": 400}, "query.within_days"),
    ({"topic": "jazz"}, "query.topic"),
])
def test_the_service_rechecks_the_query_naming_the_field(db, query, field):
    with pytest.raises(ValidationError) as raised:
        create(db, query)
    assert field in raised.value.details


def test_the_email_follows_the_primary_and_a_deleted_account_ends_its_searches(db):
    saved = create(db, {})
    user = {**person(), "email": "new@example.org"}
    handlers.on_email_changed(db, new_message("users", "user_email_changed", "u1", 3,
                                              user=user, old_email="u1@example.org",
                                              new_email="new@example.org"))
    [listed] = handlers.list_saved_searches(db, "u1", {})["items"]
    assert listed["email"] == "new@example.org" and listed["id"] == saved["id"]
    handlers.on_user_deleted(db, new_message("users", "user_deleted", "u1", 4, user_id="u1"),
                             NOW)
    assert handlers.list_saved_searches(db, "u1", {})["items"] == []


def test_the_matching_benchmark_runs_and_prints_its_figures(capsys):
    from loadtests import alert_matching
    alert_matching.main(["--searches", "100", "--events", "50"])
    assert "median" in capsys.readouterr().out
