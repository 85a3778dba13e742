"""events + search containers joined only by real events over RabbitMQ, on SecantusDB.

Writes go through `events` RPC; the tests then poll `search` (never a fixed sleep)
until the projection shows them, as a client of the API would.
"""
import time

import eventlet
import pytest
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ServiceRpcProxy

from bus.errors import NotFound, ValidationError
from bus.messages import new_message, queue_name
from bus.reliable import parked_counts, replay_parked
from services.events.service import EventsService
from services.search import projection
from services.search.service import SearchService
from tests.support.search import PARIS, north_of, query

pytestmark = pytest.mark.integration

BERLIN = {"lat": 52.52, "lng": 13.405}


def fields(title, starts_at="2030-05-01T19:00:00Z", topics=("music",), near=PARIS, km=1.0,
           **more):
    place = {"name": f"{title} hall", "address": None, **north_of(near, km)}
    return {"title": title, "topics": list(topics), "starts_at": starts_at, "place": place,
            **more}


def eventually(check, timeout=5.0):
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "the projection did not catch up in time"
        eventlet.sleep(0.02)


@pytest.fixture
def system(runner_factory, service_config):
    runner_factory(service_config, EventsService, SearchService).start()
    with ServiceRpcProxy("events", service_config, timeout=30) as events, \
            ServiceRpcProxy("search", service_config, timeout=60) as search:
        yield events, search


def visible(search, event_id, version=None):
    def check():
        try:
            event = search.get(event_id)
        except NotFound:
            return None
        return event if version is None or event["version"] == version else None
    return check


def gone(search, event_id):
    def check():
        try:
            search.get(event_id)
        except NotFound:
            return True
        return False
    return check


def titles(page):
    return [item["title"] for item in page["items"]]


def test_health(system):
    events, search = system
    assert search.health() == "ok"


def test_writes_reach_search_within_a_second(system):
    events, search = system
    started = time.monotonic()
    event = events.create(fields("Jazz night"))
    assert eventually(visible(search, event["id"]), timeout=1.0) == event
    assert time.monotonic() - started < 1.0

    cancelled = events.update(event["id"], {"status": "cancelled"})
    eventually(visible(search, event["id"], version=2), timeout=1.0)
    assert titles(search.search(query())) == []
    assert search.search(query(status="cancelled"))["items"] == [cancelled]
    assert titles(search.search(query(status="all"))) == ["Jazz night"]

    events.delete(event["id"])
    eventually(gone(search, event["id"]), timeout=1.0)
    assert titles(search.search(query(status="all"))) == []


def test_every_parameter_over_the_wire(system):
    events, search = system
    created = [
        events.create(fields("Python meetup", "2030-05-01T10:00:00Z", ["tech"], km=2,
                             description="Talks about asyncio")),
        events.create(fields("Jazz brunch", "2030-05-01T12:00:00Z", ["music", "food"], km=9.999)),
        events.create(fields("Far jazz", "2030-05-01T11:00:00Z", ["music"], km=10.001)),
        events.create(fields("Berlin techno", "2030-05-02T22:00:00Z", ["music"], near=BERLIN)),
        events.create(fields("Past gig", "2001-01-01T20:00:00Z", ["music"])),
    ]
    for event in created:
        eventually(visible(search, event["id"]))

    assert titles(search.search(query(topics=["TECH", "food"]))) == ["Python meetup",
                                                                      "Jazz brunch"]
    assert titles(search.search(query(words=["Asyncio", "TALKS"]))) == ["Python meetup"]
    assert titles(search.search(query(words=["jazz", "brunch", "hall"]))) == ["Jazz brunch"]
    # [from, to): an event starting at `to` is out, one starting at `from` is in
    assert titles(search.search(query(**{"from": "2030-05-01T11:00:00Z",
                                         "to": "2030-05-01T12:00:00Z"}))) == ["Far jazz"]
    assert titles(search.search(query(**{"from": None}))) == [
        "Python meetup", "Far jazz", "Jazz brunch", "Berlin techno"]  # not the past gig
    assert "Past gig" in titles(search.search(query(**{"from": "2000-01-01T00:00:00Z"})))
    near = search.search(query(near=PARIS, radius_km=10, sort="distance"))
    assert titles(near) == ["Python meetup", "Jazz brunch"]
    assert [item["distance_km"] for item in near["items"]] == [2.0, 9.999]
    assert len(search.search(query(near=PARIS, radius_km=500))["items"]) == 3
    assert titles(search.search(query(near=BERLIN, radius_km=5))) == ["Berlin techno"]
    with pytest.raises(ValidationError) as error:
        search.search(query(cursor="not-a-cursor"))
    assert list(error.value.details) == ["cursor"]
    with pytest.raises(ValidationError) as error:
        search.search(query(radius_km=501, near=PARIS))
    assert list(error.value.details) == ["radius_km"]


def test_paging_through_everything_while_events_are_added(system):
    events, search = system
    originals = [events.create(fields(f"E{i:02d}", f"2030-05-{1 + i % 9:02d}T10:00:00Z"))
                 for i in range(23)]
    eventually(visible(search, originals[-1]["id"]))
    for event in originals:
        eventually(visible(search, event["id"]))

    seen, cursor = [], None
    while True:
        page = search.search(query(limit=5, cursor=cursor))
        seen += [item["id"] for item in page["items"]]
        # new events before and after the current position while the client pages
        events.create(fields("Early", "2030-05-01T09:00:00Z"))
        events.create(fields("Late", "2030-06-01T10:00:00Z"))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert {e["id"] for e in originals} <= set(seen)


def test_out_of_order_and_duplicate_deliveries_keep_the_newest(system, service_config):
    events, search = system
    event = events.create(fields("Original"))
    eventually(visible(search, event["id"]))
    newer = {**event, "title": "Third", "version": 3}
    older = {**event, "title": "Second", "version": 2}
    dispatch = event_dispatcher(service_config)
    for version, state in [(3, newer), (2, older), (3, newer)]:
        dispatch("events", "event_updated", new_message(
            "events", "event_updated", event["id"], version, event=state, changed=["title"],
            previous={}))
    eventually(visible(search, event["id"], version=3))
    dispatch("events", "event_deleted", new_message("events", "event_deleted", event["id"], 4,
                                                    event=newer))
    dispatch("events", "event_updated", new_message(
        "events", "event_updated", event["id"], 3, event=newer, changed=[], previous={}))
    eventually(gone(search, event["id"]))
    marker = events.create(fields("Marker"))  # processed after the late update above
    eventually(visible(search, marker["id"]))
    with pytest.raises(NotFound):
        search.get(event["id"])


def test_a_failing_projection_is_retried_then_parked_and_replay_works(system, service_config,
                                                                      monkeypatch):
    events, search = system
    attempts = []
    real_apply = projection.apply

    def broken(db, message):
        attempts.append(message["event_id"])
        raise RuntimeError("read model unavailable")

    monkeypatch.setattr(projection, "apply", broken)
    event = events.create(fields("Parked"))
    parked = queue_name("events", "event_created", "search")
    uri = service_config["AMQP_URI"]
    eventually(lambda: parked_counts(uri).get(f"{parked}.parked") == 1, timeout=10)
    assert len(attempts) == service_config["HANDLER_MAX_ATTEMPTS"]
    assert len(set(attempts)) == 1
    with pytest.raises(NotFound):
        search.get(event["id"])

    monkeypatch.setattr(projection, "apply", real_apply)  # the operator fixed the cause
    assert replay_parked(uri, parked) == 1
    assert eventually(visible(search, event["id"])) == event
    assert parked_counts(uri)[f"{parked}.parked"] == 0


def test_rebuild_from_the_write_side_while_search_keeps_answering(system, service_config,
                                                                 monkeypatch):
    events, search = system
    monkeypatch.setattr(projection, "REBUILD_PAGE", 3)  # many pages, so searches interleave
    created = [events.create(fields(f"R{i:02d}", f"2030-05-01T{i % 24:02d}:00:00Z"))
               for i in range(30)]
    for event in created:
        eventually(visible(search, event["id"]))
    answers = []

    def keep_searching():  # a client of its own: a standalone proxy serves one call at a time
        with ServiceRpcProxy("search", service_config, timeout=30) as client:
            while True:
                answers.append(len(client.search(query(limit=100))["items"]))

    searcher = eventlet.spawn(keep_searching)
    try:
        assert search.rebuild() == {"events": 30}
    finally:
        searcher.kill()
    assert len(answers) > 1 and set(answers) == {30}  # never empty or partial meanwhile
    assert len(search.search(query(limit=100))["items"]) == 30
    status = search.rebuild_status()
    assert status["running"] is False and status["copied"] == 30
    # the projection still writes where searches read
    late = events.create(fields("After rebuild"))
    eventually(visible(search, late["id"]))
