"""Which saved searches an event matches, in memory.

Every alerts process holds every live saved search here (a few hundred bytes each),
indexed by topic: an event is compared only with the saved searches that name one of
its topics and with those that name none. The rules are the event search's
(bus.event_search: the same topic, word and distance rules as ``GET /events``), plus
``within_days``: the event starts in the next N days. Only upcoming, scheduled events
match. ``SavedSearchIndex.match`` does no I/O; ``refresh`` reloads the index when the
stamp in the database moved (storage.py), which another process's change moves.
"""
import math
from datetime import datetime, timedelta

from bus import event_search

STATUS = "scheduled"


class Criteria:
    """A saved search's query, compiled for matching."""

    __slots__ = ("id", "topics", "words", "near", "within")

    def __init__(self, saved_search_id, query):
        parsed = parse_query(query)
        self.id = saved_search_id
        self.topics = frozenset(parsed["topics"]) if parsed["topics"] else None
        self.words = frozenset(parsed["words"]) if parsed["words"] else None
        near = parsed["near"]
        if near is None:
            self.near = None
        else:
            radius_m = parsed["radius_km"] * 1000
            # a latitude check first: most places fail it without trigonometry
            reach = math.degrees(radius_m / event_search.EARTH_RADIUS_M) * (1 + 1e-6)
            self.near = (near["lat"], near["lng"], radius_m, reach)
        days = query.get("within_days")
        self.within = timedelta(days=days) if days else None

    def accepts(self, event, topics_checked=False):
        """Whether the (prepared, upcoming) event meets every part of the query."""
        if not topics_checked and self.topics is not None \
                and self.topics.isdisjoint(event.topics):
            return False
        if self.words is not None and not self.words <= event.words():
            return False
        if self.within is not None and event.starts_at >= event.now + self.within:
            return False
        if self.near is not None:
            lat, lng, radius_m, reach = self.near
            if event.lat is None or abs(event.lat - lat) > reach:
                return False
            # the edge is in, as with GET /events
            return event_search.haversine_m(event.lng, event.lat, lng, lat) <= radius_m
        return True


def parse_query(query):
    """A saved search's ``query`` (the stored form: ``topic``, ``q``, ``near`` {lat,
    lng}, ``radius_km``, ``within_days``) read by the event search's own rules; its
    ValidationError names the search parameter (``topic``, ``q``, ``near``, ...)."""
    words = query.get("q")
    return event_search.parse({
        "topics": query.get("topic"),
        "words": words.split() if isinstance(words, str) else words,
        "near": query.get("near"),
        "radius_km": query.get("radius_km"),
    })


class PreparedEvent:
    """An event resource as matching reads it; its words are found only if asked."""

    __slots__ = ("event", "now", "starts_at", "topics", "lat", "lng", "_words")

    def __init__(self, event, now):
        self.event = event
        self.now = now
        self.starts_at = datetime.fromisoformat(event["starts_at"].replace("Z", "+00:00"))
        self.topics = frozenset(event.get("topics") or ())
        place = event.get("place")
        self.lat, self.lng = (place["lat"], place["lng"]) if place else (None, None)
        self._words = None

    def words(self):
        if self._words is None:
            place = self.event.get("place")
            self._words = frozenset(event_search.tokenise(
                self.event.get("title"), self.event.get("description"), *self.topics,
                place["name"] if place else None))
        return self._words


class SavedSearchIndex:
    """Every live saved search: by id, by topic, and those without a topic."""

    def __init__(self):
        self.stamp = None  # the database stamp this index was loaded at
        self._all = {}  # id -> Criteria
        self._by_topic = {}  # topic -> {id: Criteria}
        self._any_topic = {}  # id -> Criteria, no topic given

    def __len__(self):
        return len(self._all)

    def put(self, saved_search_id, query):
        self.remove(saved_search_id)
        criteria = Criteria(saved_search_id, query)
        self._all[saved_search_id] = criteria
        if criteria.topics is None:
            self._any_topic[saved_search_id] = criteria
        else:
            for topic in criteria.topics:
                self._by_topic.setdefault(topic, {})[saved_search_id] = criteria

    def remove(self, saved_search_id):
        criteria = self._all.pop(saved_search_id, None)
        if criteria is None:
            return
        self._any_topic.pop(saved_search_id, None)
        for topic in criteria.topics or ():
            bucket = self._by_topic.get(topic)
            if bucket is not None:
                bucket.pop(saved_search_id, None)
                if not bucket:
                    del self._by_topic[topic]

    def replace_all(self, documents, stamp):
        """Load ``documents`` ({_id, query}) in place of what is held."""
        self._all, self._by_topic, self._any_topic = {}, {}, {}
        for document in documents:
            self.put(document["_id"], document["query"])
        self.stamp = stamp

    def match(self, event, now):
        """The ids of the saved searches the event resource matches at ``now``."""
        prepared = upcoming(event, now)
        if prepared is None:
            return []
        found = [i for i, criteria in self._any_topic.items() if criteria.accepts(prepared)]
        buckets = [self._by_topic[t] for t in prepared.topics if t in self._by_topic]
        seen = set() if len(buckets) > 1 else None  # a search naming two of its topics
        for bucket in buckets:
            for i, criteria in bucket.items():
                if seen is not None:
                    if i in seen:
                        continue
                    seen.add(i)
                # the topic matched already: check the rest only
                if criteria.accepts(prepared, topics_checked=True):
                    found.append(i)
        return found


def upcoming(event, now):
    """The event prepared for matching, or None unless it is scheduled and upcoming."""
    if event.get("status") != STATUS:
        return None
    prepared = PreparedEvent(event, now)
    return prepared if prepared.starts_at >= now else None


def matches(saved_search, event, now):
    """Whether one saved search (its stored document) matches the event resource now."""
    prepared = upcoming(event, now)
    return prepared is not None and Criteria(saved_search["_id"],
                                             saved_search["query"]).accepts(prepared)
