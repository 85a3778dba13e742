"""The in-memory storage fakes (tests.support.fakes) behave as the storage modules they
stand in for: each scenario runs against the fake and against the real module on a
SecantusDB database, and a storage function without a fake counterpart fails here."""
import inspect
from datetime import datetime, timedelta, timezone

import pytest
from pymongo.errors import DuplicateKeyError

from bus.messages import new_message
from services.alerts import storage as alerts_storage
from services.events import storage as events_storage
from services.users import storage as users_storage
from tests.support.fakes import FakeAlertsStorage, FakeEventsStorage, FakeUsersStorage

pytestmark = pytest.mark.integration

FAKES = [(events_storage, FakeEventsStorage), (users_storage, FakeUsersStorage),
         (alerts_storage, FakeAlertsStorage)]


@pytest.mark.parametrize("module, fake", FAKES, ids=["events", "users", "alerts"])
def test_every_storage_function_and_constant_has_a_fake(module, fake):
    public = {name for name, value in vars(module).items()
              if not name.startswith("_") and getattr(value, "__module__", module.__name__)
              == module.__name__ and (inspect.isfunction(value) or name.isupper())}
    missing = sorted(name for name in public if not hasattr(fake, name))
    assert not missing, f"{fake.__name__} (tests/support/fakes.py) lacks {missing}"
    for name in public:
        if inspect.isfunction(getattr(module, name)):
            real, stand_in = (inspect.signature(getattr(module, name)),
                              inspect.signature(getattr(fake(), name)))
            assert list(real.parameters) == list(stand_in.parameters), name


@pytest.fixture(params=["fake", "real"])
def events(request, new_database):
    """(storage, db): the fake as both, or the module and a fresh database."""
    if request.param == "fake":
        fake = FakeEventsStorage()
        return fake, fake
    return events_storage, new_database("events")


@pytest.fixture(params=["fake", "real"])
def users(request, new_database):
    if request.param == "fake":
        fake = FakeUsersStorage()
        return fake, fake
    return users_storage, new_database("users", prepare=users_storage.ensure_indexes)


def message(aggregate_id, version):
    return new_message("events", "event_updated", aggregate_id, version, event={},
                       changed=[], previous={})


def moment(seconds):
    return datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def test_events_insert_find_replace_and_tombstone(events):
    storage, db = events
    storage.insert(db, {"_id": "e1", "title": "A", "version": 1}, message("e1", 1))
    storage.insert(db, {"_id": "e1", "title": "B", "version": 1}, message("e1", 1))
    found = storage.find_live(db, "e1")
    assert found["title"] == "A" and len(found["pending_events"]) == 2  # never replaced
    assert storage.find_live(db, "e2") is None

    assert storage.replace_version(db, "e1", 1, {"$set": {"title": "C", "version": 2}},
                                   message("e1", 2))
    assert not storage.replace_version(db, "e1", 1, {"$set": {"title": "D", "version": 2}},
                                       message("e1", 2))  # lost the race
    found = storage.find_live(db, "e1")
    assert (found["title"], found["version"], len(found["pending_events"])) == ("C", 2, 3)

    storage.insert(db, {"_id": "e2", "title": "E", "version": 1}, message("e2", 1))
    assert storage.count_live(db) == 2
    assert storage.replace_version(db, "e1", 2, {"$set": {"deleted": True, "version": 3}},
                                   message("e1", 3))
    assert storage.find_live(db, "e1") is None and storage.count_live(db) == 1
    assert not storage.replace_version(db, "e1", 3, {"$set": {"title": "F"}}, message("e1", 4))
    # a series' message joins a tombstone's outbox
    storage.add_message(db, "e1", message("e1", 3))
    assert len(db.events.find_one({"_id": "e1"})["pending_events"]) == 5

    # many in one round trip, in order: the first that lost (moved on, deleted) stops
    # the rest, and those not written are named
    storage.insert(db, {"_id": "e3", "title": "G", "version": 1}, message("e3", 1))
    storage.insert(db, {"_id": "e4", "title": "K", "version": 1}, message("e4", 1))
    unwritten = storage.replace_versions(db, [
        ("e2", 1, {"$set": {"title": "H", "version": 2}}, [message("e2", 2)]),
        ("e1", 3, {"$set": {"title": "I", "version": 4}}, [message("e1", 4)]),  # a tombstone
        ("e4", 1, {"$set": {"title": "L", "version": 2}}, [message("e4", 2)])])
    assert unwritten == {"e1", "e4"}
    assert storage.find_live(db, "e2")["title"] == "H"
    assert storage.find_live(db, "e4")["title"] == "K" and storage.find_live(db, "e1") is None
    assert storage.replace_versions(db, [
        ("e4", 1, {"$set": {"title": "L", "version": 2}}, [message("e4", 2)]),
        ("e3", 7, {"$set": {"title": "J", "version": 8}}, [message("e3", 8)])]) == {"e3"}
    assert storage.find_live(db, "e3")["title"] == "G"  # moved on
    assert storage.count_live(db) == 3
    # a write's messages all join its outbox, in order
    assert storage.replace_versions(db, [("e2", 2, {"$set": {"version": 3}},
                                          [message("e2", 3), message("e2-series", 3)])]) == set()
    assert [m["aggregate_id"] for m in db.events.find_one({"_id": "e2"})["pending_events"]][-2:] \
        == ["e2", "e2-series"]


def account(user_id, username, email, *secondary):
    user = {"_id": user_id, "username": username, "username_key": username.lower(),
            "email": email, "secondary_emails": list(secondary), "failed_logins": [],
            "version": 1, "deleted_at": None}
    user["email_keys"] = users_storage.email_keys(user)
    return user


def test_users_lookups_ignore_case_and_find_secondary_emails(users):
    storage, db = users
    storage.insert(db, account("u1", "Ann", "Ann@example.org", "ann.work@example.org"))
    assert storage.by_username(db, "ANN")["_id"] == "u1"
    assert storage.by_email(db, "ANN.WORK@example.org")["_id"] == "u1"
    assert storage.by_email(db, "nobody@example.org") is None
    assert storage.live(db, "u1")["email"] == "Ann@example.org"
    assert storage.live(db, "u2") is None


@pytest.mark.parametrize("other, field", [
    (("u2", "ANN", "bob@example.org"), "username"),
    (("u2", "bob", "ANN@example.org"), "email"),
    (("u2", "bob", "bob@example.org", "ann.work@example.org"), "email"),
])
def test_users_unique_usernames_and_emails(users, other, field):
    storage, db = users
    storage.insert(db, account("u1", "ann", "ann@example.org", "ann.work@example.org"))
    with pytest.raises(DuplicateKeyError) as caught:
        storage.insert(db, account(*other))
    assert storage.duplicate_field(caught.value) == field


def test_users_versioned_updates_and_login_attempts(users):
    storage, db = users
    storage.insert(db, account("u1", "ann", "ann@example.org"))
    storage.insert(db, account("u2", "bob", "bob@example.org"))
    ann = storage.live(db, "u1")
    assert storage.update_unchanged(db, ann, {"$set": {"email": "a@example.org"},
                                              "$inc": {"version": 1}})
    assert not storage.update_unchanged(db, ann, {"$set": {"email": "b@example.org"}})
    assert storage.live(db, "u1")["version"] == 2
    with pytest.raises(DuplicateKeyError):  # bob's email, through the multikey index
        storage.update_unchanged(db, storage.live(db, "u1"),
                                 {"$set": {"email_keys": ["bob@example.org"]}})
    after = storage.update_live(db, "u1", {"$set": {"role": "admin"}, "$inc": {"version": 1}})
    assert (after["role"], after["version"]) == ("admin", 3)
    assert storage.update_live(db, "nobody", {"$set": {"role": "admin"}}) is None

    name, address = storage.throttle_key("name", "ann", "ip"), storage.throttle_key("ip")
    for second in range(7):
        attempt = {"at": moment(second), "id": f"a{second}"}
        for key in (name, address):
            kept = storage.add_login_attempt(db, key, attempt, keep=5, expires_at=moment(99))
        assert [a["id"] for a in kept] == [f"a{s}" for s in range(max(0, second - 4), second + 1)]
    storage.forget_login_attempt(db, [name, address], "a5")
    assert [a["id"] for a in storage.add_login_attempt(
        db, address, {"at": moment(8), "id": "a8"}, keep=9, expires_at=moment(99))] == [
        "a2", "a3", "a4", "a6", "a8"]
    storage.login_succeeded(db, name, address, "a8")
    assert storage.add_login_attempt(db, name, {"at": moment(9), "id": "a9"}, keep=5,
                                     expires_at=moment(99)) == [{"at": moment(9), "id": "a9"}]
    assert [a["id"] for a in storage.add_login_attempt(
        db, address, {"at": moment(9), "id": "a9"}, keep=9, expires_at=moment(99))] == [
        "a2", "a3", "a4", "a6", "a9"]


def test_a_users_tombstone_is_not_live_and_frees_its_names(users):
    storage, db = users
    storage.insert(db, account("u1", "ann", "ann@example.org"))
    erased = {field: "" for field in ("username_key", "email_keys", "email")}
    assert storage.update_unchanged(db, storage.live(db, "u1"),
                                    {"$set": {"deleted_at": moment(0)}, "$unset": erased})
    assert storage.live(db, "u1") is None and storage.by_username(db, "ann") is None
    storage.insert(db, account("u2", "ann", "ann@example.org"))
    assert storage.by_email(db, "ann@example.org")["_id"] == "u2"


@pytest.fixture(params=["fake", "real"])
def alerts(request, new_database):
    if request.param == "fake":
        fake = FakeAlertsStorage()
        return fake, fake
    return alerts_storage, new_database("alerts", prepare=alerts_storage.ensure_indexes)


def test_alerts_event_copies_keep_the_newest_version_and_alerts_are_recorded_once(alerts):
    storage, db = alerts
    copy = {"_id": "e1", "version": 2, "deleted": False, "event": {"id": "e1"}}
    assert storage.store_event(db, copy)
    assert storage.store_event(db, copy)  # the same version again: handled again
    assert not storage.store_event(db, {**copy, "version": 1})
    assert storage.store_event(db, {**copy, "version": 3, "deleted": True})
    assert storage.find_events(db, ["e1", "e2"])["e1"]["version"] == 3
    alert = {"_id": storage.alert_id("s1", "e1"), "saved_search_id": "s1", "user_id": "u1",
             "event_id": "e1", "frequency": "instant", "status": "pending",
             "due_at": moment(0), "created_at": moment(0)}
    assert storage.record_alert(db, alert) and not storage.record_alert(db, alert)
    assert [a["_id"] for a in storage.due_alerts(db, moment(1), 10)] == ["s1:e1"]
    message = {"event_type": "alert_due"}
    assert storage.claim_mail(db, "alert:s1:e1", message, ["e1"], moment(1)) == ["e1"]
    assert storage.claim_mail(db, "alert:s1:e1", message, ["e2"], moment(2)) == ["e1"]
    storage.mark_sent(db, ["s1:e1"], "alert:s1:e1", moment(2))
    assert storage.due_alerts(db, moment(3), 10) == []
