"""Handing due reminders to the mailer: once, in batches, with their message; again after
the lease; never stuck. Instances racing on the server, and what an idle scheduler asks
it: tests/integration/notifications/test_storage_on_server.py."""
from datetime import timedelta

from services.notifications import handlers, scheduler, storage

from .conftest import NOW, event, event_message, known, no_fetch, no_withdraw, user

SETTINGS = scheduler.Settings()


def schedule(db, relay, remind_at, who=None, event_id="e1"):
    return handlers.create(db, who or user(), {"event_id": event_id, "remind_at": remind_at},
                           NOW, no_fetch, relay, no_withdraw)


def stored(db, reminder_id):
    return db[storage.REMINDERS].find_one({"_id": reminder_id})


def test_claims_due_reminders_once_in_one_message_with_all_the_mailer_needs(
        db, relayed, hand_over, published):
    known(db, event())
    known(db, event(event_id="e2"))
    due = [schedule(db, relayed, "2026-12-01T12:00:05Z") for _ in range(3)]
    other = schedule(db, relayed, "2026-12-01T12:00:04Z", event_id="e2")
    later = schedule(db, relayed, "2026-12-01T12:00:10Z")
    at = NOW + timedelta(seconds=6)
    hand_over(at)
    hand_over(at)
    [message] = published.messages
    assert message["event_type"] == "reminder_due"
    items = message["data"]["reminders"]
    assert sorted(i["notification"]["id"] for i in items) == sorted(
        r["id"] for r in [*due, other])
    for item in items:
        assert item["send_key"] == f"reminder:{item['notification']['id']}:1"
        assert item["attempt"] == 1
        assert item["notification"]["email"] == "ann@example.com"
        assert message["data"]["events"][item["event_id"]]["title"] == "Jazz night"
    assert set(message["data"]["events"]) == {"e1", "e2"}
    # in flight, the user still sees it scheduled; the later one is not touched
    assert handlers.get(db, "u1", due[0]["id"])["status"] == "scheduled"
    assert stored(db, due[0]["id"])["status"] == "sending"
    assert stored(db, later["id"])["status"] == "scheduled"


def test_a_burst_goes_out_in_batches(db, relayed, hand_over, published):
    known(db, event())
    made = [schedule(db, relayed, "2026-12-01T12:00:05Z") for _ in range(120)]
    hand_over(NOW + timedelta(seconds=6), scheduler.Settings(batch=50))
    sizes = sorted(len(m["data"]["reminders"]) for m in published.messages)
    assert sizes == [20, 50, 50]
    assert sorted(i["notification"]["id"] for i in published.reminders()) == sorted(
        m["id"] for m in made)


def test_reminders_missed_longer_than_the_catch_up_window_fail(db, relayed, hand_over,
                                                               published):
    known(db, event())
    old = schedule(db, relayed, "2026-12-01T13:00:00Z")
    recent = schedule(db, relayed, "2026-12-02T12:00:00Z")
    back_up = NOW + timedelta(days=1, hours=2)  # the system was down for a day
    hand_over(back_up)
    missed = handlers.get(db, "u1", old["id"])
    assert (missed["status"], missed["failure_reason"]) == ("failed", "missed")
    assert [i["notification"]["id"] for i in published.reminders()] == [recent["id"]]
    # the user can still ask for it again
    again = handlers.snooze(db, "u1", old["id"], 5, back_up, relayed, no_withdraw)
    assert (again["status"], again["failure_reason"]) == ("scheduled", None)
    assert again["remind_at"] == "2026-12-02T14:05:00Z"


def test_a_reminder_of_an_event_cancelled_meanwhile_is_cancelled_not_handed_over(
        db, relayed, hand_over, published, withdraw):
    known(db, event())
    mine = schedule(db, relayed, "2026-12-01T12:00:05Z")
    # the copy says cancelled, its handler has not reached the reminders yet
    storage.store_event(db, handlers.event_copy(event(version=2, status="cancelled")))
    hand_over(NOW + timedelta(seconds=6))
    assert published.reminders() == []
    assert handlers.get(db, "u1", mine["id"])["status"] == "cancelled"
    [notice] = db[storage.NOTICES].find()
    assert [n["id"] for n in notice["pending_events"][0]["data"]["notifications"]] == [mine["id"]]


def test_a_lost_hand_over_is_repeated_after_the_lease_with_the_same_key(
        db, relayed, published, withdraw):
    known(db, event())
    mine = schedule(db, relayed, "2026-12-01T12:00:05Z")
    at = NOW + timedelta(seconds=6)

    def lost(message):
        raise ConnectionError("the broker is down")

    scheduler.claim_due(db, at, lost, withdraw, relayed, SETTINGS, clock=lambda: at)
    # a failed publish is tried again soon, not after the whole lease
    assert stored(db, mine["id"])["lease_until"] == at + timedelta(
        seconds=SETTINGS.retry_publish_seconds)
    assert scheduler.sweep(db, at + timedelta(seconds=1), published, withdraw, relayed,
                           SETTINGS) == at + timedelta(seconds=2)
    assert published.messages == []
    scheduler.sweep(db, at + timedelta(seconds=2), published, withdraw, relayed, SETTINGS)
    [item] = published.reminders()
    assert (item["send_key"], item["attempt"]) == (f"reminder:{mine['id']}:1", 2)
    # and if that one is lost too (the process died): again after the lease
    later = at + timedelta(seconds=2 + SETTINGS.lease_seconds)
    scheduler.sweep(db, later - timedelta(seconds=1), published, withdraw, relayed, SETTINGS)
    assert len(published.reminders()) == 1
    scheduler.sweep(db, later, published, withdraw, relayed, SETTINGS)
    assert [i["attempt"] for i in published.reminders()] == [2, 3]


def test_nothing_stays_sending_past_the_give_up_time(db, relayed, hand_over, published,
                                                     withdraw):
    known(db, event())
    mine = schedule(db, relayed, "2026-12-01T12:00:05Z")
    at = NOW + timedelta(seconds=6)
    hand_over(at)
    handlers.on_delivery_report(db, [{"send_key": f"reminder:{mine['id']}:1",
                                      "status": "deferred", "reason": "421 busy"}], at)
    end = at + timedelta(seconds=SETTINGS.give_up_seconds + 1)
    scheduler.sweep(db, end, published, withdraw, relayed, SETTINGS)
    failed = handlers.get(db, "u1", mine["id"])
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "not delivered within 900 s; last error: 421 busy"
    # the mailer's late word still counts
    handlers.on_delivery_report(db, [{"send_key": f"reminder:{mine['id']}:1", "status": "sent",
                                      "at": "2026-12-01T12:20:00Z"}], end)
    assert handlers.get(db, "u1", mine["id"])["status"] == "sent"


def test_an_event_moving_its_reminders_earlier_wakes_the_scheduler(db, relayed):
    known(db, event())
    clock = scheduler.Clock()
    clock.setup()
    clock.next_due = NOW + timedelta(hours=1)
    assert not clock.claim_needed(NOW)
    handlers.on_event_message(db, event_message("event_updated", event(version=2)), NOW,
                              relayed, no_withdraw)
    clock.wake()  # what the service does after every event message
    assert clock.claim_needed(NOW)


def test_a_restarted_process_hands_over_at_once_what_was_in_flight(db, relayed, published,
                                                                   withdraw):
    known(db, event())
    mine = schedule(db, relayed, "2026-12-01T12:00:05Z")
    at = NOW + timedelta(seconds=6)
    scheduler.claim_due(db, at, lambda message: None, withdraw, relayed, SETTINGS,
                        clock=lambda: at)  # claimed, then the process died before publishing
    fresh = scheduler.Clock()
    fresh.setup()
    scheduler.tick(db, fresh, at + timedelta(seconds=1), published, withdraw, relayed, SETTINGS)
    [item] = published.reminders()  # not after the 30 s lease
    assert (item["send_key"], item["attempt"]) == (f"reminder:{mine['id']}:1", 2)
