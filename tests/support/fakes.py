"""In-memory fakes of the services' storage layers, for handler unit tests without a
database server (as cosmicpython tests its handlers against a fake repository).

A fake has the storage module's interface: the same functions with the same
arguments and results, and the same constants and pure helpers (taken from the
real module, so each rule stays in one place). A handler test swaps it in for
the module (``in_memory(monkeypatch, handlers, FakeUsersStorage())``) and passes
the fake where the handler expects its database; the handler's logic then runs
in microseconds. tests/integration/test_storage_fakes.py runs the same storage
scenarios against a fake and the real module on SecantusDB, and fails when a
real storage function has no fake counterpart, so a fake cannot drift from what
it stands in for.

Documents are deep-copied in and out, as a round trip through the database
copies them. The collection view (``fake.users``, ``fake["users"]``) serves what
handlers and tests read directly: equality queries (a list field matches any of
its elements, None matches a missing field) and $ne, $gt, $lt, $in, $exists;
updates with $set, $setOnInsert, $unset, $inc, $push ($each, $slice) and $pull.
"""
import copy

from pymongo.errors import DuplicateKeyError

from services.alerts import storage as alerts_storage
from services.events import storage as events_storage
from services.users import storage as users_storage

MISSING = object()


def _get(document, path):
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, MISSING)
        elif isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else MISSING
        else:
            return MISSING
    return value


def _equal(value, expected):
    if expected is None:
        return value is MISSING or value is None
    if isinstance(value, list) and not isinstance(expected, list):
        return expected in value
    return value is not MISSING and value == expected


def _matches_condition(value, condition):
    if not (isinstance(condition, dict) and condition and
            all(key.startswith("$") for key in condition)):
        return _equal(value, condition)
    values = value if isinstance(value, list) else [value]
    for operator, operand in condition.items():
        if operator == "$ne":
            ok = not _equal(value, operand)
        elif operator == "$in":
            ok = any(_equal(value, option) for option in operand)
        elif operator == "$exists":
            ok = (value is not MISSING) == bool(operand)
        elif operator in ("$gt", "$lt"):
            present = [v for v in values if v is not MISSING and v is not None]
            ok = any((v > operand) if operator == "$gt" else (v < operand) for v in present)
        else:
            raise NotImplementedError(f"the fake does not know the query operator {operator}")
        if not ok:
            return False
    return True


def matches(document, query):
    return all(_matches_condition(_get(document, path), condition)
               for path, condition in query.items())


def _set(document, path, value):
    *parents, last = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[last] = value


def apply_update(document, update, inserting=False):
    """``document`` changed in place by a MongoDB update document."""
    for operator, fields in update.items():
        for path, value in fields.items():
            if operator == "$set" or (operator == "$setOnInsert" and inserting):
                _set(document, path, copy.deepcopy(value))
            elif operator == "$setOnInsert":
                pass
            elif operator == "$unset":
                document.pop(path, None)
            elif operator == "$inc":
                _set(document, path, (_get(document, path) if path in document else 0) + value)
            elif operator == "$push":
                items = document.setdefault(path, [])
                if isinstance(value, dict) and "$each" in value:
                    items.extend(copy.deepcopy(value["$each"]))
                    if "$slice" in value:
                        keep = value["$slice"]
                        document[path] = items[keep:] if keep < 0 else items[:keep]
                else:
                    items.append(copy.deepcopy(value))
            elif operator == "$pull":
                document[path] = [item for item in document.get(path, [])
                                  if not (matches(item, value) if isinstance(value, dict)
                                          and not any(k.startswith("$") for k in value)
                                          else _matches_condition(item, value))]
            else:
                raise NotImplementedError(f"the fake does not know the update {operator}")
    return document


class FakeCursor:
    def __init__(self, documents):
        self.documents = documents

    def sort(self, key, direction=1):
        self.documents.sort(key=lambda d: _get(d, key), reverse=direction == -1)
        return self

    def limit(self, count):
        if count:
            self.documents = self.documents[:count]
        return self

    def __iter__(self):
        return iter(self.documents)


class FakeCollection:
    """One collection of a fake: what handlers and tests read and change directly."""

    def __init__(self, unique=()):
        self.documents = {}  # _id -> document
        self.unique = list(unique)  # fields with a unique (sparse, multikey) index

    def _matching(self, query):
        return [d for d in self.documents.values() if matches(d, query)]

    def find_one(self, query=None, projection=None):
        found = self._matching(query or {})
        return copy.deepcopy(found[0]) if found else None

    def find(self, query=None, projection=None):
        excluded = {k for k, v in (projection or {}).items() if not v}
        return FakeCursor([{k: v for k, v in copy.deepcopy(d).items() if k not in excluded}
                           for d in self._matching(query or {})])

    def count_documents(self, query):
        return len(self._matching(query))

    def _check_unique(self, document):
        for field in self.unique:
            keys = _get(document, field)
            keys = set(keys if isinstance(keys, list) else [keys]) - {MISSING}
            for other in self.documents.values():
                if other["_id"] == document["_id"]:
                    continue
                theirs = _get(other, field)
                theirs = set(theirs if isinstance(theirs, list) else [theirs]) - {MISSING}
                if keys & theirs:
                    raise DuplicateKeyError(f"E11000 duplicate key error: {field}", 11000,
                                            {"keyPattern": {field: 1}})

    def insert_one(self, document):
        if document["_id"] in self.documents:
            raise DuplicateKeyError("E11000 duplicate key error: _id", 11000,
                                    {"keyPattern": {"_id": 1}})
        document = copy.deepcopy(document)
        self._check_unique(document)
        self.documents[document["_id"]] = document

    def update(self, query, update, upsert=False):
        """The document after ``update``, or None if none matched and none was made."""
        found = self._matching(query)
        if found:
            before = found[0]
            after = apply_update(copy.deepcopy(before), update)
        elif upsert:
            before = None
            seed = {k: v for k, v in query.items() if not isinstance(v, dict)}
            after = apply_update(copy.deepcopy(seed), update, inserting=True)
        else:
            return None
        self._check_unique(after)
        if before is not None and before["_id"] != after["_id"]:
            raise ValueError("an update cannot change _id")
        self.documents[after["_id"]] = after
        return copy.deepcopy(after)

    def update_one(self, query, update, upsert=False):
        matched = self.count_documents(query) > 0
        self.update(query, update, upsert=upsert)
        return _UpdateResult(int(matched))


class _UpdateResult:
    def __init__(self, matched):
        self.matched_count = self.modified_count = matched


class FakeStorage:
    """What the fakes share: collections by name, as ``fake[name]`` and ``fake.name``
    (the fake is passed to handlers as their database)."""

    COLLECTIONS = {}  # name -> unique fields

    def __init__(self):
        self.collections = {name: FakeCollection(unique)
                            for name, unique in self.COLLECTIONS.items()}

    def __getitem__(self, name):
        return self.collections[name]

    def __getattr__(self, name):
        collections = self.__dict__.get("collections", {})
        if name in collections:
            return collections[name]
        raise AttributeError(name)

    def pending(self, collection, document_id):
        """The outbox of a stored document (what the relay would publish)."""
        return self[collection].documents[document_id].get("pending_events", [])


class FakeEventsStorage(FakeStorage):
    """services/events/storage.py in memory."""

    COLLECTION = events_storage.COLLECTION
    LIVE = events_storage.LIVE
    COLLECTIONS = {COLLECTION: ()}

    def find_live(self, db, event_id):
        return self[self.COLLECTION].find_one({"_id": event_id, **self.LIVE})

    def insert(self, db, document, message):
        self[self.COLLECTION].update(
            {"_id": document["_id"]},
            {"$setOnInsert": document, "$push": {"pending_events": message}}, upsert=True)

    def replace_version(self, db, event_id, version, changes, message):
        return self[self.COLLECTION].update(
            {"_id": event_id, "version": version, **self.LIVE},
            {**changes, "$push": {"pending_events": message}}) is not None

    def count_live(self, db):
        return self[self.COLLECTION].count_documents(self.LIVE)

    def ensure_indexes(self, db):
        pass

    def insert_all(self, db, documents):
        for document in documents:
            self[self.COLLECTION].insert_one(document)

    def series_occurrences(self, db, series_id):
        found = self[self.COLLECTION].find({"series_id": series_id, **self.LIVE})
        return sorted(found, key=lambda d: (d["starts_at"], d["_id"]))


class FakeUsersStorage(FakeStorage):
    """services/users/storage.py in memory, unique usernames and emails included."""

    USERS = users_storage.USERS
    LOGIN_ATTEMPTS = users_storage.LOGIN_ATTEMPTS
    REQUESTS = users_storage.REQUESTS
    LIVE = users_storage.LIVE
    COLLECTIONS = {USERS: ("username_key", "email_keys"), LOGIN_ATTEMPTS: (), REQUESTS: ()}
    throttle_key = staticmethod(users_storage.throttle_key)
    request_key = staticmethod(users_storage.request_key)
    email_key = staticmethod(users_storage.email_key)
    email_keys = staticmethod(users_storage.email_keys)
    duplicate_field = staticmethod(users_storage.duplicate_field)

    def ensure_indexes(self, db):
        pass  # the collection's unique fields are its indexes

    def live(self, db, user_id):
        return self[self.USERS].find_one({"_id": user_id, **self.LIVE})

    def by_username(self, db, username):
        return self[self.USERS].find_one({"username_key": username.lower(), **self.LIVE})

    def by_email(self, db, email):
        return self[self.USERS].find_one({"email_keys": self.email_key(email), **self.LIVE})

    def insert(self, db, user):
        self[self.USERS].insert_one(user)

    def update_unchanged(self, db, user, update):
        query = {"_id": user["_id"], "version": user["version"], **self.LIVE}
        return self[self.USERS].update(query, update) is not None

    def update_live(self, db, user_id, update):
        return self[self.USERS].update({"_id": user_id, **self.LIVE}, update)

    def add_login_attempt(self, db, key, attempt, keep, expires_at):
        return self[self.LOGIN_ATTEMPTS].update(
            {"_id": key}, {"$push": {"attempts": {"$each": [attempt], "$slice": -keep}},
                           "$set": {"expires_at": expires_at}}, upsert=True)["attempts"]

    def forget_login_attempt(self, db, keys, attempt_id):
        for key in keys:
            self[self.LOGIN_ATTEMPTS].update({"_id": key},
                                             {"$pull": {"attempts": {"id": attempt_id}}})

    def insert_request(self, db, record):
        try:
            self[self.REQUESTS].insert_one(record)
        except DuplicateKeyError:
            return False
        return True

    def find_request(self, db, request_id):
        return self[self.REQUESTS].find_one({"_id": request_id})

    def replace_request(self, db, before, after):
        held = self[self.REQUESTS].documents.get(before["_id"])
        if held is None or held["claim"] != before["claim"]:
            return False
        self[self.REQUESTS].documents[before["_id"]] = copy.deepcopy(after)
        return True

    def delete_request(self, db, request_id, claim):
        held = self[self.REQUESTS].documents.get(request_id)
        if held is not None and held["claim"] == claim and held["state"] == "running":
            del self[self.REQUESTS].documents[request_id]

    def login_succeeded(self, db, name_key, address_key, attempt_id):
        self[self.LOGIN_ATTEMPTS].documents.pop(name_key, None)
        self.forget_login_attempt(db, [address_key], attempt_id)


def in_memory(monkeypatch, handlers, fake):
    """Make ``handlers`` (a services' handlers module) use ``fake`` for its storage
    module; returns the fake, which the test passes as the handlers' database."""
    monkeypatch.setattr(handlers, "storage", fake)
    return fake


class FakeAlertsStorage(FakeStorage):
    """services/alerts/storage.py in memory (the matching and sending tests)."""

    COLLECTIONS = {name: () for name in (
        alerts_storage.SAVED_SEARCHES, alerts_storage.STAMPS, alerts_storage.ALERTS,
        alerts_storage.MAILS, alerts_storage.EVENTS, alerts_storage.ACCOUNTS)}
    SAVED_SEARCHES, STAMPS, ALERTS, MAILS, EVENTS, ACCOUNTS = (
        alerts_storage.SAVED_SEARCHES, alerts_storage.STAMPS, alerts_storage.ALERTS,
        alerts_storage.MAILS, alerts_storage.EVENTS, alerts_storage.ACCOUNTS)
    CHUNK, ASCENDING = alerts_storage.CHUNK, alerts_storage.ASCENDING
    chunks = staticmethod(alerts_storage.chunks)
    alert_id = staticmethod(alerts_storage.alert_id)

    def _docs(self, name):
        return self[name].documents

    def _where(self, name, check):
        return [d for d in self._docs(name).values() if check(d)]

    def ensure_indexes(self, db):
        pass

    def insert_saved_search(self, db, document):
        self[self.SAVED_SEARCHES].insert_one(document)

    def find_saved_search(self, db, saved_search_id, user_id=None):
        found = self._docs(self.SAVED_SEARCHES).get(saved_search_id)
        if found is None or (user_id is not None and found["user_id"] != user_id):
            return None
        return copy.deepcopy(found)

    def users_saved_searches(self, db, user_id):
        found = self._where(self.SAVED_SEARCHES,
                            lambda d: d["user_id"] == user_id and not d["deleted"])
        return copy.deepcopy(sorted(found, key=lambda d: (d["created_at"], d["_id"])))

    def live_saved_searches(self, db):
        return copy.deepcopy(self._where(self.SAVED_SEARCHES, lambda d: not d["deleted"]))

    def remove_saved_search(self, db, saved_search_id):
        self._docs(self.SAVED_SEARCHES).pop(saved_search_id, None)

    def delete_saved_search(self, db, saved_search_id, now):
        found = self._docs(self.SAVED_SEARCHES).get(saved_search_id)
        if found is None or found["deleted"]:
            return False
        found.update(deleted=True, deleted_at=now)
        return True

    def mark_deleted(self, db, query, now):
        live = self._where(self.SAVED_SEARCHES, lambda d: not d["deleted"] and all(
            d.get(k) == v for k, v in query.items()))
        for document in live:
            document.update(deleted=True, deleted_at=now)
        return [d["_id"] for d in live]

    def follow_email(self, db, user_id, email, version):
        for document in self._where(self.SAVED_SEARCHES, lambda d: d["user_id"] == user_id
                                    and d["account_version"] < version):
            document.update(email=email, account_version=version)

    def open_digest(self, db, saved_search_id, seen, due_at):
        found = self._docs(self.SAVED_SEARCHES).get(saved_search_id)
        if found is None:
            return None
        if found.get("digest_due") == seen:
            found["digest_due"] = due_at
        return found["digest_due"]

    def stamp(self, db):
        return self._docs(self.STAMPS).get(self.SAVED_SEARCHES, {"stamp": 0})["stamp"]

    def move_stamp(self, db):
        stamps = self._docs(self.STAMPS)
        stamps[self.SAVED_SEARCHES] = {"_id": self.SAVED_SEARCHES,
                                       "stamp": self.stamp(db) + 1}

    def forget_account(self, db, user_id, version):
        self._docs(self.ACCOUNTS)[user_id] = {"_id": user_id, "deleted": True,
                                              "version": version}

    def account_deleted(self, db, user_id):
        return user_id in self._docs(self.ACCOUNTS)

    def record_alert(self, db, document):
        try:
            self[self.ALERTS].insert_one(document)
            return True
        except DuplicateKeyError:
            return False

    def due_alerts(self, db, now, limit):
        due = self._where(self.ALERTS, lambda a: a["status"] == "pending" and a["due_at"] <= now)
        return copy.deepcopy(sorted(due, key=lambda a: a["due_at"])[:limit])

    def drop_pending(self, db, query):
        def chosen(alert):
            for key, value in query.items():
                if isinstance(value, dict):
                    if alert.get(key) not in value["$in"]:
                        return False
                elif alert.get(key) != value:
                    return False
            return alert["status"] == "pending"
        gone = [a["_id"] for a in self._where(self.ALERTS, chosen)]
        for alert_id in gone:
            del self._docs(self.ALERTS)[alert_id]
        return len(gone)

    def mark_sent(self, db, ids, mail_key, now):
        for alert_id in ids:
            alert = self._docs(self.ALERTS).get(alert_id)
            if alert is not None and alert["status"] == "pending":
                alert.update(status="sent", mail=mail_key, sent_at=now)

    def reschedule(self, db, ids, due_at):
        for alert_id in ids:
            alert = self._docs(self.ALERTS).get(alert_id)
            if alert is not None and alert["status"] == "pending":
                alert["due_at"] = due_at

    def claim_mail(self, db, send_key, message, event_ids, now):
        mails = self._docs(self.MAILS)
        if send_key not in mails:
            mails[send_key] = {"_id": send_key, "event_ids": list(event_ids),
                               "created_at": now, "pending_events": [message]}
        return list(mails[send_key]["event_ids"])

    def find_events(self, db, event_ids):
        events = self._docs(self.EVENTS)
        return {i: copy.deepcopy(events[i]) for i in event_ids if i in events}

    def store_event(self, db, document):
        events = self._docs(self.EVENTS)
        held = events.get(document["_id"])
        if held is not None and held["version"] > document["version"]:
            return False
        events[document["_id"]] = copy.deepcopy(document)
        return True
