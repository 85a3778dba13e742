"""Commands on the write model, as plain functions of a database.

Each command validates its input, writes the event and its outgoing message in
one atomic update (bus.outbox) and returns the event as API.md shows it. The
service then asks the outbox to publish; if that fails the sweeper does it.
"""
import hashlib
import json
import re
import uuid
from datetime import timedelta

from marshmallow import ValidationError as SchemaError
from pymongo.errors import BulkWriteError

from bus import recurrence
from bus.concurrency import LOST, compare_and_set
from bus.errors import Conflict, NotFound, ValidationError, validation_error
from bus.messages import iso, new_message, utc_now
from bus.mongo import page_by_id
from bus.outbox import PENDING
from services.events import storage
from services.events.schemas import EventFields

WRITABLE = ("title", "description", "topics", "starts_at", "ends_at", "timezone", "place",
            "organizer", "status")
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
# Optimistic concurrency (bus.concurrency): a write that lost a race re-reads and tries
# again; one that keeps losing is a 409.
KEPT_CHANGING = "The event kept changing while this change was written; read it and retry."

_schema = EventFields()


def create(db, fields, command_id=None):
    """A new event. ``command_id`` (the gateway's, for an Idempotency-Key) becomes its
    id: the same command again finds the event it made instead of making another.
    With a `recurrence`, the first occurrence of the new series (create_series)."""
    if isinstance(fields, dict) and fields.get("recurrence") is not None:
        return create_series(db, fields, command_id)[0]
    if isinstance(fields, dict) and "recurrence" in fields:  # null: an event that does not recur
        fields = {name: value for name, value in fields.items() if name != "recurrence"}
    if command_id is not None:
        done = storage.find_live(db, command_id) if isinstance(command_id, str) else None
        if done is not None:
            return to_resource(done)
    document, message = new_event(fields, command_id)
    storage.insert(db, document, message)
    return message["data"]["event"]


def create_series(db, fields, command_id=None):
    """Every occurrence of a new recurring event (API.md v1.1), soonest first, stored in
    one write (insert_many), each with its `event_created` message in its outbox. The
    first occurrence's id (``command_id`` when given) is also the series id, so the
    same command again finds the series it made."""
    if command_id is not None and isinstance(command_id, str):
        done = storage.series_occurrences(db, command_id)
        if done:
            return [to_resource(document) for document in done]
    rule = fields.get("recurrence")
    first, _ = new_event({k: v for k, v in fields.items() if k != "recurrence"},
                               command_id)
    try:
        times = recurrence.occurrences(rule, first["starts_at"], first.get("ends_at"),
                                       first["timezone"])
    except recurrence.RuleError as error:
        raise ValidationError({"recurrence": [str(error)]}) from None
    series_id = first["_id"]
    documents, events = [], []
    for index, (starts_at, ends_at) in enumerate(times):
        document = {**first, "_id": series_id if index == 0 else uuid.uuid4().hex,
                    "starts_at": starts_at, "ends_at": ends_at, "series_id": series_id,
                    "recurrence": rule}
        event = to_resource(document)
        document[PENDING] = [new_message("events", "event_created", document["_id"],
                                                 1, event=event)]
        documents.append(document)
        events.append(event)
    try:
        storage.insert_all(db, documents)
    except BulkWriteError:  # the same command, at the same moment: its series stands
        if command_id is None:
            raise
        return create_series(db, fields, command_id)
    return events


def series(db, series_id):
    """API.md v1.1's series resource: {id, recurrence, occurrences, next}."""
    occurrences = _occurrences(db, series_id)
    now = _now()
    upcoming = next((o for o in occurrences if o["starts_at"] >= now), None)
    return {"id": series_id, "recurrence": occurrences[0]["recurrence"],
            "occurrences": len(occurrences),
            "next": to_resource(upcoming) if upcoming is not None else None}


def new_event(fields, event_id=None):
    """A validated new event document and its `event_created` message, not yet stored."""
    values = _load(fields, partial=False)
    _check_times(values, values)
    now = _now()
    if not (isinstance(event_id, str) and ID_PATTERN.fullmatch(event_id)):
        event_id = uuid.uuid4().hex
    document = {"_id": event_id, **values, "version": 1, "created_at": now,
                "updated_at": now}
    event = to_resource(document)
    return document, new_message("events", "event_created", document["_id"], 1, event=event)


def update(db, event_id, changes):
    values = _load(changes, partial=True)
    return _write(db, event_id, lambda document: _changed(document, values))


def _changed(document, values, series_change=None):
    """(the event after, the MongoDB update, its `event_updated`) of a PATCH of
    ``document``. ``series_change``: the series_cancelled change that covers it."""
    updated = {**document, **values, "version": document["version"] + 1,
               "updated_at": _now()}
    _check_times(updated, values)
    before, after = to_resource(document), to_resource(updated)
    changed = [field for field in WRITABLE if before[field] != after[field]]
    message = new_message(
        "events", "event_updated", document["_id"], updated["version"], event=after,
        changed=changed, previous={field: before[field] for field in changed},
        **_covered(series_change))
    fields = {field: updated[field] for field in (*values, "version", "updated_at")}
    return after, {"$set": fields}, message


def _deleted(document, series_change=None):
    """(the event as deleted, the MongoDB update, its `event_deleted`) of a DELETE."""
    # Deleting is a new version too, so a projection can tell it from older updates.
    version = document["version"] + 1
    now = _now()
    event = to_resource({**document, "version": version, "updated_at": now})
    message = new_message("events", "event_deleted", document["_id"], version, event=event,
                          **_covered(series_change))
    tombstone = {"deleted": True, "deleted_at": now, "version": version, "updated_at": now}
    return event, {"$set": tombstone}, message


def _covered(series_change):
    return {} if series_change is None else {"series_change": series_change}


def _write(db, event_id, change_of):
    """One event's change under the optimistic-concurrency rule (bus.concurrency):
    ``change_of(document)`` gives (resource, update, message) for what was read, and
    the write is conditional on the version read."""
    def attempt():
        document = _find(db, event_id)
        resource, update, message = change_of(document)
        if storage.replace_version(db, event_id, document["version"], update, message):
            return resource
        return LOST

    return compare_and_set(attempt, KEPT_CHANGING)


def _write_all(db, series_id, documents, change_of, summary=None):
    """``_write`` for a series' occurrences, in one round trip for all (storage
    .replace_versions) and another, from a fresh read, for those not written (one lost a
    race), under the same rule; ``change_of`` may answer None (leave that one). An
    occurrence deleted meanwhile is left out. Answers the resources written; a 409
    (Conflict) names in its details the ids `changed` before it and those `unchanged`.

    ``summary(covered)``, for a change that cancels: its one series_cancelled message
    (_series_cancelled). It goes in the outbox of the soonest occurrence of the round,
    in the same atomic write as that occurrence's own change, and that write comes last
    in the round (written in order), so it is stored only once every other write of the
    round was: it covers exactly what the change wrote, once, and no crash can keep the
    occurrences' changes without it, unless a race split the change over rounds."""
    todo, done = list(documents), []
    covered = []  # what the stored series message covers; empty until it is stored

    def attempt():
        changes = [(document, *change) for document in todo
                   if (change := change_of(document)) is not None]
        writes = [(document["_id"], document["version"], update, [message])
                  for document, _, update, message in changes]
        if summary is not None and writes:  # todo is soonest first: its first carries it
            event_id, version, update, messages = writes.pop(0)
            cancelled = done + [resource for _, resource, _, _ in changes]
            writes.append((event_id, version, update, [*messages, summary(cancelled)]))
        unwritten = storage.replace_versions(db, writes) if writes else set()
        done.extend(resource for document, resource, _, _ in changes
                    if document["_id"] not in unwritten)
        if summary is not None and writes and not unwritten:
            covered[:] = done
        todo[:] = ([o for o in storage.series_occurrences(db, series_id)
                    if o["_id"] in unwritten]
                   if unwritten else [])  # a fresh read only for those not written
        return LOST if todo else done

    try:
        return compare_and_set(attempt, KEPT_CHANGING)
    except Conflict:
        # some may be written: say which, so the caller knows what the same request
        # again will complete
        raise Conflict(
            f"{len(done)} occurrences were changed and {len(todo)} kept changing and were "
            "not; the same request again changes those.",
            {"changed": [e["id"] for e in done], "unchanged": [o["_id"] for o in todo]},
        ) from None
    finally:
        if summary is not None and done and not covered:
            # A race split the change and its last round wrote nothing (what was left
            # started, or was deleted, meanwhile), or a 409 stopped it midway: the ones
            # done are covered in a write of their own, the one case that a crash just
            # before can leave without its message.
            first = min(done, key=_soonest)
            storage.add_message(db, first["id"], summary(done))


def _soonest(event):
    return event["starts_at"], event["id"]


def _series_cancelled(series_id, change):
    """``summary`` of _write_all for the series change ``change`` that cancels or deletes
    occurrences: its series_cancelled message (bus.messages) covering ``cancelled``."""
    def covering(cancelled):
        cancelled = sorted(cancelled, key=_soonest)
        first = cancelled[0]
        return new_message(
            "events", "series_cancelled", series_id, first["version"],
            series_id=series_id, change_id=change, first=first,
            occurrences=[{"id": e["id"], "version": e["version"]} for e in cancelled])

    return covering


def update_series(db, series_id, changes):
    """PATCH /series/{id}: every occurrence that has not started takes the changes, each
    as a PATCH of that event would (a new version, an `event_updated`). `starts_at` is
    the new start of the next occurrence: each one moves by the same wall-clock shift in
    its time zone; `ends_at` likewise sets the next one's end, and each occurrence then
    lasts as long (wall clock); without it each keeps its own duration. Answers
    {"series": the series resource, "changed": the changed occurrences}."""
    if isinstance(changes, dict) and "recurrence" in changes:
        raise ValidationError({"recurrence": [recurrence.FIXED]})
    values = _load(changes, partial=True)
    upcoming = _upcoming(db, series_id)
    changed = []
    if upcoming:
        # cancelling them: their reminders' owners are told once for the series
        change = uuid.uuid4().hex if values.get("status") == "cancelled" else None
        patch = _patch_key(values)
        # the same PATCH again after a 409: the ones it changed then are left, and the
        # others move from where the next occurrence was then, as they would have
        taken = [o["series_patch"] for o in upcoming if _took(o, patch)]
        reference = taken[0]["from"] if taken else upcoming[0]["starts_at"]
        values_for = _series_changes(upcoming[0], values, reference)

        def change_of(document):
            occurrence_values = None if _took(document, patch) else values_for(document)
            if occurrence_values is None:
                return None
            after, update, message = _changed(document, occurrence_values, change)
            update["$set"]["series_patch"] = {"key": patch, "version": after["version"],
                                              "from": reference}
            return after, update, message

        changed = _write_all(db, series_id, upcoming, change_of,
                             None if change is None else _series_cancelled(series_id, change))
    return {"series": series(db, series_id), "changed": changed}


def delete_series(db, series_id):
    """DELETE /series/{id}: deletes every occurrence that has not started, each as a
    DELETE of that event would; one series_cancelled covers them all. Answers the ids
    of the deleted occurrences."""
    change = uuid.uuid4().hex
    deleted = _write_all(db, series_id, _upcoming(db, series_id),
                         lambda document: _deleted(document, change),
                         _series_cancelled(series_id, change))
    return [event["id"] for event in deleted]


def _patch_key(values):
    """What a series PATCH's changes are, as the occurrences it wrote record it."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _took(document, patch):
    """Whether ``document`` took the series PATCH ``patch`` and has not changed since."""
    taken = document.get("series_patch")
    return (taken is not None and taken["key"] == patch
            and taken["version"] == document["version"])


def _series_changes(first, values, reference):
    """For each occurrence of a series PATCH whose first not-started occurrence is
    ``first``: its own changes (None: it started meanwhile, leave it). A new
    `starts_at` is the next occurrence's, which started at ``reference``."""
    zone = values.get("timezone", first["timezone"])
    new_start = values.get("starts_at", reference)
    shift = recurrence.wall_shift(reference, new_start, zone)
    duration = None
    if values.get("ends_at") is not None:
        duration = recurrence.wall_shift(new_start, values["ends_at"], zone)
        if duration <= timedelta(0):
            raise ValidationError({"ends_at": [
                "Must be after starts_at (the next occurrence's start)."]})
    moves = "starts_at" in values or duration is not None
    others = {name: value for name, value in values.items()
              if name not in ("starts_at", "ends_at")}
    now = _now()

    def values_for(document):
        if document["starts_at"] <= now:
            return None
        changes = dict(others)
        if moves:
            changes["starts_at"], changes["ends_at"] = recurrence.moved(
                document["starts_at"], document.get("ends_at"),
                values.get("timezone", document["timezone"]), shift, duration)
        if "ends_at" in values and values["ends_at"] is None:
            changes["ends_at"] = None
        return changes

    return values_for


def _upcoming(db, series_id):
    """The series' occurrences that have not started (starts_at > now), soonest first;
    NotFound if the series has no occurrence at all."""
    now = _now()
    return [o for o in _occurrences(db, series_id) if o["starts_at"] > now]


def _occurrences(db, series_id):
    """Every live occurrence of the series, soonest first; NotFound if none."""
    if not isinstance(series_id, str) or not ID_PATTERN.fullmatch(series_id):
        raise NotFound("No such series.")
    occurrences = storage.series_occurrences(db, series_id)
    if not occurrences:
        raise NotFound("No such series.")
    return occurrences


def delete(db, event_id):
    _write(db, event_id, _deleted)


def get(db, event_id):
    return to_resource(_find(db, event_id))


def all_events(db, after_id=None, limit=500):
    """A page of live events ordered by id, for rebuilding read models."""
    page = page_by_id(db[storage.COLLECTION], storage.LIVE, after_id, limit)
    return [to_resource(document) for document in page]


def count(db):
    return storage.count_live(db)


def to_resource(document):
    """The event exactly as API.md returns it."""
    return {
        "id": document["_id"],
        "title": document["title"],
        "description": document["description"],
        "topics": list(document["topics"]),
        "starts_at": iso(document["starts_at"]),
        "ends_at": iso(document.get("ends_at")),
        "timezone": document["timezone"],
        "place": _place(document.get("place")),
        "organizer": document.get("organizer"),
        "status": document["status"],
        "version": document["version"],
        "created_at": iso(document["created_at"]),
        "updated_at": iso(document["updated_at"]),
        "series_id": document.get("series_id"),
        "recurrence": document.get("recurrence"),
    }


def _place(place):
    if place is None:
        return None
    return {"name": place["name"], "address": place.get("address"),
            "lat": float(place["lat"]), "lng": float(place["lng"])}


def _load(data, partial):
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Expected an object of event fields."]})
    try:
        values = _schema.load(data, partial=partial)
    except SchemaError as error:
        raise validation_error(error) from error
    if values.get("place") is not None:
        place = values["place"]
        values["place"] = {**place, "lat": float(place["lat"]), "lng": float(place["lng"])}
    if "topics" in values:
        values["topics"] = list(dict.fromkeys(values["topics"]))  # drop repeats, keep order
    return values


def _check_times(event, given):
    """ends_at must follow starts_at, including after a PATCH that moves only one."""
    if event.get("ends_at") is not None and event["ends_at"] <= event["starts_at"]:
        if "ends_at" in given:
            raise ValidationError({"ends_at": ["Must be after starts_at."]})
        raise ValidationError({"starts_at": ["Must be before the event's ends_at."]})


def _find(db, event_id):
    if not isinstance(event_id, str) or not ID_PATTERN.fullmatch(event_id):
        raise NotFound("No such event.")
    document = storage.find_live(db, event_id)
    if document is None:
        raise NotFound("No such event.")
    return document


def _now():
    return utc_now().replace(microsecond=0)  # whole seconds, like every other resource
