"""The gateway's in-memory read models: version-checked applies, final deletions, bounds
and snapshots; the same answers as the search service's read model on the server:
tests/integration/gateway/test_read_models_match_search.py."""
import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bus.errors import ValidationError
from bus.messages import iso
from services.gateway.read_models import GONE, AccountsView, EventsView
from services.search import queries
from tests.support.search import PARIS, north_of, query
from tests.unit.bus.test_cursors import HOSTILE

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


@pytest.mark.parametrize("cursor", HOSTILE)
def test_a_hand_made_cursor_is_a_validation_error_on_cursor_as_in_the_search_service(cursor):
    """GET /events answers from this view: a cursor made by hand is a 422, not a 500."""
    view = loaded([event()])
    for sort, extra in (("starts_at", {}), ("distance", {"near": PARIS})):
        with pytest.raises(ValidationError) as error:
            view.search(query(sort=sort, cursor=cursor, **extra))
        assert list(error.value.details) == ["cursor"]
