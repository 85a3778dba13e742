"""The write model's commands, no broker: against the storage in memory
(tests.support.fakes); what the database itself stores, and a race through its round
trips, are in tests/integration/events/test_storage_on_server.py."""

import pytest

from bus.errors import NotFound, ValidationError
from services.events import handlers
from tests.support.fakes import FakeEventsStorage, in_memory

FIELDS = {
    "title": "Jazz night",
    "description": "Live quartet",
    "topics": [" Music ", "jazz", "MUSIC"],
    "starts_at": "2026-12-05T20:30:00+01:00",
    "ends_at": "2026-12-05T23:00:00+01:00",
    "timezone": "Europe/Paris",
    "place": {"name": "New Morning", "address": "7 Rue des Petites Écuries", "lat": 48.8729,
              "lng": 2.3526},
    "organizer": "Paris Jazz Club",
}


@pytest.fixture
def db(monkeypatch):
    return in_memory(monkeypatch, handlers, FakeEventsStorage())


def pending(db, event_id):
    return db.events.find_one({"_id": event_id})["pending_events"]


def test_create_returns_the_api_resource_in_utc(db):
    event = handlers.create(db, FIELDS)

    assert set(event) == {"id", "title", "description", "topics", "starts_at", "ends_at",
                          "timezone", "place", "organizer", "status", "version", "created_at",
                          "updated_at", "series_id", "recurrence"}
    assert event["series_id"] is None and event["recurrence"] is None
    assert len(event["id"]) == 32
    assert event["topics"] == ["music", "jazz"]
    assert event["starts_at"] == "2026-12-05T19:30:00Z"
    assert event["ends_at"] == "2026-12-05T22:00:00Z"
    assert event["status"] == "scheduled" and event["version"] == 1
    assert event["created_at"] == event["updated_at"] and event["created_at"].endswith("Z")
    assert handlers.get(db, event["id"]) == event


def test_create_defaults(db):
    event = handlers.create(db, {"title": "T", "topics": ["tech"],
                                 "starts_at": "2026-01-01T10:00:00Z"})
    assert (event["description"], event["ends_at"], event["timezone"], event["place"],
            event["organizer"], event["status"]) == ("", None, "UTC", None, None, "scheduled")


def test_create_stores_event_created_in_the_outbox_atomically(db):
    event = handlers.create(db, FIELDS)
    [message] = pending(db, event["id"])
    assert message["event_type"] == "event_created"
    assert message["aggregate_id"] == event["id"] and message["version"] == 1
    assert message["data"] == {"event": event}


@pytest.mark.parametrize("fields, field", [
    ({**FIELDS, "title": {"$gt": ""}}, "title"),
    ({**FIELDS, "title": ""}, "title"),
    ({**FIELDS, "title": "x" * 121}, "title"),
    ({**FIELDS, "description": "x" * 4001}, "description"),
    ({**FIELDS, "topics": []}, "topics"),
    ({**FIELDS, "topics": [f"t{i}" for i in range(11)]}, "topics"),
    ({**FIELDS, "topics": ["x" * 41]}, "topics.0"),
    ({**FIELDS, "topics": [{"$ne": 1}]}, "topics.0"),
    ({**FIELDS, "starts_at": "2026-12-05T20:30:00"}, "starts_at"),
    ({**FIELDS, "starts_at": {"$gt": 1}}, "starts_at"),
    ({**FIELDS, "ends_at": "2026-12-05T20:30:00+01:00"}, "ends_at"),
    ({**FIELDS, "timezone": "Mars/Olympus"}, "timezone"),
    ({**FIELDS, "place": {**FIELDS["place"], "lat": 90.5}}, "place.lat"),
    ({**FIELDS, "place": {**FIELDS["place"], "lng": -181}}, "place.lng"),
    ({**FIELDS, "place": {**FIELDS["place"], "lat": True}}, "place.lat"),
    ({**FIELDS, "status": "postponed"}, "status"),
    ({**FIELDS, "version": 7}, "version"),
    ({k: v for k, v in FIELDS.items() if k != "title"}, "title"),
])
def test_create_rejects_bad_fields_naming_them(db, fields, field):
    with pytest.raises(ValidationError) as error:
        handlers.create(db, fields)
    assert field in error.value.details
    assert db.events.count_documents({}) == 0


def test_create_rejects_a_non_object(db):
    with pytest.raises(ValidationError):
        handlers.create(db, ["title"])


def test_update_is_partial_bumps_version_and_records_what_changed(db):
    event = handlers.create(db, FIELDS)

    updated = handlers.update(db, event["id"], {"title": "Jazz night (2nd set)",
                                                "starts_at": "2026-12-05T19:45:00Z",
                                                "organizer": "Paris Jazz Club"})

    assert updated["version"] == 2
    assert updated["title"] == "Jazz night (2nd set)"
    assert updated["description"] == FIELDS["description"]
    assert updated["starts_at"] == "2026-12-05T19:45:00Z"
    assert updated["created_at"] == event["created_at"]
    assert handlers.get(db, event["id"]) == updated
    created, message = pending(db, event["id"])
    assert message["event_type"] == "event_updated" and message["version"] == 2
    assert message["data"]["event"] == updated
    assert message["data"]["changed"] == ["title", "starts_at"]  # organizer did not change
    assert message["data"]["previous"] == {"title": "Jazz night",
                                           "starts_at": "2026-12-05T19:30:00Z"}


def test_setting_status_cancelled_cancels(db):
    event = handlers.create(db, FIELDS)
    cancelled = handlers.update(db, event["id"], {"status": "cancelled"})
    assert cancelled["status"] == "cancelled"
    assert pending(db, event["id"])[-1]["data"]["changed"] == ["status"]


def test_update_checks_ends_after_starts_against_the_stored_event(db):
    event = handlers.create(db, FIELDS)  # ends 22:00Z
    with pytest.raises(ValidationError) as error:
        handlers.update(db, event["id"], {"starts_at": "2026-12-05T22:30:00Z"})
    assert "starts_at" in error.value.details
    with pytest.raises(ValidationError) as error:
        handlers.update(db, event["id"], {"ends_at": "2026-12-05T19:00:00Z"})
    assert "ends_at" in error.value.details
    assert handlers.get(db, event["id"])["version"] == 1
    # moving both together, or clearing ends_at, is fine
    assert handlers.update(db, event["id"], {"ends_at": None,
                                             "starts_at": "2026-12-06T22:30:00Z"})["version"] == 2


def test_update_rejects_nulls_for_required_fields_and_injection(db):
    event = handlers.create(db, FIELDS)
    for changes, field in [({"title": None}, "title"), ({"place": {"name": {"$gt": ""},
                                                                  "lat": 1, "lng": 1}},
                                                        "place.name"),
                           ({"id": "x"}, "id")]:
        with pytest.raises(ValidationError) as error:
            handlers.update(db, event["id"], changes)
        assert field in error.value.details


@pytest.mark.parametrize("event_id", ["nope", "0" * 32, {"$ne": None}, None, "A" * 32])
def test_malformed_or_unknown_ids_are_not_found(db, event_id):
    for command in (lambda: handlers.get(db, event_id),
                    lambda: handlers.update(db, event_id, {"title": "x"}),
                    lambda: handlers.delete(db, event_id)):
        with pytest.raises(NotFound):
            command()


def test_delete_keeps_a_tombstone_with_its_message_and_hides_the_event(db):
    event = handlers.create(db, FIELDS)
    handlers.update(db, event["id"], {"title": "Renamed"})

    assert handlers.delete(db, event["id"]) is None

    with pytest.raises(NotFound):
        handlers.get(db, event["id"])
    with pytest.raises(NotFound):
        handlers.delete(db, event["id"])
    with pytest.raises(NotFound):
        handlers.update(db, event["id"], {"title": "Back"})
    message = pending(db, event["id"])[-1]
    assert message["event_type"] == "event_deleted" and message["version"] == 3
    assert message["data"]["event"]["title"] == "Renamed"


def test_all_events_pages_by_id_without_deleted_ones(db):
    ids = sorted(handlers.create(db, {**FIELDS, "title": f"E{i}"})["id"] for i in range(5))
    handlers.delete(db, ids[2])

    first = handlers.all_events(db, limit=2)
    rest = handlers.all_events(db, after_id=first[-1]["id"], limit=10)

    assert [e["id"] for e in first + rest] == [i for i in ids if i != ids[2]]
    assert handlers.count(db) == 4
    with pytest.raises(ValidationError):
        handlers.all_events(db, limit=0)


SERIES = {**FIELDS, "starts_at": "2031-10-19T19:00:00+02:00", "ends_at": None,
          "timezone": "Europe/Madrid", "recurrence": "FREQ=WEEKLY;COUNT=3"}


def test_a_series_delete_deletes_each_occurrence_and_covers_them_with_one_message(db):
    occurrences = handlers.create_series(db, SERIES)
    series_id = occurrences[0]["series_id"]

    assert handlers.delete_series(db, series_id) == [e["id"] for e in occurrences]

    changes = set()
    for event in occurrences[1:]:
        [_, deleted] = pending(db, event["id"])
        assert deleted["event_type"] == "event_deleted" and deleted["version"] == 2
        changes.add(deleted["data"]["series_change"])
    # the first occurrence's outbox holds the series' one message too
    [_, deleted, summary] = pending(db, occurrences[0]["id"])
    changes.add(deleted["data"]["series_change"])
    [change] = changes
    assert summary["event_type"] == "series_cancelled"
    assert summary["data"]["change_id"] == change
    assert summary["data"]["occurrences"] == [{"id": e["id"], "version": 2}
                                              for e in occurrences]
    with pytest.raises(NotFound):
        handlers.delete_series(db, series_id)


def test_a_series_command_skips_an_occurrence_deleted_meanwhile(db, monkeypatch):
    occurrences = handlers.create_series(db, SERIES)
    series_id = occurrences[0]["series_id"]
    read = db.series_occurrences

    def stale_first(_db, _id):
        """The first read is from before another admin's DELETE /events/{id}."""
        stale = read(db, series_id)
        handlers.delete(db, occurrences[1]["id"])
        monkeypatch.setattr(db, "series_occurrences", read)
        return stale

    monkeypatch.setattr(db, "series_occurrences", stale_first)
    answer = handlers.update_series(db, series_id, {"title": "Renamed"})
    assert [e["id"] for e in answer["changed"]] == [occurrences[0]["id"], occurrences[2]["id"]]
    assert answer["series"]["occurrences"] == 2
    assert handlers.delete_series(db, series_id) == [occurrences[0]["id"],
                                                      occurrences[2]["id"]]
    # a PATCH that only renames tells nobody of a cancellation
    assert all(m["event_type"] != "series_cancelled" for m in pending(db, occurrences[0]["id"])
               if m["version"] == 2)


def test_a_series_patch_racing_an_occurrence_patch_loses_neither(db, monkeypatch):
    patch_a_series_while_an_occurrence_is_patched(db, monkeypatch)


def patch_a_series_while_an_occurrence_is_patched(db, monkeypatch):
    """Also run on the server (tests/integration/events/test_storage_on_server.py), where
    the lost write is the real bulk upsert's failure on the occurrence's _id."""
    occurrences = handlers.create_series(db, SERIES)
    series_id = occurrences[0]["series_id"]
    read = handlers.storage.series_occurrences

    def then_changed(_db, _id):
        """Another admin's PATCH /events/{id} lands between the read and the write."""
        found = read(_db, _id)
        handlers.update(db, occurrences[2]["id"], {"description": "Bring music stands"})
        monkeypatch.setattr(handlers.storage, "series_occurrences", read)
        return found

    monkeypatch.setattr(handlers.storage, "series_occurrences", then_changed)
    answer = handlers.update_series(db, series_id, {"starts_at": "2031-10-19T20:00:00+02:00"})

    assert [e["id"] for e in answer["changed"]] == [e["id"] for e in occurrences]
    moved = handlers.get(db, occurrences[2]["id"])
    assert moved["starts_at"] == "2031-11-02T19:00:00Z"  # 20:00 local, written on a retry
    assert moved["description"] == "Bring music stands" and moved["version"] == 3
    assert [m["version"] for m in pending(db, occurrences[2]["id"])] == [1, 2, 3]
