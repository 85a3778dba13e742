"""Input shapes the service re-checks (the gateway checked them first), the
notification resource, and the list cursor."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from bus import cursors
from bus import fields as rules
from bus.errors import checked
from bus.messages import iso

STATUSES = ["scheduled", "sent", "failed", "cancelled"]
ONE_OF = "Give exactly one of remind_at or before_minutes."


class _Timing(Schema):
    class Meta:
        unknown = RAISE

    remind_at = rules.Time()
    before_minutes = rules.integer(rules.BEFORE_MINUTES)
    email = rules.Email()
    subject = rules.Text(rules.SUBJECT, blank=False)
    message = rules.Text(rules.MESSAGE, lines=True, allow_none=True)


class CreateFields(_Timing):
    event_id = rules.Text(rules.EVENT_ID, required=True)

    @validates_schema
    def exactly_one_time(self, data, **kwargs):
        if ("remind_at" in data) == ("before_minutes" in data):
            raise ValidationError(ONE_OF, "remind_at")


class Changes(_Timing):
    @validates_schema
    def at_most_one_time(self, data, **kwargs):
        if "remind_at" in data and "before_minutes" in data:
            raise ValidationError(ONE_OF, "remind_at")


class PreferenceChanges(Schema):
    """PATCH /users/me/email-preferences: any subset of the user's email choices."""

    class Meta:
        unknown = RAISE

    cancellation_notices = rules.Flag()


class Filters(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(allow_none=True, validate=validate.OneOf(STATUSES))
    event_id = rules.Text(rules.EVENT_ID, allow_none=True)
    limit = fields.Integer(strict=True, allow_none=True, validate=validate.Range(*rules.LIMIT))
    cursor = rules.Text(rules.CURSOR, allow_none=True)


load = checked  # validated input, or bus.errors.ValidationError naming each bad field


def resource(document):
    """API.md's notification, plus ``failure_reason`` (why a reminder is ``failed``)."""
    return {
        "id": document["_id"],
        "event_id": document["event_id"],
        "email": document["email"],
        "subject": document["subject"],
        "message": document.get("message"),
        "remind_at": iso(document["remind_at"]),
        "before_minutes": document.get("before_minutes"),
        # "sending" is ours: the mail is in flight, the user still waits for it
        "status": "scheduled" if document["status"] == "sending" else document["status"],
        "created_at": iso(document["created_at"]),
        "updated_at": iso(document["updated_at"]),
        "sent_at": iso(document.get("sent_at")),
        "failure_reason": document.get("failure_reason"),
    }


def encode_cursor(document):
    return cursors.encode(document["remind_at"], document["_id"])


def decode_cursor(cursor):
    """The (remind_at, id) a page starts after; ValidationError if it is not one of ours."""
    return cursors.decode(cursor, cursors.TIME, cursors.TEXT)
