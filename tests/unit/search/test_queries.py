"""Search queries: parameter checks, cursors, and every parameter, on the in-memory
FakeDatabase; what goes through $geoNear, or is compared with it, runs on the server:
tests/integration/search/test_storage_on_server.py."""
import math
import random
import uuid
from datetime import timedelta

import pytest

from bus.errors import NotFound, ValidationError
from bus.messages import new_message
from services.search import projection, queries, storage
from tests.support.fakes import unit_database
from tests.support.search import PARIS, north_of, query


@pytest.fixture
def db(request):
    """In memory (FakeDatabase under the real storage module)."""
    return unit_database(request, "search", prepare=storage.ensure_indexes)


@pytest.fixture
def add(db):
    def add(name, starts_at="2030-05-01T19:00:00Z", topics=("music",), place=None, km=None,
            status="scheduled", description="", place_name="Somewhere"):
        if km is not None:
            place = {"name": place_name, "address": None, **north_of(PARIS, km)}
        event = {"id": uuid.uuid4().hex, "title": name, "description": description,
                 "topics": list(topics), "starts_at": starts_at, "ends_at": None,
                 "timezone": "UTC", "place": place, "organizer": None, "status": status,
                 "version": 1, "created_at": "2030-01-01T00:00:00Z",
                 "updated_at": "2030-01-01T00:00:00Z"}
        projection.apply(db, new_message("events", "event_created", event["id"], 1,
                                         event=event))
        return event
    return add


def titles(result):
    return [item["title"] for item in result["items"]]


def test_topics_match_any_case_insensitively(db, add):
    add("Jazz", topics=["music"], starts_at="2030-05-01T10:00:00Z")
    add("Hackathon", topics=["tech"], starts_at="2030-05-01T11:00:00Z")
    add("Street food", topics=["food", "outdoor"], starts_at="2030-05-01T12:00:00Z")
    assert titles(queries.search(db, query(topics=["Tech", "OUTDOOR"]))) == [
        "Hackathon", "Street food"]
    assert titles(queries.search(db, query(topics=["film"]))) == []


def test_every_word_must_be_a_whole_word_of_title_description_topics_or_place(db, add):
    add("Jazz night", description="Live quartet", topics=["music"], km=1,
        place_name="New Morning", starts_at="2030-05-01T10:00:00Z")
    add("Jazz brunch", description="Pancakes", topics=["food"], starts_at="2030-05-01T11:00:00Z")
    assert titles(queries.search(db, query(words=["JAZZ"]))) == ["Jazz night", "Jazz brunch"]
    assert titles(queries.search(db, query(words=["jazz", "quartet"]))) == ["Jazz night"]
    assert titles(queries.search(db, query(words=["jazz", "music"]))) == ["Jazz night"]
    assert titles(queries.search(db, query(words=["morning", "jazz"]))) == ["Jazz night"]
    assert titles(queries.search(db, query(words=["jazz", "opera"]))) == []
    assert titles(queries.search(db, query(words=["jaz"]))) == []  # whole words, not prefixes


def test_from_is_inclusive_and_to_exclusive(db, add):
    add("At from", starts_at="2030-05-01T10:00:00Z")
    add("Inside", starts_at="2030-05-01T11:00:00Z")
    add("At to", starts_at="2030-05-01T12:00:00Z")
    add("Before", starts_at="2030-05-01T09:59:59Z")
    result = queries.search(db, query(**{"from": "2030-05-01T10:00:00Z",
                                         "to": "2030-05-01T12:00:00Z"}))
    assert titles(result) == ["At from", "Inside"]


def test_from_accepts_offsets(db, add):
    add("Evening", starts_at="2030-05-01T19:00:00Z")
    assert titles(queries.search(db, query(**{"from": "2030-05-01T21:00:00+02:00"}))) == [
        "Evening"]
    assert titles(queries.search(db, query(**{"from": "2030-05-01T21:00:01+02:00"}))) == []


def test_past_events_are_left_out_by_default(db, add):
    add("Past", starts_at="2001-01-01T00:00:00Z")
    add("Future", starts_at="2099-01-01T00:00:00Z")
    assert titles(queries.search(db, query(**{"from": None}))) == ["Future"]
    assert titles(queries.search(db, query(**{"from": "2000-01-01T00:00:00Z"}))) == [
        "Past", "Future"]


def test_status_filters_cancelled_events(db, add):
    add("On", starts_at="2030-05-01T10:00:00Z")
    add("Off", starts_at="2030-05-01T11:00:00Z", status="cancelled")
    assert titles(queries.search(db, query())) == ["On"]
    assert titles(queries.search(db, query(status="cancelled"))) == ["Off"]
    assert titles(queries.search(db, query(status="all"))) == ["On", "Off"]


def test_near_keeps_events_within_the_radius_with_their_distance(db, add):
    add("Inside edge", km=9.999, starts_at="2030-05-01T10:00:00Z")
    add("Outside edge", km=10.001, starts_at="2030-05-01T11:00:00Z")
    add("Centre", km=0, starts_at="2030-05-01T12:00:00Z")
    add("No place", starts_at="2030-05-01T13:00:00Z")
    result = queries.search(db, query(near=PARIS, radius_km=10))
    assert titles(result) == ["Inside edge", "Centre"]
    assert [item["distance_km"] for item in result["items"]] == [9.999, 0.0]
    assert titles(queries.search(db, query(near=PARIS, radius_km=10.002))) == [
        "Inside edge", "Outside edge", "Centre"]


def test_parameters_combine(db, add):
    add("Match", topics=["tech"], km=3, description="python meetup",
        starts_at="2030-05-02T18:00:00Z")
    add("Wrong topic", topics=["art"], km=3, description="python meetup",
        starts_at="2030-05-02T18:00:00Z")
    add("Too far", topics=["tech"], km=30, description="python meetup",
        starts_at="2030-05-02T18:00:00Z")
    add("Too late", topics=["tech"], km=3, description="python meetup",
        starts_at="2030-05-09T18:00:00Z")
    add("Other words", topics=["tech"], km=3, description="rust meetup",
        starts_at="2030-05-02T18:00:00Z")
    result = queries.search(db, query(topics=["tech"], words=["Python"], near=PARIS,
                                      radius_km=5, **{"from": "2030-05-01T00:00:00Z",
                                                      "to": "2030-05-08T00:00:00Z"}))
    assert titles(result) == ["Match"]


def test_paging_visits_every_item_once_even_while_events_are_added(db, add):
    page_through_while_events_are_added(db, add, "starts_at")


def page_through_while_events_are_added(db, add, sort):
    """Also by distance ($geoNear) on the server: tests/integration/search."""
    for i in range(25):  # equal start times and distances too, so the id tiebreak matters
        add(f"E{i}", starts_at=f"2030-05-{1 + i // 3:02d}T10:00:00Z", km=(i % 4) + 1)
    seen, cursor, pages = [], None, 0
    while True:
        result = queries.search(db, query(near=PARIS, sort=sort, limit=4, cursor=cursor))
        seen += [item["id"] for item in result["items"]]
        add(f"Added {pages}", starts_at="2030-06-01T10:00:00Z", km=5)  # sorts after a page
        pages += 1
        cursor = result["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # no repeats
    assert len(seen) >= 25  # nothing of the original 25 skipped
    keys = [(i["starts_at"], i["id"]) if sort == "starts_at" else (i["distance_km"], i["id"])
            for i in queries.search(db, query(near=PARIS, sort=sort, limit=100))["items"]]
    assert keys == sorted(keys)


def test_last_page_has_no_cursor_and_limit_is_honoured(db, add):
    for i in range(3):
        add(f"E{i}", starts_at=f"2030-05-0{i + 1}T10:00:00Z")
    first = queries.search(db, query(limit=2))
    assert titles(first) == ["E0", "E1"] and first["next_cursor"]
    second = queries.search(db, query(limit=2, cursor=first["next_cursor"]))
    assert titles(second) == ["E2"] and second["next_cursor"] is None
    assert queries.search(db, query(limit=3))["next_cursor"] is None


def test_get_reads_the_read_model(db, add):
    event = add("Jazz")
    assert queries.get(db, event["id"]) == event
    for bad in ["nope", {"$ne": None}, "0" * 32]:
        with pytest.raises(NotFound):
            queries.get(db, bad)


def test_cursor_round_trip_and_it_is_opaque_text():
    cursor = queries.encode_cursor("starts_at", "2030-05-01T10:00:00.123000Z", "ab" * 16)
    assert isinstance(cursor, str) and "{" not in cursor
    key, event_id = queries.decode_cursor(cursor, "starts_at")
    assert key.isoformat() == "2030-05-01T10:00:00.123000+00:00" and event_id == "ab" * 16
    distance = queries.encode_cursor("distance", 1234.5678901234567, "cd" * 16)
    assert queries.decode_cursor(distance, "distance") == (1234.5678901234567, "cd" * 16)


@pytest.mark.parametrize("cursor", ["garbage!", "e30", "", 12, {"$gt": ""},
                                    queries.encode_cursor("distance", 1.0, "x")])
def test_malformed_cursor_is_a_validation_error_on_cursor(cursor):
    with pytest.raises(ValidationError) as error:
        queries.decode_cursor(cursor, "starts_at")
    assert list(error.value.details) == ["cursor"]


@pytest.mark.parametrize("params, parameter", [
    ({"topics": "music"}, "topic"),
    ({"topics": [{"$ne": 1}]}, "topic"),
    ({"words": [{"$gt": ""}]}, "q"),
    ({"from": "2030-05-01T10:00:00"}, "from"),
    ({"from": "tomorrow"}, "from"),
    ({"to": "2029-01-01T00:00:00Z"}, "to"),
    ({"to": {"$gt": 1}}, "to"),
    ({"near": {"lat": 91, "lng": 0}}, "near"),
    ({"near": {"lat": "1", "lng": 0}}, "near"),
    ({"near": PARIS, "radius_km": 0}, "radius_km"),
    ({"near": PARIS, "radius_km": 500.1}, "radius_km"),
    ({"status": "deleted"}, "status"),
    ({"status": {"$ne": 1}}, "status"),
    ({"sort": "title"}, "sort"),
    ({"sort": "distance"}, "sort"),
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": True}, "limit"),
])
def test_bad_parameters_are_named(params, parameter):
    with pytest.raises(ValidationError) as error:
        queries.parse(query(**params))
    assert parameter in error.value.details


def test_windows_cover_the_whole_range_in_order(db, add, monkeypatch):
    monkeypatch.setattr(queries, "FIRST_WINDOW", timedelta(minutes=1))
    # sparse start times, so one page needs several ever wider windows
    for title, starts_at in [("A", "2030-01-01T00:00:00Z"), ("B", "2030-01-01T00:00:00Z"),
                             ("C", "2030-01-02T00:00:00Z"), ("D", "2030-01-21T00:00:00Z"),
                             ("E", "2030-07-20T00:00:00Z")]:
        add(title, starts_at=starts_at)
    first = queries.search(db, query(limit=4))
    assert titles(first) == ["A", "B", "C", "D"] or titles(first) == ["B", "A", "C", "D"]
    assert titles(queries.search(db, query(limit=4, cursor=first["next_cursor"]))) == ["E"]
    assert titles(queries.search(db, query(limit=4, to="2030-01-21T00:00:00Z"))) == [
        *titles(first)[:3]]


def test_nothing_projected_yet_is_an_empty_page(db):
    assert queries.search(db, query()) == {"items": [], "next_cursor": None}


def test_filter_uses_indexed_fields():
    parsed = queries.parse(query(topics=["Music", "music "], words=["Jazz", "Café"],
                                 to="2030-02-01T00:00:00Z", status="all"))
    conditions = queries.build_filter(parsed)
    assert conditions["topics"] == "music"  # one topic: a plain equality, which indexes serve
    assert conditions["words"] == {"$all": ["cafe", "jazz"]}
    assert set(conditions["starts_at"]) == {"$gte", "$lt"}
    assert "status" not in conditions  # "all": tombstones have no starts_at anyway
    two = queries.build_filter(queries.parse(query(topics=["music", "art"], words=["jazz"])))
    assert two["topics"] == {"$in": ["music", "art"]} and two["words"] == "jazz"
    assert two["status"] == "scheduled"


# `near` sorted by start time: time windows + a box + the exact distance in Python.

def towards(point, km, bearing):
    """The point ``km`` from ``point`` at ``bearing`` degrees, on $geoNear's sphere."""
    angle, theta = km * 1000 / queries.EARTH_RADIUS_M, math.radians(bearing)
    phi, lam = math.radians(point["lat"]), math.radians(point["lng"])
    phi2 = math.asin(math.sin(phi) * math.cos(angle)
                     + math.cos(phi) * math.sin(angle) * math.cos(theta))
    lam2 = lam + math.atan2(math.sin(theta) * math.sin(angle) * math.cos(phi),
                            math.cos(angle) - math.sin(phi) * math.sin(phi2))
    lng = (math.degrees(lam2) + 180) % 360 - 180
    return {"lat": math.degrees(phi2), "lng": lng}


def place(point):
    return {"name": "Somewhere", "address": None, **point}


def test_near_by_start_reads_time_windows_not_geo_near(db, add, monkeypatch):
    add("Jazz", km=1)
    monkeypatch.setattr(queries, "geo_pipeline", None)  # would fail if called
    assert titles(queries.search(db, query(near=PARIS))) == ["Jazz"]


def test_bounding_box_leaves_longitude_out_where_it_would_wrap_or_near_a_pole():
    paris = queries.bounding_box(PARIS, 10)
    assert set(paris) == {"event.place.lat", "event.place.lng"}
    assert paris["event.place.lng"]["$lte"] - PARIS["lng"] > 10 / 111.32 / math.cos(
        math.radians(PARIS["lat"]))  # a little wider than the flat estimate
    assert set(queries.bounding_box({"lat": 10, "lng": 179.99}, 10)) == {"event.place.lat"}
    assert set(queries.bounding_box({"lat": 10, "lng": -180}, 10)) == {"event.place.lat"}
    assert set(queries.bounding_box({"lat": 88, "lng": 0}, 10)) == {"event.place.lat"}


def test_near_by_start_pages_through_many_dropped_events_without_skips_or_repeats(
        db, add, monkeypatch):
    """Events in the box but outside the circle (its corners) at the same start time as
    the kept ones: reading on past a full batch, within an instant and a window."""
    monkeypatch.setattr(queries, "FIRST_WINDOW", timedelta(hours=1))
    rng = random.Random(11)
    expected = []
    for day in (1, 1, 1, 2, 9):
        starts_at = f"2030-05-{day:02d}T10:00:00Z"
        for _ in range(15):  # corners: within the box, beyond 10 km
            add("corner", place=place(towards(PARIS, 13.5, rng.choice([45, 135, 225, 315]))),
                starts_at=starts_at, topics=["music"])
        for _ in range(3):
            event = add("kept", place=place(towards(PARIS, rng.uniform(0, 9.9),
                                                    rng.uniform(0, 360))),
                        starts_at=starts_at, topics=["music"])
            expected.append((event["starts_at"], event["id"]))
    seen, cursor, pages = [], None, 0
    while True:
        result = queries.search(db, query(near=PARIS, topics=["music"], limit=2, cursor=cursor))
        assert all(item["distance_km"] <= 10 for item in result["items"])
        seen += [(item["starts_at"], item["id"]) for item in result["items"]]
        if pages % 2 == 0:  # added meanwhile: one before the reading point, one after
            add("late", km=1, starts_at="2030-06-01T10:00:00Z", topics=["music"])
            add("early", km=1, starts_at="2030-04-01T10:00:00Z", topics=["music"])
        pages += 1
        cursor = result["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert seen[:len(expected)] == sorted(expected)
    assert all(title == "late" for title in [
        i["title"] for i in queries.search(db, query(near=PARIS, limit=100,
                                                     **{"from": "2030-05-10T00:00:00Z"}))["items"]])


# --- time arithmetic at the ends of the calendar (issue 9) ------------------------------

def test_an_event_in_year_9000_does_not_break_other_searches_even_once_deleted(db, add):
    add("Soon", starts_at="2030-05-01T10:00:00Z")
    far = add("Far", starts_at="9000-01-01T00:00:00Z")
    assert titles(queries.search(db, query())) == ["Soon", "Far"]
    assert titles(queries.search(db, query(topics=["film"]))) == []
    projection.apply(db, new_message("events", "event_deleted", far["id"], 2,
                                     event=dict(far, version=2)))
    # the read model still knows a start that late: the windows must still end in range
    assert titles(queries.search(db, query())) == ["Soon"]
    assert titles(queries.search(db, query(words=["nothing"]))) == []


@pytest.mark.parametrize("params", [
    {"to": "9999-12-30T00:00:00Z"},
    {"from": "0001-01-02T00:00:00Z"},
    {"from": "9999-12-29T00:00:00Z"},
    {"from": "0001-01-02T00:00:00Z", "to": "9999-12-30T23:59:59.999Z"},
])
def test_ranges_reaching_the_ends_of_the_calendar_are_answered(db, add, params):
    add("Soon", starts_at="2030-05-01T10:00:00Z")
    add("Last", starts_at="9999-12-30T23:59:59.999Z")
    result = queries.search(db, query(**params))
    assert set(titles(result)) <= {"Soon", "Last"}


def test_a_cursor_at_the_last_millisecond_pages_on(db, add):
    for name in ("A", "B"):
        add(name, starts_at="9999-12-30T23:59:59.999Z")
    first = queries.search(db, query(limit=1))
    second = queries.search(db, query(limit=1, cursor=first["next_cursor"]))
    assert sorted(titles(first) + titles(second)) == ["A", "B"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("moment", ["10000-01-01T00:00:00Z", "9999-12-31T23:00:00-02:00",
                                    "0001-01-01T00:30:00+01:00", "9999-12-31T00:00:00Z"])
def test_times_outside_the_calendar_are_named(moment):
    for name in ("from", "to"):
        with pytest.raises(ValidationError) as error:
            queries.parse(query(**{"from": "0001-01-02T00:00:00Z", name: moment}))
        assert name in error.value.details
