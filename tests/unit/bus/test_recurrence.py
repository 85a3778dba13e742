"""bus.recurrence: the RRULE subset of API.md v1.1, its refusals and its expansion."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bus.recurrence import RuleError, moved, occurrences, parse, wall_shift

MADRID = ZoneInfo("Europe/Madrid")


def utc(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


def test_weekly_keeps_the_wall_clock_across_the_october_change():
    # 19:00 in Madrid on Sunday 2031-10-19 (CEST, UTC+2); the change is 2031-10-26
    found = occurrences("FREQ=WEEKLY;COUNT=3", utc(2031, 10, 19, 17), utc(2031, 10, 19, 19),
                        "Europe/Madrid")
    starts = [start.astimezone(MADRID) for start, _ in found]
    assert [s.hour for s in starts] == [19, 19, 19]
    assert [s.utcoffset() for s in starts] == [timedelta(hours=2), timedelta(hours=1),
                                               timedelta(hours=1)]
    assert [end - start for start, end in found] == [timedelta(hours=2)] * 3
    assert found[1][0] == utc(2031, 10, 26, 18)


def test_weekly_byday_and_interval():
    found = occurrences("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;COUNT=4", utc(2031, 1, 7, 9), None,
                        "UTC")  # a Tuesday
    assert [s for s, _ in found] == [utc(2031, 1, 7, 9), utc(2031, 1, 9, 9),
                                     utc(2031, 1, 21, 9), utc(2031, 1, 23, 9)]
    assert all(end is None for _, end in found)


def test_monthly_first_friday_and_last_sunday():
    fridays = occurrences("FREQ=MONTHLY;BYDAY=1FR;COUNT=3", utc(2031, 1, 3, 18), None, "UTC")
    assert [s.day for s, _ in fridays] == [3, 7, 7]  # Jan 3, Feb 7, Mar 7 2031
    sundays = occurrences("FREQ=MONTHLY;BYDAY=-1SU;COUNT=2", utc(2031, 1, 26, 18), None, "UTC")
    assert [(s.month, s.day) for s, _ in sundays] == [(1, 26), (2, 23)]


def test_daily_until_includes_its_day():
    found = occurrences("FREQ=DAILY;UNTIL=20310105", utc(2031, 1, 1, 20), None, "UTC")
    assert len(found) == 5


@pytest.mark.parametrize("rule, words", [
    ("FREQ=YEARLY;COUNT=2", "FREQ"),
    ("FREQ=MONTHLY;BYSETPOS=1;BYDAY=MO;COUNT=2", "BYSETPOS"),
    ("FREQ=DAILY;COUNT=2;UNTIL=20310101", "exactly one"),
    ("FREQ=DAILY", "exactly one"),
    ("FREQ=DAILY;COUNT=501", "COUNT"),
    ("FREQ=DAILY;COUNT=0", "COUNT"),
    ("FREQ=WEEKLY;BYDAY=1FR;COUNT=2", "Weekly BYDAY"),
    ("FREQ=MONTHLY;BYDAY=FR;COUNT=2", "Monthly BYDAY"),
    ("FREQ=DAILY;BYDAY=MO;COUNT=2", "BYDAY"),
    ("FREQ=DAILY;COUNT=2;COUNT=3", "twice"),
    ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL"),
    ("FREQ=DAILY;INTERVAL=0;COUNT=2", "INTERVAL"),
    ("nonsense", "NAME=VALUE"),
    ("", "RRULE"),
])
def test_refused_rules_say_what_is_wrong(rule, words):
    with pytest.raises(RuleError, match=words):
        parse(rule)


def test_until_at_most_two_years_after_the_first_start():
    start = utc(2031, 3, 1, 10)
    assert len(occurrences("FREQ=MONTHLY;UNTIL=20330301T100000Z", start, None, "UTC")) == 25
    with pytest.raises(RuleError, match="2 years"):
        occurrences("FREQ=MONTHLY;UNTIL=20330301T100001Z", start, None, "UTC")


def test_at_most_500_occurrences_whichever_ends_the_series():
    with pytest.raises(RuleError, match="500"):
        occurrences("FREQ=DAILY;UNTIL=20321231", utc(2031, 1, 1, 10), None, "UTC")
    assert len(occurrences("FREQ=DAILY;COUNT=500", utc(2031, 1, 1, 10), None, "UTC")) == 500


def test_a_rule_with_no_occurrence_is_refused():
    with pytest.raises(RuleError, match="no occurrence"):
        occurrences("FREQ=DAILY;UNTIL=20300101", utc(2031, 1, 1, 10), None, "UTC")


def test_a_series_move_is_the_same_wall_clock_shift_on_both_sides_of_a_change():
    # the next occurrence moves 19:00 -> 20:30 in summer time; one after the change too
    shift = wall_shift(utc(2031, 10, 19, 17), utc(2031, 10, 19, 18, 30), "Europe/Madrid")
    assert shift == timedelta(hours=1, minutes=30)
    start, end = moved(utc(2031, 10, 26, 18), utc(2031, 10, 26, 20), "Europe/Madrid", shift)
    assert (start, end) == (utc(2031, 10, 26, 19, 30), utc(2031, 10, 26, 21, 30))
    assert start.astimezone(MADRID).hour == 20
    # a new duration, and an occurrence without an end
    assert moved(utc(2031, 10, 26, 18), None, "Europe/Madrid", shift,
                 timedelta(hours=3))[1] == utc(2031, 10, 26, 22, 30)
    assert moved(utc(2031, 10, 26, 18), None, "Europe/Madrid", shift)[1] is None
    # the same wall-clock shift is 25 elapsed hours across the change
    day = wall_shift(utc(2031, 10, 25, 17), utc(2031, 10, 26, 18), "Europe/Madrid")
    assert day == timedelta(days=1)
