"""The shape of every request and resource of API.md, as marshmallow schemas.

Request schemas check shape only (types, lengths, ranges, RFC 3339 times) and
normalise (times to UTC ``Z``, topics trimmed and lower-cased); the services
enforce the domain rules. Unknown fields are rejected, and a string field never
accepts anything but a string (no ``{"$ne": ""}`` reaching a query). Resource
schemas document the responses in /openapi.json.
"""
import functools
import re

from marshmallow import RAISE, Schema, fields, post_load, pre_load, validates_schema
from marshmallow import ValidationError as FieldError
from marshmallow.validate import Length, OneOf, Range

from bus import fields as rules
from bus import recurrence
from bus import times
from bus.errors import ValidationError, validation_error
from bus.messages import iso, utc_now

EVENT_STATUSES = ["scheduled", "cancelled"]
NOTIFICATION_STATUSES = ["scheduled", "sent", "failed", "cancelled"]
PAGE_LIMIT = rules.LIMIT[1]  # a list's `limit`: 1..this
MAX_FEED_EVENTS = 500  # GET /events.ics: the soonest this many
TIME_MESSAGE = times.MESSAGE

# --- fields (their rules: bus.fields) ------------------------------------------------

class Time(rules.Time):
    """RFC 3339 with an offset in, UTC ``...Z`` string out."""

    def __init__(self, in_query=False, **kwargs):
        super().__init__(as_text=True, **kwargs)
        self.in_query = in_query

    def _text(self, text):
        if self.in_query:
            # an unencoded "+01:00" in a URL arrives as " 01:00": read it as meant
            text = re.sub(r"(T\d{2}:\d{2}:\d{2}(?:\.\d+)?) (\d{2}:\d{2})$", r"\1+\2", text)
        return text


class LatLng(fields.String):
    """``near=lat,lng`` -> ``{"lat": .., "lng": ..}``."""

    MESSAGE = f"Must be lat,lng, e.g. 48.85,2.35: {rules.POINT_MESSAGE}"

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            lat, lng = (float(part) for part in text.split(","))
        except ValueError:
            raise FieldError(self.MESSAGE) from None
        if not rules.on_earth(lat, lng):
            raise FieldError(self.MESSAGE)
        return {"lat": lat, "lng": lng}


def one_of(data, first, second, required):
    """Errors unless exactly one (``required``) or at most one of two fields is given."""
    given = [name for name in (first, second) if name in data]
    if len(given) == 2:
        message = f"Give either {first} or {second}, not both."
    elif required and not given:
        message = f"Give one of {first} or {second}."
    else:
        return
    raise FieldError({first: [message], second: [message]})


# --- request bodies ------------------------------------------------------------------

class Body(Schema):
    class Meta:
        unknown = RAISE


class Registration(Body):
    username = rules.username(required=True)
    email = rules.Email(required=True)
    password = rules.Secret(rules.PASSWORD, required=True, load_only=True)


class PasswordChange(Body):
    """The current password (any string: a wrong one is a 401 from users) and a new one
    under registration's rule."""

    current_password = rules.Secret((1, rules.PASSWORD[1]), required=True, load_only=True)
    new_password = rules.Secret(rules.PASSWORD, required=True, load_only=True)


class Credentials(Body):
    """Login by username or email. Shape only: a wrong one is a 401 from users."""

    username = rules.Text(rules.LOGIN_NAME)
    email = rules.Text(rules.LOGIN_NAME)
    password = rules.Secret((1, rules.PASSWORD[1]), required=True, load_only=True)

    @validates_schema(skip_on_field_errors=False)
    def _username_or_email(self, data, **kwargs):
        one_of(data, "username", "email", required=True)


class EmailAddress(Body):
    email = rules.Email(required=True)


NOTICES_DESCRIPTION = ("Whether an email tells you when an event you set reminders for "
                       "is cancelled (true until you turn it off).")


class EmailPreferenceChanges(Body):
    cancellation_notices = rules.Flag(metadata={"description": NOTICES_DESCRIPTION})


class Place(Body):
    name = rules.Text(rules.PLACE_NAME, blank=False, required=True)
    address = rules.Text(rules.ADDRESS, allow_none=True, load_default=None)
    lat = rules.latitude(required=True)
    lng = rules.longitude(required=True)


class EventFields(Body):
    title = rules.Text(rules.TITLE, blank=False)
    description = rules.Text(rules.DESCRIPTION, lines=True)
    topics = fields.List(rules.Topic(), validate=Length(*rules.TOPICS))
    starts_at = Time()
    ends_at = Time(allow_none=True)
    timezone = rules.timezone_name()
    place = fields.Nested(Place, allow_none=True)
    organizer = rules.Text(rules.ORGANIZER, allow_none=True)
    status = fields.String(validate=OneOf(EVENT_STATUSES))

    @validates_schema(skip_on_field_errors=False)
    def _ends_after_start(self, data, **kwargs):
        starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
        if starts_at and ends_at and times.parse(ends_at) <= times.parse(starts_at):
            raise FieldError({"ends_at": ["Must be after starts_at."]})

    @post_load
    def _unique_topics(self, data, **kwargs):
        if "topics" in data:  # "Music" and "music " are one topic once normalised
            data["topics"] = list(dict.fromkeys(data["topics"]))
        return data


class EventCreate(EventFields):
    title = rules.Text(rules.TITLE, blank=False, required=True)
    starts_at = Time(required=True)
    description = rules.Text(rules.DESCRIPTION, lines=True, load_default="")
    topics = fields.List(rules.Topic(), required=True, validate=Length(*rules.TOPICS))
    ends_at = Time(allow_none=True, load_default=None)
    timezone = rules.timezone_name(load_default="UTC")
    place = fields.Nested(Place, allow_none=True, load_default=None)
    organizer = rules.Text(rules.ORGANIZER, allow_none=True, load_default=None)
    status = fields.String(load_default="scheduled", validate=OneOf(EVENT_STATUSES))
    recurrence = rules.Recurrence(allow_none=True)


class EventChanges(EventFields):
    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise FieldError("Give at least one field to change.")


class SeriesChanges(EventChanges):
    """PATCH /series/{id}: an event's writable fields; `recurrence` is named as fixed."""

    recurrence = fields.Raw(load_only=True, metadata={
        "description": "Not writable: any value is a 422 naming it."})

    @validates_schema(pass_original=True)
    def _recurrence_fixed(self, data, original, **kwargs):
        if isinstance(original, dict) and "recurrence" in original:
            raise FieldError({"recurrence": [recurrence.FIXED]})


class NotificationFields(Body):
    remind_at = Time()
    before_minutes = rules.integer(rules.BEFORE_MINUTES)
    email = rules.Email()
    subject = rules.Text(rules.SUBJECT, blank=False)
    message = rules.Text(rules.MESSAGE, lines=True, allow_none=True)


class NotificationCreate(NotificationFields):
    event_id = rules.Text(rules.EVENT_ID, required=True)

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _one_time(self, data, original, **kwargs):
        # judged on what was sent, so an invalid remind_at still counts as given
        one_of(original, "remind_at", "before_minutes", required=True)


class NotificationChanges(NotificationFields):
    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _at_most_one_time(self, data, original, **kwargs):
        one_of(original, "remind_at", "before_minutes", required=False)

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise FieldError("Give at least one field to change.")


class Snooze(Body):
    minutes = rules.integer(rules.SNOOZE_MINUTES, required=True)


class SavedSearchQuery(Body):
    """A saved search's query: the search's own fields and rules (`topic`, `q`, `near`,
    `radius_km`), and `within_days`. Topics as in a search (trimmed, lower-cased)."""

    topic = fields.List(
        rules.Topic(), validate=Length(max=rules.SEARCH_TOPICS_MAX),
        metadata={"description": "An event matches if it has any of them."})
    q = rules.Text(rules.WORDS, metadata={
        "description": "Words that must all appear (case-insensitive)."})
    near = LatLng(metadata={"description": "lat,lng, e.g. 48.85,2.35"})
    radius_km = rules.Number(
        validate=Range(0, rules.MAX_RADIUS_KM, min_inclusive=False),
        metadata={"exclusiveMinimum": True,
                  "description": f"Only with near; default {rules.DEFAULT_RADIUS_KM:g}."})
    within_days = rules.integer(rules.WITHIN_DAYS, metadata={
        "description": "Events starting in the next N days."})

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _radius_needs_near(self, data, original, **kwargs):
        if isinstance(original, dict) and "radius_km" in original and "near" not in original:
            raise FieldError({"radius_km": ["Give near with radius_km."]})

    @post_load
    def _unique_topics(self, data, **kwargs):
        if "topic" in data:
            data["topic"] = list(dict.fromkeys(data["topic"]))
        if "near" in data:
            data.setdefault("radius_km", rules.DEFAULT_RADIUS_KM)
        return data


class SavedSearchCreate(Body):
    name = rules.Text(rules.SAVED_SEARCH_NAME, blank=False, required=True)
    query = fields.Nested(SavedSearchQuery, required=True)
    frequency = fields.String(required=True, validate=OneOf(rules.ALERT_FREQUENCIES))


# --- query strings -------------------------------------------------------------------

class Query(Schema):
    """Query parameters; each given once unless listed in ``repeatable``."""

    repeatable = ()

    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=rules.DEFAULT_LIMIT, validate=Range(*rules.LIMIT))
    cursor = rules.Text(rules.CURSOR)


class EventSearch(Query):
    repeatable = ("topic",)

    topic = fields.List(  # empty parts of a comma-separated list are left out
        rules.Topic(bounds=(0, rules.TOPIC[1])), validate=Length(max=rules.SEARCH_TOPICS_MAX),
        metadata={"description": "Repeatable or comma-separated; any of them matches."},
    )
    q = rules.Text(
        rules.WORDS,
        metadata={"description": "Words that must all appear (case-insensitive)."},
    )
    from_ = Time(in_query=True, data_key="from",
                 metadata={"description": "Events starting at or after; default now."})
    to = Time(in_query=True, metadata={"description": "Events starting before."})
    near = LatLng(metadata={"description": "lat,lng, e.g. 48.85,2.35"})
    radius_km = fields.Float(
        load_default=rules.DEFAULT_RADIUS_KM,
        validate=Range(0, rules.MAX_RADIUS_KM, min_inclusive=False),
        # apispec leaves the exclusive bound out of the document; say it (OpenAPI 3.0 form)
        metadata={"exclusiveMinimum": True},
    )
    status = fields.String(load_default="scheduled", validate=OneOf([*EVENT_STATUSES, "all"]))
    sort = fields.String(load_default="starts_at", validate=OneOf(["starts_at", "distance"]))
    series_id = rules.Text(rules.EVENT_ID, metadata={
        "description": "Only the occurrences of this recurring event's series."})

    @pre_load
    def _split_topics(self, data, **kwargs):
        if "topic" in data:
            data = dict(data, topic=[
                part for value in data["topic"] for part in str(value).split(",")
                if part.strip()
            ])
        return data

    @validates_schema(skip_on_field_errors=False)
    def _consistent(self, data, **kwargs):
        errors = {}
        if data.get("sort") == "distance" and "near" not in data:
            errors["sort"] = ["Sorting by distance needs near=lat,lng."]
        start, end = data.get("from_"), data.get("to")
        if start and end and times.parse(end) <= times.parse(start):
            errors["to"] = ["Must be after from."]
        if errors:
            raise FieldError(errors)

    @post_load
    def _as_query(self, data, **kwargs):
        """The ``query`` argument of search.search (docs/contracts.md)."""
        words = [word.lower() for word in data.get("q", "").split()]
        return {
            "topics": data.get("topic") or None,
            "words": words or None,
            "from": data.get("from_") or iso(utc_now()),
            "to": data.get("to"),
            "near": data.get("near"),
            "radius_km": data["radius_km"],
            "status": data["status"],
            "sort": data["sort"],
            "limit": data["limit"],
            "cursor": data.get("cursor"),
            "series_id": data.get("series_id"),
        }


class EventFeed(EventSearch):
    """`GET /events.ics`: the search's parameters, no cursor, up to 500 events."""

    class Meta(EventSearch.Meta):
        exclude = ("cursor",)

    limit = fields.Integer(load_default=MAX_FEED_EVENTS, validate=Range(1, MAX_FEED_EVENTS))


class NotificationFilter(Query):
    status = fields.String(validate=OneOf(NOTIFICATION_STATUSES))
    event_id = rules.Text(rules.EVENT_ID)

    @post_load
    def _as_filters(self, data, **kwargs):
        """The ``filters`` argument of notifications.list."""
        return {name: data.get(name) for name in ("status", "event_id", "limit", "cursor")}


class SavedSearchFilter(Query):
    @post_load
    def _as_filters(self, data, **kwargs):
        """The ``filters`` argument of alerts.list."""
        return {name: data.get(name) for name in ("limit", "cursor")}


# --- loading -------------------------------------------------------------------------

@functools.cache
def _instance(schema_class):
    return schema_class()


def load(schema, data):
    """``data`` checked and normalised by ``schema`` (a Schema, or a Schema class: one
    instance of it is kept, building one per request costs more than the check);
    422 ValidationError otherwise."""
    if isinstance(schema, type):
        schema = _instance(schema)
    try:
        return schema.load(data)
    except FieldError as error:
        raise validation_error(error) from None


def load_query(schema, args):
    """As ``load``, for a werkzeug MultiDict of query parameters."""
    if isinstance(schema, type):
        schema = _instance(schema)
    data, repeated = {}, {}
    for name in args:
        values = args.getlist(name)
        if name in schema.repeatable:
            data[name] = values
        elif len(values) > 1:
            repeated[name] = ["Give this parameter once."]
        else:
            data[name] = values[0]
    try:
        loaded = load(schema, data)
    except ValidationError as error:
        raise ValidationError({**error.details, **repeated}) from None
    if repeated:
        raise ValidationError(repeated)
    return loaded


# --- resources (responses) -----------------------------------------------------------

class CalendarFeedUrl(Schema):
    url = fields.String(metadata={"description": "<PUBLIC_URL>/calendar/<token>.ics"})


class EmailPreferences(Schema):
    cancellation_notices = fields.Boolean(metadata={"description": NOTICES_DESCRIPTION})


class User(Schema):
    id = fields.String()
    username = fields.String()
    email = fields.Email()
    secondary_emails = fields.List(fields.Email())
    role = fields.String(validate=OneOf(["user", "admin"]))
    created_at = fields.String(metadata={"format": "date-time"})
    version = fields.Integer(metadata={"description": "1 at registration, + 1 with each change."})


class Token(Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"enum": ["bearer"]})
    expires_in = fields.Integer(metadata={"description": "Seconds until the token expires."})


class PlaceResource(Schema):
    name = fields.String()
    address = fields.String(allow_none=True)
    lat = fields.Float()
    lng = fields.Float()


class Event(Schema):
    id = fields.String()
    title = fields.String()
    description = fields.String()
    topics = fields.List(fields.String())
    starts_at = fields.String(metadata={"format": "date-time"})
    ends_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    timezone = fields.String()
    place = fields.Nested(PlaceResource, allow_none=True)
    organizer = fields.String(allow_none=True)
    status = fields.String(validate=OneOf(EVENT_STATUSES))
    version = fields.Integer()
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    distance_km = fields.Float(
        metadata={"description": "Only in search results with near=lat,lng."}
    )
    series_id = fields.String(allow_none=True, metadata={
        "description": "The series of a recurring event's occurrence (GET /series/{id}); "
                       "null for an event that does not recur."})
    recurrence = fields.String(allow_none=True, metadata={
        "description": "The series' RRULE as given on creation; null if it does not recur."})


class Series(Schema):
    id = fields.String()
    recurrence = fields.String()
    occurrences = fields.Integer(metadata={
        "description": "How many occurrences the series has now, past ones included."})
    next = fields.Nested(Event, allow_none=True, metadata={
        "description": "The soonest occurrence that has not started; null if none."})


class Notification(Schema):
    id = fields.String()
    event_id = fields.String()
    email = fields.Email()
    subject = fields.String()
    message = fields.String(allow_none=True)
    remind_at = fields.String(metadata={"format": "date-time"})
    before_minutes = fields.Integer(allow_none=True)
    status = fields.String(validate=OneOf(NOTIFICATION_STATUSES))
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    sent_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    failure_reason = fields.String(
        allow_none=True, metadata={"description": "Why delivery failed (status failed)."}
    )


class SavedSearchQueryResource(Schema):
    topic = fields.List(fields.String())
    q = fields.String()
    near = fields.String(metadata={"description": "lat,lng"})
    radius_km = fields.Float()
    within_days = fields.Integer()


class SavedSearch(Schema):
    id = fields.String()
    name = fields.String()
    query = fields.Nested(SavedSearchQueryResource, metadata={
        "description": "Only the parts given; radius_km with near (default 10)."})
    frequency = fields.String(validate=OneOf(rules.ALERT_FREQUENCIES))
    email = fields.Email(metadata={"description": "The account's primary email (it follows "
                                                  "a change of the primary)."})
    created_at = fields.String(metadata={"format": "date-time"})


class SavedSearchPage(Schema):
    items = fields.List(fields.Nested(SavedSearch))
    next_cursor = fields.String(allow_none=True)


class EventPage(Schema):
    items = fields.List(fields.Nested(Event))
    next_cursor = fields.String(allow_none=True)


class NotificationPage(Schema):
    items = fields.List(fields.Nested(Notification))
    next_cursor = fields.String(allow_none=True)


class ErrorDetail(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Dict(metadata={
        "description": "For validation_error: each bad field mapped to a list of messages."
    })


class Error(Schema):
    error = fields.Nested(ErrorDetail)


class Health(Schema):
    status = fields.String(validate=OneOf(["ok", "unavailable"]))
    services = fields.Dict(
        keys=fields.String(), values=fields.String(),
        metadata={"description": "Each backing service: ok, unavailable or error."},
    )
    error = fields.Nested(ErrorDetail, metadata={"description": "Only with status 503."})
