"""The writable fields of an event, checked again inside the service.

The gateway has validated the HTTP shape already; these schemas re-check it
cheaply because the service never trusts that a string is not a dict (operator
injection) and because RPC callers other than the gateway exist (tasks, shell).
"""
from marshmallow import Schema, fields, validate

from bus import fields as rules

STATUSES = ("scheduled", "cancelled")


class Place(Schema):
    name = rules.Text(rules.PLACE_NAME, blank=False, required=True)
    address = rules.Text(rules.ADDRESS, load_default=None, allow_none=True)
    lat = rules.latitude(required=True)
    lng = rules.longitude(required=True)


class EventFields(Schema):
    """API.md's writable fields (rules: bus.fields). Load with ``partial=True`` for a PATCH."""

    title = rules.Text(rules.TITLE, blank=False, required=True)
    description = rules.Text(rules.DESCRIPTION, lines=True, load_default="")
    topics = fields.List(rules.Topic(), required=True, validate=validate.Length(*rules.TOPICS))
    starts_at = rules.Time(required=True)
    ends_at = rules.Time(load_default=None, allow_none=True)
    timezone = rules.timezone_name(load_default="UTC")
    place = fields.Nested(Place, load_default=None, allow_none=True)
    organizer = rules.Text(rules.ORGANIZER, load_default=None, allow_none=True)
    status = fields.String(load_default="scheduled", validate=validate.OneOf(STATUSES))
