"""What an event search means: its parameters, matching words, distances and cursors.

One set of rules for both read models of events: the search service's (MongoDB,
services/search/queries.py) and the gateway's (in memory, services/gateway/
read_models.py). Both parse a query with ``parse``, compare words after ``tokenise``,
measure with ``haversine_m`` and page with the same cursors, so a cursor from one is
a valid cursor of the other and their answers agree (tests/unit/gateway/
test_events_view_parity.py).

A query (docs/contracts.md, search.search) is validated and normalised by ``parse``;
errors name the HTTP parameter (`topic`, `q`, `from`, ...) so the gateway passes them
straight through as a 422.
"""
import math
import re
import unicodedata

from bus import cursors, times
from bus import fields as rules
from bus.errors import ValidationError
from bus.messages import iso, utc_now

# Tombstones have no start time, so with the start-time range "all" needs no condition.
STATUSES = {"scheduled": "scheduled", "cancelled": "cancelled", "all": None}
SORTS = ("starts_at", "distance")
MAX_RADIUS_KM = rules.MAX_RADIUS_KM
DEFAULT_RADIUS_KM = rules.DEFAULT_RADIUS_KM
MAX_LIMIT = rules.LIMIT[1]
EARTH_RADIUS_M = 6378100.0  # $geoNear's sphere (MongoDB and SecantusDB)
WORD = re.compile(r"\w+")


def tokenise(*texts):
    """Lower-case words without accents, so `Café` and `cafe` match.

    Words are runs of letters and digits (`hip-hop` is `hip` and `hop`)."""
    words = set()
    for text in texts:
        if not text:
            continue
        folded = unicodedata.normalize("NFKD", text.casefold())
        words.update(WORD.findall("".join(c for c in folded if not unicodedata.combining(c))))
    return sorted(words)


def haversine_m(lng_a, lat_a, lng_b, lat_b):
    """Great-circle distance in metres on $geoNear's sphere, computed the way
    SecantusDB's $geoNear computes it (same formula and operation order), so that
    both paths give the same `distance_km` and agree on the radius edge."""
    phi_a, phi_b = math.radians(lat_a), math.radians(lat_b)
    d_phi = phi_b - phi_a
    d_lambda = math.radians(lng_b - lng_a)
    h = (math.sin(d_phi / 2.0) ** 2
         + math.cos(phi_a) * math.cos(phi_b) * math.sin(d_lambda / 2.0) ** 2)
    h = min(max(h, 0.0), 1.0)
    return 2.0 * math.asin(math.sqrt(h)) * EARTH_RADIUS_M


def parse(query):
    """Validate and normalise a query (docs/contracts.md); ValidationError names the parameter."""
    if not isinstance(query, dict):
        raise ValidationError({"query": ["Expected an object."]})
    errors = {}

    def check(name, convert, value):
        try:
            return convert(value)
        except (TypeError, ValueError) as error:
            errors[name] = [str(error) or "Invalid value."]

    parsed = {
        "topics": check("topic", _topics, query.get("topics")),
        "words": check("q", _words, query.get("words")),
        "from": check("from", _time, query.get("from") or iso(utc_now())),
        "to": check("to", _time, query.get("to")),
        "near": check("near", _point, query.get("near")),
        "radius_km": check("radius_km", _radius, query.get("radius_km", DEFAULT_RADIUS_KM)),
        "status": check("status", _status, query.get("status") or "scheduled"),
        "sort": check("sort", _sort, query.get("sort") or "starts_at"),
        "limit": check("limit", _limit, query.get("limit", 20)),
        "series_id": check("series_id", _series, query.get("series_id")),
    }
    if not errors:
        if parsed["to"] is not None and parsed["to"] <= parsed["from"]:
            errors["to"] = ["Must be after from."]
        if parsed["sort"] == "distance" and parsed["near"] is None:
            errors["sort"] = ["Sorting by distance needs near."]
    if errors:
        raise ValidationError(errors)
    parsed["after"] = decode_cursor(query.get("cursor"), parsed["sort"])
    return parsed


def encode_cursor(sort, key, event_id):
    return cursors.encode(sort, key, event_id)


def decode_cursor(cursor, sort):
    """(key, id) of the last item of the previous page, or None for the first page."""
    if cursor is None:
        return None
    key_kind = cursors.NUMBER if sort == "distance" else cursors.TIME
    given_sort, key, event_id = cursors.decode(cursor, cursors.TEXT, key_kind, cursors.TEXT)
    if given_sort != sort:
        raise cursors.invalid()
    return key, event_id


def _topics(value):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError("Expected a list of topics.")
    topics = [t.strip().lower() for t in value if t.strip()]
    return list(dict.fromkeys(topics)) or None


def _words(value):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise ValueError("Expected a list of words.")
    return tokenise(" ".join(value)) or None


def _series(value):
    if value is not None and not isinstance(value, str):
        raise ValueError("Expected a series id.")
    return value


def _time(value):
    return None if value is None else times.parse(value)


def _point(value):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("Expected lat,lng.")
    lat, lng = _number(value.get("lat")), _number(value.get("lng"))
    if not rules.on_earth(lat, lng):
        raise ValueError(rules.POINT_MESSAGE)
    return {"lat": lat, "lng": lng}


def _radius(value):
    radius = _number(DEFAULT_RADIUS_KM if value is None else value)
    if not 0 < radius <= MAX_RADIUS_KM:
        raise ValueError(f"Must be more than 0 and at most {MAX_RADIUS_KM}.")
    return radius


def _status(value):
    if not isinstance(value, str) or value not in STATUSES:
        raise ValueError(f"Must be one of {', '.join(STATUSES)}.")
    return value


def _sort(value):
    if not isinstance(value, str) or value not in SORTS:
        raise ValueError(f"Must be one of {', '.join(SORTS)}.")
    return value


def _limit(value):
    low, high = rules.LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"Must be an integer from {low} to {high}.")
    return value


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError("Expected a number.")
    return float(value)
