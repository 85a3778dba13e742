"""The projection on the in-memory FakeDatabase: tokens, idempotence, order, rebuild."""

import pytest

from bus.errors import Conflict, NotFound
from bus.messages import new_message
from services.search import projection, queries, storage
from tests.support.fakes import unit_database


@pytest.fixture
def db(request):
    """In memory (FakeDatabase under the real storage module); a test marked"""
    return unit_database(request, "search", prepare=storage.ensure_indexes)


def an_event(version=1, **changes):
    event = {
        "id": "a" * 32, "title": "Café Jazz Night", "description": "Hip-hop & soul, live!",
        "topics": ["music"], "starts_at": "2030-05-01T19:00:00Z", "ends_at": None,
        "timezone": "Europe/Paris",
        "place": {"name": "New Morning", "address": None, "lat": 48.8729, "lng": 2.3526},
        "organizer": None, "status": "scheduled", "version": version,
        "created_at": "2030-01-01T00:00:00Z", "updated_at": "2030-01-01T00:00:00Z",
    }
    event.update(changes)
    return event


def created(event):
    return new_message("events", "event_created", event["id"], event["version"], event=event)


def updated(event, changed=("title",)):
    return new_message("events", "event_updated", event["id"], event["version"], event=event,
                       changed=list(changed), previous={})


def deleted(event):
    return new_message("events", "event_deleted", event["id"], event["version"], event=event)


def test_tokenise_lowercases_strips_accents_and_splits_on_punctuation():
    assert projection.tokenise("Café Jazz-Night!", None, "  TECH ") == [
        "cafe", "jazz", "night", "tech"]
    assert projection.tokenise("") == []


def test_read_model_document_has_words_location_and_the_resource():
    document = projection.from_event(an_event())
    assert document["words"] == ["cafe", "hip", "hop", "jazz", "live", "morning", "music",
                                 "new", "night", "soul"]
    assert document["location"] == {"type": "Point", "coordinates": [2.3526, 48.8729]}
    assert document["event"] == an_event()
    assert "location" not in projection.from_event(an_event(place=None))


def test_created_event_is_searchable_and_gettable(db):
    projection.apply(db, created(an_event()))
    assert queries.get(db, "a" * 32) == an_event()


def test_duplicate_delivery_changes_nothing(db):
    message = updated(an_event(version=2, title="Renamed"))
    projection.apply(db, created(an_event()))
    projection.apply(db, message)
    projection.apply(db, message)
    assert queries.get(db, "a" * 32)["title"] == "Renamed"
    assert storage.live(db).count_documents({}) == 1


def test_an_older_update_after_a_newer_one_changes_nothing(db):
    projection.apply(db, updated(an_event(version=3, title="Third")))
    projection.apply(db, updated(an_event(version=2, title="Second")))
    projection.apply(db, created(an_event(version=1)))
    assert queries.get(db, "a" * 32)["title"] == "Third"
    assert queries.get(db, "a" * 32)["version"] == 3


def test_a_deletion_is_not_undone_by_a_late_update(db):
    projection.apply(db, created(an_event()))
    projection.apply(db, deleted(an_event(version=3)))
    projection.apply(db, updated(an_event(version=2, title="Late")))
    with pytest.raises(NotFound):
        queries.get(db, "a" * 32)
    assert storage.live(db).find_one({"_id": "a" * 32})["version"] == 3


def test_unknown_message_type_raises_so_it_is_retried_and_parked():
    with pytest.raises(ValueError):
        projection.from_message({"event_type": "event_exploded", "version": 1})


def test_rebuild_copies_the_write_side_into_a_new_collection_and_swaps_it_in(db):
    write_side = [an_event(id=f"{i:032x}", title=f"Event {i}") for i in range(7)]
    projection.apply(db, created(an_event(id="f" * 32, title="Stale")))  # gone from write side
    projection.apply(db, deleted(an_event(id="e" * 32, version=2)))
    before = storage.live(db).name
    pages = []

    def all_events(after_id, limit):
        pages.append(after_id)
        rest = [e for e in write_side if after_id is None or e["id"] > after_id]
        return rest[:limit]

    assert projection.rebuild(db, all_events, total=7, page_size=3) == {"events": 7}

    assert storage.live(db).name != before
    assert pages == [None, write_side[2]["id"], write_side[5]["id"], write_side[6]["id"]]
    assert queries.get(db, write_side[4]["id"])["title"] == "Event 4"
    with pytest.raises(NotFound):
        queries.get(db, "f" * 32)
    # the old tombstone came along, so a late update cannot resurrect that event
    projection.apply(db, updated(an_event(id="e" * 32, version=1)))
    with pytest.raises(NotFound):
        queries.get(db, "e" * 32)
    status = storage.rebuild_status(db)
    assert (status["running"], status["copied"], status["total"]) == (False, 7, 7)


def test_changes_during_a_rebuild_reach_the_new_collection(db):
    # the projection has just read the pointer (it keeps it up to storage.POINTER_TTL)
    projection.apply(db, created(an_event(id="2" * 32, title="Before")))

    def all_events(after_id, limit):
        if after_id is None:
            # meanwhile an event is created that this rebuild's pages will not include
            projection.apply(db, created(an_event(id="0" * 32, title="Meanwhile")))
            return [an_event(id="1" * 32)]
        return []

    projection.rebuild(db, all_events)

    assert queries.get(db, "0" * 32)["title"] == "Meanwhile"
    assert queries.get(db, "1" * 32)["id"] == "1" * 32


def test_a_rebuild_page_keeps_the_newer_of_its_copy_and_the_projections(db):
    def all_events(after_id, limit):
        if after_id is not None:
            return []
        # while this page travels, the projection stores a newer version of one event
        # and a late, older version of another, in the collection being built
        projection.apply(db, updated(an_event(id="1" * 32, version=3, title="Newer")))
        projection.apply(db, created(an_event(id="2" * 32, version=1, title="Older")))
        return [an_event(id=f"{i}" * 32, version=2, title=f"Page {i}") for i in (1, 2, 3)]

    projection.rebuild(db, all_events)

    assert [queries.get(db, f"{i}" * 32)["title"] for i in (1, 2, 3)] == \
        ["Newer", "Page 2", "Page 3"]


def test_only_one_rebuild_runs_at_a_time(db):
    def all_events(after_id, limit):
        with pytest.raises(Conflict):
            projection.rebuild(db, lambda *_: [])
        return []

    projection.rebuild(db, all_events)


def test_indexes_are_created_once_and_a_restart_keeps_them(db):
    storage.ensure_indexes(db)  # a second start against the same database
    names = set(storage.live(db).index_information())
    assert {"location_2dsphere", "topics_1_starts_at_1__id_1", "starts_at_1__id_1",
            "words_1"} <= names
