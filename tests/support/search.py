"""Search test data shared by the unit and integration tests: points at known
distances and a full query with its defaults."""
import math

EARTH_RADIUS_M = 6378100  # what $geoNear uses
PARIS = {"lat": 48.8566, "lng": 2.3522}


def north_of(point, km):
    """A point ``km`` due north of ``point`` on $geoNear's sphere."""
    return {"lat": point["lat"] + math.degrees(km * 1000 / EARTH_RADIUS_M), "lng": point["lng"]}


def query(**params):
    base = {"topics": None, "words": None, "from": "2030-01-01T00:00:00Z", "to": None,
            "near": None, "radius_km": 10, "status": "scheduled", "sort": "starts_at",
            "limit": 20, "cursor": None}
    base.update(params)
    return base
