"""The gateway's in-memory read models: the same answers as the search service's read
model, version-checked applies, final deletions, bounds and snapshots."""
import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bus.errors import ValidationError
from bus.messages import iso, new_message
from services.gateway.read_models import GONE, AccountsView, EventsView
from services.search import projection, queries, storage
from tests.support.search import PARIS, north_of, query

BERLIN = {"lat": 52.52, "lng": 13.405}
TOPICS = ["music", "tech", "food", "art", "sport"]
WORDS = ["jazz", "night", "quartet", "café", "market", "open", "air"]
START = datetime(2030, 1, 1, tzinfo=timezone.utc)


def event(rng=random, **fields):
    centre = rng.choice([PARIS, BERLIN, None])
    place = None
    if centre is not None:
        spot = north_of(centre, rng.uniform(0, 30))
        place = {"name": rng.choice(["New Morning", "Halle", "Café Central"]), "address": None,
                 "lat": spot["lat"], "lng": spot["lng"] + rng.uniform(-0.2, 0.2)}
    starts = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 60, 30))
    base = {
        "id": uuid.uuid4().hex, "title": " ".join(rng.sample(WORDS, 2)).title(),
        "description": " ".join(rng.sample(WORDS, 3)),
        "topics": rng.sample(TOPICS, rng.randint(1, 2)),
        "starts_at": iso(starts), "ends_at": None, "timezone": "UTC", "place": place,
        "organizer": None, "status": "cancelled" if rng.random() < 0.15 else "scheduled",
        "version": 1, "created_at": "2029-12-01T00:00:00Z", "updated_at": "2029-12-01T00:00:00Z",
    }
    base.update(fields)
    return base


def loaded(events, **options):
    view = EventsView(now=START - timedelta(days=1), **options)
    epoch = view.begin_snapshot()
    for item in events:
        view.apply(item)
    view.end_snapshot(epoch)
    return view


def answer(view, q):
    body = view.search(q)
    return None if body is None else json.loads(body)


@pytest.fixture
def search_db(new_database):
    return new_database("search", prepare=storage.ensure_indexes)


def random_queries(rng, count):
    for _ in range(count):
        q = {"limit": rng.choice([1, 3, 7, 20, 100])}
        if rng.random() < 0.4:
            q["topics"] = rng.sample(TOPICS, rng.randint(1, 3))
        if rng.random() < 0.3:
            q["words"] = rng.sample(WORDS, rng.randint(1, 2))
        if rng.random() < 0.5:
            q["near"] = rng.choice([PARIS, BERLIN])
            q["radius_km"] = rng.choice([1, 5, 12.5, 40])
            if rng.random() < 0.4:
                q["sort"] = "distance"
        if rng.random() < 0.5:
            q["from"] = iso(START + timedelta(days=rng.randint(0, 40)))
        if rng.random() < 0.4:
            q["to"] = iso(START + timedelta(days=rng.randint(41, 70)))
        q["status"] = rng.choice(["scheduled", "scheduled", "cancelled", "all"])
        yield query(**q)


# The search service's queries on a real database take most of this test's time: the
# default layer pages through a sample, the slow layer through five times as many
# queries on five times the events (~50 s on a quiet machine).
@pytest.mark.parametrize("event_count, query_count, min_pages", [
    (60, 12, 15),
    pytest.param(300, 60, 100, marks=[pytest.mark.slow, pytest.mark.timeout(400)]),
])
def test_every_page_of_every_query_matches_the_search_service(
        search_db, event_count, query_count, min_pages):
    rng = random.Random(7)
    events = [event(rng) for _ in range(event_count)]
    # a few share a start time, so the id breaks the tie
    for item in events[:20]:
        item["starts_at"] = events[0]["starts_at"]
    for item in events:
        projection.apply(search_db, new_message("events", "event_created", item["id"], 1,
                                                event=item))
    view = loaded(events)
    pages = 0
    for q in random_queries(rng, query_count):
        cursor = None
        while True:
            expected = queries.search(search_db, dict(q, cursor=cursor))
            assert answer(view, dict(q, cursor=cursor)) == expected, q
            pages += 1
            cursor = expected["next_cursor"]
            if cursor is None:
                break
    assert pages > min_pages  # the queries did page


def test_bad_queries_fail_as_in_the_search_service():
    view = loaded([event()])
    for bad in (query(limit=0), query(cursor="nonsense"), query(to="2029-01-01T00:00:00Z"),
                query(sort="distance")):
        with pytest.raises(ValidationError) as error:
            view.search(bad)
        with pytest.raises(ValidationError) as expected:
            queries.parse(bad)
        assert error.value.details == expected.value.details


def test_an_older_or_repeated_version_changes_nothing():
    first = event(title="First", version=1)
    view = loaded([first])
    view.apply(dict(first, title="Third", version=3))
    view.apply(dict(first, title="Second", version=2))
    view.apply(dict(first, title="Third again", version=3))
    assert json.loads(view.get(first["id"]))["title"] == "Third"


def test_a_deletion_is_final():
    item = event(status="scheduled", topics=["music"])
    view = loaded([item])
    view.remove(item["id"])
    view.apply(dict(item, version=9))  # a late message about it
    assert view.get(item["id"]) == GONE
    assert answer(view, query(topics=["music"], status="all"))["items"] == []


def test_a_moved_event_is_found_at_its_new_time_only():
    item = event(starts_at="2030-01-05T10:00:00Z", topics=["music"], status="scheduled")
    view = loaded([item])
    view.apply(dict(item, starts_at="2030-02-05T10:00:00Z", version=2))
    window = query(topics=["music"], to="2030-01-06T00:00:00Z")
    assert answer(view, window)["items"] == []
    assert [e["starts_at"] for e in answer(view, query(topics=["music"]))["items"]] == [
        "2030-02-05T10:00:00Z"]


def test_over_the_bound_it_keeps_the_soonest_and_answers_only_what_it_holds():
    events = [event(starts_at=iso(START + timedelta(days=day)), status="scheduled",
                    topics=["music"]) for day in range(10)]
    view = loaded(events, max_events=6)
    assert len(view) == 6
    # the first page lies within the six soonest: answered here
    assert len(answer(view, query(limit=3))["items"]) == 3
    # the whole range would need the four let go: not answered here (None -> search service)
    assert view.search(query(limit=20)) is None
    assert view.search(query(to=iso(START + timedelta(days=3)), limit=20)) is not None
    # a new event after the held range is not held; one inside it is
    view.apply(event(starts_at=iso(START + timedelta(days=30)), status="scheduled"))
    assert len(view) == 6
    before_held = query(limit=1, **{"from": iso(START - timedelta(days=3))})
    assert view.search(before_held) is None


def test_time_moving_on_lets_past_events_go_and_sends_older_searches_elsewhere():
    events = [event(starts_at=iso(START + timedelta(days=day))) for day in range(4)]
    view = loaded(events)
    view.forget_before(START + timedelta(days=2))
    assert len(view) == 2
    assert view.search(query(**{"from": iso(START)})) is None
    assert view.search(query(**{"from": iso(START + timedelta(days=2))})) is not None


def test_a_snapshot_drops_what_was_deleted_while_nobody_listened():
    kept, deleted = event(), event()
    view = loaded([kept, deleted])
    epoch = view.begin_snapshot()
    created_meanwhile = event()
    view.apply(created_meanwhile)  # a live message during the snapshot
    view.apply(kept)  # the snapshot's page
    view.end_snapshot(epoch)
    assert view.get(deleted["id"]) == GONE
    assert view.get(kept["id"]) is not None and view.get(created_meanwhile["id"]) is not None


def test_searches_wait_for_the_first_snapshot():
    view = EventsView(now=START)
    view.apply(event())
    assert view.search(query()) is None
    view.end_snapshot(view.begin_snapshot())
    assert view.search(query()) is not None


def user(**fields):
    base = {"id": uuid.uuid4().hex, "username": "ann", "email": "ann@example.org",
            "secondary_emails": [], "role": "user", "created_at": "2030-01-01T00:00:00Z",
            "version": 1}
    base.update(fields)
    return base


def test_accounts_keep_the_newest_version_and_deletions_are_final():
    accounts = AccountsView()
    ann = user()
    accounts.apply(dict(ann, role="admin", version=3))
    accounts.apply(dict(ann, version=2))
    assert accounts.get(ann["id"])["role"] == "admin"
    accounts.remove(ann["id"])
    accounts.apply(dict(ann, version=4))
    assert accounts.get(ann["id"]) == GONE
    assert accounts.get(uuid.uuid4().hex) is None


def test_accounts_past_the_bound_let_the_least_recently_used_go():
    accounts = AccountsView(max_accounts=2)
    a, b, c = user(), user(), user()
    accounts.apply(a)
    accounts.apply(b)
    accounts.get(a["id"])  # a is used, b is not
    accounts.apply(c)
    assert accounts.get(b["id"]) is None  # a miss: read over RPC, not a 401
    assert accounts.get(a["id"]) is not None and accounts.get(c["id"]) is not None


def test_an_account_snapshot_drops_accounts_deleted_while_nobody_listened():
    accounts = AccountsView()
    kept, deleted = user(), user()
    accounts.apply(kept)
    accounts.apply(deleted)
    epoch = accounts.begin_snapshot()
    accounts.apply(kept)
    accounts.end_snapshot(epoch)
    assert accounts.get(deleted["id"]) == GONE and accounts.get(kept["id"]) == kept


def test_searches_at_the_ends_of_the_calendar_match_the_search_service(search_db):
    events = [event(starts_at=starts, status="scheduled", topics=["music"])
              for starts in ("2030-01-02T00:00:00Z", "9000-01-01T00:00:00Z",
                             "9999-12-30T23:59:59.999Z", "9999-12-30T23:59:59.999Z")]
    for item in events:
        projection.apply(search_db, new_message("events", "event_created", item["id"], 1,
                                                event=item))
    view = loaded(events)
    for q in (query(), query(limit=1), query(to="9999-12-30T00:00:00Z"),
              query(**{"from": "9999-12-29T00:00:00Z"}, limit=1),
              query(topics=["music"], limit=2), query(near=PARIS, radius_km=500)):
        cursor = None
        while True:
            expected = queries.search(search_db, dict(q, cursor=cursor))
            assert answer(view, dict(q, cursor=cursor)) == expected, q
            cursor = expected["next_cursor"]
            if cursor is None:
                break
