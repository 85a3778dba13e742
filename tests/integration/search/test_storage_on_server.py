"""Search queries on a real SecantusDB database: sort=distance is $geoNear, which only the
server runs, and the time-window reading of ``near`` is compared with it (the same
items, distances and cursors)."""
import math
import random

import pytest

from services.search import queries, storage
from tests.support.search import PARIS, query
from tests.unit.search import test_queries as unit
from tests.unit.search.test_queries import (
    page_through_while_events_are_added,
    place,
    titles,
    towards,
)

pytestmark = pytest.mark.integration

add = unit.add  # the unit tests' way of projecting an event, on this module's database


@pytest.fixture
def db(new_database):
    return new_database("search", prepare=storage.ensure_indexes)


def via_geo_near(db, params):
    """What the $geoNear pipeline answers for the same query (the path sort=starts_at
    used before it read time windows)."""
    parsed = queries.parse(query(**params))
    collection = storage.live(db)
    documents = list(collection.aggregate(queries.geo_pipeline(parsed, parsed["limit"] + 1)))
    return queries.page(documents, parsed)


def test_paging_by_distance_visits_every_item_once_even_while_events_are_added(db, add):
    page_through_while_events_are_added(db, add, "distance")


def test_sort_by_distance(db, add):
    add("Far", km=8)
    add("Near", km=2)
    add("Nearer", km=0.5)
    result = queries.search(db, query(near=PARIS, sort="distance"))
    assert titles(result) == ["Nearer", "Near", "Far"]
    assert [item["distance_km"] for item in result["items"]] == [0.5, 2.0, 8.0]


def test_near_by_start_includes_the_exact_radius_edge_and_not_beyond(db, add):
    edge = add("Edge", place=place(towards(PARIS, 7, 60)), starts_at="2030-05-01T10:00:00Z")
    coordinates = edge["place"]["lng"], edge["place"]["lat"]
    distance = queries.haversine_m(*coordinates, PARIS["lng"], PARIS["lat"])
    radius_km = distance / 1000
    while radius_km * 1000 < distance:  # a radius whose metres are exactly the distance
        radius_km = math.nextafter(radius_km, math.inf)
    while radius_km * 1000 > distance:
        radius_km = math.nextafter(radius_km, 0)
    assert radius_km * 1000 == distance
    below = math.nextafter(radius_km, 0)
    assert below * 1000 < distance
    for params in ({"near": PARIS, "radius_km": radius_km},
                   {"near": PARIS, "radius_km": below}):
        assert queries.search(db, query(**params)) == via_geo_near(db, params)
    assert titles(queries.search(db, query(near=PARIS, radius_km=radius_km))) == ["Edge"]
    assert titles(queries.search(db, query(near=PARIS, radius_km=below))) == []


@pytest.mark.parametrize("centre, radius_km", [
    (PARIS, 10), (PARIS, 0.05), ({"lat": 69.65, "lng": 18.96}, 500),  # Tromsø, wide
    ({"lat": -33.87, "lng": 151.21}, 120), ({"lat": 0.0, "lng": 0.0}, 300),
])
def test_near_by_start_finds_every_bearing_just_inside_and_none_just_outside(db, add, centre,
                                                                           radius_km):
    """The box never cuts the circle: its widest longitudes are not due east or west."""
    inside, outside = [], []
    for bearing in range(0, 360, 15):
        inside.append(add(f"in {bearing}", place=place(towards(centre, radius_km * 0.9999,
                                                                bearing)))["id"])
        outside.append(add(f"out {bearing}", place=place(towards(centre, radius_km * 1.0001,
                                                                  bearing)))["id"])
    params = {"near": centre, "radius_km": radius_km, "limit": 100}
    result = queries.search(db, query(**params))
    assert {item["id"] for item in result["items"]} == set(inside)
    assert result == via_geo_near(db, params)


@pytest.mark.parametrize("centre", [{"lat": -16.8, "lng": 179.95}, {"lat": 52.0, "lng": -179.9},
                                    {"lat": 89.95, "lng": 30.0}, {"lat": -89.99, "lng": -120.0}])
def test_near_by_start_across_the_antimeridian_and_the_poles(db, add, centre):
    kept = [add(f"in {b}", place=place(towards(centre, 40, b)))["id"] for b in range(0, 360, 30)]
    # across the antimeridian (179.95 -> -179.95) or across the pole (30 -> -30): 4..12 km
    kept.append(add("Mirror", place=place({"lat": centre["lat"], "lng": -centre["lng"]}))["id"])
    add("Far", place=place(towards(centre, 60, 90)))
    add("Antipode", place=place({"lat": -centre["lat"], "lng": centre["lng"] % 360 - 180}))
    params = {"near": centre, "radius_km": 50, "limit": 100}
    result = queries.search(db, query(**params))
    assert {item["id"] for item in result["items"]} == set(kept)
    assert result == via_geo_near(db, params)


def test_near_by_start_gives_the_same_pages_and_distances_as_geo_near(db, add):
    rng = random.Random(7)
    for i in range(120):
        point = towards(PARIS, rng.uniform(0, 16), rng.uniform(0, 360))
        add(f"E{i}", place=place(point), topics=[rng.choice(["music", "tech"])],
            starts_at=f"2030-05-{1 + rng.randrange(20):02d}T{rng.randrange(24):02d}:00:00Z")
    for params in ({"near": PARIS, "radius_km": 10, "limit": 7},
                   {"near": PARIS, "radius_km": 12.5, "topics": ["music"], "limit": 5,
                    "from": "2030-05-03T00:00:00Z", "to": "2030-05-10T00:00:00Z"}):
        cursor, pages = None, 0
        while True:
            params = {**params, "cursor": cursor}
            result = queries.search(db, query(**params))
            assert result == via_geo_near(db, params)  # items, distance_km and cursor
            pages += 1
            cursor = result["next_cursor"]
            if cursor is None:
                break
        assert pages > 2
