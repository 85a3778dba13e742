"""The writable fields of an event, checked again inside the service.

The gateway has validated the HTTP shape already; these schemas re-check it
cheaply because the service never trusts that a string is not a dict (operator
injection) and because RPC callers other than the gateway exist (tasks, shell).
"""
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates

from bus.fields import Time

STATUSES = ("scheduled", "cancelled")


class StrictFloat(fields.Float):
    """A JSON number; booleans are not numbers here (float(True) would pass)."""

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._validated(value)


class Topic(fields.String):
    """Stored trimmed and lower-case, so topic filters compare equal strings."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip().lower()


class Place(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 500))
    lat = StrictFloat(required=True, validate=validate.Range(-90, 90))
    lng = StrictFloat(required=True, validate=validate.Range(-180, 180))


class EventFields(Schema):
    """API.md's writable fields. Load with ``partial=True`` for a PATCH."""

    title = fields.String(required=True, validate=validate.Length(1, 120))
    description = fields.String(load_default="", validate=validate.Length(0, 4000))
    topics = fields.List(
        Topic(validate=validate.Length(1, 40)), required=True, validate=validate.Length(1, 10)
    )
    starts_at = Time(required=True)
    ends_at = Time(load_default=None, allow_none=True)
    timezone = fields.String(load_default="UTC", validate=validate.Length(1, 64))
    place = fields.Nested(Place, load_default=None, allow_none=True)
    organizer = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200))
    status = fields.String(load_default="scheduled", validate=validate.OneOf(STATUSES))

    @validates("timezone")
    def _known_timezone(self, value, **kwargs):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValidationError("Not a known IANA time zone.") from error
