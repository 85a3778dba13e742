"""Each service owns one MongoDB database; this provider gives its workers that database.

One ``MongoClient`` per service container (pymongo pools connections and is safe
to share between greenthreads). ``prepare`` runs once at start, e.g. to create
the indexes the service's queries need.

Every write waits for the server's journal (``j: true``): without it SecantusDB, like
mongod, acknowledges a write before its log reaches the file, and a kill -9 of the
server loses the last ~100 ms of acknowledged writes (measured: 65 of 300 inserts).
A lost hand-over mark is a reminder mailed twice; a lost event is a 201 that lied.
It costs ~0.4 ms per write round trip. ``MONGO_JOURNAL=false`` turns it off.

Retryable writes are off (``MONGO_RETRY_WRITES``): SecantusDB (0.7) keeps a record of
each one for 30 minutes, at most 10,000, and every write scans them all and, past the
cap, sorts them, so a write costs more the more writes came before it
(``python -m loadtests.retryable_writes``, one client's upserts: 3.2 ms for the first
2,000, 25-26 ms past 12,000; without: 2.8-3.2 ms throughout). Nothing here relies on them: a record does not survive a server restart,
and every write that can fail is retried by its caller and safe to repeat (versioned
upserts, inserts keyed by their id, conditional updates).
"""
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError

from bus.config import flag, setting
from bus.errors import ValidationError

MAX_PAGE = 1000
HEX = frozenset("0123456789abcdef")


def connect(config, database_name):
    """A database handle outside a container (tasks, tests, rebuild tools)."""
    client = MongoClient(
        setting(config, "MONGO_URI"), tz_aware=True, serverSelectionTimeoutMS=5000,
        journal=flag(config, "MONGO_JOURNAL", "true"),
        retryWrites=flag(config, "MONGO_RETRY_WRITES", "false"),
    )
    prefix = setting(config, "MONGO_DATABASE_PREFIX", "")
    return client, client[f"{prefix}{database_name}"]


class Mongo(DependencyProvider):
    def __init__(self, prepare=None, database_name=None):
        self.prepare = prepare
        self.database_name = database_name

    def setup(self):
        self.client, self.database = connect(
            self.container.config, self.database_name or self.container.service_name
        )

    def start(self):
        if self.prepare:
            self.prepare(self.database)

    def stop(self):
        self.client.close()

    def kill(self):
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.database


def save_if_newer(collection, document, same_too=False):
    """Store a versioned copy (a read model's, of another service's resource) unless a
    newer version is there (``same_too``: or the same one). True if stored.

    One round trip: the upsert's filter matches only an older copy; when a newer one
    is there it cannot match, and its insert collides on ``_id``, which is exactly
    "nothing to do". Every service keeps its copies this way."""
    older = "$lte" if same_too else "$lt"
    try:
        collection.replace_one({"_id": document["_id"], "version": {older: document["version"]}},
                               document, upsert=True)
        return True
    except DuplicateKeyError:
        return False


def page_by_id(collection, query, after_id=None, limit=500):
    """Documents matching ``query`` in id order after ``after_id``: the pages a read
    model is rebuilt or caught up from (search.rebuild, the gateway's snapshots).

    Each page is read as bounded id ranges (``IdRanges``), never as "every id after
    this one": SecantusDB reads all of those to return the first ``limit``, so a
    gateway's snapshot of 100,000 events took 489 s that way, and 17 s in ranges."""
    if after_id is not None and not isinstance(after_id, str):
        raise ValidationError({"after_id": ["Not a valid id."]})
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError({"limit": [f"Must be an integer between 1 and {MAX_PAGE}."]})
    found = []
    for ids in _ID_RANGES.walk(collection.full_name, after_id, lambda: limit - len(found)):
        page = list(collection.find({**query, "_id": ids} if ids else query, {"pending_events": 0})
                    .sort("_id", 1).limit(limit - len(found)))
        _ID_RANGES.learn(collection.full_name, ids, page, limit - len(found))
        found.extend(page)
        if len(found) >= limit:
            break
    return found


def ensure_id_pages(collection, live_field):
    """The index page_by_id's ranges use. SecantusDB answers an ``_id`` range from an index
    led by ``_id`` but not from its own ``_id_``: a page of 500 in 20,000 took 600 ms
    without it, 18 ms with it (its explain says COLLSCAN either way). MongoDB would not
    need it. It costs about 0.2 ms a write on SecantusDB (0.98 against 0.80 ms an
    ``update_one``)."""
    collection.create_index([("_id", ASCENDING), (live_field, ASCENDING)], name="id_pages")


class IdRanges:
    """The id ranges one page is read in: the ids are uuid4 hex strings, spread evenly
    over 32 hex digits, so a range sized from the density of the last page holds about
    the documents wanted. Only speed depends on it: the ranges are contiguous in string
    order from ``after_id`` to the end, so any id is in one of them."""

    SPACE = 16 ** 32
    FIRST_GUESS = SPACE // 64  # no density known yet
    MARGIN = 1.25  # read a little more than wanted, rather than two ranges

    def __init__(self):
        self.density = {}  # collection -> documents per unit of the id space

    def walk(self, name, after_id, wanted):
        """The ``_id`` conditions to read in turn ({} for everything); ``wanted()``
        is how many documents are still to find."""
        low = self._position(after_id)
        if after_id is not None and low is None:  # not a uuid hex id: no ranges
            yield {"$gt": after_id}
            return
        low = low or 0
        while True:
            density = self.density.get(name)
            span = self.FIRST_GUESS if not density else int(wanted() * self.MARGIN / density) + 1
            high = low + span
            lower = {} if after_id is None and low == 0 else {"$gt": self._id(low)}
            if high >= self.SPACE - 1:
                yield lower  # the rest of the id space, and any id sorting after it
                return
            yield {**lower, "$lte": self._id(high)}
            low = high

    def learn(self, name, ids, page, wanted):
        """Density from what a range held. Open-ended ranges count too: a density learnt
        while the collection was small must not make every later page open-ended."""
        low = self._position(ids["$gt"]) if "$gt" in ids else 0
        if low is None:  # read after an id that is not uuid hex: no position to learn from
            return
        if len(page) >= wanted:  # the range held more: the page ends at its last id
            end = self._position(page[-1]["_id"])
            if end is not None and end > low:
                self.density[name] = len(page) / (end - low)
            return
        high = self._position(ids["$lte"]) if "$lte" in ids else self.SPACE
        if high is not None and high > low:
            self.density[name] = max(len(page), 0.5) / (high - low)  # none: as if half of one

    @staticmethod
    def _position(identifier):
        if isinstance(identifier, str) and len(identifier) == 32 and HEX.issuperset(identifier):
            return int(identifier, 16)
        return None

    @staticmethod
    def _id(position):
        return format(position, "032x")


_ID_RANGES = IdRanges()  # per process: how dense each collection's ids are


@rpc
def database_health(self):
    """The ``health`` RPC the gateway's /health asks, for a service with ``db = Mongo()``:
    ``health = database_health`` in the class. (A function, not a mixin class: `nameko
    run` would take any class with an entrypoint in a service's module for a service.)"""
    self.db.command("ping")
    return "ok"
