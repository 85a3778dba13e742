"""Recurring events (API.md v1.1): the RRULE subset, its checks and its expansion.

The one place that reads a `recurrence`: the gateway's schema and the events service
check it with ``parse`` (through bus.fields.Recurrence), the events service expands it
with ``occurrences``.

The subset: `FREQ=DAILY|WEEKLY|MONTHLY`, `INTERVAL` (1..99), `BYDAY` (weekly: `MO,TU,..`;
monthly: an ordinal and a day, `1FR`, `-1SU`, ordinals 1..5 and -5..-1), and exactly one
of `COUNT` (1..500) or `UNTIL` (`YYYYMMDD` or `YYYYMMDDTHHMMSSZ`, at most 2 years after
the first start). Each part at most once; nothing else. A series has at most 500
occurrences whichever ends it (a daily UNTIL two years out would make 731: a 422).

Expansion (RFC 5545 semantics, through python-dateutil): on the event's wall clock in
its `timezone`, so a weekly 19:00 Europe/Madrid stays 19:00 local across the October
change (its UTC offset changes). A wall-clock time that does not exist on a spring-
forward day is read with the offset before the change (zoneinfo's fold=0: 02:30 becomes
03:30 summer time). Every occurrence keeps the first one's wall-clock duration. As in
RFC 5545 the first start counts as the first occurrence only if it matches the rule
(`BYDAY=TU` with a Monday start begins on the Tuesday after); a monthly rule without
BYDAY skips months without that day (the 31st).

Moving a series (PATCH /series/{id}: ``wall_shift``, ``moved``) works on the same wall
clock: every occurrence moves by the same local-time shift.
"""
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from dateutil import rrule
from dateutil.relativedelta import relativedelta

MAX_COUNT = 500
MAX_SPAN = relativedelta(years=2)
MAX_INTERVAL = 99
FREQUENCIES = {"DAILY": rrule.DAILY, "WEEKLY": rrule.WEEKLY, "MONTHLY": rrule.MONTHLY}
DAYS = {"MO": rrule.MO, "TU": rrule.TU, "WE": rrule.WE, "TH": rrule.TH, "FR": rrule.FR,
        "SA": rrule.SA, "SU": rrule.SU}
MAX_LENGTH = 200  # longer than any rule of the subset can usefully be
EXAMPLE = "e.g. FREQ=WEEKLY;BYDAY=TU,TH;COUNT=20"
# PATCH /series/{id} (the gateway's schema, the events service again)
FIXED = "A series' recurrence cannot be changed: delete the series and create a new one."
_MONTHLY_DAY = re.compile(r"([+-]?)([1-5])(MO|TU|WE|TH|FR|SA|SU)")
_UNTIL = re.compile(r"(\d{8})(T\d{6}Z)?")


class RuleError(ValueError):
    """What is wrong with a rule, in words for the 422's details."""


def parse(text):
    """The rule's parts as a dict (``freq``, ``interval``, ``byday``, ``count`` or
    ``until``); RuleError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"Must be an RRULE, {EXAMPLE}.")
    if len(text) > MAX_LENGTH:
        raise RuleError(f"Must be at most {MAX_LENGTH} characters long.")
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:"):]
    parts = {}
    for part in body.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip().upper()
        if not equals or not name or not value.strip():
            raise RuleError(f"Each part must be NAME=VALUE, {EXAMPLE}.")
        if name in parts:
            raise RuleError(f"{name} is given twice.")
        parts[name] = value.strip().upper()
    unknown = sorted(set(parts) - {"FREQ", "INTERVAL", "BYDAY", "COUNT", "UNTIL"})
    if unknown:
        raise RuleError(f"Not supported: {', '.join(unknown)}. Supported parts: FREQ, "
                        "INTERVAL, BYDAY, and COUNT or UNTIL.")
    if parts.get("FREQ") not in FREQUENCIES:
        raise RuleError("FREQ must be DAILY, WEEKLY or MONTHLY.")
    rule = {"freq": parts["FREQ"], "interval": _interval(parts.get("INTERVAL", "1"))}
    if "BYDAY" in parts:
        rule["byday"] = _byday(rule["freq"], parts["BYDAY"])
    if ("COUNT" in parts) == ("UNTIL" in parts):
        raise RuleError("Give exactly one of COUNT (1..500) or UNTIL.")
    if "COUNT" in parts:
        rule["count"] = _count(parts["COUNT"])
    else:
        rule["until"] = _until(parts["UNTIL"])
    return rule


def occurrences(text, starts_at, ends_at, zone):
    """[(starts_at, ends_at)] of every occurrence, UTC datetimes (``ends_at`` None if the
    event has none), from the first start ``starts_at`` in the time zone ``zone``.
    RuleError if UNTIL is more than 2 years after the first start or nothing occurs."""
    rule = parse(text)
    tz = ZoneInfo(zone)
    first = _local(starts_at, tz)  # wall clock
    duration = None if ends_at is None else _local(ends_at, tz) - first
    options = {"dtstart": first, "interval": rule["interval"]}
    if "count" in rule:
        options["count"] = rule["count"]
    else:
        until = rule["until"]
        if until > starts_at + MAX_SPAN:
            raise RuleError("UNTIL must be at most 2 years after the first start.")
        options["until"] = until.astimezone(tz).replace(tzinfo=None)
    if "byday" in rule:
        options["byweekday"] = [DAYS[day] if n is None else DAYS[day](n)
                                for n, day in rule["byday"]]
    found = []
    for local in rrule.rrule(FREQUENCIES[rule["freq"]], **options):
        start = _utc(local, tz)
        found.append((start, None if duration is None else _utc(local + duration, tz)))
        if len(found) > MAX_COUNT:  # daily UNTIL 2 years out would: the bound holds for both
            raise RuleError(f"Makes more than {MAX_COUNT} occurrences before UNTIL; "
                            "at most 500 are allowed.")
    if not found:
        raise RuleError("The rule makes no occurrence from starts_at on.")
    return found


def wall_shift(before, after, zone):
    """How far ``after`` is from ``before`` on the wall clock of ``zone`` (a timedelta):
    a series PATCH moves every occurrence by this much local time."""
    tz = ZoneInfo(zone)
    return _local(after, tz) - _local(before, tz)


def moved(starts_at, ends_at, zone, shift, duration=None):
    """(starts_at, ends_at) of an occurrence moved by ``shift`` of wall-clock time in
    ``zone``, so 19:00 -> 20:00 stays 20:00 local on both sides of a daylight-saving
    change. Its end keeps its own wall-clock duration, or takes ``duration`` (a
    timedelta; None keeps it); an occurrence with no end keeps none."""
    tz = ZoneInfo(zone)
    start = _local(starts_at, tz) + shift
    if duration is None:
        if ends_at is None:
            return _utc(start, tz), None
        duration = _local(ends_at, tz) - _local(starts_at, tz)
    return _utc(start, tz), _utc(start + duration, tz)


def _local(moment, tz):
    return moment.astimezone(tz).replace(tzinfo=None)


def _utc(local, tz):
    return local.replace(tzinfo=tz).astimezone(timezone.utc)


def _interval(value):
    if not value.isdigit() or not 1 <= int(value) <= MAX_INTERVAL:
        raise RuleError(f"INTERVAL must be an integer from 1 to {MAX_INTERVAL}.")
    return int(value)


def _count(value):
    if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
        raise RuleError(f"COUNT must be an integer from 1 to {MAX_COUNT}.")
    return int(value)


def _until(value):
    match = _UNTIL.fullmatch(value)
    if match is None:
        raise RuleError("UNTIL must be a UTC time YYYYMMDDTHHMMSSZ or a date YYYYMMDD.")
    try:
        if match.group(2):
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        # a date: the whole of that day (UTC) is included
        return datetime.strptime(value + "235959", "%Y%m%d%H%M%S").replace(
            tzinfo=timezone.utc)
    except ValueError:
        raise RuleError("UNTIL is not a valid date.") from None


def _byday(freq, value):
    days = []
    for item in value.split(","):
        item = item.strip()
        if freq == "WEEKLY" and item in DAYS:
            days.append((None, item))
            continue
        match = _MONTHLY_DAY.fullmatch(item) if freq == "MONTHLY" else None
        if match is None:
            if freq == "WEEKLY":
                raise RuleError("Weekly BYDAY takes days: MO,TU,WE,TH,FR,SA,SU.")
            if freq == "MONTHLY":
                raise RuleError("Monthly BYDAY takes an ordinal and a day, e.g. 1FR or -1SU.")
            raise RuleError("BYDAY is supported with FREQ=WEEKLY or MONTHLY only.")
        sign, number, day = match.groups()
        days.append((-int(number) if sign == "-" else int(number), day))
    if len(set(days)) != len(days):
        raise RuleError("BYDAY names a day twice.")
    return days
