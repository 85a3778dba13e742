"""The gateway's in-memory read models give the same answers as the search service's
read model, whose queries run on a real SecantusDB database (sort=distance is $geoNear,
which only the server runs)."""
import random
from datetime import timedelta

import pytest

from bus.messages import iso, new_message
from services.search import projection, queries, storage
from tests.support.search import PARIS, query
from tests.unit.gateway.test_read_models import BERLIN, START, TOPICS, WORDS, answer, event, loaded

pytestmark = pytest.mark.integration


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
