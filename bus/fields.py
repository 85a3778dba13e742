"""Every field rule of API.md, in one place, as marshmallow fields.

The gateway's request schemas (services/gateway/schemas.py), the services' own
re-checks (services/*/schemas.py) and so the OpenAPI document (apispec reads
``maxLength``, ``minLength``, ``pattern``, ``minimum`` and ``maximum`` off these
validators) are all built from the rules below, so they cannot drift apart;
tests/e2e/test_field_rules.py checks the document against the running system.

Limits: API.md's where it states them. Where it is silent the larger sensible one of
those the code had (documented in /openapi.json): `email` 254 (RFC 5321's 256-octet
path less its angle brackets: a longer address cannot be delivered), `message` 4,000
(as `description`), `event_id` 200, `subject`, `organizer` and a place's `name` 200,
its `address` 500, `q` 500, a login's `username`/`email` 256.

Text (API.md v1.1): no field takes control characters (Unicode category Cc: U+0000..
U+001F, U+007F..U+009F) except `\\n` and `\\t` in `description` and `message`; the
single-line fields (titles, subjects, names, topics, ...) take no line breaks at all,
U+2028 and U+2029 included. No text takes a lone surrogate (JSON can carry one; UTF-8,
BSON and SMTP cannot). Passwords are exempt from the character rules: they are never
shown or sent anywhere, and any string the owner chose must keep working.
"""
import re
import zoneinfo

from marshmallow import ValidationError, fields, validate

from bus import cursors, recurrence, times
from bus.messages import iso

# --- limits (API.md) ---------------------------------------------------------------------
USERNAME_PATTERN = r"^[a-z0-9_.-]{3,30}$"
USERNAME = (3, 30)
PASSWORD = (8, 256)
LOGIN_NAME = (1, 256)  # a username or an email tried at login: a wrong one is a 401
EMAIL_MAX = 254
TITLE = (1, 120)
DESCRIPTION = (0, 4000)
TOPIC = (1, 40)
TOPICS = (1, 10)
SEARCH_TOPICS_MAX = 50
TIMEZONE = (1, 64)
PLACE_NAME = (1, 200)
ADDRESS = (0, 500)
ORGANIZER = (1, 200)
SUBJECT = (1, 200)
MESSAGE = (0, 4000)
EVENT_ID = (1, 200)
WORDS = (0, 500)  # search's `q`
CURSOR = (1, cursors.MAX_LENGTH)
LATITUDE = (-90, 90)
LONGITUDE = (-180, 180)
MAX_RADIUS_KM = 500
DEFAULT_RADIUS_KM = 10.0
LIMIT = (1, 100)
DEFAULT_LIMIT = 20
SNOOZE_MINUTES = (1, 7 * 24 * 60)
# Saved searches (API.md v1.1): a name like a subject's, `within_days` as API.md says,
# and at most this many per account (the next one is a 409).
SAVED_SEARCH_NAME = (1, 200)
WITHIN_DAYS = (1, 365)
ALERT_FREQUENCIES = ("instant", "daily")
MAX_SAVED_SEARCHES = 20
# Ten years: far beyond any real reminder.
BEFORE_MINUTES = (0, 10 * 366 * 24 * 60)
TIMEZONES = frozenset(zoneinfo.available_timezones())

# --- characters --------------------------------------------------------------------------
# JSON Schema (ECMA 262) and Python read these patterns alike.
SINGLE_LINE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
MULTI_LINE = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"  # \t (09) and \n (0a) allowed
SINGLE_LINE_RE = re.compile(SINGLE_LINE)
SINGLE_LINE_MESSAGE = "Must not contain line breaks or control characters."
MULTI_LINE_MESSAGE = "Must not contain control characters other than line breaks (\\n) and tabs."
LENGTH_MESSAGE = "Must be {min} to {max} characters long."
MAX_LENGTH_MESSAGE = "Must be at most {max} characters long."


def length(bounds):
    low, high = bounds
    if low:
        return validate.Length(low, high, error=LENGTH_MESSAGE)
    return validate.Length(max=high, error=MAX_LENGTH_MESSAGE)


def not_blank(value):
    if not value.strip():
        raise ValidationError("Must not be blank.")


def storable(value):
    """Valid Unicode: a lone surrogate cannot be stored (BSON) or sent (SMTP)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text.") from None


def is_timezone(value):
    if value not in TIMEZONES:
        raise ValidationError("Must be an IANA time zone name, e.g. Europe/Paris.")


class Text(fields.String):
    """A string within ``bounds`` (min, max characters), single-line unless
    ``lines``; ``blank=False`` refuses whitespace only. Other validators may follow."""

    def __init__(self, bounds, lines=False, blank=True, validate=(), **kwargs):
        checks = [storable, length(bounds)]
        if lines:
            checks.append(_pattern(MULTI_LINE, MULTI_LINE_MESSAGE))
        else:
            checks.append(_pattern(SINGLE_LINE, SINGLE_LINE_MESSAGE))
        if not blank:
            checks.append(not_blank)
        super().__init__(validate=[*checks, *_as_list(validate)], **kwargs)


class Secret(fields.String):
    """A password: any valid Unicode within ``bounds``."""

    def __init__(self, bounds, **kwargs):
        super().__init__(validate=[storable, length(bounds)], **kwargs)


class Topic(Text):
    """Trimmed and lower-cased, then checked: topic filters compare equal strings."""

    def __init__(self, bounds=TOPIC, **kwargs):
        super().__init__(bounds, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not SINGLE_LINE_RE.match(text):  # before trimming, which would hide a line break
            raise ValidationError(SINGLE_LINE_MESSAGE)
        return text.strip().lower()


class Email(fields.Email):
    def __init__(self, **kwargs):
        super().__init__(validate=[storable, length((0, EMAIL_MAX)),
                                   _pattern(SINGLE_LINE, SINGLE_LINE_MESSAGE)], **kwargs)


def username(**kwargs):
    return fields.String(validate=[
        validate.Length(*USERNAME, error=LENGTH_MESSAGE),
        validate.Regexp(USERNAME_PATTERN, error="Must be 3 to 30 of a-z, 0-9, '_', '.' and '-'."),
    ], **kwargs)


def timezone_name(**kwargs):
    return Text(TIMEZONE, validate=is_timezone, **kwargs)


def integer(bounds, **kwargs):
    return fields.Integer(strict=True, validate=validate.Range(*bounds), **kwargs)


class Number(fields.Float):
    """A JSON number: not a numeric string, not a boolean, not NaN."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, bool)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Flag(fields.Boolean):
    """A JSON true or false: not 1, "true" or "yes" (marshmallow's Boolean takes those)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def on_earth(lat, lng):
    """Whether (lat, lng) are a point's coordinates (false for NaN too)."""
    return LATITUDE[0] <= lat <= LATITUDE[1] and LONGITUDE[0] <= lng <= LONGITUDE[1]


POINT_MESSAGE = (f"lat must be in {LATITUDE[0]}..{LATITUDE[1]} and lng in "
                 f"{LONGITUDE[0]}..{LONGITUDE[1]}.")


def latitude(**kwargs):
    return Number(validate=validate.Range(*LATITUDE), **kwargs)


def longitude(**kwargs):
    return Number(validate=validate.Range(*LONGITUDE), **kwargs)


class Time(fields.String):
    """RFC 3339 with an offset in (bus.times.parse: UTC, milliseconds, in range); an
    aware datetime out, or with ``as_text`` its API.md form (UTC with a Z)."""

    def __init__(self, as_text=False, **kwargs):
        kwargs.setdefault("metadata", {})["format"] = "date-time"
        super().__init__(**kwargs)
        self.as_text = as_text

    def _deserialize(self, value, attr, data, **kwargs):
        text = self._text(super()._deserialize(value, attr, data, **kwargs))
        try:
            moment = times.parse(text)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        return iso(moment) if self.as_text else moment

    def _text(self, text):
        return text


def _pattern(pattern, message):
    return validate.Regexp(pattern, error=message)


def _as_list(validators):
    if callable(validators):
        return [validators]
    return list(validators)


class Recurrence(Text):
    """A recurring event's RRULE (API.md v1.1), checked by bus.recurrence."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("description", (
            "RFC 5545 RRULE: FREQ=DAILY|WEEKLY|MONTHLY, INTERVAL, BYDAY (weekly MO,TU,..; "
            "monthly 1FR, -1SU), and exactly one of COUNT (1..500) or UNTIL (at most 2 "
            f"years after starts_at), {recurrence.EXAMPLE}. At most 500 occurrences."))
        super().__init__((1, recurrence.MAX_LENGTH), blank=False, validate=_rule, **kwargs)


def _rule(value):
    try:
        recurrence.parse(value)
    except recurrence.RuleError as error:
        raise ValidationError(str(error)) from None
