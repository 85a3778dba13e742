"""The gateway's read models, in memory: events (by id and for search) and accounts.

The hot reads (an event by id, a search, the account behind a token) are answered in
the process that serves HTTP, with no RPC and no database (DESIGN.md, "Speed"). Each
model keeps the newest version of every item it has seen. It is fed by the events
the gateway subscribes to (feed.py), by snapshots over RPC (at start, after a
reconnect or a version gap) and by the replies of the gateway's own commands, so a
client reads its own write at once. Every apply is version-checked and a deletion is
final (ids are never reused), so duplicates, reordering and a snapshot racing with
live messages all end in the same state.

Memory is bounded. The events model holds the events that start from ``past_hours``
ago on, at most ``max_events`` of them, soonest first; it answers a search only when
the answer lies wholly inside what it holds (``search`` returns None otherwise, and
the gateway asks the search service). The accounts model holds at most
``max_accounts`` accounts, least recently used out first; a miss is read over RPC.
Greenthreads switch only on I/O and nothing here does I/O, so no locks are needed.
"""
import json
import math
import sys
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from heapq import merge

from bus.event_search import EARTH_RADIUS_M, STATUSES, encode_cursor, haversine_m, parse, tokenise
from bus.messages import iso

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
GONE = "gone"  # what ``get`` answers for a deleted item: a 404 without asking anyone
LAT_MARGIN = 1e-6  # relative widening of the latitude pre-check, so rounding drops no edge


def micros(moment):
    """A UTC time as whole microseconds since 1970: exact, and cheap to compare."""
    return (moment - EPOCH) // MICROSECOND


def from_micros(value):
    return EPOCH + value * MICROSECOND


class EventEntry:
    """One event as the search needs it, and its response body, encoded once."""

    __slots__ = ("id", "version", "key", "status", "topics", "words", "lat", "lng", "body",
                 "epoch", "series_id")

    def __init__(self, event, epoch):
        place = event.get("place")
        self.id = event["id"]
        self.version = event["version"]
        starts_at = datetime.fromisoformat(event["starts_at"].replace("Z", "+00:00"))
        self.key = (micros(starts_at), self.id)
        self.status = event["status"]
        self.topics = tuple(sys.intern(t) for t in event["topics"])
        self.words = tuple(sys.intern(w) for w in tokenise(
            event["title"], event["description"], *event["topics"],
            place["name"] if place else None))
        self.lat, self.lng = (place["lat"], place["lng"]) if place else (None, None)
        self.body = json.dumps(event).encode()
        self.epoch = epoch
        self.series_id = event.get("series_id")


class EventsView:
    def __init__(self, max_events=100_000, past_hours=24, now=None):
        self.max_events = max_events
        self.past = timedelta(hours=past_hours)
        self.ready = False  # a first snapshot has completed: only then do searches read here
        self._entries = {}  # id -> EventEntry
        self._versions = {}  # id -> newest version seen, held here or not
        self._gone = set()  # ids of deleted events
        self._by_start = []  # sorted (starts_at micros, id) of every entry
        self._by_topic = {}  # topic -> sorted keys
        self._by_word = {}  # word -> set of ids
        self._by_series = {}  # series id -> sorted keys of its occurrences
        # What is held: every known event with lower <= key < upper (None: no end).
        self._lower = (micros((now or datetime.now(timezone.utc)) - self.past), "")
        self._upper = None
        self._epoch = 0

    def __len__(self):
        return len(self._entries)

    # --- reads ----------------------------------------------------------------------

    def get(self, event_id):
        """The event's JSON body, GONE if it was deleted, None if not held here."""
        entry = self._entries.get(event_id)
        if entry is not None:
            return entry.body
        return GONE if event_id in self._gone else None

    def search(self, query):
        """``search.search``'s answer as a JSON body, or None when this model cannot
        give all of it (not loaded yet, or the range reaches past what it holds)."""
        query = parse(query)  # same rules and errors as the search service
        if not self.ready:
            return None
        start = (micros(query["from"]), "")
        end = (micros(query["to"]), "") if query["to"] is not None else None
        if start < self._lower:
            return None
        fetch = query["limit"] + 1
        if query["sort"] == "distance":
            if self._upper is not None and (end is None or end > self._upper):
                return None
            found = self._by_distance(query, start, end)
        else:
            if query["after"] is not None:
                start = max(start, (micros(query["after"][0]), query["after"][1] + "\0"))
            found = []
            for match in self._matches(query, start, end):
                found.append(match)
                if len(found) == fetch:
                    break
            else:  # ran out: complete only if nothing can lie beyond what is held
                if self._upper is not None and (end is None or end > self._upper):
                    return None
        return self._page(found, query)

    def _matches(self, query, start, end):
        """(entry, distance in metres or None) of the entries meeting the query with
        start <= key < end, in (starts_at, id) order."""
        status = STATUSES[query["status"]]
        topics = query["topics"]
        near = _near_check(query)
        series_id = query["series_id"]
        if series_id is not None:
            keys = self._slice(self._by_series.get(series_id, ()), start, end)
        elif query["words"]:
            candidates = self._with_words(query["words"])
            keys = sorted(self._entries[i].key for i in candidates)
            keys = keys[bisect_left(keys, start):bisect_left(keys, end) if end else None]
        elif topics:
            slices = [self._slice(self._by_topic.get(t, ()), start, end) for t in topics]
            keys = _unique(merge(*slices)) if len(slices) > 1 else slices[0]
        else:
            keys = self._slice(self._by_start, start, end)
        wanted_topics = set(topics) if topics and (query["words"] or series_id) else None
        words = set(query["words"]) if query["words"] and series_id is not None else None
        for key in keys:
            entry = self._entries[key[1]]
            if status is not None and entry.status != status:
                continue
            if wanted_topics is not None and wanted_topics.isdisjoint(entry.topics):
                continue
            if words is not None and not words.issubset(entry.words):
                continue
            distance = None
            if near is not None:
                distance = near(entry)
                if distance is None:
                    continue
            yield entry, distance

    def _by_distance(self, query, start, end):
        found = sorted(self._matches(query, start, end), key=lambda m: (m[1], m[0].id))
        if query["after"] is not None:
            found = found[bisect_right(found, query["after"], key=lambda m: (m[1], m[0].id)):]
        return found[:query["limit"] + 1]

    def _with_words(self, words):
        sets = sorted((self._by_word.get(w, set()) for w in words), key=len)
        return set.intersection(*sets) if sets[0] else set()

    @staticmethod
    def _slice(keys, start, end):
        low = bisect_left(keys, start)
        high = bisect_left(keys, end) if end is not None else len(keys)
        return keys[low:high]

    def _page(self, found, query):
        limit, near = query["limit"], query["near"] is not None
        items = []
        for entry, distance in found[:limit]:
            if near:  # the event's body with distance_km added, as the search service adds it
                items.append(entry.body[:-1] + b', "distance_km": '
                             + repr(round(distance / 1000, 3)).encode() + b"}")
            else:
                items.append(entry.body)
        next_cursor = None
        if len(found) > limit:
            last, distance = found[limit - 1]
            key = distance if query["sort"] == "distance" else iso(from_micros(last.key[0]))
            next_cursor = encode_cursor(query["sort"], key, last.id)
        return (b'{"items": [' + b", ".join(items) + b'], "next_cursor": '
                + json.dumps(next_cursor).encode() + b"}")

    # --- writes ---------------------------------------------------------------------

    def apply(self, event):
        """Hold ``event`` (a resource of API.md) unless a same or newer version is known.
        Returns the version that was known before, or None."""
        event_id, version = event["id"], event["version"]
        known = self._versions.get(event_id)
        if event_id in self._gone or (known is not None and version <= known):
            if known is not None and event_id in self._entries:
                self._entries[event_id].epoch = self._epoch
            return known
        self._versions[event_id] = version
        entry = EventEntry(event, self._epoch)
        self._drop(event_id)
        if entry.key >= self._lower and (self._upper is None or entry.key < self._upper):
            self._hold(entry)
            if len(self._entries) > self.max_events:
                self._shrink()
        return known

    def remove(self, event_id):
        """The event was deleted: gone for good, whatever arrives about it later."""
        self._gone.add(event_id)
        self._versions.pop(event_id, None)
        self._drop(event_id)

    def forget_before(self, moment):
        """Stop holding events that start before ``moment`` (time moves on)."""
        lower = (micros(moment), "")
        while self._by_start and self._by_start[0] < lower:
            self._drop(self._by_start[0][1])
        self._lower = max(self._lower, lower)

    def begin_snapshot(self):
        """Start a new pass over the write side; returns its mark for ``end_snapshot``."""
        self._epoch += 1
        return self._epoch

    def end_snapshot(self, epoch):
        """Everything held that the pass did not see, nor anything since, was deleted
        while we were not listening."""
        for entry in [e for e in self._entries.values() if e.epoch < epoch]:
            self.remove(entry.id)
        self.ready = True

    def _hold(self, entry):
        self._entries[entry.id] = entry
        insort(self._by_start, entry.key)
        for topic in entry.topics:
            insort(self._by_topic.setdefault(topic, []), entry.key)
        for word in entry.words:
            self._by_word.setdefault(word, set()).add(entry.id)
        if entry.series_id is not None:
            insort(self._by_series.setdefault(entry.series_id, []), entry.key)

    def _drop(self, event_id):
        entry = self._entries.pop(event_id, None)
        if entry is None:
            return
        _remove_key(self._by_start, entry.key)
        for topic in entry.topics:
            _remove_key(self._by_topic[topic], entry.key)
        for word in entry.words:
            ids = self._by_word[word]
            ids.discard(event_id)
            if not ids:
                del self._by_word[word]
        if entry.series_id is not None:
            keys = self._by_series[entry.series_id]
            _remove_key(keys, entry.key)
            if not keys:
                del self._by_series[entry.series_id]

    def _shrink(self):
        """Over the bound: let go of the latest events and stop holding anything at or
        after them, so what is held stays one unbroken range of start times."""
        while len(self._entries) > self.max_events:
            last = self._by_start[-1]
            self._drop(last[1])
            self._upper = last if self._upper is None else min(self._upper, last)


def _near_check(query):
    """entry -> its distance in metres if within the radius, else None; None without
    ``near``. A latitude check first: most events fail it without trigonometry."""
    if query["near"] is None:
        return None
    lat, lng = query["near"]["lat"], query["near"]["lng"]
    radius_m = query["radius_km"] * 1000
    reach = math.degrees(radius_m / EARTH_RADIUS_M) * (1 + LAT_MARGIN)

    def near(entry):
        if entry.lat is None or abs(entry.lat - lat) > reach:
            return None
        distance = haversine_m(entry.lng, entry.lat, lng, lat)
        return distance if distance <= radius_m else None  # the edge is in, as with $geoNear

    return near


def _unique(keys):
    previous = None
    for key in keys:
        if key != previous:
            yield key
        previous = key


def _remove_key(keys, key):
    index = bisect_left(keys, key)
    if index < len(keys) and keys[index] == key:
        del keys[index]


class AccountsView:
    """Accounts by id, as users.get returns them (with ``version``)."""

    def __init__(self, max_accounts=200_000):
        self.max_accounts = max_accounts
        self._accounts = OrderedDict()  # id -> user, least recently used first
        self._gone = set()
        self._epoch = 0
        self._seen = {}  # id -> epoch of the last snapshot or change that touched it

    def __len__(self):
        return len(self._accounts)

    def get(self, user_id):
        """The user, GONE if the account was deleted, None if not held here."""
        user = self._accounts.get(user_id)
        if user is not None:
            self._accounts.move_to_end(user_id)
            return user
        return GONE if user_id in self._gone else None

    def apply(self, user):
        """Hold ``user`` unless a same or newer version is held; returns the version
        held before, or None."""
        user_id = user["id"]
        if user_id in self._gone:
            return None
        self._seen[user_id] = self._epoch
        held = self._accounts.get(user_id)
        if held is not None and held["version"] >= user["version"]:
            return held["version"]
        self._accounts[user_id] = user
        self._accounts.move_to_end(user_id)
        while len(self._accounts) > self.max_accounts:
            evicted, _ = self._accounts.popitem(last=False)
            self._seen.pop(evicted, None)
        return held["version"] if held is not None else None

    def remove(self, user_id):
        self._gone.add(user_id)
        self._accounts.pop(user_id, None)
        self._seen.pop(user_id, None)

    def begin_snapshot(self):
        self._epoch += 1
        return self._epoch

    def end_snapshot(self, epoch):
        for user_id in [i for i, seen in self._seen.items() if seen < epoch]:
            self.remove(user_id)
