"""Time as every service reads, stores and computes it: one parser, one range, and
arithmetic that cannot overflow.

- Input is RFC 3339 with an offset (API.md); it is read as UTC and rounded down to
  the millisecond (API.md v1.1), the precision MongoDB stores, so what a service
  answers is what it stored.
- Accepted times lie in ``EARLIEST..LATEST``: Python's whole range less a day at each
  end, so any time zone can show an accepted time (the mailer writes an event's start
  in the event's zone) and a reminder's lead or a snooze never leaves the range.
- ``shift`` adds a timedelta and stays within ``datetime.min..datetime.max`` (UTC),
  so a widening search window or a reminder time near year 1 or 9999 is clamped, never
  an OverflowError (a 500).
"""
import re
from datetime import datetime, timedelta, timezone

MILLISECOND = timedelta(milliseconds=1)
# The ends of what arithmetic may reach: datetime's own range, at millisecond precision.
MIN = datetime.min.replace(tzinfo=timezone.utc)
MAX = datetime.max.replace(microsecond=999000, tzinfo=timezone.utc)
# The ends of what input may say: a day inside, so every zone's local time exists.
EARLIEST = MIN + timedelta(days=1)
LATEST = MAX - timedelta(days=1)

RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
MESSAGE = "Must be an RFC 3339 time with an offset, e.g. 2026-12-05T20:30:00+01:00."
RANGE_MESSAGE = (f"Must be between {EARLIEST.isoformat().replace('+00:00', 'Z')} and "
                 f"{LATEST.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}.")


def parse(text, earliest=EARLIEST, latest=LATEST):
    """The UTC datetime, at millisecond precision, of an RFC 3339 string with an offset
    in ``earliest..latest``; ValueError (with a message for a person) otherwise. Input
    takes the default range; a time we wrote ourselves (a cursor's) may reach MIN..MAX."""
    if not isinstance(text, str) or not RFC3339.match(text):
        raise ValueError(MESSAGE)
    text = text.upper()
    fraction = re.search(r"\.(\d+)", text)
    if fraction:  # Python reads at most 6 digits; past the millisecond they do not count
        text = text[:fraction.start(1)] + fraction.group(1)[:3] + text[fraction.end(1):]
    try:
        moment = datetime.fromisoformat(text)
        moment = moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # Feb 30, or year 1 / 9999 moved to UTC
        raise ValueError(MESSAGE) from None
    moment = truncate(moment)
    if not earliest <= moment <= latest:
        raise ValueError(RANGE_MESSAGE)
    return moment


def read(text):
    """A time this system wrote itself (bus.messages.iso): trusted, so no checks; 40
    times cheaper than ``parse`` where thousands are read per answer (calendar feeds)."""
    return datetime.fromisoformat(text)


def truncate(moment):
    """Rounded down to the millisecond."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def shift(moment, delta):
    """``moment + delta``, clamped to ``MIN..MAX``."""
    try:
        return min(max(moment + delta, MIN), MAX)
    except OverflowError:
        return MAX if delta > timedelta(0) else MIN


def utc(moment):
    """An aware UTC datetime; naive ones (as some drivers return them) are UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
