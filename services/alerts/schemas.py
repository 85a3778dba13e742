"""Input shapes the service re-checks (the gateway checked them first), the saved
search resource, and the list cursor.

A saved search's ``query`` is stored as the gateway normalised it: ``topic`` (a
list, trimmed and lower-cased), ``q`` (words), ``near`` ({lat, lng}), ``radius_km``
and ``within_days``, each only if given. Its search parts are re-checked by the event
search's own rules (matching.parse_query), so they mean here what they mean in
``GET /events``.
"""
from marshmallow import RAISE, Schema, fields, validate

from bus import cursors
from bus import fields as rules
from bus.errors import ValidationError as InvalidRequest
from bus.errors import checked
from bus.messages import iso

from .matching import parse_query

QUERY_FIELDS = ("topic", "q", "near", "radius_km", "within_days")


class _Query(Schema):
    class Meta:
        unknown = RAISE

    topic = fields.List(rules.Topic(), validate=validate.Length(max=rules.SEARCH_TOPICS_MAX))
    q = rules.Text(rules.WORDS)
    near = fields.Dict()
    radius_km = rules.Number()
    within_days = rules.integer(rules.WITHIN_DAYS)


class CreateFields(Schema):
    class Meta:
        unknown = RAISE

    name = rules.Text(rules.SAVED_SEARCH_NAME, blank=False, required=True)
    query = fields.Nested(_Query, required=True)
    frequency = fields.String(required=True, validate=validate.OneOf(rules.ALERT_FREQUENCIES))


class Filters(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(strict=True, allow_none=True, validate=validate.Range(*rules.LIMIT))
    cursor = rules.Text(rules.CURSOR, allow_none=True)


load = checked  # validated input, or bus.errors.ValidationError naming each bad field


def load_create(data):
    """``CreateFields``, and the query's search parts by the search's rules: errors
    name ``query.<field>``."""
    fields_ = load(CreateFields(), data)
    query = {name: fields_["query"][name] for name in QUERY_FIELDS if name in fields_["query"]}
    try:
        parsed = parse_query(query)
    except InvalidRequest as error:
        raise InvalidRequest({f"query.{name}": messages
                              for name, messages in error.details.items()}) from None
    if "radius_km" in query and parsed["near"] is None:
        raise InvalidRequest({"query.radius_km": ["Give near with radius_km."]})
    if parsed["near"] is not None:
        query["near"], query["radius_km"] = parsed["near"], parsed["radius_km"]
    if parsed["topics"]:
        query["topic"] = parsed["topics"]
    else:
        query.pop("topic", None)
    if not (query.get("q") or "").strip():
        query.pop("q", None)
    return {**fields_, "query": query}


def resource(document):
    """API.md's saved search: ``near`` as ``"lat,lng"``, only the parts it was given."""
    query = dict(document["query"])
    if "near" in query:
        query["near"] = f"{query['near']['lat']},{query['near']['lng']}"
    return {
        "id": document["_id"],
        "name": document["name"],
        "query": query,
        "frequency": document["frequency"],
        "email": document["email"],
        "created_at": iso(document["created_at"]),
    }


def encode_cursor(document):
    return cursors.encode(document["created_at"], document["_id"])


def decode_cursor(cursor):
    """The (created_at, id) a page starts after; ValidationError if it is not ours."""
    return cursors.decode(cursor, cursors.TIME, cursors.TEXT)
