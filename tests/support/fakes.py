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

Documents go in and out as a round trip through BSON gives them back (copies;
datetimes in UTC at millisecond precision). The collection (``fake.users``,
``fake["users"]``, FakeCollection) has pymongo's Collection methods that the storage
modules and handlers use, with their results and errors: queries with equality (a
list field matches any of its elements, None matches a missing field), $ne, $in,
$nin, $all, $gt(e), $lt(e), $exists, $not, $or, $and, values of different BSON
types never comparing; updates with $set, $setOnInsert, $unset, $inc, $max, $min,
$push ($each, $slice), $pull and $set pipelines; unique indexes; bulk writes.
Aggregation is not faked: a test that needs it runs on the server, in tests/integration.

FakeDatabase is a whole database of such collections, for services whose handlers
use collections directly (notifications, mailer, search): their real storage module
runs on it (``unit_database``); ``pytest --real-databases`` runs those same tests on
SecantusDB, which is how the fake is checked against the server.
"""
import copy
import functools
import itertools
from datetime import datetime, timezone

from bson import ObjectId
from pymongo import DeleteOne, InsertOne, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from services.alerts import storage as alerts_storage
from services.events import storage as events_storage
from services.users import storage as users_storage

MISSING = object()
INT64 = 2 ** 63


def stored(value):
    """``value`` as a round trip through BSON gives it back (a client with tz_aware=True):
    datetimes in UTC at millisecond precision (naive ones taken as UTC), tuples as
    lists, integers within 64 bits."""
    if isinstance(value, dict):
        return {key: stored(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored(item) for item in value]
    if isinstance(value, datetime):
        value = (value.replace(tzinfo=timezone.utc) if value.tzinfo is None
                 else value.astimezone(timezone.utc))
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        raise OverflowError("MongoDB can only handle up to 8-byte ints")
    return copy.deepcopy(value)


def _get(document, path):
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, MISSING)
        elif isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else MISSING
        elif isinstance(value, list):  # a field of each subdocument of an array
            found = [_get(item, part) for item in value if isinstance(item, dict)]
            value = [v for v in found if v is not MISSING] or MISSING
        else:
            return MISSING
    return value


def _rank(value):
    """BSON's order of types: values of different types never compare in a query."""
    if value is MISSING or value is None:
        return 1
    if isinstance(value, bool):
        return 8
    if isinstance(value, (int, float)):
        return 2
    for rank, kind in ((3, str), (4, dict), (5, list), (6, bytes), (7, ObjectId),
                       (9, datetime)):
        if isinstance(value, kind):
            return rank
    return 10


def _same(value, expected):
    return _rank(value) == _rank(expected) and value == expected


def _equal(value, expected):
    if expected is None:
        return value is MISSING or value is None or (isinstance(value, list) and None in value)
    if isinstance(value, list):
        return _same(value, expected) or any(_same(item, expected) for item in value)
    return value is not MISSING and _same(value, expected)


def _compare(value, operator, operand):
    values = value if isinstance(value, list) else [value]
    for item in values:
        if item is MISSING or _rank(item) != _rank(operand):
            continue
        if operator == "$gt" and item > operand or operator == "$gte" and item >= operand \
                or operator == "$lt" and item < operand or operator == "$lte" and item <= operand:
            return True
    return False


def _is_operators(condition):
    return (isinstance(condition, dict) and bool(condition)
            and all(key.startswith("$") for key in condition))


def _matches_condition(value, condition):
    if not _is_operators(condition):
        return _equal(value, condition)
    for operator, operand in condition.items():
        if operator == "$ne":
            ok = not _equal(value, operand)
        elif operator == "$in":
            ok = any(_equal(value, option) for option in operand)
        elif operator == "$nin":
            ok = not any(_equal(value, option) for option in operand)
        elif operator == "$all":
            ok = bool(operand) and all(_equal(value, item) for item in operand)
        elif operator == "$exists":
            ok = (value is not MISSING) == bool(operand)
        elif operator == "$not":
            ok = not _matches_condition(value, operand)
        elif operator in ("$gt", "$gte", "$lt", "$lte"):
            ok = _compare(value, operator, operand)
        else:
            raise NotImplementedError(f"the fake does not know the query operator {operator}")
        if not ok:
            return False
    return True


def matches(document, query):
    for path, condition in query.items():
        if path == "$or":
            ok = any(matches(document, part) for part in condition)
        elif path == "$and":
            ok = all(matches(document, part) for part in condition)
        elif path.startswith("$"):
            raise NotImplementedError(f"the fake does not know the query operator {path}")
        else:
            ok = _matches_condition(_get(document, path), condition)
        if not ok:
            return False
    return True


def _set(document, path, value):
    *parents, last = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[last] = value


def _unset(document, path):
    *parents, last = path.split(".")
    for part in parents:
        document = document.get(part)
        if not isinstance(document, dict):
            return
    document.pop(last, None)


def _check_paths(update):
    """MongoDB refuses an update that names one path (or a path and its parent) twice."""
    paths = sorted(path for fields in update.values() for path in fields)
    for first, second in itertools.pairwise(paths):
        if first == second or second.startswith(first + "."):
            raise WriteError(f"Updating the path '{second}' would create a conflict at "
                             f"'{first}'", 40, {"code": 40})


def apply_update(document, update, inserting=False):
    """``document`` changed in place by a MongoDB update document (or a pipeline of
    ``$set`` stages whose ``"$field"`` values name fields of the document)."""
    if isinstance(update, list):
        for stage in update:
            if list(stage) != ["$set"]:
                raise NotImplementedError(f"the fake does not know the stage {list(stage)}")
            before = copy.deepcopy(document)
            for path, value in stage["$set"].items():
                if isinstance(value, str) and value.startswith("$"):
                    value = _get(before, value[1:])
                    if value is MISSING:
                        _unset(document, path)
                        continue
                _set(document, path, copy.deepcopy(value))
        return document
    _check_paths(update)
    for operator, fields in update.items():
        for path, value in fields.items():
            if operator == "$set" or (operator == "$setOnInsert" and inserting):
                _set(document, path, copy.deepcopy(value))
            elif operator == "$setOnInsert":
                pass
            elif operator == "$unset":
                _unset(document, path)
            elif operator == "$inc":
                held = _get(document, path)
                _set(document, path, (0 if held is MISSING else held) + value)
            elif operator in ("$max", "$min"):
                held = _get(document, path)
                if held is MISSING or (value > held if operator == "$max" else value < held):
                    _set(document, path, copy.deepcopy(value))
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


def _sort_spec(key, direction=1):
    return [(key, direction)] if isinstance(key, str) else [tuple(k) for k in key]


def _sort_key(value, direction):
    if isinstance(value, list):  # an array sorts by its least (ascending) or greatest element
        if not value:
            return (0, None)
        keys = [_sort_key(item, direction) for item in value]
        return min(keys) if direction == 1 else max(keys)
    value = None if value is MISSING else value
    return (_rank(value), value)


def _sorted(documents, spec):
    def compare(a, b):
        for key, direction in spec:
            first, second = _sort_key(_get(a, key), direction), _sort_key(_get(b, key), direction)
            if first != second:
                return (-1 if first < second else 1) * (1 if direction == 1 else -1)
        return 0
    return sorted(documents, key=functools.cmp_to_key(compare))


def _projected(document, projection):
    if not projection:
        return document
    if isinstance(projection, (list, tuple)):
        projection = {field: 1 for field in projection}
    if any("." in field for field in projection):
        raise NotImplementedError("the fake projects top-level fields only")
    included = {field for field, wanted in projection.items() if wanted and field != "_id"}
    if included:
        keep = included | ({"_id"} if projection.get("_id", 1) else set())
        return {k: v for k, v in document.items() if k in keep}
    return {k: v for k, v in document.items() if projection.get(k, 1)}


class FakeCursor:
    def __init__(self, documents):
        self.documents = documents

    def sort(self, key, direction=1):
        self.documents = _sorted(self.documents, _sort_spec(key, direction))
        return self

    def limit(self, count):
        if count:
            self.documents = self.documents[:count]
        return self

    def skip(self, count):
        self.documents = self.documents[count:]
        return self

    def __iter__(self):
        return iter(self.documents)


class _Result:
    def __init__(self, **fields):
        self.__dict__.update(fields, acknowledged=True)


class FakeCollection:
    """One collection: what handlers, storage modules and tests read and change directly,
    with pymongo's Collection methods and results (a subset, answered as SecantusDB and
    MongoDB answer; an operator it does not know raises NotImplementedError)."""

    def __init__(self, unique=(), name="collection"):
        self.name = name
        self.full_name = f"fake.{name}"
        self.documents = {}  # _id -> document
        self.unique = list(unique)  # fields with a unique (sparse, multikey) index
        self.indexes = {"_id_": {"key": [("_id", 1)], "v": 2}}

    # indexes

    def create_index(self, keys, unique=False, sparse=False, name=None, **options):
        keys = _sort_spec(keys)
        name = name or "_".join(f"{field}_{direction}" for field, direction in keys)
        if unique:
            self._check_index([field for field, _ in keys], sparse, self.documents.values())
        self.indexes[name] = {"key": keys, "v": 2, **({"unique": True} if unique else {}),
                              **({"sparse": True} if sparse else {}), **options}
        return name

    def index_information(self):
        return copy.deepcopy(self.indexes)

    def _index_keys(self, document, fields, sparse):
        values = [_get(document, field) for field in fields]
        if sparse and all(v is MISSING for v in values):
            return set()
        values = [None if v is MISSING else v for v in values]
        if len(fields) == 1 and isinstance(values[0], list):  # multikey
            return {repr(v) for v in values[0]}
        return {repr(values)}

    def _check_index(self, fields, sparse, documents, document=None):
        seen = {}
        for other in documents:
            if document is not None and other["_id"] == document["_id"]:
                continue
            for key in self._index_keys(other, fields, sparse):
                if document is None and key in seen:
                    raise DuplicateKeyError(f"E11000 duplicate key error: {fields}", 11000)
                seen[key] = other["_id"]
        if document is not None and self._index_keys(document, fields, sparse) & set(seen):
            raise DuplicateKeyError(f"E11000 duplicate key error: {'_'.join(fields)}", 11000,
                                    {"keyPattern": dict.fromkeys(fields, 1)})

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
        for index in self.indexes.values():
            if index.get("unique"):
                self._check_index([field for field, _ in index["key"]], index.get("sparse"),
                                  self.documents.values(), document)

    # reads

    def _matching(self, query):
        query = stored(query or {})
        return [d for d in self.documents.values() if matches(d, query)]

    def find(self, query=None, projection=None, sort=None, limit=0):
        cursor = FakeCursor([_projected(copy.deepcopy(d), projection)
                             for d in self._matching(query)])
        if sort:
            cursor.sort(sort)
        return cursor.limit(limit)

    def find_one(self, query=None, projection=None, sort=None):
        found = list(self.find(query, projection, sort=sort, limit=1))
        return found[0] if found else None

    def count_documents(self, query):
        return len(self._matching(query))

    def aggregate(self, pipeline, **options):
        raise NotImplementedError("the fake does not run aggregation pipelines: such a test "
                                  "runs on the server, in tests/integration")

    # writes

    def insert_one(self, document):
        document.setdefault("_id", ObjectId())
        if document["_id"] in self.documents:
            raise DuplicateKeyError("E11000 duplicate key error: _id", 11000,
                                    {"keyPattern": {"_id": 1}})
        kept = stored(document)
        self._check_unique(kept)
        self.documents[kept["_id"]] = kept
        return _Result(inserted_id=kept["_id"])

    def insert_many(self, documents, ordered=True):
        return self.bulk_write([InsertOne(d) for d in documents], ordered=ordered)

    def _write(self, query, change, upsert, many=False):
        """(matched, modified, upserted id) of an update (``change`` a function of the
        old document)."""
        found = self._matching(query)[:None if many else 1]
        modified = 0
        for before in found:
            after = stored(change(copy.deepcopy(before), False))
            if after.get("_id", before["_id"]) != before["_id"]:
                raise WriteError("Performing an update on the path '_id' would modify the "
                                 "immutable field '_id'", 66, {"code": 66})
            after["_id"] = before["_id"]
            if after != before:
                self._check_unique(after)
                self.documents[before["_id"]] = after
                modified += 1
        if found or not upsert:
            return len(found), modified, None
        seed = {}
        for path, condition in stored(query).items():
            if not path.startswith("$") and not _is_operators(condition):
                _set(seed, path, condition)
        created = change(seed, True)
        created.setdefault("_id", seed.get("_id", ObjectId()))
        self.insert_one(created)
        return 0, 0, created["_id"]

    def update(self, query, update, upsert=False):
        """The document after ``update``, or None if none matched and none was made."""
        found = self._matching(query)
        matched, _, upserted = self._write(
            query, lambda d, inserting: apply_update(d, update, inserting), upsert)
        if not matched and upserted is None:
            return None
        return copy.deepcopy(self.documents[found[0]["_id"] if found else upserted])

    def update_one(self, query, update, upsert=False):
        matched, modified, upserted = self._write(
            query, lambda d, inserting: apply_update(d, update, inserting), upsert)
        return _Result(matched_count=matched, modified_count=modified, upserted_id=upserted)

    def update_many(self, query, update, upsert=False):
        matched, modified, upserted = self._write(
            query, lambda d, inserting: apply_update(d, update, inserting), upsert, many=True)
        return _Result(matched_count=matched, modified_count=modified, upserted_id=upserted)

    def replace_one(self, query, replacement, upsert=False):
        if any(key.startswith("$") for key in replacement):
            raise ValueError("replacement can not include $ operators")

        def replace(document, inserting):
            kept = {"_id": document["_id"]} if "_id" in document else {}
            return {**kept, **copy.deepcopy(replacement)}

        matched, modified, upserted = self._write(query, replace, upsert)
        return _Result(matched_count=matched, modified_count=modified, upserted_id=upserted)

    def find_one_and_update(self, query, update, projection=None, sort=None, upsert=False,
                            return_document=ReturnDocument.BEFORE):
        found = self.find_one(query, sort=sort)
        if found is not None:
            query = {"_id": found["_id"]}
        _, _, upserted = self._write(
            query, lambda d, inserting: apply_update(d, update, inserting), upsert)
        if return_document == ReturnDocument.AFTER:
            key = found["_id"] if found is not None else upserted
            after = self.documents.get(key) if key is not None else None
            return _projected(copy.deepcopy(after), projection) if after else None
        return _projected(found, projection) if found is not None else None

    def delete_one(self, query):
        found = self._matching(query)[:1]
        for document in found:
            del self.documents[document["_id"]]
        return _Result(deleted_count=len(found))

    def delete_many(self, query):
        found = self._matching(query)
        for document in found:
            del self.documents[document["_id"]]
        return _Result(deleted_count=len(found))

    def bulk_write(self, requests, ordered=True):
        errors, counts = [], {"nInserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0,
                              "nUpserted": 0}
        for index, request in enumerate(requests):
            try:
                if isinstance(request, InsertOne):
                    self.insert_one(request._doc)
                    counts["nInserted"] += 1
                    continue
                if isinstance(request, DeleteOne):
                    counts["nRemoved"] += self.delete_one(request._filter).deleted_count
                    continue
                if isinstance(request, UpdateOne):
                    result = self.update_one(request._filter, request._doc,
                                             upsert=bool(request._upsert))
                elif isinstance(request, ReplaceOne):
                    result = self.replace_one(request._filter, request._doc,
                                              upsert=bool(request._upsert))
                else:
                    raise NotImplementedError(f"the fake does not know {request!r}")
                counts["nMatched"] += result.matched_count
                counts["nModified"] += result.modified_count
                counts["nUpserted"] += result.upserted_id is not None
            except (DuplicateKeyError, WriteError) as error:
                errors.append({"index": index, "code": error.code, "errmsg": str(error),
                               "op": request})
                if ordered:
                    break
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": [],
                                  "upserted": [], **counts})
        return _Result(bulk_api_result=counts, inserted_count=counts["nInserted"],
                       matched_count=counts["nMatched"], modified_count=counts["nModified"],
                       deleted_count=counts["nRemoved"], upserted_count=counts["nUpserted"])


class FakeDatabase:
    """A database in memory, for the real storage module of a service whose handlers
    also read and write collections directly (notifications, mailer, search): the
    storage code under test is the real one, only the server is not."""

    _made = itertools.count()

    def __init__(self, name="fake"):
        # a name of its own, as each test's database on the server has: a per-database
        # cache (search's pointer, keyed by client id and name) never sees an earlier one
        self.name = f"{name}_{next(self._made)}"
        self.client = object()
        self.collections = {}

    def __getitem__(self, name):
        if name not in self.collections:
            self.collections[name] = FakeCollection(name=name)
        return self.collections[name]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def drop_collection(self, name):
        self.collections.pop(getattr(name, "name", name), None)

    def list_collection_names(self):
        return list(self.collections)


class FakeStorage:
    """What the fakes share: collections by name, as ``fake[name]`` and ``fake.name``
    (the fake is passed to handlers as their database)."""

    COLLECTIONS = {}  # name -> unique fields

    def __init__(self):
        self.collections = {name: FakeCollection(unique, name)
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
    DUPLICATE_KEY = events_storage.DUPLICATE_KEY
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

    def replace_versions(self, db, writes):
        for index, (event_id, version, changes, messages) in enumerate(writes):
            if self[self.COLLECTION].update(
                    {"_id": event_id, "version": version, **self.LIVE},
                    {**changes, "$push": {"pending_events": {"$each": messages}}}) is None:
                return {event_id for event_id, *_ in writes[index:]}  # in order: stops here
        return set()

    def add_message(self, db, event_id, message):
        self[self.COLLECTION].update({"_id": event_id}, {"$push": {"pending_events": message}})

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


def unit_database(request, service, prepare=None):
    """A unit test's database of ``service``, prepared as the service prepares it at
    start (``prepare``, e.g. its ensure_indexes): a FakeDatabase, or, with ``pytest
    --real-databases`` (how the fake is checked against the server), a fresh database
    on the SecantusDB server."""
    if request.config.getoption("real_databases", False):
        return request.getfixturevalue("new_database")(service, prepare=prepare)
    db = FakeDatabase(service)
    if prepare:
        prepare(db)
    return db
