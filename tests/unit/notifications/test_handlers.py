"""The notifications commands and follow-ups, against a real SecantusDB database."""
from datetime import timedelta

import pytest

from bus.errors import Conflict, NotFound, ValidationError
from services.notifications import handlers, scheduler, storage

from .conftest import NOW, event, event_message, known, no_fetch, user


def create(db, relay, fields, who=None, now=NOW, fetch=no_fetch):
    return handlers.create(db, who or user(), {"event_id": "e1", **fields}, now, fetch, relay)


def details(error):
    return error.value.details


# create

def test_relative_reminder_defaults(db, relayed):
    known(db, event())
    created = create(db, relayed, {"before_minutes": 30})
    assert created["remind_at"] == "2026-12-03T11:30:00Z"
    assert created["email"] == "ann@example.com"
    assert created["subject"] == "Reminder: Jazz night"
    assert created["status"] == "scheduled"
    assert created["message"] is None and created["sent_at"] is None
    assert set(created) == {"id", "event_id", "email", "subject", "message", "remind_at",
                            "before_minutes", "status", "created_at", "updated_at", "sent_at",
                            "failure_reason"}


def test_absolute_reminder_to_a_secondary_email_in_any_case(db, relayed):
    known(db, event())
    created = create(db, relayed, {"remind_at": "2026-12-02T09:00:00+01:00",
                                   "email": "ann.work@example.COM", "message": "Tickets!"})
    assert created["remind_at"] == "2026-12-02T08:00:00Z"
    assert created["before_minutes"] is None
    assert created["email"] == "Ann.Work@Example.com"
    assert created["message"] == "Tickets!"


@pytest.mark.parametrize("fields", [{}, {"remind_at": "2026-12-02T09:00:00Z",
                                         "before_minutes": 5}])
def test_exactly_one_of_remind_at_and_before_minutes(db, relayed, fields):
    known(db, event())
    with pytest.raises(ValidationError) as error:
        create(db, relayed, fields)
    assert "remind_at" in details(error)


def test_time_in_the_past_is_rejected(db, relayed):
    known(db, event(starts_at=NOW + timedelta(minutes=10)))
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"before_minutes": 10})
    assert list(details(error)) == ["before_minutes"]
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"remind_at": "2026-12-01T11:59:00Z"})
    assert list(details(error)) == ["remind_at"]


def test_time_without_offset_is_rejected(db, relayed):
    known(db, event())
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"remind_at": "2026-12-02T09:00:00"})
    assert "remind_at" in details(error)


def test_email_must_be_the_accounts_own(db, relayed):
    known(db, event())
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"before_minutes": 5, "email": "someone@else.org"})
    assert list(details(error)) == ["email"]


def test_unknown_or_cancelled_event_is_rejected(db, relayed):
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"before_minutes": 5}, fetch=lambda event_id: None)
    assert list(details(error)) == ["event_id"]
    known(db, event(event_id="e2", status="cancelled"))
    with pytest.raises(ValidationError) as error:
        handlers.create(db, user(), {"event_id": "e2", "before_minutes": 5}, NOW, no_fetch,
                        relayed)
    assert list(details(error)) == ["event_id"]


def test_event_not_yet_in_the_local_copy_is_fetched_and_kept(db, relayed):
    fetched = []

    def fetch(event_id):
        fetched.append(event_id)
        return event(event_id=event_id)

    create(db, relayed, {"before_minutes": 5}, fetch=fetch)
    create(db, relayed, {"before_minutes": 6}, fetch=fetch)
    assert fetched == ["e1"]


def test_operator_injection_is_a_validation_error(db, relayed):
    with pytest.raises(ValidationError):
        create(db, relayed, {"event_id": {"$ne": None}, "before_minutes": 5})


# get, list, delete: only one's own

def test_another_users_reminder_is_not_found_for_every_verb(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    bob = user("u2", "bob@example.com", ())
    for call in (
        lambda: handlers.get(db, "u2", mine["id"]),
        lambda: handlers.update(db, bob, mine["id"], {"subject": "x"}, NOW),
        lambda: handlers.snooze(db, "u2", mine["id"], 5, NOW),
        lambda: handlers.delete(db, "u2", mine["id"]),
    ):
        with pytest.raises(NotFound):
            call()
    assert handlers.get(db, "u1", mine["id"])["id"] == mine["id"]
    with pytest.raises(NotFound):
        handlers.get(db, "u1", {"$ne": None})
    assert handlers.list_reminders(db, "u2", {})["items"] == []


def test_list_pages_in_remind_at_order_with_filters(db, relayed):
    known(db, event())
    known(db, event(event_id="e2"))
    made = [create(db, relayed, {"before_minutes": m}) for m in (50, 10, 40, 20, 30)]
    handlers.create(db, user(), {"event_id": "e2", "before_minutes": 45}, NOW, no_fetch, relayed)
    seen, cursor = [], None
    while True:
        page = handlers.list_reminders(db, "u1", {"event_id": "e1", "limit": 2, "cursor": cursor})
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [n["before_minutes"] for n in seen] == [50, 40, 30, 20, 10]
    assert {n["id"] for n in seen} == {n["id"] for n in made}
    assert len(handlers.list_reminders(db, "u1", {"status": "scheduled"})["items"]) == 6
    assert handlers.list_reminders(db, "u1", {"status": "sent"})["items"] == []


@pytest.mark.parametrize("cursor", ["nonsense", "eyJhIjogMX0", "W10"])
def test_malformed_cursor(db, cursor):
    with pytest.raises(ValidationError) as error:
        handlers.list_reminders(db, "u1", {"cursor": cursor})
    assert list(details(error)) == ["cursor"]


def test_delete(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    handlers.delete(db, "u1", mine["id"])
    with pytest.raises(NotFound):
        handlers.get(db, "u1", mine["id"])
    with pytest.raises(NotFound):
        handlers.delete(db, "u1", mine["id"])


# update and snooze

def test_update_switches_to_an_absolute_time_and_another_email(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    later = NOW + timedelta(hours=1)
    changed = handlers.update(db, user(), mine["id"], {
        "remind_at": "2026-12-01T15:00:00+01:00", "email": "ANN.WORK@example.com",
        "message": "Bring cash"}, later)
    assert changed["remind_at"] == "2026-12-01T14:00:00Z"
    assert changed["before_minutes"] is None
    assert changed["email"] == "Ann.Work@Example.com"
    assert changed["message"] == "Bring cash"
    assert changed["updated_at"] == "2026-12-01T13:00:00Z"


def test_update_rejects_both_times_a_past_time_and_a_foreign_email(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    for changes, field in (
        ({"remind_at": "2026-12-02T00:00:00Z", "before_minutes": 3}, "remind_at"),
        ({"remind_at": "2026-12-01T00:00:00Z"}, "remind_at"),
        ({"email": "x@y.org"}, "email"),
        ({"status": "sent"}, "status"),
    ):
        with pytest.raises(ValidationError) as error:
            handlers.update(db, user(), mine["id"], changes, NOW)
        assert field in details(error)


def mark_sent(db, reminder_id, relay):
    scheduler.claim_due(db, NOW + timedelta(days=3), relay)
    key = db[storage.REMINDERS].find_one({"_id": reminder_id})["send_key"]
    handlers.on_email_sent(db, {"send_key": key, "notification_id": reminder_id,
                                "sent_at": "2026-12-03T11:55:01Z"}, NOW)
    return key


def test_a_sent_reminder_cannot_be_changed(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    mark_sent(db, mine["id"], relayed)
    assert handlers.get(db, "u1", mine["id"])["status"] == "sent"
    with pytest.raises(Conflict):
        handlers.update(db, user(), mine["id"], {"subject": "Too late"}, NOW)


def test_snooze_delays_a_scheduled_reminder(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 60})
    snoozed = handlers.snooze(db, "u1", mine["id"], 15, NOW)
    assert snoozed["remind_at"] == "2026-12-03T11:15:00Z"
    assert snoozed["before_minutes"] is None  # a time the user chose: it stays put
    for minutes in (0, 10081, "5", 2.5, True):
        with pytest.raises(ValidationError):
            handlers.snooze(db, "u1", mine["id"], minutes, NOW)


def test_snooze_re_arms_a_sent_reminder_with_a_new_send_key(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    first_key = mark_sent(db, mine["id"], relayed)
    later = NOW + timedelta(days=2, hours=23, minutes=56)
    snoozed = handlers.snooze(db, "u1", mine["id"], 10, later)
    assert snoozed["status"] == "scheduled"
    assert snoozed["remind_at"] == "2026-12-04T12:06:00Z"
    assert snoozed["sent_at"] is None
    scheduler.claim_due(db, later + timedelta(minutes=10), relayed)
    second_key = db[storage.REMINDERS].find_one({"_id": mine["id"]})["send_key"]
    assert second_key != first_key


def test_a_cancelled_reminder_cannot_be_snoozed(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    handlers.on_event_message(db, event_message("event_updated", event(version=2,
                                                                       status="cancelled")),
                              NOW, relayed)
    with pytest.raises(Conflict):
        handlers.snooze(db, "u1", mine["id"], 5, NOW)


# follow-ups of events

def test_moved_event_moves_relative_reminders_only(db, relayed):
    known(db, event())
    relative = create(db, relayed, {"before_minutes": 30})
    absolute = create(db, relayed, {"remind_at": "2026-12-02T10:00:00Z"})
    moved = event(starts_at=NOW + timedelta(days=5), version=2)
    handlers.on_event_message(db, event_message("event_updated", moved), NOW, relayed)
    assert handlers.get(db, "u1", relative["id"])["remind_at"] == "2026-12-06T11:30:00Z"
    assert handlers.get(db, "u1", absolute["id"])["remind_at"] == "2026-12-02T10:00:00Z"
    # an older version arriving late changes nothing
    handlers.on_event_message(db, event_message("event_updated", event(version=1)), NOW, relayed)
    assert handlers.get(db, "u1", relative["id"])["remind_at"] == "2026-12-06T11:30:00Z"


def test_event_moved_closer_than_the_lead_reminds_at_once(db, relayed):
    known(db, event())
    relative = create(db, relayed, {"before_minutes": 120})
    moved = event(starts_at=NOW + timedelta(minutes=30), version=2)
    handlers.on_event_message(db, event_message("event_updated", moved), NOW, relayed)
    assert handlers.get(db, "u1", relative["id"])["remind_at"] == "2026-12-01T12:00:00Z"


@pytest.mark.parametrize("how", ["cancelled", "deleted"])
def test_cancelled_event_cancels_reminders_with_one_notice_per_user(db, relayed, how):
    known(db, event())
    ann = [create(db, relayed, {"before_minutes": m}) for m in (5, 60)]
    bob = create(db, relayed, {"before_minutes": 10}, who=user("u2", "bob@example.com", ()))
    if how == "cancelled":
        message = event_message("event_updated", event(version=2, status="cancelled"))
    else:
        message = event_message("event_deleted", event(version=2))
    handlers.on_event_message(db, message, NOW, relayed)
    handlers.on_event_message(db, message, NOW, relayed)  # redelivered
    for reminder, user_id in ((ann[0], "u1"), (ann[1], "u1"), (bob, "u2")):
        assert handlers.get(db, user_id, reminder["id"])["status"] == "cancelled"
    notices = list(db[storage.NOTICES].find())
    assert len(notices) == 2
    by_user = {n["user_id"]: n["pending_events"][0]["data"] for n in notices}
    assert by_user["u1"]["email"] == "ann@example.com"
    assert {n["id"] for n in by_user["u1"]["notifications"]} == {r["id"] for r in ann}
    assert by_user["u2"]["email"] == "bob@example.com"
    assert all(n["status"] == "cancelled" for n in by_user["u1"]["notifications"])


# follow-ups of accounts

def test_reminders_follow_a_changed_or_removed_email_to_the_primary(db, relayed):
    known(db, event())
    to_primary = create(db, relayed, {"before_minutes": 5})
    to_work = create(db, relayed, {"before_minutes": 6, "email": "ann.work@example.com"})
    changed = user(email="ann@new.example", secondary=("Ann.Work@Example.com",))
    handlers.follow_to_primary(db, changed, "ANN@example.com", NOW)
    assert handlers.get(db, "u1", to_primary["id"])["email"] == "ann@new.example"
    assert handlers.get(db, "u1", to_work["id"])["email"] == "Ann.Work@Example.com"
    removed = user(email="ann@new.example", secondary=())
    handlers.follow_to_primary(db, removed, "Ann.Work@Example.com", NOW)
    assert handlers.get(db, "u1", to_work["id"])["email"] == "ann@new.example"


def test_deleted_user_loses_their_reminders(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    bobs = create(db, relayed, {"before_minutes": 5}, who=user("u2", "bob@example.com", ()))
    handlers.on_user_deleted(db, "u1")
    assert handlers.list_reminders(db, "u1", {})["items"] == []
    with pytest.raises(NotFound):
        handlers.get(db, "u1", mine["id"])
    assert handlers.get(db, "u2", bobs["id"])["status"] == "scheduled"


# what the mailer reports

def test_email_failed_marks_the_reminder_failed_with_the_reason(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    scheduler.claim_due(db, NOW + timedelta(days=3), relayed)
    key = db[storage.REMINDERS].find_one({"_id": mine["id"]})["send_key"]
    handlers.on_email_failed(db, {"send_key": "reminder:other:1", "notification_id": mine["id"],
                                  "reason": "stale"}, NOW)
    assert handlers.get(db, "u1", mine["id"])["status"] == "scheduled"
    handlers.on_email_failed(db, {"send_key": key, "notification_id": mine["id"],
                                  "reason": "550 no such mailbox"}, NOW)
    failed = handlers.get(db, "u1", mine["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "550 no such mailbox")
