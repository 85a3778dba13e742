"""Field rules every service and the gateway share (API.md), as marshmallow fields.

One place for each rule, so the gateway's checks, the services' checks and the
OpenAPI document (which apispec derives from the gateway's fields) cannot drift apart.
"""
from marshmallow import ValidationError, fields

from bus import times
from bus.messages import iso


class Time(fields.String):
    """RFC 3339 with an offset in (bus.times.parse: UTC, milliseconds, in range); an
    aware datetime out, or with ``as_text`` its API.md form (UTC with a Z)."""

    def __init__(self, as_text=False, **kwargs):
        kwargs.setdefault("metadata", {})["format"] = "date-time"
        super().__init__(**kwargs)
        self.as_text = as_text

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment = times.parse(text)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        return iso(moment) if self.as_text else moment
