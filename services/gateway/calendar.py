"""Calendar feeds (RFC 5545): events as API.md returns them, in, `text/calendar` out.

Everything is derived from the events themselves, never from the clock, so the same
events give the same bytes and the same ETag: `DTSTAMP` is the event's `updated_at`
and `SEQUENCE` its `version`. Starts and ends are written in the event's own time
zone (`DTSTART;TZID=...`, UTC included) with one `VTIMEZONE` per zone covering the
feed's years, so calendar apps keep the local wall-clock time across daylight-saving
changes. The lines are written by bus.ical (escaping, CRLF, folding at 75 octets):
the `icalendar` package builds the VTIMEZONEs, and the tests parse every feed with
it, but writing 500 events through it takes ~10 times longer.
"""
import hashlib
from datetime import date, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import Timezone
from werkzeug.wrappers import Response

from bus import ical, times

PRODUCT_ID = "-//EventPost//EventPost feed//EN"
UID_DOMAIN = "eventpost"
MEDIA_TYPE = "text/calendar; charset=utf-8"
FEED_PAST = timedelta(days=30)  # a user's feed: events from this long ago on
# A VTIMEZONE lists each change of offset; past this many years after the feed's
# first event (a stray event in year 9000), calendar apps extend the last rules.
ZONE_YEARS = 30


def render(events, name, alarms=None, link=None):
    """The feed's bytes. ``alarms``: {event id: [(remind_at, description)]}, one VALARM
    each; ``link(event)``: the URL of the event's page, or None."""
    years, lines = {}, []
    for event in events:
        start_year = times.read(event["starts_at"]).year
        first, last = years.get(event["timezone"], (start_year, start_year))
        years[event["timezone"]] = (min(first, start_year), max(last, start_year))
        lines += _vevent(event, (alarms or {}).get(event["id"], ()), link)
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODUCT_ID}", "CALSCALE:GREGORIAN",
            f"X-WR-CALNAME:{ical.text(name)}"]
    zones = [_vtimezone(zone, first, min(last, first + ZONE_YEARS))
             for zone, (first, last) in sorted(years.items())]
    return b"".join([ical.content(head), *zones, ical.content(lines), b"END:VCALENDAR\r\n"])


def response(request, body):
    """200 with the feed and its ETag, or 304 when the client holds these bytes."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in request.headers.get("If-None-Match", "").replace("W/", "").split(", ") \
            or request.headers.get("If-None-Match", "").strip() == "*":
        return Response(status=304, headers=headers)
    return Response(body, headers=headers, content_type=MEDIA_TYPE)


def _vevent(event, alarms, link):
    zone_name = event["timezone"]
    zone = ZoneInfo(zone_name)
    lines = ["BEGIN:VEVENT",
             f"UID:{event['id']}@{UID_DOMAIN}",
             f"DTSTAMP:{_utc(event['updated_at'])}",
             f"CREATED:{_utc(event['created_at'])}",
             f"LAST-MODIFIED:{_utc(event['updated_at'])}",
             f"SEQUENCE:{event['version']}",
             f"DTSTART;TZID={zone_name}:{_local(event['starts_at'], zone)}"]
    if event.get("ends_at"):
        lines.append(f"DTEND;TZID={zone_name}:{_local(event['ends_at'], zone)}")
    lines.append(f"SUMMARY:{ical.text(event['title'])}")
    if event.get("description"):
        lines.append(f"DESCRIPTION:{ical.text(event['description'])}")
    place = event.get("place")
    if place:
        where = ", ".join(part for part in (place["name"], place.get("address")) if part)
        lines.append(f"LOCATION:{ical.text(where)}")
        lines.append(f"GEO:{place['lat']};{place['lng']}")
    if event.get("organizer"):
        lines.append(f"X-EVENTPOST-ORGANIZER:{ical.text(event['organizer'])}")
    lines.append("CATEGORIES:" + ",".join(ical.text(topic) for topic in event["topics"]))
    lines.append("STATUS:" + ("CANCELLED" if event["status"] == "cancelled" else "CONFIRMED"))
    if link is not None:
        lines.append(f"URL:{link(event)}")
    for remind_at, description in alarms:
        # an absolute trigger is a UTC DATE-TIME, and says so (RFC 5545 3.8.6.3)
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", f"DESCRIPTION:{ical.text(description)}",
                  f"TRIGGER;VALUE=DATE-TIME:{_utc(remind_at)}", "END:VALARM"]
    lines.append("END:VEVENT")
    return lines


@lru_cache(maxsize=512)
def _vtimezone(zone, first_year, last_year):
    """The zone's rules over the feed's years, and one either side (for ends and
    alarms across a new year), as content lines."""
    component = Timezone.from_tzinfo(ZoneInfo(zone), tzid=zone,
                                     first_date=date(max(first_year - 1, 1), 1, 1),
                                     last_date=date(min(last_year + 1, 9998), 12, 31))
    return component.to_ical()


def _utc(text):
    return ical.utc_stamp(times.read(text))


def _local(text, zone):
    return ical.local_stamp(times.read(text).astimezone(zone))
