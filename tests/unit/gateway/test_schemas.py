"""The shape rules of API.md, with their boundaries, as the gateway's schemas apply them."""
from datetime import datetime, timezone

import pytest
from werkzeug.datastructures import MultiDict

from bus.errors import ValidationError
from bus.fields import BEFORE_MINUTES
from services.gateway import schemas
from services.gateway.schemas import load, load_query

START = "2030-06-01T18:00:00+02:00"
TIME_MESSAGE = schemas.TIME_MESSAGE


def errors(schema, data):
    with pytest.raises(ValidationError) as caught:
        load(schema, data)
    return caught.value.details


def query_errors(schema, pairs):
    with pytest.raises(ValidationError) as caught:
        load_query(schema, MultiDict(pairs))
    return caught.value.details


def search(pairs):
    return load_query(schemas.EventSearch(), MultiDict(pairs))


def registration(**changes):
    return {"username": "alice", "email": "alice@example.com", "password": "s3cret-pass",
            **changes}


def event(**changes):
    return {"title": "Jazz night", "starts_at": START, "topics": ["jazz"], **changes}


# --- times ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2026-12-05T20:30:00+01:00", "2026-12-05T19:30:00Z"),
    ("2026-12-05T20:30:00Z", "2026-12-05T20:30:00Z"),
    ("2026-12-05t20:30:00z", "2026-12-05T20:30:00Z"),
    ("2026-12-05T20:30:00.250-05:30", "2026-12-06T02:00:00.250000Z"),
    ("2026-12-05 20:30:00+00:00", "2026-12-05T20:30:00Z"),
])
def test_times_with_an_offset_become_utc_with_z(value, expected):
    assert load(schemas.EventCreate(), event(starts_at=value))["starts_at"] == expected


@pytest.mark.parametrize("value", [
    "2026-12-05T20:30:00",  # no offset
    "2026-12-05",
    "20261205T203000Z",  # ISO 8601 basic format is not RFC 3339
    "2026-12-05T20:30Z",
    "2026-13-05T20:30:00Z",
    "2026-12-05T20:30:60Z",
    "9999-12-31T23:30:00-01:00",  # past year 9999 in UTC
    "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
    "tomorrow",
    "",
    1764966600,
    {"$gt": ""},
])
def test_times_without_an_offset_or_not_rfc3339_are_rejected(value):
    assert "starts_at" in errors(schemas.EventCreate(), event(starts_at=value))


# --- accounts ------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["abc", "a" * 30, "a.b_c-9", "123"])
def test_usernames_of_3_to_30_allowed_characters_pass(username):
    assert load(schemas.Registration(), registration(username=username))["username"] == username


@pytest.mark.parametrize("username", ["ab", "a" * 31, "Alice", "al ice", "al@ce", "älice", ""])
def test_other_usernames_are_rejected(username):
    assert set(errors(schemas.Registration(), registration(username=username))) == {"username"}


@pytest.mark.parametrize("length, ok", [(7, False), (8, True), (256, True), (257, False)])
def test_password_is_8_to_256_characters(length, ok):
    data = registration(password="p" * length)
    if ok:
        assert load(schemas.Registration(), data)["password"] == "p" * length
    else:
        details = errors(schemas.Registration(), data)
        assert set(details) == {"password"}
        assert "p" * length not in str(details)  # a password is never echoed


@pytest.mark.parametrize(
    "email", ["nope", "a@", "@b.c", "a b@c.de", "a@b.c\n", "x" * 250 + "@b.co"]
)
def test_invalid_emails_are_rejected(email):
    assert set(errors(schemas.Registration(), registration(email=email))) == {"email"}


def test_registration_requires_every_field_and_refuses_unknown_ones():
    assert set(errors(schemas.Registration(), {"role": "admin"})) == {
        "username", "email", "password", "role"}


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_an_operator_object_instead_of_a_string_is_rejected(field):
    assert field in errors(schemas.Registration(), registration(**{field: {"$ne": ""}}))


def test_credentials_take_a_username_or_an_email():
    assert load(schemas.Credentials(), {"username": "alice", "password": "x"}) == {
        "username": "alice", "password": "x"}
    assert load(schemas.Credentials(), {"email": "a@example.com", "password": "x"})
    assert set(errors(schemas.Credentials(), {"password": "x"})) == {"username", "email"}
    both = {"username": "alice", "email": "a@example.com", "password": "x"}
    assert set(errors(schemas.Credentials(), both)) == {"username", "email"}
    assert "password" in errors(schemas.Credentials(), {"username": {"$ne": ""}})


def test_email_bodies_need_a_valid_email():
    assert load(schemas.EmailAddress(), {"email": "b@example.com"}) == {"email": "b@example.com"}
    assert set(errors(schemas.EmailAddress(), {})) == {"email"}
    assert set(errors(schemas.EmailAddress(), {"email": ["b@example.com"]})) == {"email"}


# --- events --------------------------------------------------------------------------

def test_create_fills_the_defaults_the_events_service_stores():
    assert load(schemas.EventCreate(), event()) == {
        "title": "Jazz night", "starts_at": "2030-06-01T16:00:00Z", "description": "",
        "topics": ["jazz"], "ends_at": None, "timezone": "UTC", "place": None,
        "organizer": None, "status": "scheduled",
    }


def test_create_requires_title_starts_at_and_topics():
    assert set(errors(schemas.EventCreate(), {})) == {"title", "starts_at", "topics"}


@pytest.mark.parametrize("title, ok", [("a", True), ("t" * 120, True), ("t" * 121, False),
                                       ("", False), ("   ", False), (None, False), (5, False)])
def test_title_is_1_to_120_characters(title, ok):
    if ok:
        assert load(schemas.EventCreate(), event(title=title))["title"] == title
    else:
        assert set(errors(schemas.EventCreate(), event(title=title))) == {"title"}


@pytest.mark.parametrize("length, ok", [(0, True), (4000, True), (4001, False)])
def test_description_is_0_to_4000_characters(length, ok):
    data = event(description="d" * length)
    if ok:
        assert load(schemas.EventCreate(), data)["description"] == "d" * length
    else:
        assert set(errors(schemas.EventCreate(), data)) == {"description"}


def test_topics_are_trimmed_lower_cased_and_deduplicated():
    data = event(topics=["  Jazz ", "LIVE music", "jazz"])
    assert load(schemas.EventCreate(), data)["topics"] == ["jazz", "live music"]


@pytest.mark.parametrize("topics, ok", [
    (["t"], True), (["t" * 40], True), ([f"t{i}" for i in range(10)], True),
    ([], False), ([f"t{i}" for i in range(11)], False), (["t" * 41], False),
    (["   "], False), ([""], False), ("jazz", False), ([{"$ne": ""}], False), ([1], False),
])
def test_topics_are_1_to_10_strings_of_1_to_40_characters(topics, ok):
    if ok:
        assert load(schemas.EventCreate(), event(topics=topics))["topics"]
    else:
        assert any(key.startswith("topics") for key in errors(schemas.EventCreate(),
                                                              event(topics=topics)))


def test_ends_at_must_be_after_starts_at():
    later = load(schemas.EventCreate(), event(ends_at="2030-06-01T17:00:01Z"))
    assert later["ends_at"] == "2030-06-01T17:00:01Z"
    for ends_at in ["2030-06-01T16:00:00Z", "2030-06-01T17:59:59+02:00"]:  # equal, before
        assert errors(schemas.EventCreate(), event(ends_at=ends_at)) == {
            "ends_at": ["Must be after starts_at."]}


def test_ends_at_is_compared_as_a_time_not_as_text():
    # "…00Z" sorts after "…00.5Z" as text, but is earlier as a time
    data = event(starts_at="2030-06-01T16:00:00Z", ends_at="2030-06-01T16:00:00.5Z")
    assert load(schemas.EventCreate(), data)["ends_at"] == "2030-06-01T16:00:00.500000Z"


@pytest.mark.parametrize("name, ok", [("UTC", True), ("Europe/Paris", True),
                                      ("America/Argentina/Buenos_Aires", True),
                                      ("Mars/Olympus", False), ("europe/paris", False),
                                      ("../../etc/passwd", False), ("", False), (None, False)])
def test_timezone_is_an_iana_name(name, ok):
    if ok:
        assert load(schemas.EventCreate(), event(timezone=name))["timezone"] == name
    else:
        assert set(errors(schemas.EventCreate(), event(timezone=name))) == {"timezone"}


def test_place_is_checked_and_may_be_null():
    place = {"name": "Le Duc", "lat": -90, "lng": 180}
    assert load(schemas.EventCreate(), event(place=place))["place"] == dict(place, address=None)
    assert load(schemas.EventCreate(), event(place=None))["place"] is None


@pytest.mark.parametrize("place, field", [
    ({"name": "x", "lat": 90.0001, "lng": 0}, "place.lat"),
    ({"name": "x", "lat": -90.0001, "lng": 0}, "place.lat"),
    ({"name": "x", "lat": 0, "lng": 180.0001}, "place.lng"),
    ({"name": "x", "lat": 0, "lng": -180.0001}, "place.lng"),
    ({"name": "x", "lat": "1", "lng": 0}, "place.lat"),  # a JSON string is not a number
    ({"name": "x", "lat": True, "lng": 0}, "place.lat"),  # nor is a boolean
    ({"name": "x", "lat": 0}, "place.lng"),
    ({"lat": 0, "lng": 0}, "place.name"),
    ({"name": "x", "lat": 0, "lng": 0, "floor": 2}, "place.floor"),
    ("Le Duc", "place._schema"),
])
def test_bad_places_are_rejected(place, field):
    assert field in errors(schemas.EventCreate(), event(place=place))


@pytest.mark.parametrize("status, ok", [("scheduled", True), ("cancelled", True),
                                        ("canceled", False), ("all", False)])
def test_event_status_is_scheduled_or_cancelled(status, ok):
    if ok:
        assert load(schemas.EventChanges(), {"status": status}) == {"status": status}
    else:
        assert set(errors(schemas.EventChanges(), {"status": status})) == {"status"}


def test_changes_take_any_subset_but_not_none():
    assert load(schemas.EventChanges(), {"ends_at": None, "organizer": None}) == {
        "ends_at": None, "organizer": None}
    assert load(schemas.EventChanges(), {"topics": ["Rock"]}) == {"topics": ["rock"]}
    assert set(errors(schemas.EventChanges(), {})) == {"_schema"}
    assert set(errors(schemas.EventChanges(), {"title": None})) == {"title"}
    assert set(errors(schemas.EventChanges(), {"version": 3})) == {"version"}


# --- search --------------------------------------------------------------------------

def test_search_defaults_are_upcoming_scheduled_events_by_start():
    before = datetime.now(timezone.utc)
    query = search([])
    assert datetime.fromisoformat(query.pop("from")) >= before.replace(microsecond=0)
    assert query == {"topics": None, "words": None, "to": None, "near": None,
                     "radius_km": 10, "status": "scheduled", "sort": "starts_at",
                     "limit": 20, "cursor": None, "series_id": None}


def test_topics_are_repeatable_and_comma_separated():
    query = search([("topic", "Jazz, rock"), ("topic", "Blues"), ("topic", "")])
    assert query["topics"] == ["jazz", "rock", "blues"]


def test_q_is_split_into_words():
    assert search([("q", "  Jazz   Paris ")])["words"] == ["jazz", "paris"]


def test_from_and_to_are_rfc3339_and_to_is_after_from():
    query = search([("from", "2030-01-01T00:00:00+01:00"), ("to", "2030-01-02T00:00:00Z")])
    assert (query["from"], query["to"]) == ("2029-12-31T23:00:00Z", "2030-01-02T00:00:00Z")
    assert set(query_errors(schemas.EventSearch(), [("from", "2030-01-01T00:00:00")])) == {"from"}
    assert set(query_errors(schemas.EventSearch(), [
        ("from", "2030-01-02T00:00:00Z"), ("to", "2030-01-01T00:00:00Z")])) == {"to"}


def test_an_unencoded_plus_in_a_query_offset_is_read_as_plus():
    # "?from=2030-01-01T10:00:00+02:00" decodes to a space before the offset
    assert search([("from", "2030-01-01T10:00:00 02:00")])["from"] == "2030-01-01T08:00:00Z"


def test_near_and_radius():
    query = search([("near", "48.85,2.35"), ("radius_km", "500"), ("sort", "distance")])
    assert (query["near"], query["radius_km"], query["sort"]) == (
        {"lat": 48.85, "lng": 2.35}, 500, "distance")


@pytest.mark.parametrize("pairs, field", [
    ([("near", "91,0")], "near"), ([("near", "0,181")], "near"), ([("near", "48.85")], "near"),
    ([("near", "a,b")], "near"), ([("near", "nan,0")], "near"), ([("near", "1,2,3")], "near"),
    ([("radius_km", "0")], "radius_km"), ([("radius_km", "500.01")], "radius_km"),
    ([("radius_km", "-1")], "radius_km"), ([("radius_km", "inf")], "radius_km"),
    ([("status", "done")], "status"), ([("sort", "title")], "sort"),
    ([("sort", "distance")], "sort"),  # distance needs near
    ([("limit", "0")], "limit"), ([("limit", "101")], "limit"), ([("limit", "ten")], "limit"),
    ([("limit", "2.5")], "limit"), ([("limit", "5"), ("limit", "6")], "limit"),
    ([("topic", "t" * 41)], "topic.0"), ([("colour", "red")], "colour"),
])
def test_bad_search_parameters_are_422_naming_them(pairs, field):
    assert field in query_errors(schemas.EventSearch(), pairs)


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_boundaries(limit):
    assert search([("limit", limit)])["limit"] == int(limit)


def test_status_all_and_cursor_pass_through():
    query = search([("status", "all"), ("cursor", "abc")])
    assert (query["status"], query["cursor"]) == ("all", "abc")


# --- notifications -------------------------------------------------------------------

def test_a_reminder_is_absolute_or_relative():
    assert load(schemas.NotificationCreate(), {"event_id": "e1", "before_minutes": 0}) == {
        "event_id": "e1", "before_minutes": 0}
    created = load(schemas.NotificationCreate(), {
        "event_id": "e1", "remind_at": "2030-01-01T10:00:00+01:00", "email": "a@example.com",
        "subject": "Tickets!", "message": None})
    assert created["remind_at"] == "2030-01-01T09:00:00Z"


@pytest.mark.parametrize("body", [
    {"event_id": "e1"},
    {"event_id": "e1", "remind_at": START, "before_minutes": 10},
    {"event_id": "e1", "remind_at": "2030-01-01T10:00:00", "before_minutes": 10},
])
def test_exactly_one_of_remind_at_or_before_minutes(body):
    details = errors(schemas.NotificationCreate(), body)
    assert {"remind_at", "before_minutes"} <= set(details)


@pytest.mark.parametrize("minutes", [-1, 1.5, "10", True, None, BEFORE_MINUTES[1] + 1])
def test_before_minutes_is_a_non_negative_integer(minutes):
    body = {"event_id": "e1", "before_minutes": minutes}
    assert "before_minutes" in errors(schemas.NotificationCreate(), body)


@pytest.mark.parametrize("field, value", [
    ("event_id", {"$ne": ""}), ("event_id", ""), ("email", "not-an-email"),
    ("subject", ""), ("subject", "s" * 201), ("message", "m" * 4001), ("sent_at", START),
])
def test_bad_reminder_fields_are_named(field, value):
    body = {"event_id": "e1", "before_minutes": 5, field: value}
    assert field in errors(schemas.NotificationCreate(), body)


def test_reminder_changes():
    assert load(schemas.NotificationChanges(), {"before_minutes": 15, "message": None}) == {
        "before_minutes": 15, "message": None}
    both = {"remind_at": START, "before_minutes": 15}
    assert set(errors(schemas.NotificationChanges(), both)) == {"remind_at", "before_minutes"}
    assert set(errors(schemas.NotificationChanges(), {})) == {"_schema"}
    assert set(errors(schemas.NotificationChanges(), {"event_id": "e2"})) == {"event_id"}


@pytest.mark.parametrize("minutes, ok", [(1, True), (10080, True), (0, False), (10081, False),
                                         (True, False), (5.0, False), ("5", False)])
def test_snooze_is_1_to_10080_minutes(minutes, ok):
    if ok:
        assert load(schemas.Snooze(), {"minutes": minutes}) == {"minutes": minutes}
    else:
        assert set(errors(schemas.Snooze(), {"minutes": minutes})) == {"minutes"}


def test_notification_filters():
    filters = load_query(schemas.NotificationFilter(), MultiDict([("status", "sent")]))
    assert filters == {"status": "sent", "event_id": None, "limit": 20, "cursor": None}
    assert set(query_errors(schemas.NotificationFilter(), [("status", "late")])) == {"status"}
    assert set(query_errors(schemas.NotificationFilter(), [("sort", "x")])) == {"sort"}
