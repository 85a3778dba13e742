"""The write model's commands on a real SecantusDB database (no broker): what the
database stores, and a race that the real storage's writes decide."""
import pytest

from services.events import handlers
from tests.unit.events.test_handlers import FIELDS, patch_a_series_while_an_occurrence_is_patched

pytestmark = pytest.mark.integration


@pytest.fixture
def db(new_database):
    return new_database("events")


def test_create_stores_times_as_utc_datetimes(db):
    event = handlers.create(db, FIELDS)
    stored = db.events.find_one({"_id": event["id"]})
    assert stored["starts_at"].utcoffset().total_seconds() == 0
    assert stored["starts_at"].hour == 19


def test_a_series_patch_racing_an_occurrence_patch_loses_neither(db, monkeypatch):
    patch_a_series_while_an_occurrence_is_patched(db, monkeypatch)
