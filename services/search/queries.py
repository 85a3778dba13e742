"""`search.search(query)`: API.md's search parameters as read-model queries.

Matching rules:
- `topics`: any of them (topics are stored lower-case).
- `words`: every word must be a whole word of the title, description, topics or
  place name, after the same tokenising as the read model (case and accents
  ignored). Whole words, not prefixes: an exact `$all` on the indexed `words`
  array works on MongoDB and SecantusDB alike and uses the index.
- `from`/`to`: `from <= starts_at < to`.
- `near` + `radius_km`: distance on the sphere (MongoDB's `$geoNear`, earth radius
  6378.1 km) at most `radius_km`, edge included; `distance_km` rounded to metres.
- paging is keyset: the cursor carries the last item's sort key, (starts_at, id)
  or (distance, id), so items added meanwhile never shift a page (no skip, no repeat).
- sorted by start time (with or without `near`), the time range is read in
  consecutive windows (6 h, then 4 times wider each time) until the page is full:
  SecantusDB reads every index entry in a range before applying the limit, so a
  narrow first window keeps the common "what's on soon" search from reading every
  upcoming event. On MongoDB it costs nothing: a window that holds the page is the
  only one read.
- `near` sorted by start time adds a latitude/longitude box around the circle
  (on the event's `place`, plain numbers, unlike the GeoJSON array) to the window
  queries, then keeps the events whose haversine distance, computed here exactly
  as `$geoNear` computes it, is within the radius. `$geoNear` would read every
  event within the radius (a whole city) before it could sort by time.
  `sort=distance` uses `$geoNear`, which reads in distance order.

Errors name the HTTP parameter (`topic`, `q`, `from`, ...) so the gateway can pass
them straight through as a 422.
"""
import math
from datetime import timedelta

from bus.errors import NotFound
from bus.event_search import (  # noqa: F401  (parse and the cursors are part of this API)
    EARTH_RADIUS_M,
    STATUSES,
    decode_cursor,
    encode_cursor,
    haversine_m,
    parse,
)
from bus.messages import iso
from bus.times import MAX, MIN, shift
from services.search import storage

FIRST_WINDOW = timedelta(hours=6)
SMALLEST_STEP = timedelta(milliseconds=1)  # stored times have millisecond precision
BOX_MARGIN = 1e-6  # relative widening of the box, so float rounding never drops an edge
BOX_FULL_LNG = 80.0  # a box reaching this far from the equator gets no longitude bounds


def search(db, query):
    query = parse(query)
    state = storage.pointer(db)
    collection = db[state["live"]]
    fetch = query["limit"] + 1  # one more tells whether there is a next page
    latest_start = state.get("latest_starts_at")
    if query["near"] is None:
        documents = find_in_windows(collection, query, fetch, latest_start)
    elif query["sort"] == "starts_at":
        documents = find_near_in_windows(collection, query, fetch, latest_start)
    else:
        documents = list(collection.aggregate(geo_pipeline(query, fetch)))
    return page(documents, query)


def find_in_windows(collection, query, fetch, latest_start, extra=None, keep=None):
    """Up to ``fetch`` matches in (starts_at, id) order, reading consecutive time windows.

    The windows partition the range in order and each is read in order, so their
    concatenation is what one query over the whole range gives. The keyset is two
    plain queries: the rest of the last item's start time, then later times.
    ``extra`` conditions are added to every query; ``keep(document)``, if given,
    drops documents after reading (a window then reads on past a full batch)."""
    conditions = {**build_filter(query, keyset=False), **(extra or {})}
    start, end = query["from"], query["to"]
    if end is None:
        if latest_start is None:  # nothing projected yet
            return []
        end = shift(latest_start, SMALLEST_STEP)
    documents = []
    after = query["after"]
    if after is not None:
        key = after[0]
        if start <= key < end:
            documents += _find_after(collection, conditions, after, fetch, keep)
        start = max(start, shift(key, SMALLEST_STEP))
    width = FIRST_WINDOW
    while start < end and len(documents) < fetch:
        # shift clamps at the end of the calendar: a start in year 9000 or a `to` in
        # 9999 widens the windows up to there, never past (an OverflowError)
        stop = min(shift(start, width), end)
        documents += _find_range(collection, conditions, start, stop, fetch - len(documents),
                                 keep)
        start, width = stop, min(width * 4, MAX - MIN)
    return documents


def _find_after(collection, conditions, after, want, keep):
    """Up to ``want`` kept documents starting at ``after``'s instant, after its id."""
    key, last_id = after
    found = []
    while len(found) < want:
        limit = _batch(want - len(found), keep)
        batch = _find(collection, {**conditions, "starts_at": key, "_id": {"$gt": last_id}},
                      limit)
        found += _kept(batch, keep)
        if len(batch) < limit:
            break
        last_id = batch[-1]["_id"]
    return found[:want]


def _find_range(collection, conditions, start, stop, want, keep):
    """Up to ``want`` kept documents with ``start <= starts_at < stop``, in order. Without
    ``keep`` that is one query; with it, a full batch whose documents were not all kept
    is followed by the rest of its last instant, then by the rest of the range."""
    found = []
    while len(found) < want and start < stop:
        limit = _batch(want - len(found), keep)
        batch = _find(collection, {**conditions, "starts_at": {"$gte": start, "$lt": stop}},
                      limit)
        found += _kept(batch, keep)
        if len(batch) < limit or len(found) >= want:
            break
        last = batch[-1]
        found += _find_after(collection, conditions, (last["starts_at"], last["_id"]),
                             want - len(found), keep)
        start = shift(last["starts_at"], SMALLEST_STEP)
    return found[:want]


def _batch(want, keep):
    # With a filter after reading, ask for a little more than needed: on SecantusDB each
    # further query of a window reads that window's index entries again.
    return want if keep is None else want * 2 + 8


def _kept(documents, keep):
    return documents if keep is None else [d for d in documents if keep(d)]


def _find(collection, conditions, limit):
    return list(collection.find(conditions, {"event": 1, "starts_at": 1, "location": 1})
                .sort(storage.BY_START).limit(limit))


def find_near_in_windows(collection, query, fetch, latest_start):
    """`near` sorted by start time: the time windows, narrowed by a box around the
    circle, then the exact distance of each event (set as `distance`, in metres)."""
    centre, max_distance = query["near"], query["radius_km"] * 1000

    def keep(document):
        coordinates = (document.get("location") or {}).get("coordinates")
        if not coordinates:
            return False
        distance = haversine_m(coordinates[0], coordinates[1], centre["lng"], centre["lat"])
        if distance > max_distance:  # the edge is included, as with $geoNear
            return False
        document["distance"] = distance
        return True

    return find_in_windows(collection, query, fetch, latest_start,
                           extra=bounding_box(centre, query["radius_km"]), keep=keep)


def bounding_box(centre, radius_km):
    """Conditions on `event.place.lat`/`lng` that every point within ``radius_km`` of
    ``centre`` meets (a superset: the exact distance is checked afterwards).

    Latitudes within the circle's angular radius; longitudes within the widest
    longitude offset of a spherical cap, asin(sin r / cos lat). The longitude bounds are
    left out when the box would cross the antimeridian or come near a pole (where
    the offset grows to all longitudes): the latitude bounds and the exact distance
    still hold there."""
    angle = radius_km * 1000 / EARTH_RADIUS_M * (1 + BOX_MARGIN)  # radians
    lat, lng = centre["lat"], centre["lng"]
    reach = math.degrees(angle)
    conditions = {"event.place.lat": {"$gte": lat - reach, "$lte": lat + reach}}
    if abs(lat) + reach < BOX_FULL_LNG:
        spread = math.degrees(math.asin(math.sin(angle) / math.cos(math.radians(lat))))
        spread = spread * (1 + BOX_MARGIN)
        if -180 <= lng - spread and lng + spread <= 180:
            conditions["event.place.lng"] = {"$gte": lng - spread, "$lte": lng + spread}
    return conditions


def get(db, event_id):
    if not isinstance(event_id, str):
        raise NotFound("No such event.")
    document = storage.live(db).find_one({"_id": event_id, "status": {"$ne": "deleted"}})
    if document is None:
        raise NotFound("No such event.")
    return document["event"]


def build_filter(query, keyset=True):
    """The conditions every result meets: top-level equalities and ranges where they
    suffice, because SecantusDB uses an index only for those (not under $and/$or/$all)."""
    starts = {"$gte": query["from"]}
    if query["to"] is not None:
        starts["$lt"] = query["to"]
    conditions = {"starts_at": starts}
    if STATUSES[query["status"]]:
        conditions["status"] = STATUSES[query["status"]]
    if query["topics"]:
        topics = query["topics"]
        conditions["topics"] = topics[0] if len(topics) == 1 else {"$in": topics}
    if query["series_id"] is not None:
        conditions["series_id"] = query["series_id"]
    if query["words"]:
        words = query["words"]
        conditions["words"] = words[0] if len(words) == 1 else {"$all": words}
    if keyset and query["after"] is not None and query["sort"] == "starts_at":
        conditions.update(_after("starts_at", query["after"]))
    return conditions


def geo_pipeline(query, fetch):
    """$geoNear first (it must be), then keyset, order and page size. Used for
    `sort=distance`; it also answers `sort=starts_at` (the same results as
    find_near_in_windows, reading every event within the radius)."""
    stages = [{"$geoNear": {
        "near": {"type": "Point", "coordinates": [query["near"]["lng"], query["near"]["lat"]]},
        "distanceField": "distance",
        "maxDistance": query["radius_km"] * 1000,
        "spherical": True,
        "query": build_filter(query),
    }}]
    if query["sort"] == "distance":
        if query["after"] is not None:
            stages[0]["$geoNear"]["minDistance"] = query["after"][0]
            stages.append({"$match": _after("distance", query["after"])})
        order = {"distance": 1, "_id": 1}
    else:
        order = {"starts_at": 1, "_id": 1}
    stages += [{"$sort": order}, {"$limit": fetch},
               {"$project": {"event": 1, "starts_at": 1, "distance": 1}}]
    return stages


def page(documents, query):
    items = []
    for document in documents[:query["limit"]]:
        item = dict(document["event"])
        if query["near"] is not None:
            item["distance_km"] = round(document["distance"] / 1000, 3)
        items.append(item)
    next_cursor = None
    if len(documents) > query["limit"]:
        last = documents[query["limit"] - 1]
        key = last["distance"] if query["sort"] == "distance" else iso(last["starts_at"])
        next_cursor = encode_cursor(query["sort"], key, last["_id"])
    return {"items": items, "next_cursor": next_cursor}


def _after(field, after):
    key, event_id = after
    return {"$or": [{field: {"$gt": key}}, {field: key, "_id": {"$gt": event_id}}]}


