"""The events service in a real container: RPC over RabbitMQ, SecantusDB, published events.

Messages are read from the search consumer's own queues, which the outbox declares
at start-up, so a test sees exactly what the search projection would receive.
"""

import pytest

from bus.errors import NotFound, ValidationError
from bus.messages import new_message
from services.events.service import EventsService
from tests.support.queues import take
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FIELDS = {"title": "Jazz night", "topics": ["music"], "starts_at": "2030-12-05T20:30:00+01:00",
          "place": {"name": "New Morning", "address": None, "lat": 48.8729, "lng": 2.3526}}


@pytest.fixture
def events(service_proxy):
    return service_proxy(EventsService)


@pytest.fixture
def stored(service_database):
    return service_database("events").events


def published(config, event_type, count=1, timeout=10):
    """The next ``count`` messages of ``events.<event_type>`` in search's queue."""
    return take(config, f"evt-events-{event_type}--search", count, timeout)


def test_health(events):
    assert events.health() == "ok"


def test_create_update_delete_publish_the_full_event_once(events, service_config, stored,
                                                          sweeps):
    event = events.create(FIELDS)
    assert events.get(event["id"]) == event
    [created] = published(service_config, "event_created")
    assert created["data"] == {"event": event} and created["version"] == 1

    changed = events.update(event["id"], {"status": "cancelled", "title": "Jazz night"})
    assert changed["status"] == "cancelled" and changed["version"] == 2
    [updated] = published(service_config, "event_updated")
    assert updated["data"]["event"] == changed
    assert updated["data"]["changed"] == ["status"]
    assert updated["data"]["previous"] == {"status": "scheduled"}

    assert events.delete(event["id"]) is None
    [deleted] = published(service_config, "event_deleted")
    assert deleted["aggregate_id"] == event["id"] and deleted["version"] == 3
    with pytest.raises(NotFound):
        events.get(event["id"])
    # pulled once the broker confirmed, within the relay's PULL_DELAY
    assert wait_for(lambda: stored.find_one({"_id": event["id"]})["pending_events"] == [])
    sweeps.wait_for_a_whole_one()  # a sweep later, still nothing more
    assert published(service_config, "event_updated", timeout=0) == []


def test_errors_arrive_typed_and_name_the_field(events):
    with pytest.raises(ValidationError) as error:
        events.create({**FIELDS, "title": {"$gt": ""}})
    assert list(error.value.details) == ["title"]
    event = events.create({**FIELDS, "ends_at": "2030-12-05T23:00:00+01:00"})
    with pytest.raises(ValidationError) as error:
        events.update(event["id"], {"starts_at": "2030-12-06T00:00:00Z"})
    assert list(error.value.details) == ["starts_at"]
    for bad_id in ["x", "f" * 32, {"$ne": None}]:
        with pytest.raises(NotFound):
            events.get(bad_id)


def test_all_events_pages_for_rebuilds(events):
    ids = sorted(events.create({**FIELDS, "title": f"E{i}"})["id"] for i in range(3))
    first = events.all_events(None, 2)
    assert [e["id"] for e in first] == ids[:2]
    assert [e["id"] for e in events.all_events(after_id=first[-1]["id"])] == ids[2:]
    assert events.count() == 3


def test_a_message_left_by_a_crash_is_published_by_the_sweeper(container_factory,
                                                               service_config, stored):
    # As if a process wrote the change and died before publishing it.
    event = {"id": "c" * 32, "title": "Left behind"}
    message = new_message("events", "event_updated", event["id"], 2, event=event,
                          changed=["title"], previous={"title": "Before"})
    message["occurred_at"] = "2000-01-01T00:00:00Z"  # older than the sweeper's grace period
    stored.insert_one({"_id": event["id"], "deleted": False, "pending_events": [message]})

    container_factory(EventsService, service_config).start()

    [swept] = published(service_config, "event_updated")
    assert swept["event_id"] == message["event_id"]
    assert wait_for(lambda: stored.find_one({"_id": event["id"]})["pending_events"] == [])
