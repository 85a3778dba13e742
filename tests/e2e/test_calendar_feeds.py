"""API.md v1.1, "Calendar feeds (ICS)": `GET /events.ics` and a user's secret feed, each
parsed by the icalendar package."""
import uuid
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar

from tests.e2e.helpers import assert_error, login, new_account
from tests.e2e.reminders_support import create_event
from tests.support.waiting import wait_for


def a_topic():
    return f"feed{uuid.uuid4().hex[:10]}"


def create(http, headers, topic, **fields):
    return create_event(http, headers, **{
        "title": "Weekly jam", "topics": [topic], "starts_at": "2031-10-21T19:00:00+02:00",
        "timezone": "Europe/Madrid", "ends_at": None, **fields})


def feed(http, **params):
    response = http.get("/events.ics", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/calendar")
    return response


def test_a_search_as_a_calendar_feed_field_by_field(http, admin_headers):
    topic = a_topic()
    # the day before, and the day after, Madrid leaves summer time (2031-10-26)
    summer = create(http, admin_headers, topic=topic, ends_at="2031-10-21T21:00:00+02:00",
                    description="Bring your own instrument; amps, drums\nand a PA provided. "
                                + "Long enough to be folded " * 4,
                    place={"name": "Sala Clamores", "address": "Calle de Alburquerque 14",
                           "lat": 40.4304, "lng": -3.7009})
    winter = create(http, admin_headers, topic=topic, starts_at="2031-10-28T19:00:00+01:00",
                    title="Weekly jam, ünïcödé édition")
    moved = http.patch(f"/events/{winter['id']}", json={"title": "Weekly jam (moved)"},
                       headers=admin_headers).json()
    assert moved["version"] == 2
    create(http, admin_headers, topic=a_topic())  # another search's

    response = feed(http, topic=topic)
    body = response.content
    assert body.startswith(b"BEGIN:VCALENDAR\r\n") and body.endswith(b"END:VCALENDAR\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"")  # every line ends in CRLF
    assert max(len(line) for line in body.split(b"\r\n")) <= 75  # folded at 75 octets
    assert any(line.startswith(b" ") for line in body.split(b"\r\n"))  # ...and folding happened

    calendar = Calendar.from_ical(body)
    assert calendar["VERSION"] == "2.0" and calendar["PRODID"]
    events = calendar.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [f"{summer['id']}@eventpost",
                                               f"{winter['id']}@eventpost"]
    first, second = events
    assert first["DTSTART"].params["TZID"] == "Europe/Madrid"
    assert first.decoded("DTSTART") == datetime(2031, 10, 21, 19, 0,
                                                tzinfo=ZoneInfo("Europe/Madrid"))
    assert first.decoded("DTEND") == datetime(2031, 10, 21, 21, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    # the same 19:00 on the wall clock after the change: the VTIMEZONE carries both offsets
    assert second.decoded("DTSTART").replace(tzinfo=None) == datetime(2031, 10, 28, 19, 0)
    assert second.decoded("DTSTART").utcoffset().total_seconds() == 3600
    assert first.decoded("DTSTART").utcoffset().total_seconds() == 7200
    zones = calendar.walk("VTIMEZONE")
    assert [str(z["TZID"]) for z in zones] == ["Europe/Madrid"]
    assert {str(s["TZNAME"]) for s in zones[0].subcomponents} >= {"CET", "CEST"}
    assert int(first["SEQUENCE"]) == 1 and int(second["SEQUENCE"]) == 2
    assert str(second["SUMMARY"]) == "Weekly jam (moved)"
    assert str(first["DESCRIPTION"]).startswith("Bring your own instrument; amps, drums\nand")
    assert str(first["LOCATION"]) == "Sala Clamores, Calle de Alburquerque 14"
    assert first.decoded("GEO") == (40.4304, -3.7009) or tuple(first["GEO"].to_ical().decode()
                                                                .split(";")) == ("40.4304",
                                                                                  "-3.7009")
    assert [str(c) for c in first["CATEGORIES"].cats] == [topic]
    assert str(first["STATUS"]) == "CONFIRMED"
    assert first.decoded("DTSTAMP") == datetime.fromisoformat(
        summer["updated_at"].replace("Z", "+00:00"))

    # the same feed again: the same bytes and ETag; If-None-Match -> 304
    again = feed(http, topic=topic)
    assert again.content == body and again.headers["ETag"] == response.headers["ETag"]
    cached = http.get("/events.ics", params={"topic": topic},
                      headers={"If-None-Match": response.headers["ETag"]})
    assert cached.status_code == 304 and cached.content == b""


def test_a_cancelled_event_is_marked_and_a_change_changes_the_etag(http, admin_headers):
    topic = a_topic()
    event = create(http, admin_headers, topic=topic)
    before = feed(http, topic=topic, status="all")
    cancelled = http.patch(f"/events/{event['id']}", json={"status": "cancelled"},
                           headers=admin_headers)
    assert cancelled.status_code == 200
    after = feed(http, topic=topic, status="all")
    assert after.headers["ETag"] != before.headers["ETag"]
    (vevent,) = Calendar.from_ical(after.content).walk("VEVENT")
    assert str(vevent["STATUS"]) == "CANCELLED" and int(vevent["SEQUENCE"]) == 2
    stale = http.get("/events.ics", params={"topic": topic, "status": "all"},
                     headers={"If-None-Match": before.headers["ETag"]})
    assert stale.status_code == 200


def test_the_feed_takes_up_to_500_events_over_several_pages(http, admin_headers):
    topic = a_topic()
    ids = [create(http, admin_headers, topic=topic,
                  starts_at=f"2032-01-{day:02d}T10:00:00Z", timezone="UTC")["id"]
           for day in range(1, 8)]
    events = Calendar.from_ical(feed(http, topic=topic).content).walk("VEVENT")
    assert [str(e["UID"]).split("@")[0] for e in events] == ids
    assert all(e["DTSTART"].params["TZID"] == "UTC" for e in events)
    limited = Calendar.from_ical(feed(http, topic=topic, limit=3).content).walk("VEVENT")
    assert len(limited) == 3


def test_bad_feed_parameters_are_422_naming_the_field(http):
    assert_error(http.get("/events.ics", params={"cursor": "abc"}), 422, "validation_error",
                 ["cursor"])
    assert_error(http.get("/events.ics", params={"limit": "501"}), 422, "validation_error",
                 ["limit"])
    assert_error(http.get("/events.ics", params={"near": "91,0"}), 422, "validation_error",
                 ["near"])


# --- a user's secret feed ---------------------------------------------------------------

def remind(http, headers, event, **when):
    response = http.post("/notifications", json={"event_id": event["id"], **when},
                         headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def my_feed(http, url, **kwargs):
    return http.get(urlsplit(url).path, **kwargs)  # no Authorization: the token is the key


def test_my_feed_has_my_reminders_events_with_one_alarm_each(http, admin_headers, system):
    topic = a_topic()
    concert = create(http, admin_headers, topic=topic, starts_at="2031-11-02T20:00:00+01:00")
    talk = create(http, admin_headers, topic=topic, starts_at="2031-11-03T18:00:00+01:00",
                  timezone="UTC")
    others = create(http, admin_headers, topic=topic)
    me, other = new_account(), new_account()
    for account in (me, other):
        assert http.post("/users", json=account).status_code == 201
    mine, theirs = login(http, me), login(http, other)
    early = remind(http, mine, concert, remind_at="2031-11-01T09:00:00Z", subject="Buy tickets")
    remind(http, mine, concert, before_minutes=60)
    remind(http, mine, talk, before_minutes=30)
    remind(http, theirs, others, before_minutes=10)

    created = http.post("/users/me/calendar", headers=mine)
    assert created.status_code == 201, created.text
    url = created.json()["url"]
    assert url.startswith(system.base_url.rstrip("/") + "/calendar/") and url.endswith(".ics")
    assert http.post("/users/me/calendar").status_code == 401

    response = my_feed(http, url)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(
        "text/calendar")
    parsed = Calendar.from_ical(response.content)
    events = {str(e["UID"]).split("@")[0]: e for e in parsed.walk("VEVENT")}
    assert set(events) == {concert["id"], talk["id"]}  # never another user's
    alarms = events[concert["id"]].walk("VALARM")
    assert sorted(a.decoded("TRIGGER").isoformat() for a in alarms) == [
        "2031-11-01T09:00:00+00:00", "2031-11-02T18:00:00+00:00"]
    assert "Buy tickets" in {str(a["DESCRIPTION"]) for a in alarms}
    assert events[talk["id"]]["DTSTART"].params["TZID"] == "UTC"
    assert [str(z["TZID"]) for z in parsed.walk("VTIMEZONE")] == ["Europe/Madrid", "UTC"]
    cached = my_feed(http, url, headers={"If-None-Match": response.headers["ETag"]})
    assert cached.status_code == 304

    # the event is cancelled: it stays in the feed, marked, without its alarms
    assert http.patch(f"/events/{concert['id']}", json={"status": "cancelled"},
                      headers=admin_headers).status_code == 200

    def concert_cancelled():
        feed = Calendar.from_ical(my_feed(http, url).content)
        vevent = next(e for e in feed.walk("VEVENT") if str(e["UID"]).startswith(concert["id"]))
        return str(vevent["STATUS"]) == "CANCELLED" and not vevent.walk("VALARM")

    assert wait_for(concert_cancelled, timeout=10)
    assert http.get(f"/notifications/{early['id']}", headers=mine).json()["status"] == \
        "cancelled"


def test_a_new_url_revokes_the_old_one_and_unknown_tokens_are_404(http):
    me = new_account()
    assert http.post("/users", json=me).status_code == 201
    headers = login(http, me)
    first = http.post("/users/me/calendar", headers=headers).json()["url"]
    second = http.post("/users/me/calendar", headers=headers).json()["url"]
    assert first != second
    assert_error(my_feed(http, first), 404, "not_found")
    assert my_feed(http, second).status_code == 200
    assert_error(http.get("/calendar/not-a-token.ics"), 404, "not_found")
    assert_error(http.get("/calendar/" + "x" * 500 + ".ics"), 404, "not_found")

    assert http.delete("/users/me", headers=headers).status_code == 204
    assert wait_for(lambda: my_feed(http, second).status_code == 404, timeout=10)
