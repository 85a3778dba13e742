"""Reminder times are elapsed time before the start, also across a daylight-saving change."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifications import handlers

from .conftest import NOW, event, known, no_fetch, no_withdraw, user

BERLIN = ZoneInfo("Europe/Berlin")


def test_an_hour_before_a_start_just_after_clocks_go_forward():
    # 29 March 2026: Berlin jumps from 02:00 CET to 03:00 CEST
    starts_at = handlers.parse_time("2026-03-29T03:30:00+02:00")
    remind_at = handlers.time_before(starts_at, 60)
    assert remind_at == handlers.parse_time("2026-03-29T00:30:00Z")
    # on the wall clock that is two hours earlier, because an hour did not exist
    assert remind_at.astimezone(BERLIN).isoformat() == "2026-03-29T01:30:00+01:00"


def test_an_hour_before_a_start_just_after_clocks_go_back():
    # 25 October 2026: Berlin goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice
    starts_at = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)  # the second 02:30
    remind_at = handlers.time_before(starts_at, 60)
    assert remind_at.astimezone(BERLIN).isoformat() == "2026-10-25T02:30:00+02:00"
    assert starts_at - remind_at == timedelta(minutes=60)


def test_a_day_before_across_the_change_is_24_hours_not_the_same_wall_time():
    starts_at = handlers.parse_time("2026-03-29T12:00:00+02:00")
    remind_at = handlers.time_before(starts_at, 24 * 60)
    assert remind_at.astimezone(BERLIN).isoformat() == "2026-03-28T11:00:00+01:00"


def test_created_relative_reminder_before_an_event_on_the_change_day(db, relayed):
    # the event starts 03:30 Berlin time on the spring-forward day
    starts_at = handlers.parse_time("2027-03-28T03:30:00+02:00")
    known(db, event(starts_at=starts_at))
    created = handlers.create(db, user(), {"event_id": "e1", "before_minutes": 90}, NOW,
                              no_fetch, relayed, no_withdraw)
    assert created["remind_at"] == "2027-03-28T00:00:00Z"
    assert created["before_minutes"] == 90


# --- the ends of the calendar (issue 9): clamped, never an OverflowError ----------------

def test_a_lead_reaching_before_year_1_is_in_the_past_not_an_error(db, relayed):
    from datetime import timezone

    import pytest

    from bus.errors import ValidationError

    known(db, event(starts_at=datetime(1, 1, 2, tzinfo=timezone.utc)))
    with pytest.raises(ValidationError) as error:
        handlers.create(db, user(), {"event_id": "e1", "before_minutes": 10 * 24 * 60}, NOW,
                        no_fetch, relayed, no_withdraw)
    assert list(error.value.details) == ["before_minutes"]


def test_before_minutes_from_an_event_in_year_9999(db, relayed):
    known(db, event(starts_at=handlers.parse_time("9999-12-30T23:59:59.999Z")))
    created = handlers.create(db, user(), {"event_id": "e1", "before_minutes": 60}, NOW,
                              no_fetch, relayed, no_withdraw)
    assert created["remind_at"] == "9999-12-30T22:59:59.999000Z"


def test_snoozing_a_reminder_at_the_end_of_the_calendar_stays_in_it(db, relayed):
    known(db, event(starts_at=handlers.parse_time("9999-12-30T23:59:59.999Z")))
    created = handlers.create(db, user(), {"event_id": "e1",
                                           "remind_at": "9999-12-30T23:00:00Z"},
                              NOW, no_fetch, relayed, no_withdraw)
    for _ in range(3):
        snoozed = handlers.snooze(db, "u1", created["id"], 10080, NOW, relayed, no_withdraw)
    assert snoozed["remind_at"] == "9999-12-31T23:59:59.999000Z"
