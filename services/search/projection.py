"""From `events.*` messages (or the write side's pages) to read-model documents.

Idempotent and safe out of order: a document is stored only if its version is
newer than the stored one, and a deletion is stored as a versioned tombstone so
a late, older update cannot bring the event back.
"""
import logging
import time
from datetime import datetime

from bus.event_search import tokenise  # noqa: F401  (the read model's words)
from bus.mongo import save_if_newer
from services.search import storage

log = logging.getLogger(__name__)

REBUILD_PAGE = 500


def from_event(event):
    """The read-model document of an event resource."""
    place = event.get("place")
    document = {
        "_id": event["id"],
        "version": event["version"],
        "status": event["status"],
        "starts_at": _datetime(event["starts_at"]),
        "topics": list(event["topics"]),
        "words": tokenise(event["title"], event["description"], *event["topics"],
                          place["name"] if place else None),
        "event": event,
    }
    if event.get("series_id") is not None:  # GET /events?series_id= (its index)
        document["series_id"] = event["series_id"]
    if place:
        document["location"] = {"type": "Point", "coordinates": [place["lng"], place["lat"]]}
    return document


def tombstone(event_id, version):
    return {"_id": event_id, "version": version, "status": "deleted"}


def from_message(message):
    kind = message["event_type"]
    if kind in ("event_created", "event_updated"):
        document = from_event(message["data"]["event"])
        document["version"] = message["version"]
        return document
    if kind == "event_deleted":
        return tombstone(message["aggregate_id"], message["version"])
    raise ValueError(f"search does not project {kind}")


def apply(db, message):
    document = from_message(message)
    if "starts_at" in document:
        storage.note_latest_start(db, document["starts_at"])
    for collection in storage.targets(db):
        save_if_newer(collection, document)


def rebuild(db, all_events, total=None, page_size=None):
    """Rebuild the read model from the write side into a fresh collection, then swap it in.

    ``all_events(after_id, limit)`` is the events service's RPC. Searches keep
    reading the old collection meanwhile; the projection writes to both."""
    building = storage.begin_rebuild(db, total)
    time.sleep(storage.POINTER_TTL)  # every projection now writes to `building` too
    log.info("search rebuild started into %s (%s events on the write side)", building.name,
             total if total is not None else "?")
    copied, after_id = 0, None
    while True:
        page = all_events(after_id, page_size or REBUILD_PAGE)
        if not page:
            break
        documents = [from_event(event) for event in page]
        storage.note_latest_start(db, max(d["starts_at"] for d in documents))
        storage.add_all_if_newer(building, documents)
        copied += len(page)
        after_id = page[-1]["id"]
        storage.record_progress(db, copied)
        log.info("search rebuild: %d/%s events copied", copied, total or "?")
    # Deletions seen by the old read model keep a late, stale update from resurrecting them.
    storage.save_all_if_newer(building, list(storage.live(db).find({"status": "deleted"})))
    storage.finish_rebuild(db, building, copied)
    log.info("search rebuild finished: %d events, now serving %s", copied, building.name)
    return {"events": copied}


def _datetime(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
