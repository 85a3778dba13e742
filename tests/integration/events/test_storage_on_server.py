"""The write model's commands on a real SecantusDB database (no broker): what the
database stores, and a race that the real storage's writes decide."""
import pytest

from services.events import handlers, storage
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



def test_all_events_pages_through_id_ranges_on_the_server(new_database):
    """page_by_id's ranges (bus/mongo.py) as the server compares ids: every live event
    once, in id order, the deleted ones left out."""
    db = new_database("events", prepare=storage.ensure_indexes)
    documents = [handlers.new_event(FIELDS)[0] for _ in range(1200)]
    for document in documents[::10]:
        document["deleted"] = True
    db.events.insert_many(documents)

    read, after = [], None
    while page := handlers.all_events(db, after, 100):
        read += [event["id"] for event in page]
        after = page[-1]["id"]

    assert read == sorted(d["_id"] for d in documents if not d.get("deleted"))
