"""The feed writer's own rules: folding at 75 octets, TEXT escaping, alarms (RFC 5545)."""
from icalendar import Calendar

from loadtests.calendar_feed import events
from services.gateway import calendar


def unfold(body):
    return body.replace(b"\r\n ", b"")


def test_long_lines_fold_at_75_octets_without_splitting_a_character():
    event = dict(next(events(1)), title="Fête " * 40, description="plain ascii " * 40)
    body = calendar.render([event], "EventPost")
    assert max(len(line) for line in body.split(b"\r\n")) <= 75
    body.decode("utf-8")  # every fold fell between characters
    parsed = Calendar.from_ical(body).walk("VEVENT")[0]
    assert str(parsed["SUMMARY"]) == "Fête " * 40
    assert str(parsed["DESCRIPTION"]) == "plain ascii " * 40


def test_text_is_escaped_and_reads_back_the_same():
    title = 'Jazz, soul; funk \\ more'
    event = dict(next(events(1)), title=title, description="two\nlines")
    body = calendar.render([event], "A, B; C")
    assert b"SUMMARY:Jazz\\, soul\\; funk \\\\ more" in unfold(body)
    assert b"X-WR-CALNAME:A\\, B\\; C\r\n" in body  # a TEXT value too
    assert str(Calendar.from_ical(body).walk("VEVENT")[0]["DESCRIPTION"]) == "two\nlines"


def test_one_absolute_valarm_per_reminder():
    event = next(events(1))
    body = calendar.render([event], "Mine", alarms={event["id"]: [
        ("2030-12-31T17:00:00Z", "Reminder: one"), ("2031-01-01T17:00:00Z", "Reminder: two")]})
    assert unfold(body).count(b"TRIGGER;VALUE=DATE-TIME:") == 2
    alarms = Calendar.from_ical(body).walk("VALARM")
    assert [str(a["DESCRIPTION"]) for a in alarms] == ["Reminder: one", "Reminder: two"]
    assert [a.decoded("TRIGGER").isoformat() for a in alarms] == [
        "2030-12-31T17:00:00+00:00", "2031-01-01T17:00:00+00:00"]


def test_the_same_events_give_the_same_bytes():
    feed = list(events(20))
    assert calendar.render(feed, "x") == calendar.render(feed, "x")
