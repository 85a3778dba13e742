"""The notifications commands and follow-ups, on the in-memory FakeDatabase (conftest `db`)."""
from datetime import timedelta

import pytest

from bus.errors import Conflict, NotFound, Unauthorized, Unavailable, ValidationError
from bus.messages import iso, new_message
from services.notifications import handlers, storage

from .conftest import NOW, event, event_message, known, no_fetch, no_withdraw, user


def create(db, relay, fields, who=None, now=NOW, fetch=no_fetch, withdraw=no_withdraw):
    return handlers.create(db, who or user(), {"event_id": "e1", **fields}, now, fetch, relay,
                           withdraw)


def update(db, reminder_id, changes, now=NOW, who=None, withdraw=no_withdraw):
    return handlers.update(db, who or user(), reminder_id, changes, now, lambda *a: None,
                           withdraw)


def snooze(db, user_id, reminder_id, minutes, now=NOW, withdraw=no_withdraw):
    return handlers.snooze(db, user_id, reminder_id, minutes, now, lambda *a: None, withdraw)


def account_message(event_type, who, version, **data):
    return new_message("users", event_type, who["id"], version, user=who, **data)


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
                        relayed, no_withdraw)
    assert list(details(error)) == ["event_id"]


def test_the_event_is_asked_of_the_events_service_and_kept(db, relayed):
    fetched = []

    def fetch(event_id):
        fetched.append(event_id)
        return event(event_id=event_id)

    create(db, relayed, {"before_minutes": 5}, fetch=fetch)
    assert fetched == ["e1"]
    assert storage.find_event(db, "e1")["event"]["title"] == "Jazz night"


def test_an_event_cancelled_a_moment_ago_is_a_422_before_its_message_arrives(db, relayed):
    known(db, event())  # the local copy still says scheduled
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"before_minutes": 5},
               fetch=lambda event_id: event(version=2, status="cancelled"))
    assert list(details(error)) == ["event_id"]
    assert handlers.list_reminders(db, "u1", {})["items"] == []
    with pytest.raises(ValidationError):  # deleted: the events service knows no such event
        create(db, relayed, {"before_minutes": 5}, fetch=lambda event_id: None)


def test_without_the_events_service_the_local_copy_decides(db, relayed):
    with pytest.raises(Unavailable):
        create(db, relayed, {"before_minutes": 5})  # and there is no copy either
    known(db, event())
    assert create(db, relayed, {"before_minutes": 5})["status"] == "scheduled"


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
        lambda: update(db, mine["id"], {"subject": "x"}, who=bob),
        lambda: snooze(db, "u2", mine["id"], 5),
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
    handlers.create(db, user(), {"event_id": "e2", "before_minutes": 45}, NOW, no_fetch, relayed,
                    no_withdraw)
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
    changed = update(db, mine["id"], {
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
        ({"subject": "Line\r\nBcc: victim@example.org"}, "subject"),
    ):
        with pytest.raises(ValidationError) as error:
            update(db, mine["id"], changes)
        assert field in details(error)
    assert handlers.get(db, "u1", mine["id"]) == mine


def mark_sent(db, reminder_id, hand_over, at=NOW + timedelta(days=1, hours=23, minutes=56)):
    hand_over(at)
    stored = db[storage.REMINDERS].find_one({"_id": reminder_id})
    key = handlers.send_key(stored)
    handlers.on_delivery_report(db, [{"send_key": key, "notification_id": reminder_id,
                                      "status": "sent", "at": "2026-12-03T11:55:01Z"}], NOW)
    return key


def test_a_sent_reminder_cannot_be_changed(db, relayed, hand_over):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    mark_sent(db, mine["id"], hand_over)
    sent = handlers.get(db, "u1", mine["id"])
    assert (sent["status"], sent["sent_at"]) == ("sent", "2026-12-03T11:55:01Z")
    with pytest.raises(Conflict):
        update(db, mine["id"], {"subject": "Too late"})


def test_snooze_delays_a_scheduled_reminder(db, relayed):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 60})
    snoozed = snooze(db, "u1", mine["id"], 15)
    assert snoozed["remind_at"] == "2026-12-03T11:15:00Z"
    assert snoozed["before_minutes"] is None  # a time the user chose: it stays put
    for minutes in (0, 10081, "5", 2.5, True):
        with pytest.raises(ValidationError):
            snooze(db, "u1", mine["id"], minutes)


def test_snooze_re_arms_a_sent_reminder_with_a_new_send_key(db, relayed, hand_over, published):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    first_key = mark_sent(db, mine["id"], hand_over)
    later = NOW + timedelta(days=1, hours=23, minutes=57)
    snoozed = snooze(db, "u1", mine["id"], 10, later)
    assert snoozed["status"] == "scheduled"
    assert snoozed["remind_at"] == "2026-12-03T12:07:00Z"
    assert snoozed["sent_at"] is None
    hand_over(later + timedelta(minutes=10))
    keys = [item["send_key"] for item in published.reminders()]
    assert keys == [first_key, f"reminder:{mine['id']}:2"]


def test_a_cancelled_reminder_cannot_be_snoozed(db, relayed, withdraw):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    handlers.on_event_message(db, event_message("event_updated", event(version=2,
                                                                       status="cancelled")),
                              NOW, relayed, withdraw)
    with pytest.raises(Conflict):
        snooze(db, "u1", mine["id"], 5)


def test_a_reminder_being_sent_cannot_be_changed_or_snoozed(db, relayed, hand_over):
    known(db, event())
    mine = create(db, relayed, {"remind_at": "2026-12-01T12:00:05Z"})
    hand_over(NOW + timedelta(seconds=6))
    assert handlers.get(db, "u1", mine["id"])["status"] == "scheduled"  # as the user sees it
    with pytest.raises(Conflict):
        update(db, mine["id"], {"subject": "x"})
    with pytest.raises(Conflict):
        snooze(db, "u1", mine["id"], 5)


# races: a compare-and-set that loses is retried from a fresh read

def interleaved(monkeypatch, before_first_write):
    """Run ``before_first_write()`` right before the next compare-and-set, as if a
    concurrent writer got there first."""
    real = storage.update_reminder_if
    pending = [before_first_write]

    def write(*args, **kwargs):
        if pending:
            pending.pop()()
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "update_reminder_if", write)


def test_a_patch_racing_an_event_move_loses_neither(db, relayed, monkeypatch):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 30})
    moved = event(starts_at=NOW + timedelta(days=5), version=2)
    interleaved(monkeypatch, lambda: handlers.on_event_message(
        db, event_message("event_updated", moved), NOW, relayed, no_withdraw))
    changed = update(db, mine["id"], {"subject": "Doors at 8", "message": "Row 3"})
    assert changed["subject"] == "Doors at 8" and changed["message"] == "Row 3"
    assert changed["remind_at"] == "2026-12-06T11:30:00Z"  # the move is kept
    assert changed["before_minutes"] == 30


def test_a_patch_to_before_minutes_read_before_a_move_follows_the_move(db, relayed,
                                                                       monkeypatch):
    known(db, event())
    mine = create(db, relayed, {"remind_at": "2026-12-02T10:00:00Z"})
    moved = event(starts_at=NOW + timedelta(days=5), version=2)
    # the move lands after the PATCH read the copy, before it writes: the event
    # handler sees an absolute reminder and leaves it; the PATCH must notice
    real_find_event = storage.find_event
    calls = []

    def find_event(db_, event_id):
        copy = real_find_event(db_, event_id)
        if not calls:
            calls.append(1)
            handlers.on_event_message(db, event_message("event_updated", moved), NOW, relayed,
                                      no_withdraw)
        return copy

    monkeypatch.setattr(storage, "find_event", find_event)
    changed = update(db, mine["id"], {"before_minutes": 60})
    assert changed["remind_at"] == "2026-12-06T11:00:00Z"


def test_a_snooze_racing_an_event_move_delays_from_the_moved_time(db, relayed, monkeypatch):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 30})
    moved = event(starts_at=NOW + timedelta(days=5), version=2)
    interleaved(monkeypatch, lambda: handlers.on_event_message(
        db, event_message("event_updated", moved), NOW, relayed, no_withdraw))
    snoozed = snooze(db, "u1", mine["id"], 15)
    assert snoozed["remind_at"] == "2026-12-06T11:45:00Z"
    assert snoozed["before_minutes"] is None


def test_an_event_move_racing_a_patch_is_not_lost(db, relayed, monkeypatch):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 30})
    moved = event(starts_at=NOW + timedelta(days=5), version=2)
    interleaved(monkeypatch, lambda: update(db, mine["id"], {"message": "Row 3"}))
    handlers.on_event_message(db, event_message("event_updated", moved), NOW, relayed,
                              no_withdraw)
    final = handlers.get(db, "u1", mine["id"])
    assert final["message"] == "Row 3"
    assert final["remind_at"] == "2026-12-06T11:30:00Z"


def test_a_snooze_of_a_sent_reminder_racing_a_cancellation_is_cancelled(db, relayed,
                                                                       hand_over, withdraw,
                                                                       monkeypatch):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})
    mark_sent(db, mine["id"], hand_over)
    cancelled = event(version=2, status="cancelled")
    # snooze reads the event live, then the cancellation runs before it writes
    interleaved(monkeypatch, lambda: handlers.on_event_message(
        db, event_message("event_updated", cancelled), NOW, relayed, withdraw))
    snoozed = snooze(db, "u1", mine["id"], 10, NOW, withdraw=withdraw)
    assert snoozed["status"] == "cancelled"


# follow-ups of events

def test_moved_event_moves_relative_reminders_only(db, relayed):
    known(db, event())
    relative = create(db, relayed, {"before_minutes": 30})
    absolute = create(db, relayed, {"remind_at": "2026-12-02T10:00:00Z"})
    moved = event(starts_at=NOW + timedelta(days=5), version=2)
    handlers.on_event_message(db, event_message("event_updated", moved), NOW, relayed,
                              no_withdraw)
    assert handlers.get(db, "u1", relative["id"])["remind_at"] == "2026-12-06T11:30:00Z"
    assert handlers.get(db, "u1", absolute["id"])["remind_at"] == "2026-12-02T10:00:00Z"
    # an older version arriving late changes nothing
    handlers.on_event_message(db, event_message("event_updated", event(version=1)), NOW,
                              relayed, no_withdraw)
    assert handlers.get(db, "u1", relative["id"])["remind_at"] == "2026-12-06T11:30:00Z"


def test_event_moved_closer_than_the_lead_reminds_at_once(db, relayed):
    known(db, event())
    relative = create(db, relayed, {"before_minutes": 120})
    moved = event(starts_at=NOW + timedelta(minutes=30), version=2)
    handlers.on_event_message(db, event_message("event_updated", moved), NOW, relayed,
                              no_withdraw)
    assert handlers.get(db, "u1", relative["id"])["remind_at"] == "2026-12-01T12:00:00Z"


@pytest.mark.parametrize("how", ["cancelled", "deleted"])
def test_cancelled_event_cancels_reminders_with_one_notice_per_user(db, relayed, withdraw, how):
    known(db, event())
    ann = [create(db, relayed, {"before_minutes": m}) for m in (5, 60)]
    bob = create(db, relayed, {"before_minutes": 10}, who=user("u2", "bob@example.com", ()))
    if how == "cancelled":
        message = event_message("event_updated", event(version=2, status="cancelled"))
    else:
        message = event_message("event_deleted", event(version=2))
    handlers.on_event_message(db, message, NOW, relayed, withdraw)
    handlers.on_event_message(db, message, NOW, relayed, withdraw)  # redelivered
    for reminder, user_id in ((ann[0], "u1"), (ann[1], "u1"), (bob, "u2")):
        assert handlers.get(db, user_id, reminder["id"])["status"] == "cancelled"
    notices = list(db[storage.NOTICES].find())
    assert len(notices) == 2
    by_user = {n["user_id"]: n["pending_events"][0]["data"] for n in notices}
    assert by_user["u1"]["email"] == "ann@example.com"
    assert {n["id"] for n in by_user["u1"]["notifications"]} == {r["id"] for r in ann}
    assert by_user["u2"]["email"] == "bob@example.com"
    assert all(n["status"] == "cancelled" for n in by_user["u1"]["notifications"])
    assert withdraw.calls == []  # none was in the mailer's hands


@pytest.mark.parametrize("order", ["series first", "series last"])
def test_a_deleted_series_sends_one_notice_per_user_whatever_the_order(db, relayed, withdraw,
                                                                       order):
    occurrences = [known(db, event(f"e{n}", starts_at=NOW + timedelta(days=n + 1)))
                   for n in range(3)]
    ann = [create(db, relayed, {"event_id": e["id"], "before_minutes": 5}) for e in occurrences]
    bob = create(db, relayed, {"event_id": "e2", "before_minutes": 10},
                 who=user("u2", "bob@example.com", ()))
    single = known(db, event("e9"))
    other = create(db, relayed, {"event_id": single["id"], "before_minutes": 5})
    deleted = [{**e, "version": 2} for e in occurrences]
    each = [new_message("events", "event_deleted", e["id"], 2, event=e, series_change="c1")
            for e in deleted]
    summary = new_message("events", "series_cancelled", "e0", 2, series_id="e0",
                          change_id="c1", first=deleted[0],
                          occurrences=[{"id": e["id"], "version": 2} for e in deleted])
    for message in ([summary, *each] if order == "series first" else [*each, summary]):
        if message["event_type"] == "series_cancelled":
            handlers.on_series_cancelled(db, message, NOW, relayed, withdraw)
        else:
            handlers.on_event_message(db, message, NOW, relayed, withdraw)
    handlers.on_series_cancelled(db, summary, NOW, relayed, withdraw)  # redelivered
    handlers.on_event_message(db, each[1], NOW, relayed, withdraw)
    for reminder, user_id in [*((r, "u1") for r in ann), (bob, "u2")]:
        assert handlers.get(db, user_id, reminder["id"])["status"] == "cancelled"
    assert handlers.get(db, "u1", other["id"])["status"] == "scheduled"
    notices = {n["user_id"]: n for n in db[storage.NOTICES].find()}
    assert set(notices) == {"u1", "u2"} and db[storage.NOTICES].count_documents({}) == 2
    assert notices["u1"]["_id"] == "cancel-series:e0:c1:u1"
    data = notices["u1"]["pending_events"][0]["data"]
    assert [n["id"] for n in data["notifications"]] == [r["id"] for r in ann]
    assert data["event"]["id"] == "e0" and data["series"] == {"id": "e0", "occurrences": 3}
    # the single event's own cancellation still mails per event
    handlers.on_event_message(db, event_message("event_deleted", {**single, "version": 2}),
                              NOW, relayed, withdraw)
    assert db[storage.NOTICES].count_documents({"_id": "cancel:e9:2:u1"}) == 1


def test_a_reminder_in_the_mailers_hands_is_withdrawn_when_its_event_is_cancelled(
        db, relayed, hand_over, withdraw, published):
    known(db, event())
    due = [create(db, relayed, {"remind_at": "2026-12-01T12:00:05Z"}) for _ in range(3)]
    later = create(db, relayed, {"before_minutes": 60})
    hand_over(NOW + timedelta(seconds=6))
    keys = sorted(item["send_key"] for item in published.reminders())
    assert len(keys) == 3
    withdraw.take(keys[0])  # the mailer handed this one to SMTP already
    handlers.on_event_message(db, event_message("event_updated", event(version=2,
                                                                       status="cancelled")),
                              NOW, relayed, withdraw)
    statuses = {r["id"]: handlers.get(db, "u1", r["id"])["status"] for r in [*due, later]}
    handed = keys[0].split(":")[1]
    assert statuses.pop(handed) == "scheduled"  # in flight: it ends sent, not cancelled
    assert set(statuses.values()) == {"cancelled"}
    [notice] = db[storage.NOTICES].find()
    listed = {n["id"] for n in notice["pending_events"][0]["data"]["notifications"]}
    assert listed == set(statuses)  # "these reminders will not be sent": true of each
    # the mailer reports the one it had: it becomes sent
    handlers.on_delivery_report(db, [{"send_key": keys[0], "notification_id": handed,
                                      "status": "sent", "at": "2026-12-01T12:00:06Z"}], NOW)
    assert handlers.get(db, "u1", handed)["status"] == "sent"


def test_a_reminder_created_after_its_event_was_cancelled_is_cancelled(db, relayed, withdraw):
    known(db, event())
    stale_read = storage.find_event(db, "e1")
    handlers.on_event_message(db, event_message("event_updated", event(version=2,
                                                                       status="cancelled")),
                              NOW, relayed, withdraw)
    # the create read the event live just before the cancellation was stored
    reminder = {"_id": "r1", "user_id": "u1", "event_id": "e1", "email": "ann@example.com",
                "email_lc": "ann@example.com", "subject": "s", "message": None,
                "remind_at": NOW + timedelta(hours=1), "before_minutes": None,
                "event_starts_at": None, "status": "scheduled", "arm": 1, "rev": 1,
                "created_at": NOW, "updated_at": NOW, "sent_at": None, "failure_reason": None}
    assert handlers.is_live(stale_read)
    storage.insert_reminder(db, reminder)
    handlers.settle(db, reminder, NOW, relayed, withdraw)
    assert handlers.get(db, "u1", "r1")["status"] == "cancelled"


# follow-ups of accounts

def test_reminders_follow_a_changed_or_removed_email_to_the_primary(db, relayed):
    known(db, event())
    to_primary = create(db, relayed, {"before_minutes": 5})
    to_work = create(db, relayed, {"before_minutes": 6, "email": "ann.work@example.com"})
    changed = user(email="ann@new.example", secondary=("Ann.Work@Example.com",))
    handlers.on_account_message(db, account_message(
        "user_email_changed", changed, 2, old_email="ann@example.com",
        new_email="ann@new.example"), NOW)
    assert handlers.get(db, "u1", to_primary["id"])["email"] == "ann@new.example"
    assert handlers.get(db, "u1", to_work["id"])["email"] == "Ann.Work@Example.com"
    removed = user(email="ann@new.example", secondary=())
    handlers.on_account_message(db, account_message(
        "user_email_removed", removed, 3, email="Ann.Work@Example.com"), NOW)
    assert handlers.get(db, "u1", to_work["id"])["email"] == "ann@new.example"


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_email_changes_applied_in_any_order_end_on_the_latest_address(db, relayed, order):
    known(db, event())
    mine = create(db, relayed, {"before_minutes": 5})  # on ann@example.com (A)
    a_to_b = account_message("user_email_changed", user(email="b@example.com", secondary=()), 2,
                             old_email="ann@example.com", new_email="b@example.com")
    b_to_c = account_message("user_email_changed", user(email="c@example.com", secondary=()), 3,
                             old_email="b@example.com", new_email="c@example.com")
    messages = [a_to_b, b_to_c] if order == "in order" else [b_to_c, a_to_b]
    for message in messages:
        handlers.on_account_message(db, message, NOW)
    assert handlers.get(db, "u1", mine["id"])["email"] == "c@example.com"


def test_a_create_with_a_stale_account_cannot_use_a_removed_address(db, relayed):
    known(db, event())
    handlers.on_account_message(db, account_message(
        "user_email_removed", {**user(secondary=()), "version": 3}, 3,
        email="Ann.Work@Example.com"), NOW)
    stale = {**user(), "version": 2}  # still lists Ann.Work@Example.com
    with pytest.raises(ValidationError) as error:
        create(db, relayed, {"before_minutes": 5, "email": "ann.work@example.com"}, who=stale)
    assert list(details(error)) == ["email"]


def test_deleted_user_loses_their_reminders_and_in_flight_ones_are_withdrawn(
        db, relayed, hand_over, withdraw, published):
    known(db, event())
    mine = create(db, relayed, {"remind_at": "2026-12-01T12:00:05Z"})
    later = create(db, relayed, {"before_minutes": 5})
    bobs = create(db, relayed, {"before_minutes": 5}, who=user("u2", "bob@example.com", ()))
    hand_over(NOW + timedelta(seconds=6))
    [item] = published.reminders()
    deleted = new_message("users", "user_deleted", "u1", 4, user_id="u1")
    handlers.on_user_deleted(db, deleted, NOW, withdraw)
    handlers.on_user_deleted(db, deleted, NOW, withdraw)  # redelivered
    assert handlers.list_reminders(db, "u1", {})["items"] == []
    for reminder in (mine, later):
        with pytest.raises(NotFound):
            handlers.get(db, "u1", reminder["id"])
    assert withdraw.calls == [[item["send_key"]]]
    assert withdraw(["x"]) and withdraw([item["send_key"]])[1] == []  # stays withdrawn
    assert handlers.get(db, "u2", bobs["id"])["status"] == "scheduled"
    with pytest.raises(Unauthorized):  # a late request with the deleted account
        create(db, relayed, {"before_minutes": 5}, who={**user(), "version": 3})


# what the mailer reports

def test_delivery_report_outcomes_for_this_arming_only(db, relayed, hand_over):
    known(db, event())
    sent, failed, other = (create(db, relayed, {"remind_at": "2026-12-01T12:00:05Z"})
                           for _ in range(3))
    hand_over(NOW + timedelta(seconds=6))
    handlers.on_delivery_report(db, [
        {"send_key": f"reminder:{sent['id']}:1", "notification_id": sent["id"],
         "status": "sent", "at": "2026-12-01T12:00:05.250Z"},
        {"send_key": f"reminder:{failed['id']}:1", "notification_id": failed["id"],
         "status": "failed", "reason": "550 no such mailbox"},
        {"send_key": f"reminder:{other['id']}:7", "notification_id": other["id"],
         "status": "sent", "at": "2026-12-01T12:00:06Z"},  # another arming: stale
        {"send_key": "welcome:u1", "notification_id": None, "status": "sent"},
        "nonsense", {"send_key": None},
    ], NOW)
    assert handlers.get(db, "u1", sent["id"])["sent_at"] == iso(
        handlers.parse_time("2026-12-01T12:00:05.250Z"))
    got = handlers.get(db, "u1", failed["id"])
    assert (got["status"], got["failure_reason"]) == ("failed", "550 no such mailbox")
    assert handlers.get(db, "u1", other["id"])["status"] == "scheduled"


def test_a_deferred_reminder_is_handed_over_again_after_a_backoff(db, relayed, hand_over,
                                                                  published, withdraw):
    known(db, event())
    mine = create(db, relayed, {"remind_at": "2026-12-01T12:00:05Z"})
    at = NOW + timedelta(seconds=6)
    hand_over(at)
    key = f"reminder:{mine['id']}:1"
    retry_at = handlers.on_delivery_report(db, [{"send_key": key, "notification_id": mine["id"],
                                                 "status": "deferred",
                                                 "reason": "421 try later"}], at)
    assert retry_at == at + timedelta(seconds=2)
    from services.notifications import scheduler
    settings = scheduler.Settings()
    scheduler.sweep(db, retry_at - timedelta(seconds=1), published, withdraw, relayed, settings)
    assert len(published.reminders()) == 1  # not yet
    scheduler.sweep(db, retry_at, published, withdraw, relayed, settings)
    first, again = published.reminders()
    assert again["send_key"] == first["send_key"] == key
    assert again["attempt"] == 2
    assert handlers.get(db, "u1", mine["id"])["status"] == "scheduled"


def test_a_user_who_stopped_cancellation_notices_gets_none_but_the_reminders_are_cancelled(
        db, relayed, withdraw):
    known(db, event())
    ann = create(db, relayed, {"before_minutes": 5})
    bob = create(db, relayed, {"before_minutes": 10}, who=user("u2", "bob@example.com", ()))
    assert handlers.email_preferences(db, "u1") == {"cancellation_notices": True}
    assert handlers.stop_notices(db, "u1", NOW) == {
        "done": True, "preferences": {"cancellation_notices": False}}
    assert handlers.stop_notices(db, "u1", NOW)["done"] is False  # used again: says so
    handlers.on_event_message(db, event_message("event_deleted", event(version=2)), NOW,
                              relayed, withdraw)
    assert handlers.get(db, "u1", ann["id"])["status"] == "cancelled"
    assert handlers.get(db, "u2", bob["id"])["status"] == "cancelled"
    [notice] = db[storage.NOTICES].find()
    assert notice["user_id"] == "u2" and notice["pending_events"][0]["data"]["user_id"] == "u2"
    # turned back on: the next cancellation tells them again
    assert handlers.change_email_preferences(db, "u1", {"cancellation_notices": True}, NOW) \
        == {"cancellation_notices": True}
    known(db, event("e2"))
    create(db, relayed, {"event_id": "e2", "before_minutes": 5})
    handlers.on_event_message(db, event_message("event_deleted", event("e2", version=2)), NOW,
                              relayed, withdraw)
    assert db[storage.NOTICES].count_documents({"user_id": "u1"}) == 1


@pytest.mark.parametrize("changes, field", [({"cancellation_notices": 1}, "cancellation_notices"),
                                            ({"cancellation_notices": "false"},
                                             "cancellation_notices"),
                                            ({"other": True}, "other")])
def test_email_preferences_take_only_booleans_of_known_names(db, changes, field):
    with pytest.raises(ValidationError) as error:
        handlers.change_email_preferences(db, "u1", changes, NOW)
    assert list(details(error)) == [field]
    assert handlers.change_email_preferences(db, "u1", {}, NOW) == {"cancellation_notices": True}
