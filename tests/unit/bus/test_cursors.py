"""The one cursor codec (bus.cursors) and the lists that use it: a hand-made cursor is a
422 naming `cursor`, never a 500 from the parser or the database (issue 9)."""
import base64
import json
from datetime import datetime, timezone

import pytest

from bus import cursors
from bus.errors import ValidationError
from services.alerts import handlers as alerts
from services.notifications import handlers as notifications
from services.notifications import storage as notifications_storage
from services.search import queries
from services.search import storage as search_storage
from tests.support.fakes import FakeAlertsStorage, in_memory, unit_database
from tests.support.search import query


def made(raw):
    """A cursor made by hand from raw JSON text (or bytes)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


HOSTILE = [
    made("[" * 5000 + "]" * 5000),  # deep nesting
    made("[" * 100 + "]" * 100),
    made('["starts_at", "2030-01-01T00:00:00Z", ' + "9" * 40 + "]"),  # past 64 bits
    made('["starts_at", "2030-01-01T00:00:00Z", ' + "9" * 5000 + "]"),
    made('["distance", ' + str(2 ** 64) + ', "ab"]'),
    made('["distance", NaN, "ab"]'),
    made('["distance", Infinity, "ab"]'),
    made('["distance", 1e999, "ab"]'),
    made('["starts_at", "2030-01-01T00:00:00Z", "\\ud800"]'),  # a lone surrogate, escaped
    made(b'["starts_at", "2030-01-01T00:00:00Z", "\xed\xa0\x80"]'),  # and as bytes
    made('["starts_at", "10000-01-01T00:00:00Z", "ab"]'),  # dates out of range
    made('["starts_at", "9999-12-31T23:59:59-01:00", "ab"]'),
    made('["starts_at", "0001-01-01T00:00:00+01:00", "ab"]'),
    made('["starts_at", "2030-02-30T00:00:00Z", "ab"]'),
    made('["starts_at", "2030-01-01T00:00:00", "ab"]'),
    made('["starts_at", {"$gt": ""}, "ab"]'),
    made('["starts_at", "2030-01-01T00:00:00Z", {"$gt": ""}]'),
    made('["starts_at", "2030-01-01T00:00:00Z", "' + "a" * 500 + '"]'),
    made('["starts_at", "2030-01-01T00:00:00Z"]'),
    made('{"sort": "starts_at", "key": "2030-01-01T00:00:00Z", "id": "ab"}'),
    made('["distance", true, "ab"]'),
    "A" * 5000, "not base64!", "\ud800", "", "e30",
]


@pytest.mark.parametrize("cursor", HOSTILE)
def test_a_hand_made_cursor_is_a_validation_error_on_cursor(cursor):
    for kinds in ((cursors.TEXT, cursors.TIME, cursors.TEXT),
                  (cursors.TEXT, cursors.NUMBER, cursors.TEXT)):
        with pytest.raises(ValidationError) as error:
            cursors.decode(cursor, *kinds)
        assert list(error.value.details) == ["cursor"]


def test_what_encode_makes_decode_gives_back():
    moment = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
    cursor = cursors.encode("starts_at", moment, "é" * 32)
    assert cursors.decode(cursor, cursors.TEXT, cursors.TIME, cursors.TEXT) == (
        "starts_at", moment, "é" * 32)
    assert cursors.decode(cursors.encode(2 ** 63 - 1, 0.5), cursors.INTEGER,
                          cursors.NUMBER) == (2 ** 63 - 1, 0.5)
    assert len(cursor) < cursors.MAX_LENGTH


@pytest.fixture
def search_db(request):
    return unit_database(request, "search", prepare=search_storage.ensure_indexes)


@pytest.mark.parametrize("cursor", HOSTILE)
def test_search_answers_hand_made_cursors_with_a_422(search_db, cursor):
    for sort, extra in (("starts_at", {}), ("distance", {"near": {"lat": 1, "lng": 2}})):
        with pytest.raises(ValidationError) as error:
            queries.search(search_db, query(sort=sort, cursor=cursor, **extra))
        assert list(error.value.details) == ["cursor"]


@pytest.fixture
def notifications_db(request):
    return unit_database(request, "notifications", prepare=notifications_storage.ensure_indexes)


# the lists keyed on (a time, an id): reminders and saved searches
TIME_ID_HOSTILE = [c for c in HOSTILE if c] + [
    made('["2030-01-01T00:00:00Z", ' + "9" * 30 + "]"),
    made('["2030-01-01T00:00:00Z", "\\udfff"]'),
    made('["10000-01-01T00:00:00Z", "ab"]'),
    made('[' * 300 + ']' * 300),
    made('["2030-01-01T00:00:00Z", {"$gt": ""}]'),
]


@pytest.mark.parametrize("cursor", TIME_ID_HOSTILE)
def test_the_notification_list_answers_hand_made_cursors_with_a_422(notifications_db, cursor):
    with pytest.raises(ValidationError) as error:
        notifications.list_reminders(notifications_db, "u1", {"cursor": cursor})
    assert list(error.value.details) == ["cursor"]


@pytest.mark.parametrize("cursor", TIME_ID_HOSTILE)
def test_the_saved_search_list_answers_hand_made_cursors_with_a_422(monkeypatch, cursor):
    db = in_memory(monkeypatch, alerts, FakeAlertsStorage())
    with pytest.raises(ValidationError) as error:
        alerts.list_saved_searches(db, "u1", {"cursor": cursor})
    assert list(error.value.details) == ["cursor"]


def test_search_and_notification_cursors_use_the_codec():
    cursor = queries.encode_cursor("starts_at", "2030-01-01T00:00:00Z", "ab")
    assert json.loads(base64.urlsafe_b64decode(cursor + "==")) == [
        "starts_at", "2030-01-01T00:00:00Z", "ab"]
