"""Page cursors: one opaque format with bounds, for every list of the API.

A cursor is the URL-safe base64 (unpadded) of a JSON array of a few scalars, e.g. the
sort, the last item's sort key and its id. ``decode`` accepts only what ``encode``
could have made for that list: a bounded size (so no deep nesting or huge number gets
parsed), exactly the expected kinds of values, integers and text that a database
query can hold (64-bit integers, finite floats, valid Unicode of bounded length) and
times within bus.times' range. Anything else is the same 422 naming ``cursor``, never
a 500 further down.
"""
import base64
import binascii
import json
import math

from bus import times
from bus.errors import ValidationError
from bus.messages import iso

# A cursor of ours is well under this (three short values); the gateway's query
# check uses the same bound (bus.fields).
MAX_LENGTH = 1000
MAX_TEXT = 200
MAX_INT = 2 ** 63 - 1
MESSAGE = "Not a cursor of this list; start again without it."

TEXT, NUMBER, TIME, INTEGER = "text", "number", "time", "integer"


def encode(*values):
    """The cursor of ``values`` (str, int, float or aware datetime)."""
    plain = [iso(v) if hasattr(v, "tzinfo") else v for v in values]
    raw = json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor, *kinds):
    """The values of a cursor made by ``encode``, one per kind in ``kinds`` (TEXT,
    NUMBER, TIME -> aware datetime, INTEGER); ValidationError naming `cursor` otherwise."""
    try:
        if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_LENGTH:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError
        return tuple(_value(kind, value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise invalid() from None


def invalid():
    return ValidationError({"cursor": [MESSAGE]})


def _no_constant(name):
    raise ValueError(name)  # NaN, Infinity: not numbers a query can compare


def _value(kind, value):
    if kind == TEXT:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise ValueError
        value.encode("utf-8")  # a lone surrogate cannot be stored or compared: ValueError
        return value
    if kind == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT:
            raise ValueError
        return value
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ValueError
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        return value
    if kind == TIME:
        return times.parse(value, times.MIN, times.MAX)
    raise TypeError(kind)
