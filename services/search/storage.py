"""The read model: one document per event, in a collection named by a pointer document.

A pointer (`state` collection, `_id: "read_model"`) names the live collection and,
while `search.rebuild` runs, the one being built. Queries read the live one; the
projection writes to both, so nothing that happens during a rebuild is missed,
and the swap is one atomic update of the pointer (no rename, which MongoDB does
not allow on sharded clusters and which would race with the projection's writes).

Document: `_id` (event id), `version`, `status` ("scheduled" | "cancelled" |
"deleted" for a tombstone), `starts_at` (UTC datetime), `topics`, `words` (see
projection.tokenise), `location` (GeoJSON Point [lng, lat], absent without a
place) and `event`, the resource as API.md returns it.
"""
import time
import uuid
from datetime import timedelta

from pymongo import ASCENDING, GEOSPHERE, ReplaceOne, ReturnDocument
from pymongo.errors import BulkWriteError

from bus.errors import Conflict
from bus.messages import iso, utc_now

STATE = "state"
POINTER = "read_model"
FIRST_COLLECTION = "events_initial"
# A rebuild that has not reported progress for this long is presumed dead.
REBUILD_STALE_AFTER = timedelta(seconds=60)
DUPLICATE_KEY = 11000
# The projection reads the pointer at most this often (it is one more round trip per
# event otherwise); a rebuild waits this long after it starts before it copies, so a
# change projected with the old pointer is already on the write side the copy reads.
POINTER_TTL = 1.0


def ensure_indexes(db):
    db[STATE].update_one({"_id": POINTER}, {"$setOnInsert": {"live": FIRST_COLLECTION,
                                                             "building": None}}, upsert=True)
    create_indexes(live(db))
    if "latest_starts_at" not in pointer(db):  # a read model from before this bound existed
        last = live(db).find_one({"starts_at": {"$exists": True}}, sort=[("starts_at", -1)])
        if last is not None:
            note_latest_start(db, last["starts_at"])


BY_START = [("starts_at", ASCENDING), ("_id", ASCENDING)]
INDEXES = {
    "location_2dsphere": [("location", GEOSPHERE)],
    "topics_1_starts_at_1__id_1": [("topics", ASCENDING), ("starts_at", ASCENDING),
                                   ("_id", ASCENDING)],
    "starts_at_1__id_1": BY_START,
    "words_1": [("words", ASCENDING)],
    # GET /events?series_id=: one series' occurrences by start time
    "series_id_1_starts_at_1__id_1": [("series_id", ASCENDING), ("starts_at", ASCENDING),
                                      ("_id", ASCENDING)],
}


def create_indexes(collection):
    # Only missing ones: SecantusDB refuses to re-create a 2dsphere index it already
    # has (it stores a version field the request lacks), where MongoDB would accept it.
    existing = collection.index_information()
    for name, keys in INDEXES.items():
        if name not in existing:
            collection.create_index(keys, name=name)


def note_latest_start(db, starts_at):
    """Keep an upper bound of every start time, where time-window scans stop.

    Written only when ``starts_at`` is past the bound this process last saw: most
    events start before the latest one, and for them this costs no round trip."""
    known = _projection_state(db).get("latest_starts_at")
    if known is not None and starts_at <= known:
        return
    db[STATE].update_one({"_id": POINTER}, {"$max": {"latest_starts_at": starts_at}})
    _projection_state(db)["latest_starts_at"] = starts_at


def pointer(db):
    return db[STATE].find_one({"_id": POINTER}) or {"live": FIRST_COLLECTION, "building": None}


def live(db):
    return db[pointer(db)["live"]]


def targets(db):
    """The collections a projected change goes to: the live one, and a rebuild's."""
    state = _projection_state(db)
    return [db[name] for name in (state["live"], state.get("building")) if name]


_read_pointers = {}  # (client, database) -> (read at, pointer)


def _projection_state(db):
    """The pointer as this process's projection last read it, at most POINTER_TTL old."""
    key = (id(db.client), db.name)
    read_at, state = _read_pointers.get(key, (None, None))
    now = time.monotonic()
    if read_at is None or now - read_at > POINTER_TTL:
        state = pointer(db)
        _read_pointers[key] = (now, state)
    return state


def save_all_if_newer(collection, documents):
    if not documents:
        return
    requests = [ReplaceOne({"_id": d["_id"], "version": {"$lt": d["version"]}}, d, upsert=True)
                for d in documents]
    try:
        collection.bulk_write(requests, ordered=False)
    except BulkWriteError as error:
        if any(e["code"] != DUPLICATE_KEY for e in error.details["writeErrors"]):
            raise


def add_all_if_newer(collection, documents):
    """``save_all_if_newer`` for a collection being rebuilt, where most ids are not there
    yet: one insert for the batch, then the versioned replace only for the ids the
    projection stored first. Half the time of a conditional upsert each on SecantusDB
    (0.5 against 1.0-1.2 s for 500), which commits and syncs every upsert on its own."""
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        taken = error.details["writeErrors"]
        if any(e["code"] != DUPLICATE_KEY for e in taken):
            raise
        save_all_if_newer(collection, [documents[e["index"]] for e in taken])


def begin_rebuild(db, total):
    """Claim the rebuild and name a fresh collection for it; Conflict if one is running."""
    now = utc_now()
    name = f"events_{uuid.uuid4().hex[:12]}"
    claimed = db[STATE].find_one_and_update(
        {"_id": POINTER, "$or": [{"building": None},
                                 {"rebuild.seen_at": {"$lt": now - REBUILD_STALE_AFTER}}]},
        {"$set": {"building": name, "rebuild": {"started_at": now, "seen_at": now,
                                                "copied": 0, "total": total}}},
        return_document=ReturnDocument.BEFORE,
    )
    if claimed is None:
        raise Conflict("A rebuild of the search read model is already running.")
    for leftover in (claimed.get("building"), claimed.get("previous")):
        if leftover:  # a dead rebuild's collection, or the one the last rebuild replaced
            db.drop_collection(leftover)
    create_indexes(db[name])
    return db[name]


def record_progress(db, copied):
    db[STATE].update_one({"_id": POINTER}, {"$set": {"rebuild.copied": copied,
                                                     "rebuild.seen_at": utc_now()}})


def finish_rebuild(db, collection, copied):
    """Swap the rebuilt collection in. The old one is kept as `previous` (queries that
    read the pointer just before the swap still find it) and dropped by the next rebuild."""
    swapped = db[STATE].find_one_and_update(
        {"_id": POINTER, "building": collection.name},
        [{"$set": {"previous": "$live", "live": collection.name, "building": None,
                   "rebuild.copied": copied, "rebuild.finished_at": utc_now()}}],
    )
    if swapped is None:
        raise Conflict("The rebuild was taken over by another one.")



def rebuild_status(db):
    state = pointer(db)
    progress = state.get("rebuild") or {}
    return {
        "running": bool(state.get("building")),
        "copied": progress.get("copied", 0),
        "total": progress.get("total"),
        "started_at": iso(progress.get("started_at")),
        "finished_at": iso(progress.get("finished_at")),
        "collection": state["live"],
    }
